"""Network rule about cluster DNS: CoreDNS or the kube-dns Service without a ready endpoint."""

from __future__ import annotations

from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.network import (
    DNS_DEPLOYMENTS,
    DNS_NAMESPACE,
    DNS_SERVICE,
    all_endpoints,
    serving_endpoints,
    younger_than,
)
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import events_for, get, meta

DNS_GRACE_SECONDS = 60
"""As for any workload's first rollout (workloads.ROLLOUT_GRACE_SECONDS): DNS at zero for
longer than this is an outage."""


@check("dns-coredns-unavailable", "Cluster DNS available",
       reads=("services", "endpointslices"), uses=("deployments", "events"))
def dns_coredns_unavailable(ctx: CheckContext) -> list[Finding]:
    """CoreDNS with no available replica, or the kube-dns Service with no ready endpoint.

    The Service's serving endpoints decide: another DNS deployment behind kube-dns is fine, and
    a CoreDNS scaled to 0 with nothing else behind the Service is DNS down. When Deployments
    cannot be read the Service alone is judged.
    """
    svc = ix.find(ctx.snapshot, "services", DNS_NAMESPACE, DNS_SERVICE)
    slices = ix.slices_by_service(ctx.snapshot).get((DNS_NAMESPACE, DNS_SERVICE), [])
    ready_eps = len(serving_endpoints(svc, slices)) if svc is not None else 0
    deps = [d for d in ix.in_namespace(ctx.snapshot, "deployments", DNS_NAMESPACE)
            if meta(d)[1] in DNS_DEPLOYMENTS and ix.live(d)]
    out = []
    for dep in deps:
        _, name = meta(dep)
        desired = int(get(dep, "spec", "replicas", default=1) or 0)
        available = int(get(dep, "status", "availableReplicas", default=0) or 0)
        if available > 0 or ready_eps > 0 or younger_than(ctx, dep, DNS_GRACE_SECONDS):
            continue
        why = ("is scaled to 0" if desired == 0
               else f"has 0/{desired} replicas available")
        out.append(ctx.finding(
            "dns-coredns-unavailable", "critical", "Deployment", DNS_NAMESPACE, name,
            f"cluster DNS is down: deployment {DNS_NAMESPACE}/{name} {why}",
            "dns-coredns-unavailable",
            {"desired": desired, "available": available,
             "kube_dns_ready_endpoints": ready_eps if svc is not None else None,
             "conditions": get(dep, "status", "conditions", default=[]),
             "events": events_for(ctx.snapshot, "Deployment", DNS_NAMESPACE, name)}))
    if (out or svc is None or ready_eps > 0
            or younger_than(ctx, svc, DNS_GRACE_SECONDS)):
        return out  # the Deployment finding already explains the empty Service
    evidence: dict[str, Any] = {
        "selector": get(svc, "spec", "selector"), "endpoints": all_endpoints(slices),
        "deployments": [{"name": meta(d)[1],
                         "available": get(d, "status", "availableReplicas", default=0)}
                        for d in deps]}
    if unread := ctx.unread("deployments"):
        evidence["deployments_unread"] = unread
    out.append(ctx.finding(
        "dns-coredns-unavailable", "critical", "Service", DNS_NAMESPACE, DNS_SERVICE,
        f"cluster DNS is down: service {DNS_NAMESPACE}/{DNS_SERVICE} has no ready endpoints",
        "dns-coredns-unavailable", evidence))
    return out
