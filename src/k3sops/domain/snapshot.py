"""ClusterSnapshot: everything the checks read, gathered once (pure data, no I/O here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from k3sops.domain.metrics import InstantResult

Obj = Mapping[str, Any]

KINDS: tuple[str, ...] = (
    "nodes", "namespaces", "pods", "deployments", "statefulsets", "daemonsets", "replicasets",
    "services", "endpointslices", "ingresses", "persistentvolumeclaims",
    "persistentvolumes", "storageclasses", "events", "jobs",
)
"""Core kinds, one paginated LIST each."""

CUSTOM_KINDS: tuple[str, ...] = (
    "etcdsnapshotfiles.k3s.cattle.io", "backups.longhorn.io", "volumes.longhorn.io",
    "replicas.longhorn.io",
    "applications.argoproj.io", "ipaddresspools.metallb.io", "l2advertisements.metallb.io",
)
"""Custom kinds read when their CRD is installed (absent CRD: the kind is simply missing)."""


@dataclass(frozen=True)
class ClusterSnapshot:
    """Raw API objects by plural kind name, plus Prometheus answers and Alertmanager alerts.

    A kind that could not be read is absent from ``objects`` and named in ``errors``; a custom
    kind whose CRD is not installed is absent from both (nothing to check).
    """

    now: datetime
    objects: Mapping[str, list[Obj]] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, InstantResult] = field(default_factory=dict)
    metric_errors: Mapping[str, str] = field(default_factory=dict)
    alerts: list[Obj] | None = None
    server_version: str | None = None

    def get(self, kind: str) -> list[Obj]:
        """Objects of a kind (empty when absent)."""
        return list(self.objects.get(kind, []))

    def has(self, kind: str) -> bool:
        """Whether the kind was read (CRD installed and LIST succeeded)."""
        return kind in self.objects

    def metric(self, name: str) -> InstantResult | None:
        """A named Prometheus answer, if the query succeeded."""
        return self.metrics.get(name)


def get(obj: Obj | None, *path: str, default: Any = None) -> Any:
    """Walk nested mappings; ``default`` when any step is missing."""
    cur: Any = obj
    for p in path:
        if not isinstance(cur, Mapping):
            return default
        cur = cur.get(p)
        if cur is None:
            return default
    return cur


def meta(obj: Obj) -> tuple[str | None, str]:
    """(namespace, name) of an object."""
    return get(obj, "metadata", "namespace"), str(get(obj, "metadata", "name", default=""))


def conditions(obj: Obj) -> dict[str, Mapping[str, Any]]:
    """status.conditions by type."""
    return {str(c.get("type")): c for c in get(obj, "status", "conditions", default=[]) or []
            if isinstance(c, Mapping)}


def events_for(snapshot: ClusterSnapshot, kind: str, namespace: str | None, name: str,
               limit: int = 5) -> list[dict[str, Any]]:
    """The newest events about an object, as evidence (reason, message, count, last seen)."""
    out = []
    for ev in snapshot.get("events"):
        inv = get(ev, "involvedObject", default={}) or {}
        if inv.get("kind") == kind and inv.get("name") == name and (
                namespace is None or inv.get("namespace") == namespace):
            out.append({"type": ev.get("type"), "reason": ev.get("reason"),
                        "message": ev.get("message"), "count": ev.get("count"),
                        "last": ev.get("lastTimestamp") or get(ev, "series", "lastObservedTime")
                        or ev.get("eventTime")})
    out.sort(key=lambda e: str(e.get("last") or ""), reverse=True)
    return out[:limit]


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from the API (``Z`` suffix) as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
