"""Network rules about LoadBalancer Services: external IPs (MetalLB, K3s servicelb), MetalLB pools.

K3s ships its own LoadBalancer implementation (servicelb / klipper-lb, DaemonSets named
``svclb-*``) which fights MetalLB over the same Services when both run; the LoadBalancer check
names it as a cause, ``servicelb-metallb-conflict`` reports the conflict itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.network import (
    METALLB_NAMESPACE,
    POOLS,
    SERVICE_GRACE_SECONDS,
    SERVICELB_PREFIX,
    SERVICELB_SVC_LABEL,
    servicelb_daemonsets,
    servicelb_pods,
    younger_than,
)
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import Obj, events_for, get, meta

L2ADS = "l2advertisements.metallb.io"
POOL_ANNOTATIONS = ("metallb.io/address-pool", "metallb.universe.tf/address-pool")
METALLB_CLASS = "metallb.io/metallb"
SERVICELB_NS_LABEL = "svccontroller.k3s.cattle.io/svcnamespace"


def _available(pool: Obj) -> int | None:
    """Free addresses of a MetalLB pool from its status (MetalLB >= 0.15), None if unknown."""
    status = get(pool, "status")
    if not isinstance(status, Mapping) or (
            "availableIPv4" not in status and "availableIPv6" not in status):
        return None
    try:
        return int(status.get("availableIPv4") or 0) + int(status.get("availableIPv6") or 0)
    except (TypeError, ValueError):
        return None


def _pool_summary(pool: Obj) -> dict[str, Any]:
    ns, name = meta(pool)
    return {"name": name, "namespace": ns, "addresses": get(pool, "spec", "addresses"),
            "auto_assign": get(pool, "spec", "autoAssign", default=True),
            "available": _available(pool),
            "assigned": (None if _available(pool) is None else
                         int(get(pool, "status", "assignedIPv4", default=0) or 0)
                         + int(get(pool, "status", "assignedIPv6", default=0) or 0))}



def _servicelb(ctx: CheckContext) -> tuple[list[Obj], bool]:
    """The servicelb DaemonSets (or, without them, its pods), and whether that is known.

    Known means the kind looked at could be read: an unread kind is no evidence of absence.
    """
    if not ctx.unread("daemonsets"):
        return servicelb_daemonsets(ctx.snapshot), True
    if not ctx.unread("pods"):
        return servicelb_pods(ctx.snapshot), True
    return [], False


def _servicelb_for(objs: Sequence[Obj], svc: Obj) -> list[Obj]:
    """The servicelb DaemonSets/pods serving one Service (by its labels, else by name)."""
    ns, name = meta(svc)
    mine = [o for o in objs if get(o, "metadata", "labels", SERVICELB_SVC_LABEL) == name
            and get(o, "metadata", "labels", SERVICELB_NS_LABEL) in (None, ns)]
    return mine or [o for o in objs if meta(o)[1].startswith(f"{SERVICELB_PREFIX}{name}-")]


def _metallb_controller(ctx: CheckContext) -> dict[str, Any] | None:
    """MetalLB's controller Deployment (it assigns the IPs), when it is in the snapshot."""
    for dep in ctx.snapshot.get("deployments"):
        ns, name = meta(dep)
        if ns == METALLB_NAMESPACE and (name == "controller" or name.endswith("-controller")):
            return {"name": f"{ns}/{name}",
                    "desired": get(dep, "spec", "replicas", default=1),
                    "available": get(dep, "status", "availableReplicas", default=0)}
    return None


def _lb_causes(ctx: CheckContext, svc: Obj, pools: list[dict[str, Any]],
               servicelb: list[Obj], servicelb_known: bool,
               controller: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """Likely causes, and the facts that could not be read (never turned into a cause)."""
    unknown = [f"could not read {k}: {why}" for k in (POOLS, L2ADS, "deployments")
               if (why := ctx.unread(k))]
    if not servicelb_known:
        unknown.append("could not read daemonsets nor pods: whether K3s servicelb runs is "
                       "unknown")
    pools_known = not ctx.unread(POOLS)
    metallb_installed = ctx.snapshot.has(POOLS)
    causes = []
    if metallb_installed and controller is not None and not controller["available"]:
        causes.append(f"the MetalLB controller {controller['name']} has no available replica")
    lb_class = get(svc, "spec", "loadBalancerClass")
    wanted = next((get(svc, "metadata", "annotations", a) for a in POOL_ANNOTATIONS
                   if get(svc, "metadata", "annotations", a)), None)
    if lb_class and lb_class != METALLB_CLASS:
        causes.append(f"loadBalancerClass {lb_class} is not MetalLB's: only that controller "
                      "assigns an IP")
    if metallb_installed and not pools:
        causes.append("MetalLB has no IPAddressPool")
    if wanted and pools_known and wanted not in {p["name"] for p in pools}:
        causes.append(f"the requested pool {wanted} does not exist")
    candidates = [p for p in pools if (p["name"] == wanted if wanted else p["auto_assign"])]
    full = [p["name"] for p in candidates if p["available"] == 0]
    if candidates and len(full) == len(candidates):
        causes.append("MetalLB pool(s) exhausted: " + ", ".join(full))
    if metallb_installed and pools and not ctx.unread(L2ADS) and not ctx.snapshot.get(L2ADS):
        causes.append("no L2Advertisement announces the pools (unless BGP is configured)")
    if servicelb and metallb_installed:
        causes.append("K3s servicelb (klipper-lb) and MetalLB both run and compete for "
                      "LoadBalancer Services: start K3s with --disable servicelb")
    mine = _servicelb_for(servicelb, svc)
    if mine and not metallb_installed:
        stuck = [meta(o)[1] for o in mine if (
            int(get(o, "status", "numberReady", default=0) or 0) == 0
            if "desiredNumberScheduled" in (get(o, "status") or {})
            else not ix.pod_ready(o))]
        if stuck:
            causes.append(f"servicelb's {', '.join(stuck)} has no ready pod: no node has the "
                          "service's ports free (another LoadBalancer or hostPort holds them)")
    if (pools_known and not metallb_installed and servicelb_known and not servicelb
            and not lb_class):
        causes.append("no LoadBalancer implementation found (neither MetalLB nor K3s servicelb)")
    return causes, unknown


@check("loadbalancer-no-ip", "LoadBalancer Services have an external IP", reads=("services",),
       uses=(POOLS, L2ADS, "daemonsets", "pods", "deployments", "events"))
def loadbalancer_no_ip(ctx: CheckContext) -> list[Finding]:
    """LoadBalancer Services without status.loadBalancer.ingress, with MetalLB's state.

    A cause is named only from what could be read: an unread kind is listed under ``unknown``
    in the evidence (e.g. unread DaemonSets and pods never yield "no LoadBalancer
    implementation").
    """
    lbs = [s for s in ctx.snapshot.get("services") if get(s, "spec", "type") == "LoadBalancer"
           and ctx.in_scope(meta(s)[0]) and ix.live(s)
           and not younger_than(ctx, s, SERVICE_GRACE_SECONDS)
           and not get(s, "status", "loadBalancer", "ingress")]
    if not lbs:
        return []
    pools = [_pool_summary(p) for p in ctx.snapshot.get(POOLS)]
    l2 = ctx.snapshot.get(L2ADS)
    servicelb, servicelb_known = _servicelb(ctx)
    controller = _metallb_controller(ctx)
    out = []
    for svc in lbs:
        ns, name = meta(svc)
        causes, unknown = _lb_causes(ctx, svc, pools, servicelb, servicelb_known, controller)
        out.append(ctx.finding(
            "loadbalancer-no-ip", "warning", "Service", ns, name,
            f"LoadBalancer service {ns}/{name} has no external IP"
            + (f": {causes[0]}" if causes else ""),
            "loadbalancer-no-ip",
            {"likely_causes": causes, "unknown": unknown, "metallb_pools": pools,
             "l2advertisements": [{"name": meta(a)[1], "namespace": meta(a)[0],
                                   "pools": get(a, "spec", "ipAddressPools")} for a in l2],
             "servicelb": sorted(f"{meta(o)[0]}/{meta(o)[1]}" for o in servicelb),
             "metallb_controller": controller,
             "load_balancer_class": get(svc, "spec", "loadBalancerClass"),
             "requested_ip": get(svc, "spec", "loadBalancerIP"),
             "events": events_for(ctx.snapshot, "Service", ns, name)}))
    return out


@check("metallb-pool-exhausted", "MetalLB pools have free addresses", reads=(POOLS,))
def metallb_pool_exhausted(ctx: CheckContext) -> list[Finding]:
    """IPAddressPools whose status counts no available address (MetalLB >= 0.15 writes it)."""
    out = []
    for pool in ctx.snapshot.get(POOLS):
        ns, name = meta(pool)
        if _available(pool) != 0:
            continue
        summary = _pool_summary(pool)
        out.append(ctx.finding(
            "metallb-pool-exhausted", "warning", "IPAddressPool", ns, name,
            f"MetalLB pool {name} has no free address ({summary['assigned']} assigned of "
            f"{', '.join(summary['addresses'] or [])}): new LoadBalancer Services get no IP",
            "metallb-pool-exhausted", {"pool": summary, "status": dict(get(pool, "status"))}))
    return out
