"""Table of `k3sops provision` and `scale nodes add|remove`: the steps and their results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.services.provision import ProvisionReport

STEP_COLOURS = {"ok": "green", "skipped": "cyan", "failed": "red", "not-run": "yellow",
                "planned": "white"}
"""Colour of a step's result (the step states of remediation plans, not severities)."""


@table_for("k3sops.services.provision.ProvisionReport")
def provision_table(r: ProvisionReport, out: Console) -> None:
    """The steps of a provisioning run, then Ready nodes, findings, notes."""
    from rich.table import Table

    mode = "applied" if r.applied else "plan (dry run; pass --apply to make these changes)"
    t = Table("#", "action", "target", "detail", "result", "error", title=f"{r.title}: {mode}")
    for i, s in enumerate(r.steps, 1):
        colour = STEP_COLOURS.get(s.result, "white")
        t.add_row(str(i), s.step.action, s.step.target, s.step.detail,
                  f"[{colour}]{s.result}[/]", s.error or "")
    if r.steps:
        out.print(t)
    else:
        out.print(f"{r.title}: nothing to do")
    if r.changed is not None:
        out.print(f"ansible: {r.changed} task(s) changed")
    for name, ready in r.ready.items():
        out.print(f"node {name}: {'Ready' if ready else 'not Ready'}")
    for f in r.findings:
        out.print(f"[yellow]{f.severity}[/] {f.check}: {f.message}")
    for n in r.notes:
        out.print(f"[dim]note:[/] {n}")
    if r.audit_log:
        out.print(f"[dim]audit log:[/] {r.audit_log}")
