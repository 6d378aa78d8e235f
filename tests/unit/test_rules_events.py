"""The catch-all: repeated Warning events no other check explains (dev lab capture)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from k3sops.domain import checks as registry
from k3sops.domain import engine
from k3sops.domain.checks import CheckContext
from k3sops.domain.snapshot import ClusterSnapshot, meta

pytestmark = pytest.mark.unit
DATA = Path(__file__).parent.parent / "data" / "check-dev-lab.json"


def _snap(extra_events: list[dict[str, Any]], drop: tuple[str, ...] = ()) -> ClusterSnapshot:
    raw = json.loads(DATA.read_text())
    objects = {k: v for k, v in copy.deepcopy(raw["objects"]).items() if k not in drop}
    objects["events"] = [*objects.get("events", []), *extra_events]
    now = datetime.fromisoformat(raw["captured_at"].replace("Z", "+00:00"))
    errors = {k: "forbidden" for k in drop}
    return ClusterSnapshot(now=now, objects=objects, errors=errors)


def _event(obj: dict[str, Any], kind: str, reason: str, count: int, at: datetime,
           uid: str | None = None) -> dict[str, Any]:
    ns, name = meta(obj)
    return {"metadata": {"name": f"{name}.x", "namespace": ns or "default"}, "type": "Warning",
            "reason": reason, "message": f"{reason} happened", "count": count,
            "lastTimestamp": at.isoformat().replace("+00:00", "Z"),
            "involvedObject": {"kind": kind, "namespace": ns, "name": name,
                               "uid": uid or obj["metadata"].get("uid")}}


RULES = ("events-warning", "pod-crashloop", "pod-not-ready", "deployment-unavailable",
         "service-no-endpoints", "storageclass-missing", "pvc-pending")
"""The capture predates several kinds; these rules read only kinds it has."""


def _run(snap: ClusterSnapshot) -> engine.EngineResult:
    ctx = CheckContext(snapshot=snap, platform=None, period="daily")
    return engine.evaluate(ctx, [registry.REGISTRY[r] for r in RULES])


def test_repeated_warning_on_an_otherwise_healthy_object_is_reported() -> None:
    base = _snap([])
    healthy = next(p for p in base.get("pods") if meta(p)[0] == "production")
    svc = next(s for s in base.get("services") if meta(s) == ("production", "web"))
    at = base.now - timedelta(minutes=2)
    snap = _snap([_event(healthy, "Pod", "FailedMount", 6, at),
                  _event(svc, "Service", "FailedToUpdateEndpoint", 3, at),
                  _event(healthy, "Pod", "Rebooted", 9, base.now - timedelta(hours=1)),
                  _event(healthy, "Pod", "Stale", 9, at, uid="another-incarnation")])
    found = {(f.resource.kind, f.resource.name, f.severity, f.evidence["reason"])
             for f in _run(snap).findings if f.check == "events-warning"}
    assert (("Pod", meta(healthy)[1], "warning", "FailedMount") in found)
    assert ("Service", "web", "info", "FailedToUpdateEndpoint") in found
    assert not any(r in ("Rebooted", "Stale") for *_, r in found)  # old / another object


def test_events_about_reported_objects_or_their_owners_are_not_repeated() -> None:
    base = _snap([])
    crashing = next(p for p in base.get("pods") if meta(p)[1].startswith("checkout-"))
    at = base.now - timedelta(minutes=1)
    result = _run(_snap([_event(crashing, "Pod", "BackOff", 40, at)]))
    assert not [f for f in result.findings if f.check == "events-warning"
                and f.resource.name == meta(crashing)[1]]


def test_silent_where_a_check_about_the_kind_was_not_evaluated() -> None:
    base = _snap([])
    pvc = next(c for c in base.get("persistentvolumeclaims") if meta(c)[1] == "data-search")
    at = base.now - timedelta(minutes=1)
    event = _event(pvc, "PersistentVolumeClaim", "ProvisioningFailed", 8, at)
    full = _run(_snap([event]))
    limited = _run(_snap([event], drop=("storageclasses",)))
    assert "storageclass-missing" in limited.skipped
    assert {f.key for f in limited.findings} <= {f.key for f in full.findings}
