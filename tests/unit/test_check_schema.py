"""The `k3sops check -o json` schema is a contract (README): pinned here."""

from __future__ import annotations

import pytest

from k3sops.domain.checks import REGISTRY, selected
from k3sops.domain.findings import CheckReport, Finding, ResourceRef, at_or_above, health_score

pytestmark = pytest.mark.unit


def test_report_schema_is_pinned() -> None:
    schema = CheckReport.model_json_schema()
    assert list(schema["properties"]) == ["summary", "findings", "sources", "resolved", "manual",
                                          "not_evaluated", "suppressed"]
    d = schema["$defs"]
    assert list(d["Finding"]["properties"]) == ["check", "severity", "resource", "message",
                                                "evidence", "runbook", "environment", "new"]
    assert list(d["ResourceRef"]["properties"]) == ["kind", "namespace", "name"]
    assert list(d["Summary"]["properties"]) == [
        "period", "environment", "started_at", "duration_seconds", "total", "critical",
        "warning", "info", "new", "resolved", "health_score", "checks_run", "fail_on", "usage",
        "not_evaluated", "suppressed"]
    assert list(d["NotEvaluated"]["properties"]) == ["check", "title", "missing"]
    assert list(d["Source"]["properties"]) == ["name", "ok", "endpoint", "error", "skipped"]
    assert d["Finding"]["properties"]["severity"]["enum"] == ["critical", "warning", "info"]


def _f(sev: str) -> Finding:
    return Finding(check="x", severity=sev, resource=ResourceRef(kind="Pod", name="p"),  # type: ignore[arg-type]
                   message="m", runbook="r")


def test_score_and_threshold() -> None:
    fs = [_f("critical"), _f("warning"), _f("info")]
    assert health_score(fs) == 74
    assert len(at_or_above(fs, "warning")) == 2 and len(at_or_above(fs, "critical")) == 1
    assert health_score([_f("critical")] * 9) == 0


def test_periods_nest_and_ids_are_stable_kebab_case() -> None:
    daily = {c.id for c in selected("daily")}
    weekly = {c.id for c in selected("weekly")}
    monthly = {c.id for c in selected("monthly")}
    assert daily <= weekly <= monthly
    assert {"node-not-ready", "pod-crashloop", "pod-pending", "pod-failed",
            "pod-oomkilled"} <= daily
    for cid in REGISTRY:
        assert cid == cid.lower() and " " not in cid and "_" not in cid
