"""Network: Services without endpoints, Ingress backends, LoadBalancer IPs (MetalLB), cluster DNS.

Endpoints are read from EndpointSlices (label ``kubernetes.io/service-name``), as kube-proxy
does. K3s ships its own LoadBalancer implementation (servicelb / klipper-lb, DaemonSets named
``svclb-*``) which fights MetalLB over the same Services when both run; the LoadBalancer check
says so when it sees both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import Obj, events_for, get, meta

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DNS_NAMESPACE = "kube-system"
DNS_DEPLOYMENTS = ("coredns", "kube-dns")
DNS_SERVICE = "kube-dns"
POOLS = "ipaddresspools.metallb.io"
L2ADS = "l2advertisements.metallb.io"
POOL_ANNOTATIONS = ("metallb.io/address-pool", "metallb.universe.tf/address-pool")
METALLB_CLASS = "metallb.io/metallb"
SERVICELB_PREFIX = "svclb-"
METALLB_NAMESPACE = "metallb-system"


def _slices_by_service(ctx: CheckContext) -> dict[tuple[str | None, str], list[Obj]]:
    out: dict[tuple[str | None, str], list[Obj]] = defaultdict(list)
    for es in ctx.snapshot.get("endpointslices"):
        svc = get(es, "metadata", "labels", SERVICE_NAME_LABEL)
        if svc:
            out[(meta(es)[0], str(svc))].append(es)
    return out


def _ready_endpoints(slices: list[Obj]) -> int:
    """Ready endpoints across slices (an absent ``ready`` means ready, per the API)."""
    return sum(1 for es in slices for ep in es.get("endpoints") or []
               if get(ep, "conditions", "ready") is not False)


def _matches(labels: Mapping[str, Any] | None, selector: Mapping[str, Any]) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def pods_by_namespace(ctx: CheckContext) -> dict[str | None, list[Obj]]:
    """Live pods grouped by namespace (one pass, so lookups do not grow with the cluster)."""
    out: dict[str | None, list[Obj]] = defaultdict(list)
    for p in ctx.snapshot.get("pods"):
        if not get(p, "metadata", "deletionTimestamp"):
            out[meta(p)[0]].append(p)
    return out


def _pods_matching(pods: Mapping[str | None, list[Obj]], ns: str | None,
                   selector: Mapping[str, Any]) -> list[Obj]:
    return [p for p in pods.get(ns, []) if _matches(get(p, "metadata", "labels"), selector)]


def _is_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in get(pod, "status", "conditions", default=[]) or [])


def _is_dns_service(ns: str | None, name: str) -> bool:
    return ns == DNS_NAMESPACE and name == DNS_SERVICE


@check("service-no-endpoints", "Services have ready endpoints",
       reads=("services", "endpointslices"), uses=("pods", "events", "ingresses"))
def service_no_endpoints(ctx: CheckContext) -> list[Finding]:
    """Services with a selector whose EndpointSlices hold no ready endpoint."""
    slices = _slices_by_service(ctx)
    pods_in: dict[str | None, list[Obj]] | None = None
    out = []
    for svc in ctx.snapshot.get("services"):
        ns, name = meta(svc)
        selector = get(svc, "spec", "selector")
        if (not ctx.in_scope(ns) or not selector or _is_dns_service(ns, name)
                or get(svc, "spec", "type") == "ExternalName"):
            continue  # no selector: endpoints are managed by hand; DNS has its own check
        mine = slices.get((ns, name), [])
        if _ready_endpoints(mine):
            continue
        if pods_in is None:
            pods_in = pods_by_namespace(ctx)
        pods = _pods_matching(pods_in, ns, selector)
        ready = sum(_is_ready(p) for p in pods)
        cause = ("no pod matches its selector" if not pods
                 else f"none of the {len(pods)} matching pods is ready")
        out.append(ctx.finding(
            "service-no-endpoints", "warning", "Service", ns, name,
            f"service {ns}/{name} has no ready endpoints: {cause}", "service-no-endpoints",
            {"selector": dict(selector), "matching_pods": len(pods), "ready_pods": ready,
             "not_ready_pods": [meta(p)[1] for p in pods if not _is_ready(p)][:5],
             "endpointslices": [meta(es)[1] for es in mine],
             "endpoints": sum(len(es.get("endpoints") or []) for es in mine),
             "events": events_for(ctx.snapshot, "Service", ns, name)}))
    return out


def _backends(ing: Obj) -> list[dict[str, Any]]:
    """Every Service backend of an Ingress (default backend and each rule path)."""
    out: list[dict[str, Any]] = []
    default = get(ing, "spec", "defaultBackend", "service")
    if default:
        out.append({"host": None, "path": None, **default})
    for rule in get(ing, "spec", "rules", default=[]) or []:
        for path in get(rule, "http", "paths", default=[]) or []:
            svc = get(path, "backend", "service")
            if svc:
                out.append({"host": rule.get("host"), "path": path.get("path"), **svc})
    return out


def _port_on(svc: Obj, port: Mapping[str, Any] | None) -> bool:
    ports = get(svc, "spec", "ports", default=[]) or []
    if not port:
        return True
    if port.get("number") is not None:
        return any(p.get("port") == port["number"] for p in ports)
    if port.get("name") is not None:
        return any(p.get("name") == port["name"] for p in ports)
    return True


def _port_text(port: Mapping[str, Any] | None) -> str:
    if not port:
        return "?"
    return str(port.get("number") if port.get("number") is not None else port.get("name"))


@check("ingress-backend-missing", "Ingress backends exist", reads=("ingresses", "services"),
       uses=("events",))
def ingress_backend_missing(ctx: CheckContext) -> list[Finding]:
    """Ingresses routing to a Service that does not exist, or to a port it does not have."""
    services = {meta(s): s for s in ctx.snapshot.get("services")}
    out = []
    for ing in ctx.snapshot.get("ingresses"):
        ns, name = meta(ing)
        if not ctx.in_scope(ns):
            continue
        broken: list[dict[str, Any]] = []
        for b in _backends(ing):
            svc = services.get((ns, str(b.get("name"))))
            if svc is None:
                problem = "service does not exist"
            elif not _port_on(svc, b.get("port")):
                has = [p.get("name") or p.get("port")
                       for p in get(svc, "spec", "ports", default=[]) or []]
                problem = (f"port {_port_text(b.get('port'))} is not a port of the service "
                           f"(it has {', '.join(map(str, has)) or 'none'})")
            else:
                continue
            broken.append({"host": b.get("host"), "path": b.get("path"),
                           "service": b.get("name"), "port": _port_text(b.get("port")),
                           "problem": problem})
        if not broken:
            continue
        first = broken[0]
        more = f" (+{len(broken) - 1} more)" if len(broken) > 1 else ""
        out.append(ctx.finding(
            "ingress-backend-missing", "critical", "Ingress", ns, name,
            f"ingress {ns}/{name} routes {first['host'] or '*'}{first['path'] or ''} to "
            f"service {first['service']}:{first['port']}: {first['problem']}{more}",
            "ingress-backend-missing",
            {"broken_backends": broken,
             "ingress_class": get(ing, "spec", "ingressClassName"),
             "events": events_for(ctx.snapshot, "Ingress", ns, name)}))
    return out


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


def _servicelb(ctx: CheckContext) -> list[str]:
    """K3s servicelb (klipper-lb) DaemonSets/pods, as ``namespace/name``."""
    ds = [f"{ns}/{n}" for ns, n in map(meta, ctx.snapshot.get("daemonsets"))
          if n.startswith(SERVICELB_PREFIX)]
    if ds:
        return sorted(ds)
    # without DaemonSets in the snapshot, their pods in kube-system tell the same story
    return sorted(f"{ns}/{n}" for ns, n in map(meta, ctx.snapshot.get("pods"))
                  if ns == DNS_NAMESPACE and n.startswith(SERVICELB_PREFIX))


def _metallb_controller(ctx: CheckContext) -> dict[str, Any] | None:
    """MetalLB's controller Deployment (it assigns the IPs), when it is in the snapshot."""
    for dep in ctx.snapshot.get("deployments"):
        ns, name = meta(dep)
        if ns == METALLB_NAMESPACE and (name == "controller" or name.endswith("-controller")):
            return {"name": f"{ns}/{name}",
                    "desired": get(dep, "spec", "replicas", default=1),
                    "available": get(dep, "status", "availableReplicas", default=0)}
    return None


def _lb_causes(svc: Obj, pools: list[dict[str, Any]], l2: Sequence[Obj], servicelb: list[str],
               metallb_installed: bool, controller: dict[str, Any] | None) -> list[str]:
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
    if wanted and wanted not in {p["name"] for p in pools}:
        causes.append(f"the requested pool {wanted} does not exist")
    candidates = [p for p in pools if (p["name"] == wanted if wanted else p["auto_assign"])]
    full = [p["name"] for p in candidates if p["available"] == 0]
    if candidates and len(full) == len(candidates):
        causes.append("MetalLB pool(s) exhausted: " + ", ".join(full))
    if metallb_installed and pools and not l2:
        causes.append("no L2Advertisement announces the pools (unless BGP is configured)")
    if servicelb and metallb_installed:
        causes.append("K3s servicelb (klipper-lb) and MetalLB both run and compete for "
                      "LoadBalancer Services: start K3s with --disable servicelb")
    if not metallb_installed and not servicelb:
        causes.append("no LoadBalancer implementation found (neither MetalLB nor K3s servicelb)")
    return causes


@check("loadbalancer-no-ip", "LoadBalancer Services have an external IP", reads=("services",),
       uses=(POOLS, L2ADS, "daemonsets", "pods", "deployments", "events"))
def loadbalancer_no_ip(ctx: CheckContext) -> list[Finding]:
    """LoadBalancer Services without status.loadBalancer.ingress, with MetalLB's state."""
    lbs = [s for s in ctx.snapshot.get("services") if get(s, "spec", "type") == "LoadBalancer"
           and ctx.in_scope(meta(s)[0]) and not get(s, "status", "loadBalancer", "ingress")]
    if not lbs:
        return []
    pools = [_pool_summary(p) for p in ctx.snapshot.get(POOLS)]
    l2 = ctx.snapshot.get(L2ADS)
    servicelb = _servicelb(ctx)
    metallb_installed = ctx.snapshot.has(POOLS)
    controller = _metallb_controller(ctx)
    out = []
    for svc in lbs:
        ns, name = meta(svc)
        causes = _lb_causes(svc, pools, l2, servicelb, metallb_installed, controller)
        out.append(ctx.finding(
            "loadbalancer-no-ip", "warning", "Service", ns, name,
            f"LoadBalancer service {ns}/{name} has no external IP"
            + (f": {causes[0]}" if causes else ""),
            "loadbalancer-no-ip",
            {"likely_causes": causes, "metallb_pools": pools,
             "l2advertisements": [{"name": meta(a)[1], "namespace": meta(a)[0],
                                   "pools": get(a, "spec", "ipAddressPools")} for a in l2],
             "servicelb": servicelb, "metallb_controller": controller,
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


@check("dns-coredns-unavailable", "Cluster DNS available",
       reads=("deployments", "services", "endpointslices"), uses=("events",))
def dns_coredns_unavailable(ctx: CheckContext) -> list[Finding]:
    """CoreDNS with no available replica, or the kube-dns Service with no ready endpoint."""
    deps = [d for d in ctx.snapshot.get("deployments") if meta(d)[0] == DNS_NAMESPACE
            and meta(d)[1] in DNS_DEPLOYMENTS]
    svc = next((s for s in ctx.snapshot.get("services")
                if _is_dns_service(*meta(s))), None)
    slices = _slices_by_service(ctx).get((DNS_NAMESPACE, DNS_SERVICE), [])
    ready_eps = _ready_endpoints(slices)
    out = []
    for dep in deps:
        _, name = meta(dep)
        desired = int(get(dep, "spec", "replicas", default=1) or 0)
        available = int(get(dep, "status", "availableReplicas", default=0) or 0)
        if available > 0 or (desired == 0 and ready_eps > 0):
            continue
        out.append(ctx.finding(
            "dns-coredns-unavailable", "critical", "Deployment", DNS_NAMESPACE, name,
            f"cluster DNS is down: deployment {DNS_NAMESPACE}/{name} has 0/{desired} "
            "replicas available", "dns-coredns-unavailable",
            {"desired": desired, "available": available,
             "kube_dns_ready_endpoints": ready_eps if svc is not None else None,
             "conditions": get(dep, "status", "conditions", default=[]),
             "events": events_for(ctx.snapshot, "Deployment", DNS_NAMESPACE, name)}))
    if out or svc is None or ready_eps > 0:
        return out  # the Deployment finding already explains the empty Service
    out.append(ctx.finding(
        "dns-coredns-unavailable", "critical", "Service", DNS_NAMESPACE, DNS_SERVICE,
        f"cluster DNS is down: service {DNS_NAMESPACE}/{DNS_SERVICE} has no ready endpoints",
        "dns-coredns-unavailable",
        {"selector": get(svc, "spec", "selector"),
         "endpoints": sum(len(es.get("endpoints") or []) for es in slices),
         "deployments": [{"name": meta(d)[1],
                          "available": get(d, "status", "availableReplicas", default=0)}
                         for d in deps]}))
    return out
