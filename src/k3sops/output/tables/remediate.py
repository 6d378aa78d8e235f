"""View of the remediations (`node cordon|drain`, `rollout restart`, `pods clean`...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for
from k3sops.output.tables.steps import steps_table

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.services.remediate import RemediationReport


@table_for("k3sops.services.remediate.RemediationReport")
def remediation_table(r: RemediationReport, out: Console) -> None:
    """The numbered steps and their results (STEP_COLOURS), notes and the audit log."""
    steps_table(r.title, r.applied, r.steps, out)
    for n in r.notes:
        out.print(f"[dim]note:[/] {n}")
    if r.audit_log:
        out.print(f"[dim]audit log:[/] {r.audit_log}")
