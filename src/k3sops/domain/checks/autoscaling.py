"""HorizontalPodAutoscalers: a target that is not there, metrics it cannot read, at its maximum.

The HPA controller writes what it found in three conditions: AbleToScale (could it read and
write the target's scale), ScalingActive (could it compute a replica count from its metrics)
and ScalingLimited (did min/max clamp the count it wanted). A target scaled to 0 by hand
disables the HPA on purpose (ScalingActive=False, ScalingDisabled): nothing to report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import PLURALS, Obj, conditions, get, meta, parse_time

METRICS_GRACE_SECONDS = 300
"""A new HPA (or a metrics server just restarted) needs a few scrapes before it has metrics."""
AT_MAX_GRACE_SECONDS = 300
"""A burst may touch the maximum for a moment; staying there is what matters."""
TARGET_KINDS = ("deployments", "statefulsets", "replicasets")
METRICS_APIS = {"Resource": "v1beta1.metrics.k8s.io",
                "ContainerResource": "v1beta1.metrics.k8s.io",
                "Pods": "v1beta1.custom.metrics.k8s.io",
                "Object": "v1beta1.custom.metrics.k8s.io",
                "External": "v1beta1.external.metrics.k8s.io"}
"""The APIService each metric source type is read through."""


def _hpas(ctx: CheckContext) -> list[Obj]:
    return [h for h in ctx.snapshot.get("horizontalpodautoscalers")
            if ctx.in_scope(meta(h)[0]) and ix.live(h)]


def _since(ctx: CheckContext, cond: Mapping[str, Any]) -> float | None:
    at = parse_time(cond.get("lastTransitionTime"))
    return None if at is None else (ctx.snapshot.now - at).total_seconds()


def _target(hpa: Obj) -> tuple[str, str, str | None]:
    ref = get(hpa, "spec", "scaleTargetRef", default={}) or {}
    kind = str(ref.get("kind") or "")
    return kind, str(ref.get("name") or ""), PLURALS.get(kind)


@check("hpa-target-missing", "HPAs can scale their targets",
       reads=("horizontalpodautoscalers", *TARGET_KINDS))
def hpa_target_missing(ctx: CheckContext) -> list[Finding]:
    """HPAs whose scaleTargetRef names no existing object, or that cannot scale it.

    Existence is judged for Deployments, StatefulSets and ReplicaSets; for other kinds (a
    custom resource) the controller's AbleToScale=False says it.
    """
    out = []
    for hpa in _hpas(ctx):
        ns, name = meta(hpa)
        kind, target, plural = _target(hpa)
        able = conditions(hpa).get("AbleToScale") or {}
        missing = plural in TARGET_KINDS and ix.find(ctx.snapshot, str(plural), ns,
                                                     target) is None
        refused = able.get("status") == "False"
        if not (missing or refused):
            continue
        evidence: dict[str, Any] = {"target": {"kind": kind, "name": target},
                                    "able_to_scale": {k: able.get(k) for k in
                                                      ("status", "reason", "message")} or None}
        if missing:
            evidence["cause_ref"] = {"kind": kind, "namespace": ns, "name": target}
            why = f"scales {kind} {target}, which does not exist"
        else:
            why = (f"cannot scale {kind} {target}: {able.get('reason')}"
                   + (f" ({able.get('message')})" if able.get("message") else ""))
        out.append(ctx.finding(
            "hpa-target-missing", "warning", "HorizontalPodAutoscaler", ns, name,
            f"hpa {ns}/{name} {why}", "hpa-target-missing", evidence))
    return out


def _api_state(ctx: CheckContext, api: str) -> tuple[str, bool]:
    """What is known of an APIService: (description, whether it explains a failure)."""
    why = ctx.unread("apiservices")
    if why:
        return f"could not read apiservices: {why}", False
    obj = ix.find(ctx.snapshot, "apiservices", None, api)
    if obj is None:
        return f"APIService {api} does not exist (no metrics server registered)", True
    avail = conditions(obj).get("Available") or {}
    if avail.get("status") != "True":
        return (f"APIService {api} is not available: {avail.get('reason')}"
                + (f" ({avail.get('message')})" if avail.get("message") else "")), True
    return f"APIService {api} is available", False


@check("hpa-metrics-unavailable", "HPAs get their metrics",
       reads=("horizontalpodautoscalers",), uses=("apiservices",))
def hpa_metrics_unavailable(ctx: CheckContext) -> list[Finding]:
    """HPAs that cannot compute a replica count (ScalingActive=False) for more than 5 minutes.

    Failed* reasons (FailedGetResourceMetric, FailedGetPodsMetric, ...) and invalid selectors
    or metric specs. The metrics API behind the failing metric type is named (cause_ref) when
    it is absent or unavailable; a failure about missing CPU/memory requests is the pods'.
    """
    out = []
    for hpa in _hpas(ctx):
        active = conditions(hpa).get("ScalingActive") or {}
        reason = str(active.get("reason") or "")
        if active.get("status") != "False" or reason == "ScalingDisabled":
            continue
        since = _since(ctx, active)
        if since is not None and since < METRICS_GRACE_SECONDS:
            continue
        ns, name = meta(hpa)
        message = str(active.get("message") or "")
        evidence: dict[str, Any] = {"reason": reason, "message": message,
                                    "since": active.get("lastTransitionTime")}
        if "missing request for" in message:
            why = "its pods set no request for the metric's resource"
            evidence["cause"] = "missing requests"
        else:
            types = [str(m.get("type")) for m in get(hpa, "spec", "metrics", default=[]) or []]
            apis = list(dict.fromkeys(METRICS_APIS[t] for t in types or ["Resource"]
                                      if t in METRICS_APIS))
            states = {api: _api_state(ctx, api) for api in apis}
            evidence["metrics_apis"] = {api: s[0] for api, s in states.items()}
            broken = [api for api, s in states.items() if s[1]]
            if broken:
                evidence["cause_ref"] = [{"kind": "APIService", "namespace": None, "name": a}
                                         for a in broken]
                why = states[broken[0]][0]
            else:
                why = message or reason
        out.append(ctx.finding(
            "hpa-metrics-unavailable", "warning", "HorizontalPodAutoscaler", ns, name,
            f"hpa {ns}/{name} cannot compute a replica count ({reason}): {why}",
            "hpa-metrics-unavailable", evidence))
    return out


@check("hpa-at-max", "HPAs have room to scale", reads=("horizontalpodautoscalers",))
def hpa_at_max(ctx: CheckContext) -> list[Finding]:
    """HPAs that want more replicas than maxReplicas (ScalingLimited=True, TooManyReplicas).

    While the HPA cannot read its metrics (ScalingActive=False) the controller leaves the
    last ScalingLimited in place: stale, not judged (hpa-metrics-unavailable says why).
    """
    out = []
    for hpa in _hpas(ctx):
        conds = conditions(hpa)
        limited = conds.get("ScalingLimited") or {}
        if limited.get("status") != "True" or limited.get("reason") != "TooManyReplicas":
            continue
        if (conds.get("ScalingActive") or {}).get("status") == "False":
            continue
        since = _since(ctx, limited)
        if since is not None and since < AT_MAX_GRACE_SECONDS:
            continue
        ns, name = meta(hpa)
        kind, target, _ = _target(hpa)
        maximum = get(hpa, "spec", "maxReplicas")
        current = get(hpa, "status", "currentReplicas")
        metrics = [{"type": m.get("type"), "current": m} for m in
                   get(hpa, "status", "currentMetrics", default=[]) or []]
        out.append(ctx.finding(
            "hpa-at-max", "warning", "HorizontalPodAutoscaler", ns, name,
            f"hpa {ns}/{name} wants more than its maximum of {maximum} replicas of {kind} "
            f"{target} (now {current}): load is above what it may scale to",
            "hpa-at-max",
            {"max_replicas": maximum, "current_replicas": current,
             "desired_replicas": get(hpa, "status", "desiredReplicas"),
             "since": limited.get("lastTransitionTime"), "current_metrics": metrics,
             "target": {"kind": kind, "name": target}}))
    return out
