"""Tables of `k3sops upgrade plan`: nodes, order and preflight verdicts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.upgrade import UpgradePlan

_STATUS = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}


@table_for("k3sops.domain.upgrade.UpgradePlan")
def upgrade_plan_table(r: UpgradePlan, out: Console) -> None:
    """Nodes and versions, the order, then every preflight rule with its fix."""
    from rich.markup import escape
    from rich.table import Table

    t = Table("node", "role", "version", "ready", "schedulable", "upgrade",
              title=f"Upgrade to {r.target}")
    for n in r.nodes:
        t.add_row(n.name, n.role, escape(n.version), "yes" if n.ready else "[red]no[/]",
                  "yes" if n.schedulable else "[yellow]cordoned[/]",
                  "yes" if n.upgrade else "-")
    out.print(t)
    t = Table("step", "role", "nodes", title=f"Order (agents {r.max_unavailable} at a time)")
    for b in r.order:
        t.add_row(str(b.step), b.role, ", ".join(b.nodes))
    out.print(t)
    t = Table("check", "result", "reason", "fix", title="Preflight")
    for p in r.preflight:
        t.add_row(p.rule, _STATUS[p.status], escape(p.reason), escape(p.command or ""))
    out.print(t)
    for note in r.notes:
        out.print(f"note: {escape(note)}")
