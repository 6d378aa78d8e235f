"""Services: named target ports the pods do not have; K3s servicelb next to MetalLB.

A Service's ``targetPort`` given by name is looked up, pod by pod, among the pod's container
ports (app containers and restartable init containers, i.e. sidecars) with the same name *and
protocol*. A pod without it is still listed in an EndpointSlice, but in one that does not carry
the port: it never receives that port's traffic. The lab shows it: such slices have
``ports: null`` and ready endpoints, which is why ``service-no-endpoints`` alone would miss it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.network import (
    METALLB_NAMESPACE,
    POOLS,
    WEBHOOK_KINDS,
    active,
    select_pods,
    service_ports,
    service_users,
    servicelb_daemonsets,
    servicelb_pods,
)
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import Obj, get, meta

SHOWN = 5


def container_ports(pod: Obj) -> list[Mapping[str, Any]]:
    """Ports of the pod's app containers and sidecars (init containers restarted Always)."""
    spec = get(pod, "spec", default={}) or {}
    containers = list(spec.get("containers") or [])
    containers += [c for c in spec.get("initContainers") or []
                   if c.get("restartPolicy") == "Always"]
    return [p for c in containers for p in c.get("ports") or []]


def _has_port(pod: Obj, name: str, protocol: str) -> bool:
    return any(p.get("name") == name and (p.get("protocol") or "TCP") == protocol
               for p in container_ports(pod))


def _declared(pod: Obj) -> list[str]:
    return [f"{p.get('name') or '-'}={p.get('containerPort')}/{p.get('protocol') or 'TCP'}"
            for p in container_ports(pod)]


@check("service-port-mismatch", "Services' named target ports exist on their pods",
       reads=("services", "pods"), uses=("endpointslices", "ingresses", *WEBHOOK_KINDS))
def service_port_mismatch(ctx: CheckContext) -> list[Finding]:
    """Services whose named targetPort is not a container port of (some of) their pods.

    One finding per Service, listing each named port and the pods without it: a warning, the
    configuration mistake. When no pod has the port, the Service's traffic fails:
    ``service-no-endpoints`` reports that impact (critical when an Ingress or webhook routes to
    it). Terminating and finished pods are not judged.
    """
    users: dict[tuple[str | None, str], list[str]] | None = None
    out = []
    for svc in ctx.snapshot.get("services"):
        ns, name = meta(svc)
        selector = get(svc, "spec", "selector")
        named = [p for p in service_ports(svc) if isinstance(p.get("targetPort"), str)]
        if (not named or not selector or not ctx.in_scope(ns) or not ix.live(svc)
                or get(svc, "spec", "type") == "ExternalName"):
            continue
        pods = [p for p in select_pods(ctx.snapshot, ns, selector) if active(p)]
        if not pods:
            continue  # nothing selected: service-no-endpoints says so
        problems: list[dict[str, Any]] = []
        for port in named:
            target, proto = str(port["targetPort"]), str(port.get("protocol") or "TCP")
            lacking = [p for p in pods if not _has_port(p, target, proto)]
            if lacking:
                problems.append({
                    "port": port.get("port"), "port_name": port.get("name"),
                    "target_port": target, "protocol": proto,
                    "pods_without": [meta(p)[1] for p in lacking][:SHOWN * 4],
                    "pods_without_count": len(lacking), "selected_pods": len(pods),
                    "declared_by_first": _declared(lacking[0])})
        if not problems:
            continue
        if users is None:
            users = service_users(ctx)[0]
        routed = users.get((ns, name), [])
        dead = [p for p in problems if p["pods_without_count"] == p["selected_pods"]]
        first = dead[0] if dead else problems[0]
        who = ("none of its" if first in dead
               else f"{first['pods_without_count']} of its")
        declared = ", ".join(first["declared_by_first"]) or "none"
        message = (f"service {ns}/{name} port {first['port']} targets port "
                   f"'{first['target_port']}' ({first['protocol']}), which {who} "
                   f"{first['selected_pods']} pods declare (e.g. {first['pods_without'][0]} "
                   f"declares {declared}): "
                   + ("that port receives no traffic" if first in dead
                      else "those pods get none of its traffic"))
        if routed and first in dead:
            message += f" ({', '.join(routed[:3])} routes to it)"
        if len(problems) > 1:
            message += f" (+{len(problems) - 1} more port)"
        out.append(ctx.finding(
            "service-port-mismatch", "warning", "Service", ns, name, message,
            "service-port-mismatch",
            {"ports": problems, "selector": dict(selector), "routed_by": routed}))
    return out


@check("servicelb-metallb-conflict", "K3s servicelb is off when MetalLB is installed",
       reads=("daemonsets", POOLS), uses=("pods",))
def servicelb_metallb_conflict(ctx: CheckContext) -> list[Finding]:
    """K3s' servicelb (klipper-lb, ``svclb-*`` DaemonSets) runs while MetalLB is installed.

    Both then answer for every LoadBalancer Service: servicelb binds the ports on the nodes and
    writes node IPs into the status, MetalLB assigns its own — the address clients reach
    depends on which one wrote last. MetalLB counts as installed when its IPAddressPool kind
    exists (its CRDs are installed). One finding per svclb DaemonSet (one setting fixes all).
    """
    if not ctx.snapshot.has(POOLS):
        return []  # MetalLB is not installed: servicelb is K3s' LoadBalancer, as intended
    daemonsets = servicelb_daemonsets(ctx.snapshot)
    if not daemonsets:
        return []
    pools = [f"{meta(p)[0]}/{meta(p)[1]}" for p in ctx.snapshot.get(POOLS)]
    pods = None if ctx.unread("pods") else len(servicelb_pods(ctx.snapshot))
    names = sorted(f"{meta(d)[0]}/{meta(d)[1]}" for d in daemonsets)
    services = sorted({f"{get(d, 'metadata', 'labels', 'svccontroller.k3s.cattle.io/svcnamespace')}"
                       f"/{get(d, 'metadata', 'labels', 'svccontroller.k3s.cattle.io/svcname')}"
                       for d in daemonsets
                       if get(d, "metadata", "labels", "svccontroller.k3s.cattle.io/svcname")})
    out = []
    for ds in sorted(daemonsets, key=meta):
        ns, name = meta(ds)
        svc = get(ds, "metadata", "labels", "svccontroller.k3s.cattle.io/svcname")
        out.append(ctx.finding(
            "servicelb-metallb-conflict", "warning", "DaemonSet", ns, name,
            f"K3s servicelb DaemonSet {ns}/{name}"
            + (f" (for Service {svc})" if svc else "")
            + f" runs while MetalLB is installed ({len(pools)} address pool"
            f"{'s' if len(pools) != 1 else ''}): both serve LoadBalancer Services; start the "
            "K3s servers with --disable servicelb", "servicelb-metallb-conflict",
            {"servicelb_daemonsets": names, "servicelb_pods": pods, "services": services,
             "metallb_pools": pools, "metallb_namespace": METALLB_NAMESPACE}))
    return out
