"""Network rules about traffic reaching pods: Services without ready endpoints, Ingress backends.

See :mod:`k3sops.domain.checks.network` for what "ready endpoints" means here (EndpointSlices
that carry one of the Service's ports).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.network import (
    DNS_NAMESPACE,
    DNS_SERVICE,
    SERVICE_GRACE_SECONDS,
    WEBHOOK_KINDS,
    WORKLOAD_KINDS,
    active,
    all_endpoints,
    ingress_backends,
    pod_starting,
    select_pods,
    service_ports,
    service_users,
    serving_endpoints,
    younger_than,
)
from k3sops.domain.findings import Finding, Severity
from k3sops.domain.snapshot import KIND_NAMES, Obj, events_for, get, meta

WORKLOAD_GRACE_SECONDS = 60
"""A workload younger than this may not have created its pods yet (as in workloads.py)."""
SHOWN = 5


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
