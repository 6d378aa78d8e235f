"""Application scaling: replicas, HPAs, right-sizing requests/limits, PVC expansion.

Every change is planned first and made only with ``apply=True``; applied changes are written to
the audit log (adapters/audit.py), like the remediations.

- ``scale_app``: the remediation ``scale`` plan (domain/remediate.plan_scale), refused while an
  HPA owns the workload's replica count (the HPA would undo it at its next sync) unless forced;
  after an applied change it waits for the controllers to bring the replicas up.
- ``autoscale``: create or update an autoscaling/v2 HPA with exactly the asked spec.
- ``hpa_status``: every HPA with at-max and not-scaling warnings.
- ``resources``: recommendations from Prometheus history (domain/sizing); applied as a patch
  of the workload's pod template, or into the GitOps values file when the app is managed there.
- ``pvc``: checks first (StorageClass allows expansion, larger size, bound claim, Longhorn
  volume able to grow), then the patch, then follows the resize conditions.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.adapters.audit import AuditLog, current_user, state_dir
from k3sops.adapters.kube import STRATEGIC, KubeActions, KubeAdapter, KubeClient
from k3sops.adapters.prometheus import PrometheusAdapter
from k3sops.domain import remediate, sizing
from k3sops.domain.alerting import parse_duration
from k3sops.domain.checks.capacity import quantity
from k3sops.domain.metrics import InstantResult
from k3sops.domain.remediate import Plan
from k3sops.domain.sizing import (
    ContainerRef,
    History,
    HpaStatus,
    Recommendation,
    Resources,
    SizingSettings,
)
from k3sops.errors import K3sopsError, NotFound, PlanRejected, UsageError
from k3sops.services import context, metrics
from k3sops.services.remediate import RemediationReport, Runner

log = logging.getLogger(__name__)

HPA_GV = "autoscaling/v2"
WORKLOAD_GV = "apps/v1"
LONGHORN_GV = "longhorn.io/v1beta2"
LONGHORN_NAMESPACE = "longhorn-system"
LONGHORN_PROVISIONER = "driver.longhorn.io"


def _parse_ts(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Audited:
    """Where changes are recorded: the audit log and the kube context they were made in."""

    def __init__(self, kube: KubeAdapter, env: Mapping[str, str], home: Path,
                 state: Path | None) -> None:
        self.audit = AuditLog(state_dir(state, env, home) / "audit.jsonl")
        self.context = kube.context

    def record(self, action: str, target: str, detail: str, result: str,
               error: str | None = None) -> None:
        """Append one record (who, when, what, result)."""
        self.audit.append({"who": current_user(), "context": self.context,
                           "what": {"action": action, "target": target, "detail": detail},
                           "result": result, "error": error})


# --------------------------------------------------------------------------------------------
# scale app


def resolve_workload(api: KubeClient, name: str, namespace: str) -> tuple[str, str]:
    """``NAME`` or ``KIND/NAME`` -> (plural, name); a bare name is a Deployment or StatefulSet.

    Raises:
        NotFound: no such workload.
    """
    if "/" in name:
        plural, wname = remediate.parse_workload(name)
        api.get(WORKLOAD_GV, plural, wname, namespace)  # NotFound names it
        return plural, wname
    for plural in ("deployments", "statefulsets"):
        if api.find(WORKLOAD_GV, plural, name, namespace) is not None:
            return plural, name
    raise NotFound(f"no Deployment or StatefulSet {name!r} in namespace {namespace}",
                   hint=f"list them: kubectl get deploy,sts -n {namespace}")


def scale_app(runner: Runner, name: str, namespace: str, replicas: int, *, force: bool = False,
              wait: float = 0.0) -> RemediationReport:
    """Plan (and apply) a replica count; refused while an HPA targets the workload.

    Args:
        runner: the remediation runner (cluster, apply or not, audit log).
        name: ``NAME`` or ``deployment/NAME``/``statefulset/NAME``.
        namespace: the workload's namespace.
        replicas: desired count.
        force: scale even though an HPA owns the count (it will change it back).
        wait: seconds to wait after an applied change until the replicas are ready (0: no wait).

    Raises:
        PlanRejected: an HPA targets the workload and ``force`` is off (nothing was changed).
    """
    kube = runner.actions.kube
    plural, wname = resolve_workload(kube, name, namespace)
    hpas = sizing.hpa_targets(kube.list(HPA_GV, "horizontalpodautoscalers", namespace),
                              plural, wname)

    def build(a: KubeActions) -> Plan:
        plan = remediate.plan_scale(plural, namespace, wname,
                                   a.replicas(plural, namespace, wname), replicas)
        if hpas and plan.steps and not force:
            raise PlanRejected(
                f"{plural}/{wname} in {namespace} is scaled by HorizontalPodAutoscaler "
                f"{', '.join(hpas)}: it owns the replica count and would undo "
                f"--replicas {replicas} at its next sync",
                hint="change the HPA instead (k3sops scale autoscale NAME --min/--max), "
                     "or pass --force to scale anyway")
        if hpas:
            plan.notes.append(f"HorizontalPodAutoscaler {', '.join(hpas)} targets this "
                              "workload and may change the count again")
        return plan

    report = runner.run(f"scale {plural}/{wname} -n {namespace}", build)
    if runner.apply and wait > 0 and any(s.result == "ok" for s in report.steps):
        report.notes.append(_wait_ready(kube, plural, wname, namespace, replicas, wait))
    return report


def _wait_ready(api: KubeClient, plural: str, name: str, namespace: str, replicas: int,
                timeout: float, every: float = 1.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        st = api.get(WORKLOAD_GV, plural, name, namespace).get("status") or {}
        ready = int(st.get("readyReplicas") or 0)
        total = int(st.get("replicas") or 0)
        if ready == replicas and total == replicas:
            return f"{ready}/{replicas} replicas ready"
        if time.monotonic() >= deadline:
            return (f"after {timeout:g}s: {ready}/{replicas} replicas ready, {total} exist "
                    "(the controllers are still working, or pods cannot be scheduled)")
        time.sleep(every)


# --------------------------------------------------------------------------------------------
# scale autoscale


class AutoscaleReport(BaseModel):
    """What `scale autoscale` did or would do."""

    namespace: str
    name: str
    target: str
    action: Literal["create", "update", "none"]
    changed_fields: list[str] = Field(default_factory=list)
    spec: dict[str, Any]
    applied: bool
    result: Literal["planned", "ok", "failed", "skipped"]
    notes: list[str] = Field(default_factory=list)
    audit_log: str | None = None


def _no_cpu_request(workload: Mapping[str, Any]) -> list[str]:
    """Containers without a CPU request: CPU utilisation (a share of it) is undefined for them."""
    spec = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [str(c.get("name", "")) for c in spec.get("containers") or []
            if "cpu" not in ((c.get("resources") or {}).get("requests") or {})]


def autoscale(kube: KubeAdapter, audited: Audited, name: str, namespace: str, *,
              cpu_percent: int, min_replicas: int, max_replicas: int, apply: bool,
              hpa_name: str | None = None) -> AutoscaleReport:
    """Create or update the HPA of a workload so that its spec is exactly the one asked."""
    plural, wname = resolve_workload(kube, name, namespace)
    spec = sizing.hpa_spec(plural, wname, cpu_percent, min_replicas, max_replicas)
    hname = hpa_name or wname
    current = kube.find(HPA_GV, "horizontalpodautoscalers", hname, namespace)
    if current is not None and sizing.hpa_targets([current], plural, wname) != [hname]:
        ref = (current.get("spec") or {}).get("scaleTargetRef") or {}
        raise PlanRejected(f"HPA {namespace}/{hname} exists and targets "
                           f"{ref.get('kind')}/{ref.get('name')}, not {plural}/{wname}",
                           hint="pass --hpa-name NAME for a new HPA")
    others = [h for h in sizing.hpa_targets(
        kube.list(HPA_GV, "horizontalpodautoscalers", namespace), plural, wname)
        if h != hname]
    if others:
        raise PlanRejected(f"{plural}/{wname} is already targeted by HPA "
                           f"{', '.join(others)}; two HPAs on one workload fight",
                           hint="update that one: --hpa-name " + others[0])
    if current is None:
        action: Literal["create", "update", "none"] = "create"
        changed = list(spec)
    else:
        changed = sizing.hpa_spec_differs(current.get("spec") or {}, spec)
        action = "update" if changed else "none"
    report = AutoscaleReport(namespace=namespace, name=hname,
                             target=f"{plural}/{wname}", action=action,
                             changed_fields=changed, spec=spec, applied=apply,
                             result="planned")
    missing = _no_cpu_request(kube.get(WORKLOAD_GV, plural, wname, namespace))
    if missing:
        report.notes.append(f"container(s) {', '.join(missing)} have no CPU request: the "
                            "HPA cannot compute CPU utilisation until they do "
                            "(k3sops scale resources recommends one)")
    if not apply:
        return report
    report.audit_log = str(audited.audit.path)
    if action == "none":
        report.result = "skipped"
        audited.record("autoscale", f"{namespace}/horizontalpodautoscalers/{hname}",
                       "spec already as asked", "skipped")
        return report
    detail = (f"{action} cpu {cpu_percent}% min {min_replicas} max {max_replicas} "
              f"on {plural}/{wname}")
    try:
        if current is None:
            kube.create(HPA_GV, "horizontalpodautoscalers", namespace, {
                "apiVersion": HPA_GV, "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": hname, "namespace": namespace,
                             "labels": {"app.kubernetes.io/managed-by": "k3sops"}},
                "spec": spec})
        else:
            # PUT with the resourceVersion read: the spec becomes exactly the asked one
            # (a merge patch would keep behavior/metrics we were not asked for).
            current["spec"] = spec
            kube.replace(HPA_GV, "horizontalpodautoscalers", namespace, current)
    except K3sopsError as e:
        audited.record("autoscale", f"{namespace}/horizontalpodautoscalers/{hname}",
                       detail, "failed", e.message)
        raise
    audited.record("autoscale", f"{namespace}/horizontalpodautoscalers/{hname}", detail,
                   "ok")
    report.result = "ok"
    return report


class HpaReport(BaseModel):
    """`scale status`: every HPA in scope."""

    hpas: list[HpaStatus]

    @property
    def warnings(self) -> int:
        """How many warnings there are in total."""
        return sum(len(h.warnings) for h in self.hpas)


def hpa_status(kube: KubeAdapter, namespace: str | None) -> HpaReport:
    """Read the HPAs (one namespace, or all) and summarise them."""
    raw = kube.list(HPA_GV, "horizontalpodautoscalers", namespace)
    now = time.time()
    out = [sizing.hpa_status(h, now, _parse_ts((h.get("metadata") or {}).get(
        "creationTimestamp"))) for h in raw]
    return HpaReport(hpas=sorted(out, key=lambda h: (h.namespace, h.name)))


# --------------------------------------------------------------------------------------------
# scale resources


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


def _histories(results: Mapping[str, InstantResult | K3sopsError], containers: Sequence[str],
               window: str) -> dict[str, History]:
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
        hist = _histories({k[len(prefix):]: v for k, v in results.items()
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


def connect_prometheus(settings: context.Settings, env: Mapping[str, str],
                       home: Path) -> PrometheusAdapter | K3sopsError:
    """Prometheus, or the error that prevented reaching it (so callers can degrade)."""
    try:
        return metrics.connect(settings, env, home)
    except K3sopsError as e:
        return e


# --------------------------------------------------------------------------------------------
# scale pvc


class PvcCheck(BaseModel):
    """One precondition of an expansion."""

    name: str
    ok: bool
    detail: str


class PvcReport(BaseModel):
    """`scale pvc`: the checks, the change, and the resize state followed after it."""

    namespace: str
    name: str
    storage_class: str | None
    current: str | None
    capacity: str | None
    requested: str
    checks: list[PvcCheck]
    applied: bool = False
    forced: bool = False
    result: Literal["planned", "ok", "failed", "refused", "skipped"] = "planned"
    state: str | None = None
    conditions: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None
    audit_log: str | None = None


def _longhorn_check(api: KubeClient, pvc: Mapping[str, Any]) -> PvcCheck:
    """Longhorn can grow the volume: it exists, is healthy, is not restoring or being cloned.

    Longhorn (v1.4+) expands attached volumes online; it cannot while the volume is faulted,
    still restoring from a backup, or while it has no replica to grow.
    """
    vol_name = (pvc.get("spec") or {}).get("volumeName")
    if not vol_name:
        return PvcCheck(name="longhorn-online-expansion", ok=False,
                        detail="the claim is not bound to a volume yet")
    vol = api.find(LONGHORN_GV, "volumes", vol_name, LONGHORN_NAMESPACE)
    if vol is None:
        return PvcCheck(name="longhorn-online-expansion", ok=False,
                        detail=f"Longhorn volume {LONGHORN_NAMESPACE}/{vol_name} not found "
                               "(volumes.longhorn.io)")
    st = vol.get("status") or {}
    problems = []
    if st.get("robustness") == "faulted":
        problems.append("robustness faulted")
    if st.get("restoreRequired") or (st.get("restoreInitiated") and not st.get("isStandby")
                                     and st.get("state") != "attached"):
        problems.append("restore in progress")
    if (vol.get("spec") or {}).get("dataEngine") == "v2":
        problems.append("data engine v2 (no online expansion)")
    state = st.get("state", "unknown")
    if problems:
        return PvcCheck(name="longhorn-online-expansion", ok=False,
                        detail=f"volume {vol_name} ({state}): " + ", ".join(problems))
    mode = "online (attached)" if state == "attached" else f"offline ({state})"
    return PvcCheck(name="longhorn-online-expansion", ok=True,
                    detail=f"volume {vol_name}: {mode}, robustness {st.get('robustness', '?')}")


def pvc_checks(api: KubeClient, pvc: Mapping[str, Any], new_bytes: float,
               ) -> tuple[list[PvcCheck], str | None]:
    """The checks of an expansion, and the StorageClass name."""
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    checks: list[PvcCheck] = []
    sc_name = spec.get("storageClassName")
    sc = api.find("storage.k8s.io/v1", "storageclasses", sc_name) if sc_name else None
    if sc is None:
        checks.append(PvcCheck(name="storageclass-allows-expansion", ok=False,
                               detail=f"StorageClass {sc_name!r} not found" if sc_name
                               else "the claim has no StorageClass"))
    else:
        allowed = bool(sc.get("allowVolumeExpansion"))
        checks.append(PvcCheck(
            name="storageclass-allows-expansion", ok=allowed,
            detail=f"StorageClass {sc_name} has allowVolumeExpansion: "
                   f"{str(allowed).lower()}"
                   + ("" if allowed else " (the API server refuses to resize its claims)")))
    cur = quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage"))
    cap = quantity((status.get("capacity") or {}).get("storage"))
    base = max(cur or 0.0, cap or 0.0)
    checks.append(PvcCheck(name="larger", ok=new_bytes > base,
                           detail=f"new size {new_bytes:.0f} bytes vs current {base:.0f} bytes"
                           + ("" if new_bytes > base else
                              " (volumes can only grow; shrinking is not supported)")))
    bound = status.get("phase") == "Bound"
    checks.append(PvcCheck(name="bound", ok=bound,
                           detail=f"phase {status.get('phase', 'unknown')}"
                           + ("" if bound else " (only bound claims can be resized)")))
    if sc is not None and sc.get("provisioner") == LONGHORN_PROVISIONER:
        checks.append(_longhorn_check(api, pvc))
    return checks, sc_name


def _resize_state(pvc: Mapping[str, Any], new_bytes: float) -> tuple[str, list[dict[str, Any]]]:
    status = pvc.get("status") or {}
    conds = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    cap = quantity((status.get("capacity") or {}).get("storage")) or 0.0
    types = {c.get("type") for c in conds if c.get("status") == "True"}
    alloc = status.get("allocatedResourceStatuses") or {}
    if cap >= new_bytes:
        return "done: the capacity reached the new size", conds
    for t in ("ControllerResizeError", "NodeResizeError"):
        if t in types:
            msg = next((c.get("message", "") for c in conds if c.get("type") == t), "")
            return f"failed: {t}: {msg}", conds
    if "FileSystemResizePending" in types:
        return ("FileSystemResizePending: the volume grew; the filesystem grows when a node "
                "(re)mounts it (online for Longhorn)"), conds
    if "Resizing" in types or alloc:
        return f"Resizing: in progress ({alloc or 'controller working'})", conds
    return ("pending: spec updated, no resize controller has acted yet (no condition; a CSI "
            "resizer must run for the volume to grow)"), conds


def expand_pvc(kube: KubeAdapter, audited: Audited, name: str, namespace: str, size: str, *,
               apply: bool, force: bool = False, follow: float = 30.0) -> PvcReport:
    """Check, then (with ``apply``) patch the claim's size and follow the resize conditions.

    Raises:
        UsageError: ``size`` is not a Kubernetes quantity.
        PlanRejected: a check failed (without ``force``), or the API server refused the change
            (its own message); nothing was changed in either case.
    """
    new_bytes = quantity(size)
    if new_bytes is None or new_bytes <= 0:
        raise UsageError(f"--to {size!r} is not a size", hint="e.g. --to 20Gi")
    pvc = kube.get("v1", "persistentvolumeclaims", name, namespace)
    checks, sc_name = pvc_checks(kube, pvc, new_bytes)
    spec = pvc.get("spec") or {}
    rep = PvcReport(namespace=namespace, name=name, storage_class=sc_name,
                    current=((spec.get("resources") or {}).get("requests") or {}).get(
                        "storage"),
                    capacity=((pvc.get("status") or {}).get("capacity") or {}).get(
                        "storage"),
                    requested=size, checks=checks, applied=apply, forced=force)
    failed = [c for c in checks if not c.ok]
    target = f"{namespace}/persistentvolumeclaims/{name}"
    if failed and not force:
        rep.result = "refused"
        raise PlanRejected(
            f"will not expand PVC {namespace}/{name} to {size}: "
            + "; ".join(f"{c.name}: {c.detail}" for c in failed),
            hint="nothing was changed; fix the cause, or pass --force to let the API "
                 "server decide")
    if not apply:
        return rep
    rep.audit_log = str(audited.audit.path)
    try:
        kube.patch("v1", "persistentvolumeclaims", name, namespace,
                  {"spec": {"resources": {"requests": {"storage": size}}}})
    except K3sopsError as e:
        audited.record("expand", target, f"storage -> {size}", "failed", e.message)
        raise
    audited.record("expand", target, f"storage -> {size}" + (" (forced)" if force else ""),
                   "ok")
    rep.result = "ok"
    deadline = time.monotonic() + follow
    while True:
        rep.state, rep.conditions = _resize_state(
            kube.get("v1", "persistentvolumeclaims", name, namespace), new_bytes)
        if rep.state.startswith(("done", "failed")) or time.monotonic() >= deadline:
            return rep
        time.sleep(1.0)



def open_cluster(settings: context.Settings, env: Mapping[str, str], home: Path,
                 state: Path | None) -> tuple[KubeAdapter, Audited]:
    """The cluster and the audit log a scaling command works with."""
    kube = context.kube(settings, env, home)
    return kube, Audited(kube, env, home, state)


def close_prometheus(prom: PrometheusAdapter | K3sopsError) -> None:
    """Close Prometheus if it was opened."""
    if isinstance(prom, PrometheusAdapter):
        prom.close()


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
