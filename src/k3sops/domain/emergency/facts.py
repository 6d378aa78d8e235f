"""What a procedure step reads (:class:`Facts`), its spec, and helpers every step shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from k3sops.domain.dnsprobe import DnsProbeResult
from k3sops.domain.emergency.models import CertInfo, CheckResult, Fact, Probe, Status
from k3sops.domain.findings import Source
from k3sops.domain.metrics import InstantResult
from k3sops.domain.snapshot import ClusterSnapshot, Obj, get, parse_time

RECENT_EVENTS_SECONDS = 3600
"""Warning events newer than this are "recent"."""


@dataclass
class Facts:
    """What the service gathered so far; a step reads only the facts it declared."""

    now: datetime
    app: str | None = None
    namespace: str | None = None
    probes: dict[str, Probe] = field(default_factory=dict)
    snapshot: ClusterSnapshot | None = None
    sources: list[Source] = field(default_factory=list)
    etcd_enabled: bool = True
    etcd: dict[str, InstantResult] = field(default_factory=dict)
    etcd_error: str | None = None
    cert: CertInfo | None = None
    cert_error: str | None = None
    logs: dict[str, list[str]] = field(default_factory=dict)
    dns: DnsProbeResult | None = None
    dns_requested: bool = False

    def kube_ok(self) -> bool:
        """Whether the API objects could be read."""
        return self.snapshot is not None and bool(self.snapshot.objects) and all(
            s.ok for s in self.sources if s.name == "kubernetes")

    def kube_error(self) -> str:
        """Why the API objects are missing."""
        return next((s.error or "unreachable" for s in self.sources
                     if s.name == "kubernetes" and not s.ok), "not read")


StepFn = Callable[[Facts], CheckResult]


@dataclass(frozen=True)
class StepSpec:
    """One step of a procedure: its id, title, the facts it needs and its check."""

    id: str
    title: str
    needs: tuple[Fact, ...]
    fn: StepFn


def verdict(spec_id: str, title: str, status: Status, detail: str, **kw: Any) -> CheckResult:
    """What step ``spec_id`` found (the keyword arguments are :class:`CheckResult` fields)."""
    return CheckResult(step=spec_id, title=title, status=status, detail=detail, **kw)


def unknown_kube(spec_id: str, title: str, facts: Facts) -> CheckResult:
    """The step cannot judge: the cluster's objects could not be read."""
    return verdict(spec_id, title, "unknown",
                   f"cannot read the cluster's objects: {facts.kube_error()}",
                   next_step="restore API access first (see the API server checks)",
                   runbook="emergency-cluster-down")


def recent_warnings(snapshot: ClusterSnapshot, now: datetime, keep: Callable[[Obj], bool],
                    limit: int = 10) -> list[dict[str, Any]]:
    """Warning events newer than RECENT_EVENTS_SECONDS about objects ``keep`` accepts."""
    out = []
    for ev in snapshot.get("events"):
        if ev.get("type") != "Warning" or not keep(ev):
            continue
        last = ev.get("lastTimestamp") or get(ev, "series", "lastObservedTime") \
            or ev.get("eventTime")
        when = parse_time(last)
        if when is not None and (now - when).total_seconds() > RECENT_EVENTS_SECONDS:
            continue
        inv = ev.get("involvedObject") or {}
        ns = f"{inv.get('namespace')}/" if inv.get("namespace") else ""
        out.append({"last": last, "reason": ev.get("reason"), "message": ev.get("message"),
                    "count": ev.get("count"),
                    "object": f"{inv.get('kind')}/{ns}{inv.get('name')}"})
    out.sort(key=lambda e: str(e.get("last") or ""), reverse=True)
    return out[:limit]

