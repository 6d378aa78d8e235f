"""Tables of `k3sops upgrade plan`: nodes, order and preflight verdicts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.upgrade import UpgradePlan
    from k3sops.domain.upgrade_apply import ApplyReport

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


_RESULT = {"planned": "planned", "ok": "[green]ok[/]", "skipped": "skipped",
           "failed": "[red]FAILED[/]", "not-run": "not run"}


@table_for("k3sops.domain.upgrade_apply.ApplyReport")
def upgrade_apply_table(r: ApplyReport, out: Console) -> None:
    """The plan (dry-run), the steps planned or run, and where a run stopped."""
    from rich.markup import escape
    from rich.table import Table

    if not r.applied:
        upgrade_plan_table(r.plan, out)
    title = "Steps" + ("" if r.applied else " (dry-run: nothing changed; --yes runs them)")
    t = Table("batch", "node", "step", "what", "result", title=title)
    for s in r.steps:
        t.add_row(str(s.batch), s.node, s.step, escape(s.what),
                  _RESULT[s.result] + (f": {escape(s.error)}" if s.error else ""))
    out.print(t)
    if r.skipped:
        out.print(f"already at {r.target}, left alone: {', '.join(r.skipped)}")
    if not r.steps:
        out.print(f"nothing to do: every node runs {r.target}")
    if r.stopped is not None:
        st = r.stopped
        out.print(f"[red]stopped[/] at node {st.node}, step {st.step}: {escape(st.reason)}")
        out.print(f"node {st.node} is {'left cordoned' if st.cordoned else 'not cordoned'}")
        out.print(f"resume: {escape(st.resume)}")
        for c in st.rollback:
            out.print(f"roll back: {escape(c)}")
    if r.state_file and r.applied:
        out.print(f"progress: {r.state_file}")
