"""Views of `k3sops node` steps run over SSH (logs, oom-kills, restart-k3s, prune-images...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.services.nodeops import NodeStepReport


@table_for("k3sops.services.nodeops.NodeStepReport")
def node_step_table(r: NodeStepReport, out: Console) -> None:
    """The plan, or the output of a node step and its audit log."""
    if not r.ran:
        out.print(f"plan (dry run; pass --apply to run it): on {r.node} ({r.role}) as root: "
                  f"{r.command}", markup=False)
        return
    if r.stdout:
        out.print(r.stdout, markup=False, highlight=False, soft_wrap=True)
    elif r.step == "oom-kills":
        out.print(f"no OOM kills in the kernel log of {r.node}")
    if r.audit_log:
        out.print(f"[dim]audit log:[/] {r.audit_log}")
