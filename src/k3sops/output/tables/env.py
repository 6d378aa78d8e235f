"""Tables of `k3sops env`: environments, status, diff, a change with its gates, approvals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.env import GateResult
    from k3sops.domain.gitops import ValueDiff
    from k3sops.services.env.promote import ApprovalReport, ChangeReport
    from k3sops.services.env.status import EnvDiff, EnvList, EnvStatus

GATE_COLOURS = {"pass": "green", "fail": "red", "no-data": "yellow", "error": "red"}
"""A gate's (or a verification's) result."""


@table_for("k3sops.services.env.status.EnvList")
def env_list_table(r: EnvList, out: Console) -> None:
    """`env list`: the environments in promotion order, with their policy and gates."""
    from rich.table import Table

    t = Table("environment", "namespaces", "policy", "approvers", "healthy for",
              "promotes from", "values file",
              title=f"GitOps {r.repo} ({r.branch}; push {r.push}, deploy {r.deploy})")
    for e in r.environments:
        approvers = (f"{', '.join(e.approvers)} ({e.required_approvals} needed)"
                     if e.policy == "approval" else "")
        t.add_row(e.name, ", ".join(e.namespaces), e.policy, approvers,
                  e.healthy_for if e.promotes_from else "", e.promotes_from or "(builds)",
                  e.values_file)
    out.print(t)


@table_for("k3sops.services.env.status.EnvStatus")
def env_status_table(r: EnvStatus, out: Console) -> None:
    """`env status`: per app and environment, version in git and running, rollout, ArgoCD."""
    from rich.table import Table

    t = Table("app", "environment", "git", "running", "in sync", "rollout", "argocd",
              title=f"environments at {r.commit[:12]}")
    for a in r.apps:
        argo = f"{a.argocd.sync}/{a.argocd.health}" if a.argocd else "-"
        t.add_row(a.app, a.env, a.git_version or "-", a.running_version or "-",
                  "[green]yes[/]" if a.in_sync else "[red]no[/]",
                  a.error or a.rollout, argo)
    out.print(t)


def _shown(d: ValueDiff, left: bool) -> str:
    v = d.left if left else d.right
    return "(absent)" if v is None else str(v)


@table_for("k3sops.services.env.status.EnvDiff")
def env_diff_table(r: EnvDiff, out: Console) -> None:
    """`env diff`: every values difference, documented (DEVIATIONS.yaml) or not."""
    from rich.table import Table

    t = Table("key", r.left, r.right, "documented",
              title=f"{r.left} vs {r.right}: {len(r.differences)} difference(s), "
                    f"{r.undocumented} undocumented")
    for d in r.differences:
        t.add_row(d.path, _shown(d, True), _shown(d, False),
                  f"[green]yes[/] {d.reason}" if d.documented else "[red]NO[/]")
    out.print(t)


def _gates(title: str, gates: list[GateResult], out: Console) -> None:
    from rich.table import Table

    t = Table("gate", "result", "detail", title=title)
    for gt in gates:
        t.add_row(gt.name, f"[{GATE_COLOURS.get(gt.status, 'white')}]{gt.status}[/]", gt.detail)
    out.print(t)


@table_for("k3sops.services.env.promote.ChangeReport")
def change_table(r: ChangeReport, out: Console) -> None:
    """`env promote | rollback | sync`: the plan or what was done, gates, refusals, deploy."""
    head = {"promote": f"promote {r.app} {r.version or '?'}: {r.source} -> {r.target}",
            "rollback": f"rollback {r.app} in {r.target}: {r.previous_version} -> {r.version}",
            "sync": f"sync {r.target}"}[r.action]
    out.print(f"[bold]{head}[/] ({'applied' if r.applied else 'plan, dry run'})")
    if r.gates:
        _gates(f"gates on {r.source}", r.gates, out)
    for a in r.approvals:
        out.print(f"approved by {a.by} at {a.at} (expires {a.expires})")
    if r.diff:
        out.print(f"[dim]{r.values_file}:[/]")
        for line in r.diff:
            colour = "red" if line.startswith("-") else "green" if line.startswith("+") else "dim"
            out.print(f"[{colour}]{line}[/]", highlight=False, markup=True)
    for ref in r.refusals:
        out.print(f"[red]refused[/] ({ref.rule}): {ref.reason}")
        if ref.command:
            out.print(f"  to satisfy it: {ref.command}")
    if r.commit:
        out.print(f"commit {r.commit[:12]} pushed to {r.pushed_to}")
    if r.deploy:
        colour = "green" if r.deploy.state == "rolled-out" else "yellow"
        out.print(f"deploy ({r.deploy.mode}): [{colour}]{r.deploy.state}[/] {r.deploy.detail}")
    if r.verification:
        _gates(f"verification in {r.target}", r.verification, out)
    for n in r.notes:
        out.print(f"[dim]note:[/] {n}")
    if r.audit_log:
        out.print(f"[dim]audit log:[/] {r.audit_log}")


@table_for("k3sops.services.env.promote.ApprovalReport")
def approval_table(r: ApprovalReport, out: Console) -> None:
    """`env approve`: who approved which version for which environment, and the commit."""
    a = r.approval
    out.print(f"approved {a.app} {a.version} for {a.env} by {a.by} at {a.at}, "
              f"expires {a.expires}")
    out.print(f"{r.file}: commit {(r.commit or '')[:12]} pushed to {r.pushed_to}")
    out.print(f"[dim]audit log:[/] {r.audit_log}")
