"""`scale resources`: requests/limits from Prometheus history, patched or written to GitOps."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.adapters.kube import STRATEGIC, KubeAdapter
from k3sops.adapters.prometheus import PrometheusAdapter
from k3sops.domain import sizing
from k3sops.domain.alerting import parse_duration
from k3sops.domain.checks.capacity import quantity
from k3sops.domain.metrics import InstantResult
from k3sops.domain.sizing import (
    ContainerRef,
    History,
    Recommendation,
    Resources,
    SizingSettings,
)
from k3sops.errors import K3sopsError, PlanRejected, UsageError
from k3sops.services import context
from k3sops.services.scale.common import WORKLOAD_GV, Audited, resolve_workload


class Change(BaseModel):
    """An applied (or planned) change to one workload."""

    target: str
    via: Literal["cluster", "gitops"]
    detail: str
    result: Literal["planned", "ok", "failed", "skipped"]
    error: str | None = None


class ResourcesReport(BaseModel):
    """`scale resources`: one recommendation per container, and what was changed."""

    strategy: str
    window: str
    settings: SizingSettings
    recommendations: list[Recommendation]
    changes: list[Change] = Field(default_factory=list)
    applied: bool = False
    sources: list[dict[str, Any]] = Field(default_factory=list)
    audit_log: str | None = None

    @property
    def missing(self) -> list[str]:
        """Names of sources that could not be read."""
        return [str(s["name"]) for s in self.sources if not s.get("ok")]


WORKLOAD_PLURALS = ("deployments", "statefulsets", "daemonsets")


def _pod_regex(plural: str, name: str) -> str:
    """The names a workload's pods get: Deployment NAME-HASH-XXXXX, StatefulSet NAME-N, DS."""
    if plural == "deployments":
        return f"{name}-[a-z0-9]+-[a-z0-9]{{5}}"
    if plural == "statefulsets":
        return f"{name}-[0-9]+"
    return f"{name}-[a-z0-9]{{5}}"


def _rate_range(step: str) -> str:
    """The range of the CPU rate: the step, but never under a minute (rate needs 2 scrapes)."""
    try:
        seconds = parse_duration(step).total_seconds()
    except (ValueError, K3sopsError) as e:
        raise UsageError(f"--step {step!r} is not a Prometheus duration",
                         hint="e.g. 30s, 5m") from e
    return step if seconds >= 60 else "1m"


def history_queries(namespace: str, plural: str, name: str, window: str,
                    step: str) -> dict[str, str]:
    """The PromQL for one workload's CPU and memory samples and OOM kills over ``window``.

    CPU: rates of container_cpu_usage_seconds_total over ``step`` (at least 1m: two scrapes)
    as a ``step`` subquery, as krr does; memory: the peak container_memory_working_set_bytes
    of each ``step`` (max_over_time keeps every peak while a week stays a few thousand
    points); OOM kills: kube-state-metrics' last termination reason (one per container that
    was OOM-killed in the window).
    """
    sel = (f'namespace="{namespace}", pod=~"{_pod_regex(plural, name)}", container!="", '
           'container!="POD"')
    return {
        "cpu": (f"rate(container_cpu_usage_seconds_total{{{sel}}}[{_rate_range(step)}])"
                f"[{window}:{step}]"),
        "memory": (f"max_over_time(container_memory_working_set_bytes{{{sel}}}[{step}])"
                   f"[{window}:{step}]"),
        "oom": (f'max by (container, pod) (max_over_time(kube_pod_container_status_last_'
                f'terminated_reason{{{sel}, reason="OOMKilled"}}[{window}]))'),
    }


def container_resources(container: Mapping[str, Any]) -> Resources:
    """A container's requests and limits from its spec (cores, bytes)."""
    res = container.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    return Resources(cpu_request=quantity(req["cpu"]) if "cpu" in req else None,
                     cpu_limit=quantity(lim["cpu"]) if "cpu" in lim else None,
                     memory_request=quantity(req["memory"]) if "memory" in req else None,
                     memory_limit=quantity(lim["memory"]) if "memory" in lim else None)


def histories(results: Mapping[str, InstantResult | K3sopsError], containers: Sequence[str],
              window: str) -> dict[str, History]:
    """Each container's CPU and memory samples and OOM kills from the query ``results``."""
    out = {c: History(window=window) for c in containers}
    for key in ("cpu", "memory"):
        res = results.get(key)
        if not isinstance(res, InstantResult):
            continue
        for s in res.samples:
            c = s.labels.get("container", "")
            v = s.number
            if c in out and v is not None:
                getattr(out[c], key).append(v)
    oom = results.get("oom")
    if isinstance(oom, InstantResult):
        for s in oom.samples:
            c = s.labels.get("container", "")
            if c in out and (s.number or 0) > 0:
                out[c].oom_kills += 1
    return out


def _api_oom_kills(pods: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Containers whose last termination was OOMKilled, per container name (current pods)."""
    out: dict[str, int] = {}
    for p in pods:
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("lastState") or {}).get("terminated") or {}
            if term.get("reason") == "OOMKilled":
                out[cs.get("name", "")] = out.get(cs.get("name", ""), 0) + 1
    return out


def _owned_pods(pods: Sequence[Mapping[str, Any]], plural: str, name: str,
                namespace: str) -> list[Mapping[str, Any]]:
    pat = re.compile(_pod_regex(plural, name) + "$")
    return [p for p in pods if (p.get("metadata") or {}).get("namespace") == namespace
            and pat.match(str((p.get("metadata") or {}).get("name", "")))]


GitopsWriter = Callable[[str, str, dict[str, Any], str], str]
"""(app, environment, values to set, commit message) -> commit id; see services/gitops."""


def recommend_resources(kube: KubeAdapter, prom: PrometheusAdapter | K3sopsError,
                        namespace: str | None, name: str | None, *, strategy: str,
                        settings: SizingSettings, window: str = "7d",
                        step: str = "5m") -> ResourcesReport:
    """Recommend requests/limits for the workloads in scope from Prometheus history.

    Args:
        kube: the cluster (workloads, their current resources, OOM-killed containers).
        prom: Prometheus, or the error met when connecting to it (then no recommendations,
            and the source is named as missing).
        namespace: one namespace, or None for all.
        name: one workload (``NAME`` or ``KIND/NAME``; needs ``namespace``), or None for all.
        strategy: a name from domain.sizing.STRATEGIES.
        settings: the strategy's knobs.
        window: how far back to look (Prometheus duration).
        step: resolution of the CPU rate samples.
    """
    if strategy not in sizing.STRATEGIES:
        raise UsageError(f"unknown sizing strategy {strategy!r}",
                         hint="strategies: " + ", ".join(sorted(sizing.STRATEGIES)))
    if name is not None:
        if namespace is None:
            raise UsageError("a workload NAME needs -n NAMESPACE")
        plural, wname = resolve_workload(kube, name, namespace)
        workloads = [(plural, kube.get(WORKLOAD_GV, plural, wname, namespace))]
    else:
        workloads = [(pl, w) for pl in WORKLOAD_PLURALS
                     for w in kube.list(WORKLOAD_GV, pl, namespace)]
    pods = kube.list("v1", "pods", namespace)
    report = ResourcesReport(strategy=strategy, window=window, settings=settings,
                             recommendations=[])
    queries: dict[str, str] = {}
    for plural, w in workloads:
        m = w.get("metadata") or {}
        for k, q in history_queries(m.get("namespace", ""), plural, m.get("name", ""),
                                    window, step).items():
            queries[f"{plural}/{m.get('namespace')}/{m.get('name')}/{k}"] = q
    if isinstance(prom, K3sopsError):
        results: dict[str, InstantResult | K3sopsError] = {k: prom for k in queries}
    else:
        results = prom.query_many(queries)
    errors = [r for r in results.values() if isinstance(r, K3sopsError)]
    report.sources = [{"name": "kubernetes", "ok": True, "error": None},
                      {"name": "prometheus", "ok": not errors,
                       "error": errors[0].message if errors else None}]
    for plural, w in workloads:
        m = w.get("metadata") or {}
        ns, wn = str(m.get("namespace", "")), str(m.get("name", ""))
        containers = (((w.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
            "containers") or []
        prefix = f"{plural}/{ns}/{wn}/"
        hist = histories({k[len(prefix):]: v for k, v in results.items()
                           if k.startswith(prefix)}, [c.get("name", "") for c in containers],
                          window)
        oom_api = _api_oom_kills(_owned_pods(pods, plural, wn, ns))
        for c in containers:
            cname = str(c.get("name", ""))
            h = hist[cname]
            h.oom_kills = max(h.oom_kills, oom_api.get(cname, 0))
            report.recommendations.append(sizing.recommend(
                ContainerRef(kind=plural, namespace=ns, workload=wn, container=cname), h,
                container_resources(c), strategy, settings))
    return report


def gitops_target(settings: context.Settings, namespace: str) -> str | None:
    """The environment whose values file manages ``namespace``, when the platform uses GitOps."""
    p = settings.platform
    if p is None or p.gitops is None:
        return None
    for env_name, envc in p.environments.items():
        if namespace in envc.namespaces:
            return env_name
    return None


def apply_resources(kube: KubeAdapter, audited: Audited, report: ResourcesReport, *,
                    gitops_env: Callable[[str], str | None] | None = None,
                    gitops_write: GitopsWriter | None = None,
                    gitops_has_app: Callable[[str, str], bool] | None = None) -> None:
    """Apply the recommendations that change something: to the cluster or to GitOps.

    A workload whose namespace belongs to an environment managed through GitOps, and whose app
    the environment's values file has, is changed there (the commit is what ArgoCD deploys);
    every other workload is patched in the cluster (strategic merge on the pod template).
    """
    report.applied = True
    report.audit_log = str(audited.audit.path)
    by_workload: dict[tuple[str, str, str], list[Recommendation]] = {}
    for r in report.recommendations:
        if r.changes:
            by_workload.setdefault((r.ref.kind, r.ref.namespace, r.ref.workload), []).append(r)
    for (plural, ns, wn), recs in sorted(by_workload.items()):
        target = f"{ns}/{plural}/{wn}"
        detail = "; ".join(
            f"{r.ref.container}: " + ", ".join(
                f"{k} {v}" for k, v in _flat(sizing.resources_patch(r.recommended)).items())
            for r in recs if r.recommended is not None)
        env = gitops_env(ns) if gitops_env else None
        via: Literal["cluster", "gitops"] = "cluster"
        try:
            if (env is not None and gitops_write is not None and gitops_has_app is not None
                    and gitops_has_app(wn, env)):
                via = "gitops"
                commit = gitops_write(wn, env, _values_keys(wn, recs),
                                      f"k3sops scale resources: right-size {wn} in {env} "
                                      f"(strategy {report.strategy}, {report.window} of "
                                      "history)")
                detail += f" (commit {commit[:12]} in the {env} values file)"
            else:
                body = {"spec": {"template": {"spec": {"containers": [
                    {"name": r.ref.container,
                     "resources": sizing.resources_patch(r.recommended)}
                    for r in recs if r.recommended is not None]}}}}
                kube.patch(WORKLOAD_GV, plural, wn, ns, body, STRATEGIC)
        except K3sopsError as e:
            report.changes.append(Change(target=target, via=via, detail=detail,
                                         result="failed", error=e.message))
            audited.record("resources", target, f"via {via}: {detail}", "failed", e.message)
            continue
        report.changes.append(Change(target=target, via=via, detail=detail, result="ok"))
        audited.record("resources", target, f"via {via}: {detail}", "ok")


def _values_keys(app: str, recs: Sequence[Recommendation]) -> dict[str, Any]:
    """Dotted values keys (``resources.requests.cpu``) of the app's main container.

    A chart's ``resources`` value sizes its main container: the only one, or the one named
    like the app. Other containers have no conventional key.

    Raises:
        PlanRejected: no container is clearly the main one.
    """
    main = [r for r in recs if len(recs) == 1 or r.ref.container == app]
    if not main or main[0].recommended is None:
        raise PlanRejected(f"{app}: cannot tell which container the values file's resources "
                           f"size ({', '.join(r.ref.container for r in recs)})",
                           hint="edit the values file by hand with the recommended values")
    return {f"resources.{k}": v for k, v in _flat(
        sizing.resources_patch(main[0].recommended), unset=None).items()}


def _flat(patch: Mapping[str, Mapping[str, str | None]], unset: str | None = "unset",
          ) -> dict[str, str | None]:
    return {f"{kind}.{res}": (v if v is not None else unset)
            for kind, vals in patch.items() for res, v in vals.items()}


def planned_changes(report: ResourcesReport) -> None:
    """Fill ``report.changes`` with what an apply would do (dry run)."""
    for r in report.recommendations:
        if r.changes and r.recommended is not None:
            report.changes.append(Change(
                target=f"{r.ref.namespace}/{r.ref.kind}/{r.ref.workload}", via="cluster",
                detail=f"{r.ref.container}: " + ", ".join(
                    f"{k} {v}" for k, v in _flat(sizing.resources_patch(r.recommended)).items()),
                result="planned"))


def gitops_hooks(settings: context.Settings, env: Mapping[str, str], home: Path,
                 state: Path | None) -> dict[str, Any]:
    """The GitOps callbacks of :func:`apply_resources`, when platform.yaml has a gitops section.

    Without one every workload is patched in the cluster. With one, a workload whose namespace
    belongs to an environment and whose name is an app (``apps.<name>``) of that environment's
    values file is changed there, through services.gitops.set_app_values (round trip, commit,
    push as configured), so that what ArgoCD deploys carries the new resources.
    """
    if settings.platform is None or settings.platform.gitops is None:
        return {}
    from k3sops.services import gitops  # only platforms with GitOps pay for git

    ctx = gitops.open_context(settings, env, home, state)

    def has_app(app: str, environment: str) -> bool:
        with gitops.workspace(ctx) as repo:
            values = gitops.values_of(ctx, repo, environment)
        apps = values.get("apps") if isinstance(values, Mapping) else None
        return isinstance(apps, Mapping) and app in apps

    def write(app: str, environment: str, values: dict[str, Any], message: str) -> str:
        change = gitops.set_app_values(ctx, environment, app, values, reason=message)
        return change.commit or "(no change)"

    return {"gitops_env": lambda ns: gitops_target(settings, ns), "gitops_write": write,
            "gitops_has_app": has_app}
