"""``env promote``, ``env approve``, ``env rollback`` and ``env sync``, through GitOps.

``promote`` takes the version that RUNS in the previous environment (the Deployment's image,
cross-checked with that environment's values in git), checks the gates and the policy, writes
the version into the target's values file (round trip, exactly one line), commits with trailers
and pushes (or pushes a review branch). Then it follows the deployment as ``gitops.deploy``
says (:mod:`k3sops.services.env.deploy`) and verifies the result with the same health gates.
Everything is dry-run unless ``apply=True``; every applied or refused action is written to the
audit log, and every change is a commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.adapters import git
from k3sops.adapters.files import write_atomic
from k3sops.domain import env as p
from k3sops.domain import gitops as g
from k3sops.domain.env import Approval, GateResult, Refusal
from k3sops.errors import K3sopsError, UsageError
from k3sops.services.env.deploy import DeployResult, follow, health_gates, render_env, verify
from k3sops.services.gitops import (
    GitOpsContext,
    commit_and_push,
    deployment,
    git_version,
    kube_for,
    read_file,
    utcnow,
    values_of,
    workspace,
)

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


class ChangeReport(BaseModel):
    """A promotion, rollback or sync: the plan, its checks and, when applied, the outcome."""

    action: Literal["promote", "rollback", "sync"]
    target: str
    app: str | None = None
    source: str | None = None
    version: str | None = None
    previous_version: str | None = None
    applied: bool = False
    changes: dict[str, str] = Field(default_factory=dict)
    """app -> new version (several for a development sync)."""
    gates: list[GateResult] = Field(default_factory=list)
    approvals: list[Approval] = Field(default_factory=list)
    refusals: list[Refusal] = Field(default_factory=list)
    values_file: str | None = None
    diff: list[str] = Field(default_factory=list)
    commit: str | None = None
    pushed_to: str | None = None
    review: bool = False
    deploy: DeployResult | None = None
    verification: list[GateResult] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    audit_log: str | None = None

    @property
    def verified(self) -> bool:
        """Whether every verification gate passed (True when none ran)."""
        return all(v.passed for v in self.verification)


class ApprovalReport(BaseModel):
    """``env approve``."""

    approval: Approval
    file: str
    commit: str | None
    pushed_to: str | None
    audit_log: str

def _gate_refusal(gate: GateResult, app: str, source: str, target: str) -> Refusal:
    commands = {
        "rollout": f"k3sops env status {app}",
        "healthy-for": f"k3sops env promote {app} --to {target} (again, once {source} has been "
                       "healthy long enough)",
        "alerts": f"k3sops alerts list --env {source}",
        "error-rate": f"k3sops metrics apps --env {source}",
        "p95-latency": f"k3sops metrics apps --env {source}",
    }
    return Refusal(rule=f"gate:{gate.name}",
                   reason=f"{source} is not healthy enough to promote from: {gate.name} "
                          f"{gate.status}: {gate.detail}",
                   command=commands.get(gate.name))



def _finish(ctx: GitOpsContext, report: ChangeReport, env: str, expect: Mapping[str, str],
            manifests: Sequence[Mapping[str, Any]], now: Clock) -> None:
    """Follow the deployment of an applied change and verify it (audited)."""
    if report.review:
        report.deploy = DeployResult(mode=ctx.gitops.deploy, state="skipped",
                                     detail=f"pushed for review to {report.pushed_to}: it "
                                            "deploys once merged into "
                                            f"{ctx.gitops.branch}")
        return
    report.deploy = follow(ctx, env, expect, report.commit, manifests)
    if report.deploy.state == "rolled-out":
        report.verification = verify(ctx, env, list(expect), now())
    if report.deploy.state == "unknown":
        result = "unknown"  # nothing to follow (no ArgoCD Application): not a failure
    elif report.deploy.state in ("rolled-out", "skipped") and report.verified:
        result = "ok"
    else:
        result = "failed"
    ctx.record(f"{report.action}-deploy", f"{env}/{','.join(expect)}", result,
               state=report.deploy.state, detail=report.deploy.detail,
               verification={v.name: v.status for v in report.verification})



# --------------------------------------------------------------------------------------------
# promote


def _refuse(ctx: GitOpsContext, report: ChangeReport, apply: bool) -> ChangeReport:
    if apply:
        ctx.record(report.action, f"{report.target}/{report.app}", "refused",
                   version=report.version,
                   refusals=[r.model_dump() for r in report.refusals])
        report.audit_log = str(ctx.audit.path)
    return report


def _source_version(ctx: GitOpsContext, repo: git.Repo, app: str, src: str,
                    version: str | None, report: ChangeReport,
                    ) -> tuple[dict[str, Any], str] | None:
    """What ``src`` runs (its Deployment and version), checked against git and ``version``.

    Appends a refusal to ``report`` and returns None when the app does not run there, runs
    something other than ``version``, or runs something git does not say.
    """
    src_ns = ctx.namespace(src)
    git_repo, git_ver = git_version(repo, values_of(ctx, repo, src), app)
    kube = kube_for(ctx, src)
    try:
        dep = deployment(kube, src_ns, app)
        replicasets = kube.list("apps/v1", "replicasets", src_ns) if dep is not None else []
    finally:
        kube.close()
    state = p.rollout_state(dep, app) if dep is not None else None
    if dep is None or state is None or state.version is None:
        report.refusals.append(Refusal(
            rule="not-running", reason=f"{app} does not run in {src} (no deployment "
                                       f"{src_ns}/{app} with an image)",
            command=f"k3sops env sync --env {src} --apply"))
        return None
    live = state.version
    report.version = version or live
    if version is not None and version != live:
        ran = p.versions_ran(replicasets, str((dep.get("metadata") or {}).get("uid")), app)
        reason = (f"{src} ran {app} {version} before but runs {live} now" if version in ran
                  else f"{src} never ran {app} {version} (it ran: {', '.join(ran) or '-'})")
        report.refusals.append(Refusal(
            rule="version-not-running", reason=reason,
            command=f"k3sops env promote {app} --to {report.target} (promotes {live}, what "
                    f"{src} runs)"))
        return None
    if live != git_ver or (git_repo is not None and state.repository != git_repo):
        report.refusals.append(Refusal(
            rule="source-drift",
            reason=f"{src} runs {state.image} but its values in git say "
                   f"{git_repo}:{git_ver}: what runs there did not come from git",
            command=f"k3sops env sync --env {src} --apply"))
        return None
    return dep, live


def _approvals(ctx: GitOpsContext, repo: git.Repo, app: str, target: str, version: str,
               report: ChangeReport, now: dt.datetime) -> None:
    """Check the approvals an ``approval`` environment needs; a refusal when too few."""
    policy = ctx.environment(target).promotion
    if policy.policy != "approval":
        return
    approvals = p.parse_approvals(read_file(repo, g.approvals_file(target), required=False),
                                  target)
    check = p.check_approvals(approvals, app, target, version, policy.approvers,
                              policy.required_approvals, now)
    report.approvals = check.valid
    if not check.enough:
        report.refusals.append(p.approval_refusal(check, app, target, version))


def promote(ctx: GitOpsContext, app: str, target: str, *, source: str | None = None,
            version: str | None = None, apply: bool = False,
            now: Clock = utcnow) -> ChangeReport:
    """Plan (and with ``apply`` make) the promotion of ``app`` into ``target``.

    Returns a report whose ``refusals`` say why it may not happen (nothing changed then); the
    caller turns refusals into exit code 3.

    Raises:
        UsageError: the environment or app is unknown.
        Conflict: the remote changed the same line meanwhile (nothing pushed).
    """
    tcfg = ctx.environment(target)
    path = ctx.gitops.values_file(target)
    report = ChangeReport(action="promote", target=target, app=app, applied=apply,
                          values_file=path)
    report.refusals = p.path_refusals(ctx.order, target, source, tcfg.promotion.policy, app)
    src = p.previous_env(ctx.order, target)
    if report.refusals or src is None:
        return _refuse(ctx, report, apply)
    report.source = src
    with workspace(ctx) as repo:
        tgt_values = values_of(ctx, repo, target)
        if app not in (tgt_values.get("apps") or {}):
            raise UsageError(f"app {app!r} is not in {path}",
                             hint=f"add apps.{app} to {path} first (k3sops env status lists "
                                  "the apps)")
        report.previous_version = git_version(repo, tgt_values, app)[1]
        found = _source_version(ctx, repo, app, src, version, report)
        if found is None:
            return _refuse(ctx, report, apply)
        dep, live = found
        if report.previous_version == live:
            report.notes.append(f"{target} is already at {app} {live} in git: nothing to do")
            return report
        report.gates = health_gates(ctx, src, app, dep, tcfg.promotion, now(), healthy_for=True)
        report.refusals += [_gate_refusal(gt, app, src, target) for gt in report.gates
                            if not gt.passed]
        _approvals(ctx, repo, app, target, live, report, now())
        old = read_file(repo, path)
        new = g.set_values(old, {g.tag_path(app): live}, where=path)
        report.diff = g.changed_lines(old, new)
        report.changes = {app: live}
        if report.refusals:
            return _refuse(ctx, report, apply)
        if not apply:
            report.notes.append("dry run: pass --apply to commit, push and deploy this")
            return report
        write_atomic(repo.path / path, new)
        message = p.commit_message("promote", app, live, target=target, source=src,
                                   previous=report.previous_version, approvals=report.approvals,
                                   gates=report.gates, by=ctx.user)
        try:
            report.commit, report.pushed_to = commit_and_push(
                ctx, repo, [path], message, f"k3sops/{target}/{app}-{live}")
        except K3sopsError as e:
            ctx.record("promote", f"{target}/{app}", "failed", version=live, error=e.message)
            raise
        report.review = ctx.gitops.push == "branch"
        manifests = render_env(ctx, repo, target, [app])
    ctx.record("promote", f"{target}/{app}", "ok", version=live, source=src,
               previous=report.previous_version, commit=report.commit,
               pushed_to=report.pushed_to, approvals=[a.by for a in report.approvals])
    report.audit_log = str(ctx.audit.path)
    _finish(ctx, report, target, {app: live}, manifests, now)
    return report


# --------------------------------------------------------------------------------------------
# approve


def approve(ctx: GitOpsContext, app: str, target: str, *, version: str | None = None,
            by: str | None = None, note: str | None = None,
            now: Clock = utcnow) -> ApprovalReport:
    """Record an approval of one version of ``app`` into ``target`` (git and audit log).

    The version defaults to what git says the previous environment runs. The approval expires
    after ``promotion.approval_expiry`` of the target.

    Raises:
        UsageError: the target needs no approval (policy is not ``approval``).
        PromotionRefused: ``by`` is not among the target's approvers.
    """
    tcfg = ctx.environment(target)
    if tcfg.promotion.policy != "approval":
        raise UsageError(f"{target} has promotion policy {tcfg.promotion.policy!r}: it needs "
                         "no approval", hint=f"promote directly: k3sops env promote {app} "
                                             f"--to {target}")
    who = by or ctx.user
    if who not in tcfg.promotion.approvers:
        refusal = Refusal(rule="approver",
                          reason=f"{who} may not approve promotions into {target} "
                                 f"(approvers: {', '.join(tcfg.promotion.approvers)})",
                          command=f"k3sops env approve {app} --to {target} --as "
                                  f"{tcfg.promotion.approvers[0]} (run by that approver)")
        ctx.record("approve", f"{target}/{app}", "refused", version=version, by=who,
                   reason=refusal.reason)
        raise p.PromotionRefused([refusal])
    src = p.previous_env(ctx.order, target)
    path = g.approvals_file(target)
    with workspace(ctx) as repo:
        if version is None:
            if src is None:
                raise UsageError(f"{target} has no previous environment: name the version",
                                 hint="pass --version")
            version = git_version(repo, values_of(ctx, repo, src), app)[1]
            if version is None:
                raise UsageError(f"{app} has no version in {src}'s values",
                                 hint="pass --version")
        a = p.new_approval(app, target, version, who, now(), tcfg.promotion.approval_expiry,
                           note)
        old = read_file(repo, path, required=False) or (
            f"# Approvals of promotions into {target} (k3sops env approve); each is for one "
            "version and expires.\napprovals: []\n")
        entry = {k: v for k, v in a.model_dump().items() if k != "env" and v is not None}
        new = g.append_to_list(old, ("approvals",), entry, where=path)
        (repo.path / path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(repo.path / path, new)
        try:
            sha = repo.commit([path], p.approval_message(a))
            # Approvals go to the tracked branch even in review mode: they change no deployment.
            repo.push()
        except K3sopsError as e:
            ctx.record("approve", f"{target}/{app}", "failed", version=version, by=who,
                       error=e.message)
            raise
    ctx.record("approve", f"{target}/{app}", "ok", version=version, by=who,
               expires=a.expires, commit=sha)
    return ApprovalReport(approval=a, file=path, commit=sha, pushed_to=ctx.gitops.branch,
                          audit_log=str(ctx.audit.path))


# --------------------------------------------------------------------------------------------
# rollback


def rollback(ctx: GitOpsContext, app: str, env: str, *, to_version: str | None = None,
             apply: bool = False, now: Clock = utcnow) -> ChangeReport:
    """Plan (and apply) returning ``app`` in ``env`` to its previous version from git history.

    The previous version is the newest version in the values file's history that differs from
    the current one (or ``to_version``, which must appear in that history). No gates: rollback
    is the way out of a bad release. Deployed and verified like a promotion.
    """
    ctx.environment(env)
    path = ctx.gitops.values_file(env)
    report = ChangeReport(action="rollback", target=env, app=app, applied=apply,
                          values_file=path)
    with workspace(ctx) as repo:
        history = []
        for c in repo.history(path):
            text = repo.show(c.sha, path)
            data = g.load(text) if text else None
            tag = g.get_path(data, g.tag_path(app))
            history.append(None if tag is None else str(tag))
        current = next((v for v in history if v), None)
        report.previous_version = current
        if current is None:
            raise UsageError(f"app {app!r} has no version in {path}",
                             hint="k3sops env status lists the apps")
        target_version = to_version or p.previous_version(history)
        if target_version is None or (to_version is not None and to_version not in history):
            report.refusals.append(Refusal(
                rule="no-previous-version",
                reason=(f"{to_version} never was {app}'s version in {env} (git history of "
                        f"{path})" if to_version else
                        f"git history of {path} has no earlier version of {app} than {current}"),
                command=f"git log -p -- {path}"))
            return _refuse(ctx, report, apply)
        report.version = target_version
        if target_version == current:
            report.notes.append(f"{env} is already at {app} {current}: nothing to do")
            return report
        old = read_file(repo, path)
        new = g.set_values(old, {g.tag_path(app): target_version}, where=path)
        report.diff = g.changed_lines(old, new)
        report.changes = {app: target_version}
        if not apply:
            report.notes.append("dry run: pass --apply to commit, push and deploy this")
            return report
        write_atomic(repo.path / path, new)
        message = p.commit_message("rollback", app, target_version, target=env,
                                   previous=current, by=ctx.user)
        try:
            report.commit, report.pushed_to = commit_and_push(
                ctx, repo, [path], message, f"k3sops/{env}/{app}-rollback-{target_version}")
        except K3sopsError as e:
            ctx.record("rollback", f"{env}/{app}", "failed", version=target_version,
                       error=e.message)
            raise
        report.review = ctx.gitops.push == "branch"
        manifests = render_env(ctx, repo, env, [app])
    ctx.record("rollback", f"{env}/{app}", "ok", version=target_version, previous=current,
               commit=report.commit, pushed_to=report.pushed_to)
    report.audit_log = str(ctx.audit.path)
    _finish(ctx, report, env, {app: target_version}, manifests, now)
    return report


# --------------------------------------------------------------------------------------------
# sync


def _newest_builds(repo: git.Repo, values: Any, apps: Sequence[str], report: ChangeReport,
                   ) -> dict[tuple[str, ...], Any]:
    """Tag updates taking every app to its newest build (recorded in ``report.changes``)."""
    builds = g.parse_builds(read_file(repo, g.BUILDS_FILE, required=False))
    updates: dict[tuple[str, ...], Any] = {}
    for name in apps:
        history = builds.get(name) or []
        current = git_version(repo, values, name)[1]
        newest = history[-1] if history else None
        if newest is not None and newest.version != current:
            updates[g.tag_path(name)] = newest.version
            report.changes[name] = newest.version
            report.previous_version = current
    if not updates:
        report.notes.append("git already has the newest build of every app")
    return updates


def sync(ctx: GitOpsContext, env: str, *, app: str | None = None, apply: bool = False,
         now: Clock = utcnow) -> ChangeReport:
    """Make ``env`` run what git says; for an ``auto`` environment, first take the newest builds.

    Newest build: the last entry per app in builds.yaml, written by the CI hook
    ``k3sops gitops record-build APP VERSION``. Other environments only deploy their values.
    """
    ecfg = ctx.environment(env)
    path = ctx.gitops.values_file(env)
    report = ChangeReport(action="sync", target=env, app=app, applied=apply, values_file=path)
    with workspace(ctx) as repo:
        values = values_of(ctx, repo, env)
        apps = sorted(values.get("apps") or {})
        if app is not None:
            if app not in apps:
                raise UsageError(f"app {app!r} is not in {path}",
                                 hint="k3sops env status lists the apps")
            apps = [app]
        updates: dict[tuple[str, ...], Any] = {}
        if ecfg.promotion.policy == "auto":
            updates = _newest_builds(repo, values, apps, report)
        else:
            report.notes.append(f"{env} has policy {ecfg.promotion.policy}: sync deploys what "
                                "git says and takes no builds")
        old = read_file(repo, path)
        new = g.set_values(old, updates, where=path) if updates else old
        report.diff = g.changed_lines(old, new)
        if len(report.changes) == 1:
            report.app = report.app or next(iter(report.changes))
            report.version = next(iter(report.changes.values()))
        if not apply:
            report.notes.append("dry run: pass --apply to commit, push and deploy")
            return report
        if updates:
            write_atomic(repo.path / path, new)
            first, version = next(iter(report.changes.items()))
            message = p.commit_message(
                "sync", first if len(report.changes) == 1 else ",".join(report.changes),
                version, target=env, by=ctx.user,
                note="Newest builds: " + ", ".join(f"{a} {v}" for a, v in
                                                   report.changes.items()))
            try:
                report.commit, report.pushed_to = commit_and_push(
                    ctx, repo, [path], message, f"k3sops/{env}/sync-{p.iso(now())[:10]}")
            except K3sopsError as e:
                ctx.record("sync", env, "failed", changes=report.changes, error=e.message)
                raise
            report.review = ctx.gitops.push == "branch"
        else:
            report.commit = repo.head()
        values = values_of(ctx, repo, env)
        expect = {a: str(git_version(repo, values, a)[1]) for a in apps}
        manifests = render_env(ctx, repo, env, apps)
    ctx.record("sync", env, "ok", changes=report.changes, commit=report.commit)
    report.audit_log = str(ctx.audit.path)
    _finish(ctx, report, env, expect, manifests, now)
    return report
