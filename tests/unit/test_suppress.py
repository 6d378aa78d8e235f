"""Suppressions (platform.yaml) and what a check keeps when a rule could not be evaluated.

Findings come from the engine run on the dev lab's captured objects
(``tests/data/check-dev-lab.json``), as `k3sops check` makes them.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from k3sops.adapters.store import SqliteStore
from k3sops.config import PlatformConfigError, parse_platform
from k3sops.domain import checks as registry
from k3sops.domain import engine, suppress
from k3sops.domain.checks import CheckContext
from k3sops.domain.findings import CheckReport, Summary
from k3sops.domain.snapshot import ClusterSnapshot
from k3sops.services.check import compare

pytestmark = pytest.mark.unit
DATA = Path(__file__).parent.parent / "data" / "check-dev-lab.json"
BASE = """
name: lab
environments:
  development: {namespaces: [development]}
"""


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA.read_text())
    return data


def _snap(raw: dict[str, Any], drop: tuple[str, ...] = (),
          errors: dict[str, str] | None = None) -> ClusterSnapshot:
    objects = {k: v for k, v in raw["objects"].items() if k not in drop}
    return ClusterSnapshot(now=datetime.fromisoformat(raw["captured_at"].replace("Z", "+00:00")),
                           objects=objects, errors=errors or {})


def _run(snap: ClusterSnapshot, text: str = BASE) -> engine.EngineResult:
    platform = parse_platform(text)
    ctx = CheckContext(snapshot=snap, platform=platform, period="weekly")
    return engine.evaluate(ctx, registry.selected("weekly"))


def test_a_suppression_hides_matching_findings_and_keeps_them_listed(raw: dict[str, Any]) -> None:
    snap = _snap(raw)
    found = _run(snap).findings
    crash = [f for f in found if f.check == "pod-crashloop"]
    assert len(crash) >= 3
    platform = parse_platform(BASE + """
suppressions:
  - check: pod-crash*
    namespace: t-*
    name: log-shipper-.*
    reason: the log shipper is being replaced (TICKET-1)
    expires: 2099-01-01
""")
    applied = suppress.apply(found, platform.suppressions, snap, date(2026, 11, 26))
    hidden = {f.resource.name for f in applied.suppressed}
    assert hidden and all(n.startswith("log-shipper-") for n in hidden)
    assert all(f.evidence["suppression"]["reason"].startswith("the log shipper")
               for f in applied.suppressed)
    assert len(applied.findings) + len(applied.suppressed) == len(found)
    assert not any(f.resource.name.startswith("log-shipper-") and f.check == "pod-crashloop"
                   for f in applied.findings)


def test_a_suppression_can_regrade_instead_of_hide(raw: dict[str, Any]) -> None:
    snap = _snap(raw)
    found = _run(snap).findings
    platform = parse_platform(BASE + """
suppressions:
  - {check: pod-crashloop, kind: Pod, labels: {app.kubernetes.io/name: checkout},
     severity: info, reason: known flaky in development}
""")
    applied = suppress.apply(found, platform.suppressions, snap, date(2026, 11, 26))
    [checkout] = [f for f in applied.findings if f.check == "pod-crashloop"
                  and f.resource.name.startswith("checkout-")]
    assert checkout.severity == "info"
    assert checkout.evidence["suppression"]["original_severity"] == "critical"
    assert not applied.suppressed


def test_an_expired_suppression_stops_applying_and_is_reported(raw: dict[str, Any]) -> None:
    text = BASE + """
suppressions:
  - {check: pod-crashloop, reason: old, expires: 2026-01-31}
"""
    snap = _snap(raw)
    result = _run(snap, text)
    [expired] = [f for f in result.findings if f.check == "suppression-expired"]
    assert expired.severity == "warning" and "2026-01-31" in expired.message
    applied = suppress.apply(result.findings, parse_platform(text).suppressions, snap,
                             snap.now.date())
    assert not applied.suppressed


@pytest.mark.parametrize(("entry", "problem"), [
    ("{check: x, name: '(', reason: r}", "is not a regular expression"),
    ("{check: x, reason: '  '}", "the reason is empty"),
    ("{check: x}", "reason"),
])
def test_bad_suppressions_are_config_errors(entry: str, problem: str) -> None:
    with pytest.raises(PlatformConfigError) as e:
        parse_platform(BASE + f"suppressions:\n  - {entry}\n", "platform.yaml")
    assert problem in str(e.value) and "platform.yaml" in str(e.value)


def _report(findings: list[Any]) -> CheckReport:
    s = Summary(period="daily", environment=None, started_at="2026-11-26T10:00:00+00:00",
                duration_seconds=1, total=len(findings), critical=0, warning=0, info=0, new=0,
                resolved=0, health_score=100, checks_run=1)
    return CheckReport(summary=s, findings=findings, sources=[])


def test_findings_of_an_unread_kind_are_carried_not_resolved(raw: dict[str, Any],
                                                             tmp_path: Path) -> None:
    full = _run(_snap(raw))
    limited = _run(_snap(raw, drop=("storageclasses",),
                         errors={"storageclasses": "forbidden"}))
    assert "storageclass-missing" in limited.skipped
    assert {f.key for f in limited.findings} <= {f.key for f in full.findings}
    store = SqliteStore.open(tmp_path)
    try:
        store.record(_report(full.findings))
        previous = store.last_run("daily", None)
        _, resolved, carried = compare(previous, limited)
        assert not {f.check for f in resolved} & ({"storageclass-missing", "pvc-pending"})
        assert "storageclass-missing" in {f.check for f in carried}
        store.record(_report(limited.findings), carried)
        # the next full run finds it again: not new (it was carried)
        again = store.last_run("daily", None)
        marked, resolved2, _ = compare(again, full)
        assert not any(f.new for f in marked if f.check == "storageclass-missing")
        assert not resolved2
    finally:
        store.close()
