"""A pushed change brought to the cluster and proven healthy (promote, rollback, sync).

:func:`follow` brings the change as ``gitops.deploy`` says: ``apply`` renders the environment's
manifests and server-side applies them (field manager ``k3sops``) and watches the real rollout;
``argocd`` waits for the Application ``<app>-<env>`` to sync the pushed commit and report
Healthy. :func:`health_gates` are the gates a promotion checks in its source environment, and
:func:`verify` the same gates (without healthy-for) in the environment changed.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.adapters import git
from k3sops.adapters.kube import KubeClient
from k3sops.config import Promotion
from k3sops.domain import env as p
from k3sops.domain import gitops as g
from k3sops.domain.env import GateResult
from k3sops.errors import AdapterError, K3sopsError
from k3sops.services import alertmanager, metrics
from k3sops.services.gitops import (
    ArgoStatus,
    GitOpsContext,
    applications,
    argo_status,
    deployment,
    effective,
    kube_for,
    values_of,
)


class DeployResult(BaseModel):
    """How a pushed change reached the cluster."""

    mode: str
    state: Literal["rolled-out", "failed", "timeout", "skipped", "unknown"]
    detail: str
    applied: list[str] = Field(default_factory=list)
    argocd: list[ArgoStatus] = Field(default_factory=list)



# --------------------------------------------------------------------------------------------
# Gates


def health_gates(ctx: GitOpsContext, env: str, app: str, dep: Mapping[str, Any],
                 policy: Promotion, now: dt.datetime, *, healthy_for: bool) -> list[GateResult]:
    """The health gates of ``app`` in ``env``: rollout, healthy-for, alerts, error rate, p95.

    Thresholds and PromQL come from ``policy`` (the promotion settings of the environment being
    entered). An unreadable Alertmanager or Prometheus fails its gate (health not proven).
    """
    ns = ctx.namespace(env)
    state = p.rollout_state(dep, app)
    gates = [p.gate_rollout(state)]
    if healthy_for:
        gates.append(p.gate_healthy_for(state, now, policy.healthy_for))
    try:
        with alertmanager.session(ctx.settings, ctx.env, ctx.home) as am:
            gates.append(p.gate_alerts(p.alerts_for(am.alerts(), ns, app)))
    except K3sopsError as e:
        gates.append(p.gate_alerts(None, e.message))
    queries = {"error-rate": (p.metric_query(policy.error_rate_query, ns, app),
                              policy.max_error_rate_percent, "%"),
               "p95-latency": (p.metric_query(policy.p95_query, ns, app),
                               policy.max_p95_seconds, "s")}
    try:
        prom = metrics.connect(ctx.settings, ctx.env, ctx.home)
    except K3sopsError as e:
        return gates + [p.gate_metric(n, q, None, t, policy.missing_metrics, u, e.message)
                        for n, (q, t, u) in queries.items()]
    try:
        answers = prom.query_many({n: q for n, (q, _, _) in queries.items()})
    finally:
        prom.close()
    for name, (query, threshold, unit) in queries.items():
        ans = answers[name]
        if isinstance(ans, K3sopsError):
            gates.append(p.gate_metric(name, query, None, threshold, policy.missing_metrics,
                                       unit, ans.message))
        else:
            values = [s.number for s in ans.samples if s.number is not None]
            gates.append(p.gate_metric(name, query, values, threshold, policy.missing_metrics,
                                       unit))
    return gates


# --------------------------------------------------------------------------------------------
# Deploying and following


def render_env(ctx: GitOpsContext, repo: git.Repo, env: str,
               apps: Sequence[str]) -> list[dict[str, Any]]:
    """The manifests of ``apps`` in ``env`` from the clone (what charts/app renders)."""
    values = values_of(ctx, repo, env)
    ns = ctx.namespace(env)
    docs: list[dict[str, Any]] = []
    for app in apps:
        docs += g.render_app(app, ns, effective(repo, values, app))
    return docs


def _wait(check: Callable[[], tuple[bool, str]], timeout: float, every: float = 1.0,
          ) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    while True:
        done, detail = check()
        if done or time.monotonic() >= deadline:
            return done, detail
        time.sleep(every)


def follow(ctx: GitOpsContext, env: str, expect: Mapping[str, str], commit: str | None,
           manifests: Sequence[Mapping[str, Any]]) -> DeployResult:
    """Bring ``expect`` (app -> version) to the cluster as ``gitops.deploy`` says, and watch it.

    ``apply``: server-side apply the rendered manifests, then wait until each Deployment's
    rollout is complete at the expected version. ``argocd``: wait until each Application
    ``<app>-<env>`` has synced ``commit`` and is Healthy (unknown when there is none).
    """
    mode = ctx.gitops.deploy
    timeout = p.seconds(ctx.gitops.rollout_timeout)
    if mode == "none":
        return DeployResult(mode=mode, state="skipped",
                            detail="gitops.deploy is none: only git was changed")
    ns = ctx.namespace(env)
    kube = kube_for(ctx, env)
    try:
        if mode == "apply":
            applied = []
            for obj in manifests:
                kube.apply(obj)
                applied.append(f"{obj['kind']}/{obj['metadata']['name']}")
            ok, detail = _wait(lambda: _rolled_out(kube, ns, expect), timeout)
            return DeployResult(mode=mode, state="rolled-out" if ok else "timeout",
                                detail=detail, applied=applied)
        apps_objs = applications(kube, ctx.gitops.argocd_namespace)
        names = [f"{a}-{env}" for a in expect]
        if apps_objs is None or any(n not in apps_objs for n in names):
            missing = [n for n in names if apps_objs is None or n not in apps_objs]
            return DeployResult(mode=mode, state="unknown",
                                detail=f"no ArgoCD Application {', '.join(missing)} in "
                                       f"{ctx.gitops.argocd_namespace}: the sync cannot be "
                                       "followed; `k3sops env status` shows what runs")

        def synced() -> tuple[bool, str]:
            objs = applications(kube, ctx.gitops.argocd_namespace) or {}
            ok, detail = argocd_synced([objs[n] for n in names if n in objs], commit)
            if not ok:
                return ok, detail
            return _rolled_out(kube, ns, expect)

        ok, detail = _wait(synced, timeout, every=2.0)
        final = applications(kube, ctx.gitops.argocd_namespace) or {}
        return DeployResult(mode=mode, state="rolled-out" if ok else "timeout", detail=detail,
                            argocd=[argo_status(final[n]) for n in names if n in final])
    except AdapterError as e:
        return DeployResult(mode=mode, state="failed", detail=e.message)
    finally:
        kube.close()


def argocd_synced(objs: Sequence[Mapping[str, Any]], commit: str | None) -> tuple[bool, str]:
    """Whether every Application synced ``commit`` and is Healthy (with the first reason not)."""
    for obj in objs:
        st = argo_status(obj)
        if commit and st.revision != commit:
            return False, f"{st.name}: at revision {st.revision}, waiting for {commit[:12]}"
        if st.sync != "Synced" or st.health != "Healthy":
            return False, f"{st.name}: sync {st.sync}, health {st.health}"
    return True, "every Application synced and Healthy"


def _rolled_out(kube: KubeClient, ns: str, expect: Mapping[str, str]) -> tuple[bool, str]:
    details = []
    for app, version in expect.items():
        d = deployment(kube, ns, app)
        if d is None:
            return False, f"deployment {ns}/{app} does not exist"
        st = p.rollout_state(d, app)
        if st.version != version:
            return False, f"deployment {ns}/{app} runs {st.version}, waiting for {version}"
        if not st.complete:
            return False, f"deployment {ns}/{app} at {version}: {st.detail}"
        details.append(f"{ns}/{app} {version}: {st.detail}")
    return True, "; ".join(details) or "nothing to watch"


def verify(ctx: GitOpsContext, env: str, apps: Sequence[str], now: dt.datetime,
           ) -> list[GateResult]:
    """The health gates (without healthy-for) of ``apps`` in ``env`` after a change."""
    policy = ctx.environment(env).promotion
    kube = kube_for(ctx, env)
    out: list[GateResult] = []
    try:
        for app in apps:
            d = deployment(kube, ctx.namespace(env), app)
            if d is None:
                out.append(GateResult(name="rollout", status="fail", passed=False,
                                      detail=f"deployment {ctx.namespace(env)}/{app} missing"))
                continue
            gates = health_gates(ctx, env, app, d, policy, now, healthy_for=False)
            out += [gate.model_copy(update={"detail": f"{app}: {gate.detail}"})
                    for gate in gates]
    finally:
        kube.close()
    return out
