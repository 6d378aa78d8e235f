"""Network: Services without endpoints, Ingress backends, LoadBalancer IPs (MetalLB), cluster DNS.

Endpoints are read from EndpointSlices (label ``kubernetes.io/service-name``), as kube-proxy
does. An endpoint serves a Service only through the ports its slice carries: when a named
``targetPort`` is not a container port of a pod, the EndpointSlice controller still lists the
pod (ready) in a slice *without that port*, and kube-proxy has nowhere to send the traffic — so
"ready endpoints" here means ready endpoints in slices that carry one of the Service's ports.

K3s ships its own LoadBalancer implementation (servicelb / klipper-lb, DaemonSets named
``svclb-*``) which fights MetalLB over the same Services when both run; the LoadBalancer check
names it as a cause, ``servicelb-metallb-conflict`` reports the conflict itself.

The helpers at the top (selection of pods by a Service selector through a label index, the
Services that Ingresses and webhooks route to, serving endpoints) are shared with the other
network modules (services, ingress, webhooks).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding, Severity
from k3sops.domain.snapshot import (
    KIND_NAMES,
    ClusterSnapshot,
    Obj,
    events_for,
    get,
    meta,
    parse_time,
)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DNS_NAMESPACE = "kube-system"
DNS_DEPLOYMENTS = ("coredns", "kube-dns")
DNS_SERVICE = "kube-dns"
POOLS = "ipaddresspools.metallb.io"
L2ADS = "l2advertisements.metallb.io"
POOL_ANNOTATIONS = ("metallb.io/address-pool", "metallb.universe.tf/address-pool")
METALLB_CLASS = "metallb.io/metallb"
SERVICELB_PREFIX = "svclb-"
SERVICELB_SVC_LABEL = "svccontroller.k3s.cattle.io/svcname"
SERVICELB_NS_LABEL = "svccontroller.k3s.cattle.io/svcnamespace"
METALLB_NAMESPACE = "metallb-system"
WEBHOOK_KINDS = ("validatingwebhookconfigurations", "mutatingwebhookconfigurations")
WEBHOOK_KIND_NAMES = {"validatingwebhookconfigurations": "ValidatingWebhookConfiguration",
                      "mutatingwebhookconfigurations": "MutatingWebhookConfiguration"}
WORKLOAD_KINDS = ("deployments", "statefulsets", "daemonsets")
SERVICE_GRACE_SECONDS = 30
"""A LoadBalancer Service younger than this may still get its address; a Service whose pods
could not be read, younger than this, may still get its EndpointSlices. (With pods read the
pods themselves tell a Service being wired: ready pods not yet in a slice, starting pods, a
workload still creating its pods.)"""
WORKLOAD_GRACE_SECONDS = 60
"""A workload younger than this may not have created its pods yet (as in workloads.py)."""
POD_GRACE_SECONDS = 300
"""Pods younger than this may simply be starting (probes, image pulls)."""
INGRESS_GRACE_SECONDS = 0
"""References from an Ingress are judged at once: a missing Service or port fails requests
from the first moment (kept as a named constant for the lab's scenario wait)."""
DNS_GRACE_SECONDS = 60
"""As for any workload's first rollout (workloads.ROLLOUT_GRACE_SECONDS): DNS at zero for
longer than this is an outage."""
SHOWN = 5


# --- shared helpers ----------------------------------------------------------------------


def age_seconds(ctx: CheckContext, obj: Obj) -> float | None:
    """Seconds since the object was created (None when unknown)."""
    created = parse_time(get(obj, "metadata", "creationTimestamp"))
    return None if created is None else (ctx.snapshot.now - created).total_seconds()


def younger_than(ctx: CheckContext, obj: Obj, seconds: float) -> bool:
    """Created less than ``seconds`` ago (unknown creation time: not young)."""
    age = age_seconds(ctx, obj)
    return age is not None and age < seconds


def since(ctx: CheckContext, value: Any) -> float | None:
    """Seconds since an API timestamp (None when absent or unparsable)."""
    t: datetime | None = parse_time(value)
    return None if t is None else (ctx.snapshot.now - t).total_seconds()


def _label_index(snap: ClusterSnapshot) -> dict[tuple[str | None, str, str], list[Obj]]:
    pods = snap.get("pods")

    def build() -> dict[tuple[str | None, str, str], list[Obj]]:
        out: dict[tuple[str | None, str, str], list[Obj]] = defaultdict(list)
        for p in pods:
            if not ix.live(p):
                continue
            ns = meta(p)[0]
            for k, v in (get(p, "metadata", "labels") or {}).items():
                out[(ns, str(k), str(v))].append(p)
        return out
    return snap.cached("network:pods_by_label", build)  # type: ignore[no-any-return]


def select_pods(snap: ClusterSnapshot, namespace: str | None,
                selector: Mapping[str, Any] | None) -> list[Obj]:
    """Live pods matched by a Service's map selector, through a (namespace, label) index.

    Each lookup costs the smallest posting list of the selector's labels, not the namespace's
    pods: rules stay linear however many Services share a namespace.
    """
    if not selector:
        return []
    index = _label_index(snap)
    postings = [index.get((namespace, str(k), str(v)), []) for k, v in selector.items()]
    smallest = min(postings, key=len)
    if not smallest:
        return []
    return [p for p in smallest if ix.selector_matches(selector, get(p, "metadata", "labels"))]


def active(pod: Obj) -> bool:
    """A pod that should be running (not Succeeded/Failed)."""
    return get(pod, "status", "phase") not in ("Succeeded", "Failed")


def service_ports(svc: Obj) -> list[Mapping[str, Any]]:
    """The Service's ports."""
    return list(get(svc, "spec", "ports", default=[]) or [])


def serving_endpoints(svc: Obj, slices: Iterable[Obj]) -> list[str]:
    """Ready endpoints (pod names, else addresses) that can receive the Service's traffic.

    A slice without any of the Service's ports holds pods that lack the named targetPort: they
    receive nothing. A Service without ports (headless) is served by any ready endpoint.
    """
    names = {str(p.get("name") or "") for p in service_ports(svc)}
    out = []
    for s in slices:
        if names and not any(str(p.get("name") or "") in names for p in s.get("ports") or []):
            continue
        out += ix.ready_endpoints([s])
    return out


def all_endpoints(slices: Iterable[Obj]) -> int:
    """Endpoints listed in the slices, ready or not."""
    return sum(len(s.get("endpoints") or []) for s in slices)


def service_users(ctx: CheckContext) -> tuple[dict[tuple[str | None, str], list[str]],
                                              list[str]]:
    """Who routes to each Service: Ingresses (by backend) and admission webhooks.

    Returns the users by (namespace, service), and what could not be read (so that a missing
    user is never taken for a fact).
    """
    unread = [f"could not read {k}: {why}" for k in ("ingresses", *WEBHOOK_KINDS)
              if (why := ctx.unread(k))]
    out: dict[tuple[str | None, str], list[str]] = defaultdict(list)
    for ing in ctx.snapshot.get("ingresses"):
        if not ix.live(ing):
            continue
        ns, name = meta(ing)
        for b in sorted({str(b.get("name")) for b in ingress_backends(ing)}):
            out[(ns, b)].append(f"Ingress {ns}/{name}")
    for kind in WEBHOOK_KINDS:
        for cfg in ctx.snapshot.get(kind):
            for hook in cfg.get("webhooks") or []:
                svc = get(hook, "clientConfig", "service")
                if isinstance(svc, Mapping) and svc.get("name"):
                    who = f"{WEBHOOK_KIND_NAMES[kind]} {meta(cfg)[1]}"
                    key = (svc.get("namespace"), str(svc["name"]))
                    if who not in out[key]:
                        out[key].append(who)
    return out, unread


def ingress_backends(ing: Obj) -> list[dict[str, Any]]:
    """Every Service backend of an Ingress (default backend and each rule path).

    Resource backends (``backend.resource``, a custom object such as a storage bucket) are not
    Services and are left out.
    """
    out: list[dict[str, Any]] = []
    default = get(ing, "spec", "defaultBackend", "service")
    if isinstance(default, Mapping):
        out.append({"host": None, "path": None, **default})
    for rule in get(ing, "spec", "rules", default=[]) or []:
        for path in get(rule, "http", "paths", default=[]) or []:
            svc = get(path, "backend", "service")
            if isinstance(svc, Mapping):
                out.append({"host": rule.get("host"), "path": path.get("path"), **svc})
    return out


def _is_dns_service(ns: str | None, name: str) -> bool:
    return ns == DNS_NAMESPACE and name == DNS_SERVICE


def _pod_state(pod: Obj) -> str:
    """A few words on why a pod is not ready (phase, waiting reason, readiness)."""
    phase = str(get(pod, "status", "phase") or "Unknown")
    for cs in ix.container_statuses(pod):
        reason = get(cs, "state", "waiting", "reason")
        if reason:
            return f"{phase}, {cs.get('name')}: {reason}"
    not_ready = [str(cs.get("name")) for cs in ix.container_statuses(pod)
                 if cs.get("ready") is False]
    if phase == "Running" and not_ready:
        return f"Running, not ready: {', '.join(not_ready)}"
    return phase


STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})


def pod_starting(ctx: CheckContext, pod: Obj) -> bool:
    """A pod within its grace that shows no failure yet (no restart, no error reason)."""
    if not younger_than(ctx, pod, POD_GRACE_SECONDS):
        return False
    for cs in ix.container_statuses(pod):
        reason = get(cs, "state", "waiting", "reason")
        if cs.get("restartCount") or (reason and reason not in STARTING_REASONS):
            return False
    return True


def _backing_workloads(ctx: CheckContext, ns: str | None,
                       selector: Mapping[str, Any],
                       ) -> list[tuple[str, str, int, bool]] | None:
    """Workloads of the namespace whose pod template the selector matches, with their wants.

    What each wants: its replicas (a DaemonSet: the nodes it should run on); and whether it
    is younger than its grace.

    None when a workload kind could not be read: whether the Service is idle on purpose is then
    unknown.
    """
    if any(ctx.unread(k) for k in WORKLOAD_KINDS):
        return None
    out = []
    for kind in WORKLOAD_KINDS:
        for w in ix.in_namespace(ctx.snapshot, kind, ns):
            labels = get(w, "spec", "template", "metadata", "labels")
            if not ix.live(w) or not ix.selector_matches(selector, labels):
                continue
            wanted = (get(w, "status", "desiredNumberScheduled", default=0) if kind == "daemonsets"
                      else get(w, "spec", "replicas", default=1))
            out.append((kind, meta(w)[1], int(wanted or 0),
                        younger_than(ctx, w, WORKLOAD_GRACE_SECONDS)))
    return out


def _no_pod_cause(ctx: CheckContext, ns: str | None, selector: Mapping[str, Any],
                  ) -> tuple[str, list[dict[str, Any]]] | None:
    """Why a selector matches no pod, and the workloads to look at (None: on purpose/unknown).

    Every matching workload scaled to 0: on purpose. Workloads that want pods and have none:
    they cannot create them (their own findings say why: the cause_ref). No workload at all:
    the selector matches nothing (a typo, or the app is gone).
    """
    backing = _backing_workloads(ctx, ns, selector)
    if backing is None or (backing and all(wanted == 0 for _, _, wanted, _ in backing)):
        return None
    if any(young for *_, young in backing):
        return None  # a workload just created: its pods are on their way
    wanting = [(k, n, w) for k, n, w, _ in backing if w > 0]
    if wanting:
        text = ", ".join(f"{k[:-1]} {n} (wants {w})" for k, n, w in wanting[:3])
        return (f"no pod exists for it: {text} has none",
                [{"kind": KIND_NAMES[k], "namespace": ns, "name": n} for k, n, _ in wanting])
    return "no pod matches its selector", []


# --- rules ---------------------------------------------------------------------------------


@check("service-no-endpoints", "Services have ready endpoints",
       reads=("services", "endpointslices"),
       uses=("pods", "events", "ingresses", *WEBHOOK_KINDS, *WORKLOAD_KINDS))
def service_no_endpoints(ctx: CheckContext) -> list[Finding]:  # noqa: PLR0912, PLR0915 - one branch per cause
    """Services whose EndpointSlices hold no ready endpoint that can take their traffic.

    Critical when an Ingress or an admission webhook routes to the Service (users or the API
    server are refused now), else a warning. The cause: no pod matches the selector, the
    matching pods are not ready (named, with their state), the ready pods lack the named
    targetPort (``service-port-mismatch`` names the port), or pods could not be read. Skipped: the
    cluster DNS Service (``dns-coredns-unavailable``), ExternalName Services, Services whose
    pods belong to a workload scaled to 0 or to finished Jobs, and Services or pods within their
    grace. Without a selector the endpoints are maintained by hand or by another controller:
    reported only when such slices list endpoints and none is ready.
    """
    slices = ix.slices_by_service(ctx.snapshot)
    users: dict[tuple[str | None, str], list[str]] | None = None
    users_unread: list[str] = []
    out = []
    for svc in ctx.snapshot.get("services"):
        ns, name = meta(svc)
        if (not ctx.in_scope(ns) or _is_dns_service(ns, name) or not ix.live(svc)
                or get(svc, "spec", "type") == "ExternalName"):
            continue
        mine = slices.get((ns, name), [])
        selector = get(svc, "spec", "selector")
        if not selector:
            # Manual (or mirrored) EndpointSlices: judge them only when they list endpoints.
            if not mine or not all_endpoints(mine) or ix.ready_endpoints(mine):
                continue
        elif serving_endpoints(svc, mine):
            continue
        evidence: dict[str, Any] = {
            "selector": dict(selector) if selector else None,
            "endpointslices": [meta(es)[1] for es in mine],
            "endpoints": all_endpoints(mine),
            "ready_endpoints": len(ix.ready_endpoints(mine))}
        if not selector:
            managers = sorted({str(get(es, "metadata", "labels",
                                       "endpointslice.kubernetes.io/managed-by") or "by hand")
                               for es in mine})
            cause = (f"none of the {all_endpoints(mine)} endpoints of its EndpointSlices "
                     f"(managed {', '.join(managers)}) is ready")
            evidence["managed_by"] = managers
        elif ready := ix.ready_endpoints(mine):
            # ready pods, listed in slices that carry none of the Service's ports: a named
            # targetPort (or its protocol) the pods do not declare (service-port-mismatch
            # names the port; this finding says what it does to the Service)
            wanted = sorted({f"{p.get('targetPort')}/{p.get('protocol') or 'TCP'}"
                             for p in service_ports(svc)
                             if isinstance(p.get("targetPort"), str)})
            cause = (f"its {len(ready)} ready pod{'s' if len(ready) != 1 else ''} ("
                     f"{', '.join(ready[:SHOWN])}) do not declare its target port "
                     f"{', '.join(wanted) or '(unnamed)'}: see service-port-mismatch")
            evidence["ports_missing_on_pods"] = wanted
        elif why := ctx.unread("pods"):
            # the slices alone still tell not-ready endpoints from none at all
            evidence["pods_unread"] = why
            listed = [str(get(e, "targetRef", "name") or (e.get("addresses") or ["?"])[0])
                      for es in mine for e in es.get("endpoints") or []]
            if listed:
                cause = (f"none of its {len(listed)} endpoints is ready: "
                         f"{', '.join(listed[:SHOWN])} (could not read pods for their state)")
                evidence["not_ready_pods"] = listed[:SHOWN * 4]
            else:
                if (younger_than(ctx, svc, SERVICE_GRACE_SECONDS)
                        or _no_pod_cause(ctx, ns, selector) is None):
                    continue  # slices may lag; scaled to 0 on purpose, or cannot tell
                cause = (f"its EndpointSlices list no endpoint; could not read pods ({why}): "
                         "cause unknown (a selector matching no pod, or pods without an "
                         "address yet)")
        else:
            matching = select_pods(ctx.snapshot, ns, selector)
            pods = [p for p in matching if active(p)]
            if matching and not pods:
                continue  # every matching pod finished (a Job's): nothing should serve
            if not pods:
                no_pod = _no_pod_cause(ctx, ns, selector)
                if no_pod is None:
                    continue  # scaled to 0 on purpose, or cannot tell (workloads unread)
                cause, refs = no_pod
                if refs:
                    evidence["cause_ref"] = refs
            else:
                if any(ix.pod_ready(p) for p in pods):
                    continue  # ready, not yet in the slices (the controller lags a moment)
                if all(pod_starting(ctx, p) for p in pods):
                    continue  # its pods are starting
                states = [f"{meta(p)[1]} ({_pod_state(p)})" for p in pods[:SHOWN]]
                more = f" and {len(pods) - SHOWN} more" if len(pods) > SHOWN else ""
                cause = (f"none of its {len(pods)} matching pods is ready: "
                         f"{', '.join(states)}{more}")
                evidence["not_ready_pods"] = [meta(p)[1] for p in pods][:SHOWN * 4]
            evidence["matching_pods"] = len(pods)
            evidence["ready_pods"] = 0
        if users is None:
            users, users_unread = service_users(ctx)
        routed = users.get((ns, name), [])
        severity: Severity = "critical" if routed else "warning"
        impact = f" ({', '.join(routed[:3])} route{'s' if len(routed) == 1 else ''} to it)" \
            if routed else ""
        evidence.update({"routed_by": routed, "cause": cause,
                         "events": events_for(ctx.snapshot, "Service", ns, name)})
        if users_unread and not routed:
            evidence["impact_unknown"] = users_unread
        out.append(ctx.finding(
            "service-no-endpoints", severity, "Service", ns, name,
            f"service {ns}/{name} has no ready endpoints{impact}: {cause}",
            "service-no-endpoints", evidence))
    return out


def _port_on(svc: Obj, port: Mapping[str, Any] | None) -> bool:
    ports = service_ports(svc)
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
    """Ingresses routing to a Service that does not exist, or to a port it does not have.

    The port is the Service's ``port`` (by number or by name), not its targetPort. An
    ExternalName Service without ports is taken as it is (controllers that allow them proxy to
    the external name on the port the Ingress gives).
    """
    services = ix.by_name(ctx.snapshot, "services")
    out = []
    for ing in ctx.snapshot.get("ingresses"):
        ns, name = meta(ing)
        if not ctx.in_scope(ns) or not ix.live(ing):
            continue
        broken: list[dict[str, Any]] = []
        for b in ingress_backends(ing):
            svc = services.get((ns, str(b.get("name"))))
            if svc is None:
                problem = "service does not exist"
            elif (get(svc, "spec", "type") == "ExternalName" and not service_ports(svc)) \
                    or _port_on(svc, b.get("port")):
                continue
            else:
                has = [p.get("name") or p.get("port") for p in service_ports(svc)]
                problem = (f"port {_port_text(b.get('port'))} is not a port of the service "
                           f"(it has {', '.join(map(str, has)) or 'none'})")
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
             "services": sorted({str(b["service"]) for b in broken}),
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


def servicelb_daemonsets(snap: ClusterSnapshot) -> list[Obj]:
    """K3s servicelb (klipper-lb) DaemonSets: named ``svclb-*`` or labelled by its controller."""
    return [d for d in snap.get("daemonsets")
            if meta(d)[1].startswith(SERVICELB_PREFIX)
            or get(d, "metadata", "labels", SERVICELB_SVC_LABEL)]


def servicelb_pods(snap: ClusterSnapshot) -> list[Obj]:
    """Live servicelb pods (``svclb-*``, in kube-system since K3s 1.26, or labelled)."""
    return [p for p in snap.get("pods") if ix.live(p) and (
        meta(p)[1].startswith(SERVICELB_PREFIX)
        or get(p, "metadata", "labels", SERVICELB_SVC_LABEL))]


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
