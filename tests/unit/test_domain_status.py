"""Pure summaries over real API data captured from the lab (tests/data/lab-*.json).

The captures were taken with scenarios crashloop, pending, failed-pod, oomkilled,
node-notready and stuck-rollout applied, so the problems below are real controller and kwok
output, not hand-built objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from k3sops.domain import status

pytestmark = pytest.mark.unit
DATA = Path(__file__).parent.parent / "data"


def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def test_node_status_from_captured_nodes() -> None:
    nodes = {n.name: n for n in map(status.node_status, _load("lab-nodes.json")["items"])}
    assert len(nodes) == 6
    assert nodes["k3s-server-1"].roles == ["control-plane", "etcd", "master"]
    assert nodes["k3s-agent-1"].roles == ["worker"]
    assert nodes["k3s-agent-1"].ready == "True"
    assert nodes["k3s-agent-3"].ready == "False"  # the node-notready scenario
    assert nodes["k3s-server-2"].version == "v1.34.4+k3s1"
    assert nodes["k3s-agent-2"].cpu == "8" and nodes["k3s-server-2"].memory == "8Gi"


def test_pod_summary_finds_each_scenario_reason() -> None:
    counts, problems = status.pod_summary(_load("lab-pods.json")["items"])
    by_name = {p.name.rsplit("-", 2)[0] if p.name.count("-") >= 2 else p.name: p
               for p in problems}
    assert by_name["checkout"].reason == "CrashLoopBackOff"
    assert by_name["checkout"].restarts >= 1
    assert by_name["batch-big"].reason == "Unschedulable" and by_name["batch-big"].node is None
    assert by_name["cache"].reason == "CrashLoopBackOff"
    report = next(p for p in problems if p.name == "report-generator")
    assert report.phase == "Failed" and report.reason == "Error"
    dev = next(c for c in counts if c.namespace == "development")
    assert dev.pending == 1 and dev.failed == 1 and dev.restarts > 0
    mon = next(c for c in counts if c.namespace == "monitoring")
    assert mon.total == mon.running and mon.not_ready == 0
    # Healthy pods are not listed as problems.
    assert all(p.namespace == "development" for p in problems)


def test_targets_sorted_with_health() -> None:
    rows = status.targets(_load("lab-targets.json")["data"]["activeTargets"])
    assert [r.job for r in rows] == sorted(r.job for r in rows)
    assert {r.health for r in rows} == {"up"}
    assert any(r.job == "apiserver" and r.scrape_url.startswith("https://") for r in rows)


def test_reason_order_matches_kubectl() -> None:
    pod = {"metadata": {"name": "p", "namespace": "n", "deletionTimestamp": "x"},
           "status": {"phase": "Running"}}
    _, problems = status.pod_summary([pod])
    assert problems[0].reason == "Terminating"
