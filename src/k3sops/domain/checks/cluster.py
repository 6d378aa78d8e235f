"""Cluster-wide API health: aggregated APIs (APIServices) and namespaces stuck Terminating.

An APIService that is not Available breaks more than its own API: the namespace controller
cannot list every kind to empty a namespace (deletions hang with NamespaceDeletionDiscovery-
Failure), and for ``v1beta1.metrics.k8s.io`` — K3s' metrics-server — ``kubectl top`` and every
HorizontalPodAutoscaler on CPU or memory stop working.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.network import since
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import Obj, conditions, get, meta

APISERVICE_GRACE_SECONDS = 120
"""An aggregated API restarting (a metrics-server rollout) is unavailable for a moment."""
TERMINATING_GRACE_SECONDS = 300
"""Emptying a namespace takes a while (pods' grace periods, finalizers doing their job)."""
IMPACT = {
    "metrics.k8s.io": "kubectl top and HorizontalPodAutoscalers on CPU/memory fail",
    "custom.metrics.k8s.io": "HorizontalPodAutoscalers on custom metrics fail",
    "external.metrics.k8s.io": "HorizontalPodAutoscalers on external metrics fail",
}
_GROUP_VERSION = re.compile(r"([a-z0-9.-]+\.[a-z0-9-]+)/(v[0-9]+[a-z0-9]*)")


def _unavailable(api: Obj) -> Mapping[str, Any] | None:
    cond = conditions(api).get("Available")
    return cond if cond is not None and cond.get("status") == "False" else None


@check("apiservice-unavailable", "Aggregated APIs are available", reads=("apiservices",),
       uses=("services",))
def apiservice_unavailable(ctx: CheckContext) -> list[Finding]:
    """APIServices backed by a Service whose Available condition is False (past a grace).

    Critical: besides the API itself (metrics for ``kubectl top`` and HPAs), namespace deletion
    hangs cluster-wide and API discovery is incomplete for every client. The evidence names the
    Service (cause_ref) and whether it exists.
    """
    out = []
    for api in ctx.snapshot.get("apiservices"):
        _, name = meta(api)
        svc = get(api, "spec", "service")
        cond = _unavailable(api)
        if not isinstance(svc, Mapping) or cond is None:
            continue  # served by the API server itself, or available
        down_for = since(ctx, cond.get("lastTransitionTime"))
        if down_for is not None and down_for < APISERVICE_GRACE_SECONDS:
            continue
        group = str(get(api, "spec", "group") or "")
        svc_ns, svc_name = svc.get("namespace"), str(svc.get("name"))
        exists: bool | None = None
        if not ctx.unread("services"):
            exists = ix.find(ctx.snapshot, "services", svc_ns, svc_name) is not None
        impact = IMPACT.get(group, f"the {group} API is unreachable")
        evidence: dict[str, Any] = {
            "group": group, "version": get(api, "spec", "version"),
            "reason": cond.get("reason"), "condition_message": cond.get("message"),
            "since": cond.get("lastTransitionTime"),
            "service": f"{svc_ns}/{svc_name}", "service_port": svc.get("port"),
            "service_exists": exists,
            "cause_ref": {"kind": "Service", "namespace": svc_ns, "name": svc_name}}
        if why := ctx.unread("services"):
            evidence["service_unread"] = why
        out.append(ctx.finding(
            "apiservice-unavailable", "critical", "APIService", None, name,
            f"APIService {name} is unavailable ({cond.get('reason')}: "
            f"{cond.get('message') or 'no message'}): {impact}, and deleting any namespace "
            "hangs", "apiservice-unavailable", evidence))
    return out


def _true(conds: Mapping[str, Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    c = conds.get(kind)
    return c if c is not None and c.get("status") == "True" else None


def _failing_apis(ctx: CheckContext, message: str) -> list[str]:
    """Unavailable APIServices named by a discovery failure (all unavailable ones if none is)."""
    named = {f"{v}.{g}" for g, v in _GROUP_VERSION.findall(message)}
    down = [meta(a)[1] for a in ctx.snapshot.get("apiservices") if _unavailable(a) is not None]
    return sorted(n for n in down if n in named) or sorted(down)


@check("namespace-stuck-terminating", "No namespace stuck Terminating", reads=("namespaces",),
       uses=("apiservices",))
def namespace_stuck_terminating(ctx: CheckContext) -> list[Finding]:
    """Namespaces Terminating for more than 5 minutes, with what holds them.

    The namespace controller's conditions say why: discovery failed (an unavailable
    APIService: the cause_ref), finalizers remain on some objects (named), content remains, or
    deleting content failed.
    """
    out = []
    for ns_obj in ctx.snapshot.get("namespaces"):
        _, name = meta(ns_obj)
        deleted = get(ns_obj, "metadata", "deletionTimestamp")
        if not deleted or not ctx.in_scope(name):
            continue
        waited = since(ctx, deleted)
        if waited is None or waited < TERMINATING_GRACE_SECONDS:
            continue
        conds = conditions(ns_obj)
        evidence: dict[str, Any] = {
            "deletion_timestamp": deleted, "minutes": round(waited / 60, 1),
            "spec_finalizers": get(ns_obj, "spec", "finalizers", default=[]),
            "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")}
                           for c in conds.values() if c.get("status") == "True"]}
        discovery = _true(conds, "NamespaceDeletionDiscoveryFailure")
        finalizers = _true(conds, "NamespaceFinalizersRemaining")
        content = _true(conds, "NamespaceContentRemaining")
        failure = _true(conds, "NamespaceDeletionContentFailure") or _true(
            conds, "NamespaceDeletionGroupVersionParsingFailure")
        causes = []
        if discovery is not None:
            if why := ctx.unread("apiservices"):
                evidence["apiservices_unread"] = why
                apis: list[str] = []
            else:
                apis = _failing_apis(ctx, str(discovery.get("message") or ""))
            evidence["unavailable_apiservices"] = apis
            if apis:
                evidence["cause_ref"] = [{"kind": "APIService", "namespace": None, "name": a}
                                         for a in apis]
            causes.append("the API discovery it needs fails"
                          + (f" (APIService {', '.join(apis)} unavailable)" if apis else ""))
        if finalizers is not None:
            causes.append(str(finalizers.get("message") or "finalizers remain"))
        elif content is not None:
            causes.append(str(content.get("message") or "content remains"))
        if failure is not None:
            causes.append(str(failure.get("message") or failure.get("reason")))
        if not causes:
            causes.append("no condition says why (finalizers "
                          f"{', '.join(evidence['spec_finalizers']) or 'none'} remain)")
        out.append(ctx.finding(
            "namespace-stuck-terminating", "warning", "Namespace", None, name,
            f"namespace {name} has been Terminating for {waited / 60:.0f} min: "
            + "; ".join(causes), "namespace-stuck-terminating", evidence))
    return out
