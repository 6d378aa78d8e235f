"""ClusterSnapshot: everything the checks read, gathered once (pure data, no I/O here).

Which kinds exist and where the API serves them is declared here (:data:`CORE_PATHS`,
:data:`CUSTOM_PATHS`): the collector LISTs exactly the kinds the selected rules declare, and the
engine knows, for every kind, whether it was read, could not be read (and why), or does not
exist in this cluster (a custom kind whose CRD is not installed: nothing of it to judge).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from k3sops.domain.metrics import InstantResult

# The one RFC 3339 parser, re-exported (the alias marks it so for mypy --strict): the check
# modules import it from here beside get/meta.
from k3sops.timeparse import parse_time as parse_time  # noqa: PLC0414

Obj = Mapping[str, Any]

CORE_PATHS: dict[str, str] = {
    "nodes": "/api/v1/nodes",
    "namespaces": "/api/v1/namespaces",
    "pods": "/api/v1/pods",
    "services": "/api/v1/services",
    "persistentvolumeclaims": "/api/v1/persistentvolumeclaims",
    "persistentvolumes": "/api/v1/persistentvolumes",
    "events": "/api/v1/events",
    "configmaps": "/api/v1/configmaps",
    "secrets": "/api/v1/secrets",
    "serviceaccounts": "/api/v1/serviceaccounts",
    "resourcequotas": "/api/v1/resourcequotas",
    "deployments": "/apis/apps/v1/deployments",
    "statefulsets": "/apis/apps/v1/statefulsets",
    "daemonsets": "/apis/apps/v1/daemonsets",
    "replicasets": "/apis/apps/v1/replicasets",
    "jobs": "/apis/batch/v1/jobs",
    "cronjobs": "/apis/batch/v1/cronjobs",
    "horizontalpodautoscalers": "/apis/autoscaling/v2/horizontalpodautoscalers",
    "poddisruptionbudgets": "/apis/policy/v1/poddisruptionbudgets",
    "endpointslices": "/apis/discovery.k8s.io/v1/endpointslices",
    "ingresses": "/apis/networking.k8s.io/v1/ingresses",
    "ingressclasses": "/apis/networking.k8s.io/v1/ingressclasses",
    "networkpolicies": "/apis/networking.k8s.io/v1/networkpolicies",
    "storageclasses": "/apis/storage.k8s.io/v1/storageclasses",
    "volumeattachments": "/apis/storage.k8s.io/v1/volumeattachments",
    "priorityclasses": "/apis/scheduling.k8s.io/v1/priorityclasses",
    "roles": "/apis/rbac.authorization.k8s.io/v1/roles",
    "rolebindings": "/apis/rbac.authorization.k8s.io/v1/rolebindings",
    "clusterroles": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "clusterrolebindings": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "validatingwebhookconfigurations":
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
    "mutatingwebhookconfigurations":
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
    "apiservices": "/apis/apiregistration.k8s.io/v1/apiservices",
}
"""Kinds every cluster serves, by plural name: one paginated LIST each."""

CUSTOM_PATHS: dict[str, str] = {
    "etcdsnapshotfiles.k3s.cattle.io": "/apis/k3s.cattle.io/v1/etcdsnapshotfiles",
    "backups.longhorn.io": "/apis/longhorn.io/v1beta2/backups",
    "volumes.longhorn.io": "/apis/longhorn.io/v1beta2/volumes",
    "replicas.longhorn.io": "/apis/longhorn.io/v1beta2/replicas",
    "applications.argoproj.io": "/apis/argoproj.io/v1alpha1/applications",
    "ipaddresspools.metallb.io": "/apis/metallb.io/v1beta1/ipaddresspools",
    "l2advertisements.metallb.io": "/apis/metallb.io/v1beta1/l2advertisements",
}
"""Custom kinds, read when their CRD is installed (no CRD: nothing of that kind exists)."""

KINDS: tuple[str, ...] = tuple(CORE_PATHS)
CUSTOM_KINDS: tuple[str, ...] = tuple(CUSTOM_PATHS)

KIND_NAMES: dict[str, str] = {
    "nodes": "Node", "namespaces": "Namespace", "pods": "Pod", "services": "Service",
    "persistentvolumeclaims": "PersistentVolumeClaim", "persistentvolumes": "PersistentVolume",
    "events": "Event", "configmaps": "ConfigMap", "secrets": "Secret",
    "serviceaccounts": "ServiceAccount", "resourcequotas": "ResourceQuota",
    "deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet",
    "replicasets": "ReplicaSet", "jobs": "Job", "cronjobs": "CronJob",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "poddisruptionbudgets": "PodDisruptionBudget", "endpointslices": "EndpointSlice",
    "ingresses": "Ingress", "ingressclasses": "IngressClass", "networkpolicies": "NetworkPolicy",
    "storageclasses": "StorageClass", "volumeattachments": "VolumeAttachment",
    "priorityclasses": "PriorityClass", "roles": "Role", "rolebindings": "RoleBinding",
    "clusterroles": "ClusterRole", "clusterrolebindings": "ClusterRoleBinding",
    "validatingwebhookconfigurations": "ValidatingWebhookConfiguration",
    "mutatingwebhookconfigurations": "MutatingWebhookConfiguration",
    "apiservices": "APIService",
    "etcdsnapshotfiles.k3s.cattle.io": "ETCDSnapshotFile", "backups.longhorn.io": "Backup",
    "volumes.longhorn.io": "Volume", "replicas.longhorn.io": "Replica",
    "applications.argoproj.io": "Application", "ipaddresspools.metallb.io": "IPAddressPool",
    "l2advertisements.metallb.io": "L2Advertisement",
}
"""Plural kind name -> the Kind a finding names."""

PLURALS: dict[str, str] = {v: k for k, v in KIND_NAMES.items()}
"""Kind -> plural name (``Pod`` -> ``pods``)."""

CLUSTER_SCOPED: frozenset[str] = frozenset({
    "nodes", "namespaces", "persistentvolumes", "storageclasses", "volumeattachments",
    "priorityclasses", "clusterroles", "clusterrolebindings", "ingressclasses",
    "validatingwebhookconfigurations", "mutatingwebhookconfigurations", "apiservices"})

ALIASES: dict[str, str] = {
    "po": "pods", "pod": "pods", "no": "nodes", "node": "nodes", "ns": "namespaces",
    "namespace": "namespaces", "svc": "services", "service": "services",
    "pvc": "persistentvolumeclaims", "pv": "persistentvolumes", "cm": "configmaps",
    "sa": "serviceaccounts", "quota": "resourcequotas", "deploy": "deployments",
    "sts": "statefulsets", "ds": "daemonsets", "rs": "replicasets", "cj": "cronjobs",
    "hpa": "horizontalpodautoscalers", "pdb": "poddisruptionbudgets", "ing": "ingresses",
    "netpol": "networkpolicies", "sc": "storageclasses", "pc": "priorityclasses",
}
"""kubectl's short names (and singulars) for the kinds a person diagnoses."""


def plural_of(kind: str) -> str | None:
    """The plural kind name for a user's word (``pod``, ``Pod``, ``po``, ``pods``)."""
    low = kind.lower()
    if low in KIND_NAMES:
        return low
    if low in ALIASES:
        return ALIASES[low]
    for plural, name in KIND_NAMES.items():
        if name.lower() == low or plural.split(".")[0] == low or (
                name.lower() + "s") == low:
            return plural
    return None


class UndeclaredRead(Exception):
    """A rule read a kind it did not declare in ``reads``/``uses`` (a bug in the rule)."""


@dataclass(frozen=True)
class ClusterSnapshot:
    """Raw API objects by plural kind name, plus Prometheus answers and Alertmanager alerts.

    A kind that could not be read is absent from ``objects`` and named in ``errors``; a custom
    kind whose CRD is not installed is absent from both (nothing to check). A core kind absent
    from both was not collected (a rule that needs it is not evaluated).

    ``allowed`` (set by the engine for each rule) restricts :meth:`get` to the kinds the rule
    declared; ``cache`` holds indexes computed once and shared by every rule of a run.
    """

    now: datetime
    objects: Mapping[str, Sequence[Obj]] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, InstantResult] = field(default_factory=dict)
    metric_errors: Mapping[str, str] = field(default_factory=dict)
    alerts: list[Obj] | None = None
    server_version: str | None = None
    allowed: frozenset[str] | None = field(default=None, compare=False)
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def get(self, kind: str) -> Sequence[Obj]:
        """Objects of a kind (empty when absent); the list itself, not a copy: do not modify."""
        if self.allowed is not None and kind not in self.allowed:
            raise UndeclaredRead(f"kind {kind!r} read without being declared "
                                 f"(declared: {', '.join(sorted(self.allowed))})")
        return self.objects.get(kind, ())

    def has(self, kind: str) -> bool:
        """Whether the kind was read (CRD installed and LIST succeeded)."""
        return kind in self.objects

    def unread(self, kind: str) -> str | None:
        """Why ``kind`` could not be read, or None when it was read (or does not exist here).

        A custom kind whose CRD is not installed is not "unread": there is nothing of it.
        """
        if kind in self.errors:
            return self.errors[kind]
        if kind in self.objects or kind in CUSTOM_PATHS:
            return None
        return "not collected"

    def metric(self, name: str) -> InstantResult | None:
        """A named Prometheus answer, if the query succeeded."""
        return self.metrics.get(name)

    def scoped(self, kinds: frozenset[str] | None) -> ClusterSnapshot:
        """The same snapshot (same cache) restricted to ``kinds`` (None: unrestricted)."""
        return replace(self, allowed=kinds, cache=self.cache)

    def cached(self, key: str, build: Any) -> Any:
        """``build()`` once per snapshot under ``key`` (indexes shared by all rules)."""
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]


def get(obj: Obj | None, *path: str, default: Any = None) -> Any:
    """Walk nested mappings; ``default`` when any step is missing."""
    cur: Any = obj
    for p in path:
        # EAFP rather than isinstance(Mapping): an ABC check per step costs more than the walk
        # itself on tens of thousands of objects; a list or a string has no .get either.
        try:
            cur = cur.get(p)
        except AttributeError:
            return default
        if cur is None:
            return default
    return cur


def meta(obj: Obj) -> tuple[str | None, str]:
    """(namespace, name) of an object."""
    m = obj.get("metadata") or {}
    return m.get("namespace"), str(m.get("name") or "")


def conditions(obj: Obj) -> dict[str, Mapping[str, Any]]:
    """status.conditions by type."""
    return {str(c.get("type")): c for c in get(obj, "status", "conditions", default=[]) or []
            if isinstance(c, Mapping)}


def _event_time(ev: Obj) -> str:
    return str(ev.get("lastTimestamp") or get(ev, "series", "lastObservedTime")
               or ev.get("eventTime") or get(ev, "metadata", "creationTimestamp") or "")


def _events_index(snapshot: ClusterSnapshot) -> dict[tuple[Any, Any, Any], list[Obj]]:
    out: dict[tuple[Any, Any, Any], list[Obj]] = defaultdict(list)
    for ev in snapshot.objects.get("events", ()):
        inv = ev.get("involvedObject") or ev.get("regarding") or {}
        out[(inv.get("kind"), inv.get("namespace") or None, inv.get("name"))].append(ev)
    for evs in out.values():
        evs.sort(key=_event_time, reverse=True)
    return out


def raw_events(snapshot: ClusterSnapshot, kind: str, namespace: str | None,
               name: str) -> list[Obj]:
    """The events about one object, newest first (indexed once per snapshot)."""
    snapshot.get("events")  # declared-read check: a rule must say it reads events
    index: dict[tuple[Any, Any, Any], list[Obj]] = snapshot.cached(
        "events", lambda: _events_index(snapshot))
    found = index.get((kind, namespace or None, name))
    if found is None and namespace is None:
        # cluster-scoped objects: some emitters set involvedObject.namespace anyway
        by_name: dict[tuple[Any, Any], list[Obj]] = snapshot.cached("events_by_name", lambda: {
            (k[0], k[2]): v for k, v in sorted(index.items(), key=lambda kv: str(kv[0][1]))})
        found = by_name.get((kind, name))
    return found or []


def events_for(snapshot: ClusterSnapshot, kind: str, namespace: str | None, name: str,
               limit: int = 5) -> list[dict[str, Any]]:
    """The newest events about an object, as evidence (reason, message, count, last seen)."""
    return [{"type": ev.get("type"), "reason": ev.get("reason"),
             "message": ev.get("message") or ev.get("note"), "count": ev.get("count"),
             "last": _event_time(ev) or None}
            for ev in raw_events(snapshot, kind, namespace, name)[:limit]]
