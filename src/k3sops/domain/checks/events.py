"""Repeated Warning events on an object no other check explains: the catch-all.

Kubernetes reports most trouble as Warning events before (or instead of) a status field:
FailedMount, FailedAttachVolume, FailedCreatePodSandBox, NetworkNotReady, ProvisioningFailed,
FailedToUpdateEndpoint, Rebooted, SystemOOM... The specific checks read statuses; this one
names what they do not cover, so that a fault no rule was written for still shows up. It is
quiet by construction: only live objects, only events seen several times recently, and the
engine drops it wherever another check already reports the object or its owner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding, Severity
from k3sops.domain.snapshot import PLURALS, get, parse_time

CHECK_ID = "events-warning"
WARNING_COUNT = 5
"""Occurrences within :data:`RECENT_SECONDS` from which the event is a warning."""
INFO_COUNT = 3
RECENT_SECONDS = 600
KINDS = ("pods", "deployments", "replicasets", "statefulsets", "daemonsets", "jobs",
         "cronjobs", "services", "persistentvolumeclaims", "persistentvolumes", "nodes",
         "ingresses", "horizontalpodautoscalers", "poddisruptionbudgets", "namespaces")
"""Kinds whose objects are checked to still exist (events outlive their objects)."""


def _count(ev: Mapping[str, Any]) -> int:
    return int(ev.get("count") or get(ev, "series", "count") or 1)


def _last(ev: Mapping[str, Any]) -> str | None:
    value = (ev.get("lastTimestamp") or get(ev, "series", "lastObservedTime")
             or ev.get("eventTime") or get(ev, "metadata", "creationTimestamp"))
    return str(value) if value else None


@check(CHECK_ID, "No repeated Warning events left unexplained", reads=("events",),
       uses=KINDS)
def events_warning(ctx: CheckContext) -> list[Finding]:
    """Live objects with a Warning event repeated recently (5+ times in 10 min: warning)."""
    now = ctx.snapshot.now
    grouped: dict[tuple[str, str | None, str, str], list[Mapping[str, Any]]] = {}
    for ev in ctx.snapshot.get("events"):
        if ev.get("type") != "Warning":
            continue
        inv = ev.get("involvedObject") or ev.get("regarding") or {}
        kind, name = str(inv.get("kind") or ""), str(inv.get("name") or "")
        plural = PLURALS.get(kind)
        if plural not in KINDS or not name or ctx.unread(plural):
            continue  # an object k3sops cannot see: it may be long gone
        ns = None if plural in ("persistentvolumes", "nodes", "namespaces") else (
            inv.get("namespace") or None)
        obj = ix.find(ctx.snapshot, plural, ns, name)
        if obj is None or get(obj, "metadata", "uid") not in (None, inv.get("uid"), ""):
            continue  # gone, or a new object of the same name
        at = parse_time(_last(ev))
        if at is None or (now - at).total_seconds() > RECENT_SECONDS:
            continue
        grouped.setdefault((kind, ns, name, str(ev.get("reason"))), []).append(ev)
    out = []
    for (kind, ns, name, reason), evs in sorted(grouped.items(), key=lambda kv: str(kv[0])):
        count = sum(_count(e) for e in evs)
        if count < INFO_COUNT:
            continue
        severity: Severity = "warning" if count >= WARNING_COUNT else "info"
        newest = max(evs, key=lambda e: str(_last(e) or ""))
        message = str(newest.get("message") or newest.get("note") or "").strip()
        obj = ix.find(ctx.snapshot, PLURALS[kind], ns, name) or {}
        owners = [o for o in (ix.controller_of(obj), ix.top_owner(ctx.snapshot, obj)) if o]
        where = f"{ns}/{name}" if ns else name
        out.append(ctx.finding(
            CHECK_ID, severity, kind, ns, name,
            f"{kind} {where}: {count}× {reason} in the last {RECENT_SECONDS // 60} minutes"
            + (f": {message[:300]}" if message else ""), CHECK_ID,
            {"reason": reason, "count": count, "last": _last(newest), "message": message,
             "source": get(newest, "source", "component") or newest.get("reportingController"),
             "owners": [{"kind": k, "name": n} for k, n in dict.fromkeys(owners)]}))
    return out
