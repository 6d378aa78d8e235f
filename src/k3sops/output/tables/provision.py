"""Table of `k3sops provision` and `scale nodes add|remove`: the steps and their results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for
from k3sops.output.tables.steps import steps_table

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.services.provision import ProvisionReport


@table_for("k3sops.services.provision.ProvisionReport")
def provision_table(r: ProvisionReport, out: Console) -> None:
    """The steps of a provisioning run, then Ready nodes, findings, notes."""
    steps_table(r.title, r.applied, r.steps, out)
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
