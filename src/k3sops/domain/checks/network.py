"""Network checks' shared helpers and constants (the rules are in endpoints, loadbalancers, dns).

Endpoints are read from EndpointSlices (label ``kubernetes.io/service-name``), as kube-proxy
does. An endpoint serves a Service only through the ports its slice carries: when a named
``targetPort`` is not a container port of a pod, the EndpointSlice controller still lists the
pod (ready) in a slice *without that port*, and kube-proxy has nowhere to send the traffic — so
"ready endpoints" here means ready endpoints in slices that carry one of the Service's ports.

The helpers (selection of pods by a Service selector through a label index, the Services that
Ingresses and webhooks route to, serving endpoints, K3s servicelb's objects, object ages) are
shared by the network rule modules (endpoints, loadbalancers, dns, services, ingress, webhooks)
and a few others. This module registers no check.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext
from k3sops.domain.snapshot import ClusterSnapshot, Obj, get, meta, parse_time

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DNS_NAMESPACE = "kube-system"
DNS_DEPLOYMENTS = ("coredns", "kube-dns")
DNS_SERVICE = "kube-dns"
POOLS = "ipaddresspools.metallb.io"
SERVICELB_PREFIX = "svclb-"
SERVICELB_SVC_LABEL = "svccontroller.k3s.cattle.io/svcname"
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
POD_GRACE_SECONDS = 300
"""Pods younger than this may simply be starting (probes, image pulls)."""
INGRESS_GRACE_SECONDS = 0
"""References from an Ingress are judged at once: a missing Service or port fails requests
from the first moment (kept as a named constant for the lab's scenario wait)."""


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
