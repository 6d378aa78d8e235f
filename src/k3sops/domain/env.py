"""The policy of `k3sops env`, pure: the path between environments, gates, approvals, messages.

Everything here is a function of data handed in (Deployments and ReplicaSets as the API
returns them, Alertmanager alerts, Prometheus answers, approvals files, ``now``): no I/O.

A refusal always names the reason and the command that would satisfy it; the CLI exits with
:data:`REFUSED_EXIT` (3) so that scripts can tell "the policy said no" from a failure (1).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops import timeparse
from k3sops.domain import gitops
from k3sops.errors import ConfigError, ExitCode, PlanRejected

REFUSED_EXIT = ExitCode.FINDINGS
"""Exit code of a refused promotion, approval or rollback: 3, as for findings at --fail-on."""

_WORKLOAD_LABELS = ("app", "deployment", "job", "service", "container",
                    "app_kubernetes_io_name")


def seconds(duration: str) -> float:
    """A Prometheus duration (``10m``, ``1h30m``, ``0``) in seconds (validated by the config).

    Raises:
        ValueError: the text is not a duration.
    """
    return timeparse.duration_seconds(duration)


def parse_time(text: str | None) -> dt.datetime | None:
    """An RFC 3339 time as the API and Alertmanager write it (``Z`` or offset); None if absent."""
    return timeparse.parse_time(text)


def iso(t: dt.datetime) -> str:
    """UTC, seconds, ``Z``."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Refusal(BaseModel):
    """Why a change is refused, and the command that would satisfy the rule."""

    rule: str
    reason: str
    command: str | None = None


class PromotionRefused(PlanRejected):
    """A promotion, approval or rollback was refused by policy or a gate (exit 3)."""

    exit_code = REFUSED_EXIT

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        first = refusals[0]
        more = f" (and {len(refusals) - 1} more reason(s))" if len(refusals) > 1 else ""
        super().__init__(f"refused: {first.reason}{more}",
                         hint=f"run: {first.command}" if first.command else None)
        self.refusals = list(refusals)


# --------------------------------------------------------------------------------------------
# The path between environments


def previous_env(order: Sequence[str], target: str) -> str | None:
    """The environment before ``target`` in promotion order (None for the first)."""
    i = order.index(target)
    return order[i - 1] if i > 0 else None


def path_refusals(order: Sequence[str], target: str, source: str | None, policy: str,
                  app: str) -> list[Refusal]:
    """Refusals for promoting into ``target`` from ``source`` (None: the previous one).

    Development (the first environment, or one with policy ``auto``) is fed by builds, never by
    a promotion; a source other than the previous environment skips one.
    """
    if target not in order:
        return [Refusal(rule="unknown-environment",
                        reason=f"environment {target!r} is not in platform.yaml",
                        command="k3sops env list")]
    prev = previous_env(order, target)
    if prev is None or policy == "auto":
        return [Refusal(rule="auto-environment",
                        reason=f"{target} is deployed automatically from builds, not promoted "
                               "into",
                        command=f"k3sops env sync --env {target} --apply")]
    if source is not None and source != prev:
        if source not in order:
            reason = f"environment {source!r} is not in platform.yaml"
            command = "k3sops env list"
        elif order.index(source) < order.index(prev):
            reason = (f"promoting from {source} to {target} skips {prev}: promotions go "
                      f"{' -> '.join(order)}")
            command = f"k3sops env promote {app} --to {prev}"
        else:
            reason = f"{source} comes after {target}: promotions only move forward"
            command = f"k3sops env rollback {app} --env {target}"
        return [Refusal(rule="skip-environment", reason=reason, command=command)]
    return []


# --------------------------------------------------------------------------------------------
# Rollouts


class RolloutState(BaseModel):
    """A Deployment's rollout, as ``kubectl rollout status`` judges it."""

    namespace: str
    name: str
    image: str | None
    version: str | None
    repository: str | None
    complete: bool
    detail: str
    replicas: int = 0
    available: int = 0
    healthy_since: str | None = None
    """Since when the current version is rolled out and available (RFC 3339)."""


def container_image(deployment: Mapping[str, Any], app: str) -> str | None:
    """The image of the container named ``app`` (else the first container)."""
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec")
                  or {}).get("containers") or []
    chosen = next((c for c in containers if c.get("name") == app), None) or next(
        iter(containers), None)
    return str(chosen["image"]) if chosen and chosen.get("image") else None


def rollout_state(deployment: Mapping[str, Any], app: str) -> RolloutState:
    """Judge a Deployment's rollout from its spec and the status its controller wrote."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    image = container_image(deployment, app)
    repository, version = gitops.split_image(image) if image else (None, None)
    want = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    progressing = conds.get("Progressing") or {}
    base = {"namespace": str(meta.get("namespace") or ""), "name": str(meta.get("name") or ""),
            "image": image, "version": version, "repository": repository, "replicas": want,
            "available": available}
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return RolloutState(**base, complete=False,
                            detail="waiting for the controller to see the new spec")
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return RolloutState(**base, complete=False,
                            detail=f"rollout stuck: {progressing.get('message', '')}")
    if updated < want:
        return RolloutState(**base, complete=False,
                            detail=f"{updated} of {want} replicas updated")
    if total > updated:
        return RolloutState(**base, complete=False,
                            detail=f"{total - updated} old replica(s) pending termination")
    if available < updated:
        return RolloutState(**base, complete=False,
                            detail=f"{available} of {updated} updated replicas available")
    since = [parse_time(progressing.get("lastUpdateTime"))
             if progressing.get("reason") == "NewReplicaSetAvailable" else None,
             parse_time((conds.get("Available") or {}).get("lastTransitionTime"))
             if (conds.get("Available") or {}).get("status") == "True" else None]
    known = [t for t in since if t is not None]
    return RolloutState(**base, complete=True, detail=f"{available}/{want} available",
                        healthy_since=iso(max(known)) if known else None)


def versions_ran(replicasets: Sequence[Mapping[str, Any]], deployment_uid: str,
                 app: str) -> list[str]:
    """Versions the Deployment has run, from its ReplicaSets (oldest revision first)."""
    owned = [rs for rs in replicasets
             if any(o.get("uid") == deployment_uid
                    for o in (rs.get("metadata") or {}).get("ownerReferences") or [])]

    def revision(rs: Mapping[str, Any]) -> int:
        ann = (rs.get("metadata") or {}).get("annotations") or {}
        try:
            return int(ann.get("deployment.kubernetes.io/revision", "0"))
        except ValueError:
            return 0

    out: list[str] = []
    for rs in sorted(owned, key=revision):
        image = container_image(rs, app)
        if image:
            v = gitops.split_image(image)[1]
            if v not in out:
                out.append(v)
    return out


# --------------------------------------------------------------------------------------------
# Gates

GateStatus = Literal["pass", "fail", "no-data", "error"]


class GateResult(BaseModel):
    """One health gate: its result, what was measured and against what."""

    name: str
    status: GateStatus
    passed: bool
    detail: str
    value: float | None = None
    threshold: float | None = None
    query: str | None = None


def gate_rollout(state: RolloutState) -> GateResult:
    """The source's rollout is complete."""
    return GateResult(name="rollout", status="pass" if state.complete else "fail",
                      passed=state.complete,
                      detail=f"deployment {state.namespace}/{state.name}: {state.detail}")


def gate_healthy_for(state: RolloutState, now: dt.datetime, needed: str) -> GateResult:
    """The source has run this version, complete and available, for at least ``needed``."""
    need = seconds(needed)
    since = parse_time(state.healthy_since)
    if not state.complete or since is None:
        return GateResult(name="healthy-for", status="fail", passed=False, threshold=need,
                          detail=f"not healthy now ({state.detail}); needs {needed}")
    held = max(0.0, (now - since).total_seconds())
    ok = held >= need
    return GateResult(name="healthy-for", status="pass" if ok else "fail", passed=ok,
                      value=round(held, 1), threshold=need,
                      detail=f"healthy since {state.healthy_since} ({_human(held)}); "
                             f"needs {needed}")


def _human(secs: float) -> str:
    s = int(secs)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def alerts_for(alerts: Sequence[Mapping[str, Any]], namespace: str,
               app: str) -> list[dict[str, Any]]:
    """Active (not silenced or inhibited) alerts about ``app`` in ``namespace``.

    An alert is about the app when its ``namespace`` label matches and one of its workload
    labels (app, deployment, job, service, container, app_kubernetes_io_name) names the app,
    or a pod label starts with ``<app>-``.
    """
    out = []
    for a in alerts:
        labels = a.get("labels") or {}
        state = (a.get("status") or {}).get("state", "active")
        if state != "active" or labels.get("namespace") != namespace:
            continue
        named = any(labels.get(k) == app for k in _WORKLOAD_LABELS)
        if named or str(labels.get("pod", "")).startswith(f"{app}-"):
            out.append({"alertname": labels.get("alertname"), "severity": labels.get("severity"),
                        "startsAt": a.get("startsAt")})
    return out


def gate_alerts(firing: Sequence[Mapping[str, Any]] | None, error: str | None = None,
                ) -> GateResult:
    """No alert fires for the app (an unreadable Alertmanager fails the gate)."""
    if firing is None:
        return GateResult(name="alerts", status="error", passed=False,
                          detail=f"Alertmanager could not be read: {error}")
    if firing:
        names = ", ".join(sorted({str(a.get("alertname")) for a in firing}))
        return GateResult(name="alerts", status="fail", passed=False, value=len(firing),
                          threshold=0, detail=f"{len(firing)} alert(s) firing: {names}")
    return GateResult(name="alerts", status="pass", passed=True, value=0, threshold=0,
                      detail="no alert firing for the app")


def metric_query(template: str, namespace: str, app: str) -> str:
    """A gate's PromQL with ``$namespace`` and ``$app`` filled in."""
    return template.replace("$namespace", namespace).replace("$app", app)


def gate_metric(name: str, query: str, values: Sequence[float] | None, threshold: float,
                missing: Literal["pass", "fail"], unit: str, error: str | None = None,
                ) -> GateResult:
    """A Prometheus gate: the highest answered value must not exceed ``threshold``.

    No series at all (the app exposes no such metric) is the named result ``no-data``, which
    passes or fails as configured (``missing_metrics``); an unreadable Prometheus fails.
    """
    if values is None:
        return GateResult(name=name, status="error", passed=False, threshold=threshold,
                          query=query, detail=f"Prometheus could not be read: {error}")
    finite = [v for v in values if not math.isnan(v)]  # NaN: 0/0 when there was no traffic
    if not finite:
        return GateResult(name=name, status="no-data", passed=missing == "pass",
                          threshold=threshold, query=query,
                          detail=f"the app exposes no such series (missing_metrics: {missing})")
    worst = max(finite)
    ok = worst <= threshold
    return GateResult(name=name, status="pass" if ok else "fail", passed=ok, value=worst,
                      threshold=threshold, query=query,
                      detail=f"{worst:g}{unit} (limit {threshold:g}{unit})")


# --------------------------------------------------------------------------------------------
# Approvals


class Approval(BaseModel):
    """One approval of one version of an app into an environment, valid until ``expires``."""

    app: str
    env: str
    version: str
    by: str
    at: str
    expires: str
    note: str | None = None


def parse_approvals(text: str, env: str) -> list[Approval]:
    """``approvals/<env>.yaml``: ``approvals: [{app, version, by, at, expires, note}]``."""
    data = gitops.load(text) or {}
    items = data.get("approvals") if isinstance(data, Mapping) else None
    out = []
    for i, a in enumerate(items or []):
        try:
            out.append(Approval(env=env, **{k: str(v) for k, v in a.items()
                                           if k in ("app", "version", "by", "at", "expires",
                                                    "note") and v is not None}))
        except (TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"{gitops.approvals_file(env)}: approvals[{i}] is malformed",
                              hint="each entry needs app, version, by, at, expires") from e
    return out


def new_approval(app: str, env: str, version: str, by: str, now: dt.datetime, expiry: str,
                 note: str | None) -> Approval:
    """An approval made now, expiring after ``expiry``."""
    return Approval(app=app, env=env, version=version, by=by, at=iso(now),
                    expires=iso(now + dt.timedelta(seconds=seconds(expiry))), note=note)


class ApprovalCheck(BaseModel):
    """The approvals that count for a promotion, and why others do not."""

    valid: list[Approval] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list)
    required: int = 1

    @property
    def enough(self) -> bool:
        """Whether enough distinct approvers approved."""
        return len({a.by for a in self.valid}) >= self.required


def check_approvals(approvals: Sequence[Approval], app: str, env: str, version: str,
                    approvers: Sequence[str], required: int, now: dt.datetime) -> ApprovalCheck:
    """Which approvals are valid: this app, env and version, by a listed approver, unexpired."""
    out = ApprovalCheck(required=required)
    for a in approvals:
        if a.app != app or a.env != env:
            continue
        expires = parse_time(a.expires)
        if a.version != version:
            out.ignored.append(f"{a.by} approved {a.version}, not {version}")
        elif a.by not in approvers:
            out.ignored.append(f"{a.by} is not among the approvers ({', '.join(approvers)})")
        elif expires is None or expires <= now:
            out.ignored.append(f"{a.by}'s approval of {a.version} expired at {a.expires}")
        elif a.by not in {v.by for v in out.valid}:
            out.valid.append(a)
    return out


def approval_refusal(check: ApprovalCheck, app: str, env: str, version: str) -> Refusal:
    """The refusal for missing approvals, naming the command that records one."""
    have = len({a.by for a in check.valid})
    why = f"; not counted: {'; '.join(check.ignored)}" if check.ignored else ""
    return Refusal(rule="approval",
                   reason=f"{env} needs {check.required} approval(s) of {app} {version}, "
                          f"has {have}{why}",
                   command=f"k3sops env approve {app} --to {env} --version {version}")


# --------------------------------------------------------------------------------------------
# Commit messages


def commit_message(action: str, app: str, version: str, *, target: str,
                   source: str | None = None, previous: str | None = None,
                   approvals: Sequence[Approval] = (), gates: Sequence[GateResult] = (),
                   by: str, note: str | None = None) -> str:
    """A structured commit message: a subject, gate results, and git trailers.

    Trailers: ``Promoted-From``, ``Promoted-To``, ``Version``, ``Previous-Version``,
    ``Approved-By`` (one per approval: who, when, expiry), ``K3sops-Action``, ``Requested-By``.
    """
    verb = {"promote": f"promote {app} {version} to {target}"
                       + (f" (from {source})" if source else ""),
            "rollback": f"rollback {app} in {target} to {version}"
                        + (f" (from {previous})" if previous else ""),
            "sync": f"deploy build {app} {version} to {target}"}.get(
        action, f"{action} {app} {version} in {target}")
    body = []
    if note:
        body.append(note)
    if gates:
        body.append("Gates:\n" + "\n".join(f"- {g.name}: {g.status} ({g.detail})"
                                            for g in gates))
    trailers = [f"K3sops-Action: {action}"]
    if source:
        trailers.append(f"Promoted-From: {source}")
    trailers += [f"Promoted-To: {target}", f"Version: {version}"]
    if previous:
        trailers.append(f"Previous-Version: {previous}")
    trailers += [f"Approved-By: {a.by} at {a.at} (expires {a.expires})" for a in approvals]
    trailers.append(f"Requested-By: {by}")
    return "\n\n".join([verb, *body, "\n".join(trailers)]) + "\n"


def approval_message(a: Approval) -> str:
    """Commit message of an approval record."""
    return (f"approve {a.app} {a.version} for {a.env}\n\n"
            + (f"{a.note}\n\n" if a.note else "")
            + f"K3sops-Action: approve\nApproved-By: {a.by} at {a.at} (expires {a.expires})\n"
              f"Promoted-To: {a.env}\nVersion: {a.version}\n")


def trailers(message: str) -> dict[str, list[str]]:
    """The ``Key: value`` trailers of a commit message's last paragraph."""
    last = message.strip().split("\n\n")[-1]
    out: dict[str, list[str]] = {}
    for line in last.splitlines():
        key, sep, value = line.partition(": ")
        if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", key):
            out.setdefault(key, []).append(value.strip())
    return out


def previous_version(history: Sequence[str | None]) -> str | None:
    """The version before the current one in a newest-first list of versions (None: none)."""
    known = [v for v in history if v]
    if not known:
        return None
    current = known[0]
    return next((v for v in known[1:] if v != current), None)
