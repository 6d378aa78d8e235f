"""Areas walked from many start objects: the network, the storage, the whole cluster."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from k3sops.config.schema import Platform
from k3sops.domain import index as ix
from k3sops.domain.diagnose.model import Diagnosis, RootCause
from k3sops.domain.diagnose.objects import attach_logs, find, rollout_state
from k3sops.domain.diagnose.walk import (
    HEALTHY_SHOWN,
    NodeKey,
    context,
    fault_findings,
    healthy_summary,
    node_label,
    node_ref,
    relevant_not_evaluated,
    walker_for,
)
from k3sops.domain.findings import (
    SEVERITY_RANK,
    Finding,
    ResourceRef,
    Severity,
)
from k3sops.domain.snapshot import (
    CLUSTER_SCOPED,
    KIND_NAMES,
    PLURALS,
    ClusterSnapshot,
    get,
    meta,
)


def _area(snapshot: ClusterSnapshot, d: Diagnosis, starts: Sequence[NodeKey],
          platform: Platform | None) -> None:
    """Walk several start objects: chains of the broken ones, healthy ones counted."""
    w = walker_for(snapshot, platform)
    healthy = 0
    for key in starts:
        w.collect(d, key)
        if w.subtree_failing(key, set()):
            w.chain(d, key)
            d.roots += w.roots_from(key)
        else:
            healthy += 1
            if healthy <= HEALTHY_SHOWN * 2:
                d.step(node_label(key), True, healthy_summary(snapshot, key, w.obj(key)), 0,
                       node_ref(key))
    if healthy > HEALTHY_SHOWN * 2:
        d.step(f"… {healthy - HEALTHY_SHOWN * 2} more", True, "healthy")
    d.not_evaluated = relevant_not_evaluated(w, starts)


def _keys(snapshot: ClusterSnapshot, kind: str, namespace: str | None,
          keep: Any = None) -> list[NodeKey]:
    if kind not in snapshot.objects:
        return []
    out = []
    for o in snapshot.objects[kind]:
        ns, name = meta(o)
        if namespace is not None and kind not in CLUSTER_SCOPED and ns != namespace:
            continue
        if keep is None or keep(o):
            out.append((kind, None if kind in CLUSTER_SCOPED else ns, name))
    return out


def _unread_step(d: Diagnosis, snapshot: ClusterSnapshot, kinds: Iterable[str]) -> None:
    for kind in kinds:
        why = snapshot.unread(kind)
        if why:
            d.step(f"{kind}", False, f"could not read {kind} ({why}): not examined")
            d.roots.append(RootCause(resource=ResourceRef(kind=KIND_NAMES.get(kind, kind),
                                                          name="*"),
                                     determined=False, missing=f"could not read {kind} ({why})",
                                     message=f"{kind} could not be read ({why}): problems there "
                                             "could not be looked for"))


def diagnose_network(snapshot: ClusterSnapshot, namespace: str | None = None,
                     platform: Platform | None = None) -> Diagnosis:
    """Ingress → Service → EndpointSlices → pods; LoadBalancers; webhooks; DNS."""
    d = Diagnosis(context(snapshot, platform))
    _unread_step(d, snapshot, ("ingresses", "services", "endpointslices"))
    starts = [*_keys(snapshot, "ingresses", namespace),
              *_keys(snapshot, "services", namespace,
                     lambda s: get(s, "spec", "type") == "LoadBalancer"),
              *_keys(snapshot, "services", namespace),
              *(_keys(snapshot, "validatingwebhookconfigurations", None)
                + _keys(snapshot, "mutatingwebhookconfigurations", None)
                + _keys(snapshot, "apiservices", None,
                        lambda a: bool(get(a, "spec", "service")))
                if namespace is None else [])]
    if namespace is None or namespace == "kube-system":
        starts += [k for k in _keys(snapshot, "deployments", "kube-system")
                   if k[2] == "coredns"]
    _area(snapshot, d, list(dict.fromkeys(starts)), platform)
    _dns_steps(d, snapshot)
    return d


def _dns_steps(d: Diagnosis, snapshot: ClusterSnapshot) -> None:
    if "deployments" in snapshot.objects:
        dns = find(snapshot, "deployments", "coredns", "kube-system")
        if dns is None:
            d.step("CoreDNS", False, "deployment kube-system/coredns not found")
        else:
            r = rollout_state(dns)
            d.step("CoreDNS", int(r["available"] or 0) > 0,
                   f"{r['available']}/{r['desired']} available")
    if "endpointslices" in snapshot.objects:
        eps = ix.ready_endpoints(ix.slices_by_service(snapshot).get(
            ("kube-system", "kube-dns"), []))
        d.step("kube-dns endpoints", bool(eps), f"{len(eps)} ready")


def diagnose_storage(snapshot: ClusterSnapshot, namespace: str | None = None,
                     platform: Platform | None = None) -> Diagnosis:
    """PVCs → StorageClass/PV → Longhorn volume; PVs; attachments."""
    d = Diagnosis(context(snapshot, platform))
    _unread_step(d, snapshot, ("persistentvolumeclaims", "storageclasses"))
    if "storageclasses" in snapshot.objects:
        classes = {meta(c)[1]: c for c in snapshot.objects["storageclasses"]}
        defaults = [n for n, c in classes.items() if get(
            c, "metadata", "annotations", "storageclass.kubernetes.io/is-default-class")
            == "true"]
        d.step("StorageClasses", bool(classes) and len(defaults) <= 1,
               ", ".join(classes) + f"; default: {', '.join(defaults) or 'none'}")
    starts = [*_keys(snapshot, "persistentvolumeclaims", namespace)]
    if namespace is None:
        starts += _keys(snapshot, "persistentvolumes", None)
        starts += _keys(snapshot, "volumes.longhorn.io", None)
        starts += _keys(snapshot, "volumeattachments", None)
    else:
        starts += [k for k in _keys(snapshot, "volumes.longhorn.io", None)
                   if get(ix.find(snapshot, "volumes.longhorn.io", k[1], k[2]),
                          "status", "kubernetesStatus", "namespace") == namespace]
    _area(snapshot, d, starts, platform)
    return d


def diagnose_cluster(snapshot: ClusterSnapshot, namespace: str | None = None,
                     previous_logs: Mapping[str, Mapping[str, list[str]]] | None = None,
                     platform: Platform | None = None) -> Diagnosis:
    """Every object with a problem, grouped into chains that end at their roots."""
    d = Diagnosis(context(snapshot, platform))
    w = walker_for(snapshot, platform)
    failing: list[NodeKey] = []
    for f in fault_findings(w.result.findings):
        r = f.resource
        plural = PLURALS.get(r.kind)
        if plural is None:
            continue
        if namespace is not None and r.namespace not in (namespace,) and not (
                r.namespace is None and plural == "namespaces" and r.name == namespace):
            continue
        failing.append((plural, None if plural in CLUSTER_SCOPED else r.namespace, r.name))
    failing = list(dict.fromkeys(failing))
    below: set[NodeKey] = set()
    for key in failing:
        below |= w.reachable(key)
    tops = [k for k in failing if k not in below] or failing
    for key in tops:
        w.chain(d, key)
        w.collect(d, key)
        d.roots += w.roots_from(key)
    d.findings.extend(f for f in w.result.findings
                      if namespace is None or f.resource.namespace in (None, namespace))
    attach_logs(d, previous_logs)
    d.not_evaluated = list(w.result.not_evaluated)
    return d


def by_severity(findings: Iterable[Finding], at_least: Severity = "warning") -> list[Finding]:
    """Findings at or above a severity."""
    floor = SEVERITY_RANK[at_least]
    return [f for f in findings if SEVERITY_RANK[f.severity] >= floor]
