"""Views of `k3sops runbook list` and `runbook show`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.runbooks import Runbook, RunbookList


@table_for("k3sops.domain.runbooks.model.RunbookList")
def runbook_list_table(r: RunbookList, out: Console) -> None:
    """Every runbook: id, title, severity, steps, automated steps."""
    from rich.table import Table

    t = Table("id", "title", "severity", "steps", "automated", title="Runbooks")
    for s in r.runbooks:
        t.add_row(s.id, s.title, s.severity_hint, str(s.steps), str(s.automated_steps))
    out.print(t)


@table_for("k3sops.domain.runbooks.model.Runbook")
def runbook_table(rb: Runbook, out: Console) -> None:
    """One runbook's numbered steps, commands and what to look for."""
    from rich.panel import Panel
    from rich.text import Text

    colour = {"critical": "red", "warning": "yellow", "info": "cyan"}[rb.severity_hint]
    out.print(Panel(Text(rb.summary), title=f"[bold]{rb.title}[/]",
                    subtitle=f"{rb.id} · [{colour}]{rb.severity_hint}[/]"))
    for i, s in enumerate(rb.steps, 1):
        out.print(Text.assemble((f"{i}. {s.title}", "bold")))
        out.print(Text(f"   {s.why}", style="dim"))
        if s.command:
            out.print(Text("   $ ", style="dim") + Text(s.command, style="green"),
                      soft_wrap=True)
        out.print(Text.assemble(("   look for: ", "bold"), s.look_for))
        if s.automated_by:
            out.print(Text.assemble(("   k3sops can do this: ", "bold cyan"),
                                    (s.automated_by, "cyan")), soft_wrap=True)
    if rb.related:
        out.print(Text.assemble(("related: ", "bold"), ", ".join(rb.related)))
