"""Table of `k3sops emergency`: the checks, the changes, the verification, next steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.emergency.models import EmergencyReport

STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "unknown": "magenta",
                "skipped": "dim", "applied": "bold green", "declined": "yellow",
                "proposed": "cyan", "failed": "bold red", "started": "bold"}
"""Style of each check status and decision; the live progress on stderr uses it too."""


@table_for("k3sops.domain.emergency.models.EmergencyReport")
def emergency_table(r: EmergencyReport, out: Console) -> None:
    """Checks, changes, verification and next steps of one procedure."""
    from rich.table import Table
    from rich.text import Text

    out.print(Text(f"emergency {r.procedure}: {r.target}", style="bold"))
    t = Table("", "check", "detail", "runbook", title="Checks")
    for c in r.checks:
        t.add_row(Text(c.status, style=STATUS_STYLE.get(c.status, "")), c.title, c.detail,
                  c.runbook or "")
    out.print(t)
    if r.actions:
        t = Table("decision", "change", "why", "result", title="Changes")
        for a in r.actions:
            t.add_row(Text(a.decision, style=STATUS_STYLE.get(a.decision, "")), a.proposal.text,
                      a.why, (a.result + (f": {a.error}" if a.error else ""))
                      if a.decision == "applied" else "")
        out.print(t)
    if r.verification:
        t = Table("", "check", "detail", title="After the changes")
        for c in r.verification:
            t.add_row(Text(c.status, style=STATUS_STYLE.get(c.status, "")), c.title, c.detail)
        out.print(t)
    out.print(Text("Next steps", style="bold"))
    for s in r.next_steps:
        out.print(f"  - {s}", soft_wrap=True)
    out.print(f"[dim]runbooks:[/] {', '.join(r.runbooks)} (k3sops runbook show ID)")
