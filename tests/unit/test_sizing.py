"""Right-sizing strategies and HPA helpers (domain/sizing), on data captured from the lab.

``tests/data/scale_lab_capture.json`` was recorded from the lab: a Deployment ``shop`` (2 replicas,
requests 50m/64Mi, memory limit 128Mi) whose pods kwok reports at 120m CPU and 200Mi memory
(pod annotations), Prometheus' answers to the CPU-rate subquery and the working-set range
query k3sops sends for it, and its autoscaling/v2 HPA (min = max = 2) as the real HPA
controller left it without a metrics API.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from k3sops.domain import sizing
from k3sops.domain.metrics import parse_result
from k3sops.domain.sizing import ContainerRef, History, Resources, SizingSettings
from k3sops.errors import UsageError
from k3sops.services.scale.resources import container_resources, history_queries
from k3sops.services.scale.resources import histories as _histories

pytestmark = pytest.mark.unit

DATA = json.loads((Path(__file__).parent.parent / "data" / "scale_lab_capture.json").read_text())
MIB = 2**20
REF = ContainerRef(kind="deployments", namespace="capture", workload="shop", container="app")


def _captured_history() -> History:
    results: dict[str, Any] = {k: parse_result(DATA[k]) for k in ("cpu", "memory")}
    return _histories(results, ["app"], "3m")["app"]


def _current() -> Resources:
    container = DATA["deployment"]["spec"]["template"]["spec"]["containers"][0]
    return container_resources(container)


def test_current_resources_read_from_the_pod_template() -> None:
    assert _current() == Resources(cpu_request=0.05, cpu_limit=None, memory_request=64 * MIB,
                                   memory_limit=128 * MIB)


def test_percentile_strategy_on_the_captured_series() -> None:
    """CPU request at p95 of the rates (kwok: 120m), memory = 200Mi peak + 15 %."""
    h = _captured_history()
    assert len(h.cpu) >= 10 and len(h.memory) >= 10
    rec = sizing.recommend(REF, h, _current())
    assert rec.status == "ok" and rec.recommended is not None
    assert rec.memory_peak == 200 * MIB
    assert rec.recommended.memory_request == rec.recommended.memory_limit == math.ceil(
        200 * 1.15) * MIB
    assert rec.recommended.cpu_request == pytest.approx(0.12, abs=0.006)
    assert rec.recommended.cpu_limit is None
    assert rec.changes


def test_oom_kill_raises_memory_above_the_limit() -> None:
    """After an OOM kill the peak is not the need: at least the limit + 25 %."""
    h = _captured_history()
    h.oom_kills = 1
    rec = sizing.recommend(REF, h, Resources(cpu_request=0.05, memory_request=64 * MIB,
                                             memory_limit=512 * MIB))
    assert rec.recommended is not None
    assert rec.recommended.memory_request == 640 * MIB
    assert any("OOM" in r for r in rec.reasons)


def test_too_few_samples_gives_no_recommendation() -> None:
    h = History(cpu=[0.1] * 3, memory=[MIB] * 3)
    rec = sizing.recommend(REF, h, _current())
    assert rec.status == "insufficient-data" and rec.recommended is None
    assert not rec.changes


def test_percentile_limit_strategy_keeps_a_cpu_limit() -> None:
    rec = sizing.recommend(REF, _captured_history(), _current(), "percentile-limit")
    assert rec.recommended is not None and rec.recommended.cpu_request is not None
    assert rec.recommended.cpu_limit == sizing.round_cpu(rec.recommended.cpu_request * 2)


def test_floors_and_unknown_strategy() -> None:
    h = History(cpu=[0.0001] * 12, memory=[1024.0] * 12)
    rec = sizing.recommend(REF, h, Resources())
    assert rec.recommended == Resources(cpu_request=0.01, cpu_limit=None,
                                        memory_request=16 * MIB, memory_limit=16 * MIB)
    with pytest.raises(UsageError, match="unknown sizing strategy"):
        sizing.recommend(REF, h, Resources(), "nope")


def test_strategies_are_pluggable() -> None:
    @sizing.strategy("test-fixed")
    def fixed(history: History, current: Resources, s: SizingSettings,
              ) -> tuple[Resources | None, list[str]]:
        return Resources(cpu_request=1.0, memory_request=MIB, memory_limit=MIB), ["fixed"]

    try:
        rec = sizing.recommend(REF, History(), Resources(), "test-fixed")
        assert rec.recommended is not None and rec.recommended.cpu_request == 1.0
    finally:
        del sizing.STRATEGIES["test-fixed"]


def test_percentile_matches_numpy_linear() -> None:
    assert sizing.percentile([1, 2, 3, 4], 50) == 2.5
    assert sizing.percentile([5], 95) == 5
    assert sizing.percentile(list(range(101)), 95) == 95


def test_quantity_formats_and_patch() -> None:
    assert sizing.format_cpu(0.25) == "250m" and sizing.format_cpu(2.0) == "2"
    assert sizing.format_memory(345 * MIB) == "345Mi" and sizing.format_memory(2**31) == "2Gi"
    patch = sizing.resources_patch(Resources(cpu_request=0.121, memory_request=230 * MIB,
                                             memory_limit=230 * MIB))
    assert patch == {"requests": {"cpu": "121m", "memory": "230Mi"},
                     "limits": {"cpu": None, "memory": "230Mi"}}


def test_history_queries_select_the_workloads_pods() -> None:
    q = history_queries("capture", "deployments", "shop", "7d", "5m")
    assert q["cpu"] == ('rate(container_cpu_usage_seconds_total{namespace="capture", '
                        'pod=~"shop-[a-z0-9]+-[a-z0-9]{5}", container!="", container!="POD"}'
                        "[5m])[7d:5m]")
    assert "[1m]" in history_queries("capture", "deployments", "shop", "3m", "15s")["cpu"]
    assert 'pod=~"db-[0-9]+"' in history_queries("p", "statefulsets", "db", "1d", "5m")["memory"]


# --- HPA -------------------------------------------------------------------------------------


def test_hpa_spec_is_exactly_the_asked_one() -> None:
    assert sizing.hpa_spec("deployments", "web", 80, 2, 10) == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 2, "maxReplicas": 10,
        "metrics": [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}
    with pytest.raises(UsageError, match="below --min"):
        sizing.hpa_spec("deployments", "web", 80, 5, 2)
    with pytest.raises(UsageError, match="below 1"):
        sizing.hpa_spec("deployments", "web", 80, 0, 2)


def test_captured_hpa_status_warns_at_max_and_not_scaling() -> None:
    """The real controller: min = max = 2 replicas, no metrics API -> both warnings."""
    hpa = DATA["hpa"]
    assert sizing.hpa_targets([hpa], "deployments", "shop") == ["shop"]
    assert sizing.hpa_targets([hpa], "statefulsets", "shop") == []
    assert sizing.hpa_spec_differs(hpa["spec"], sizing.hpa_spec("deployments", "shop", 80, 2,
                                                                2)) == []
    st = sizing.hpa_status(hpa, now=0.0, created=None)
    assert (st.target, st.min_replicas, st.max_replicas, st.cpu_target_percent) == (
        "Deployment/shop", 2, 2, 80)
    assert st.current_replicas == 2
    assert any(w.startswith("at max: 2/2") for w in st.warnings)
    assert any(w.startswith("not scaling: ScalingActive=False") for w in st.warnings)


def test_hpa_never_scaled_after_a_day() -> None:
    hpa = json.loads(json.dumps(DATA["hpa"]))
    hpa["status"].pop("lastScaleTime", None)
    st = sizing.hpa_status(hpa, now=10 * 86400.0, created=0.0)
    assert any(w.startswith("never scaled in 10 days") for w in st.warnings)


def test_resources_json_schema_is_pinned() -> None:
    """`scale resources -o json`: report and recommendation keys (documented in the README)."""
    from k3sops.services.scale import ResourcesReport

    rec = sizing.recommend(REF, _captured_history(), _current())
    doc = ResourcesReport(strategy="percentile", window="3m", settings=SizingSettings(),
                          recommendations=[rec]).model_dump(mode="json")
    assert list(doc) == ["strategy", "window", "settings", "recommendations", "changes",
                         "applied", "sources", "audit_log"]
    assert list(doc["recommendations"][0]) == [
        "ref", "current", "recommended", "status", "strategy", "samples", "cpu_p",
        "memory_peak", "oom_kills", "reasons"]
    assert list(doc["recommendations"][0]["recommended"]) == [
        "cpu_request", "cpu_limit", "memory_request", "memory_limit"]
