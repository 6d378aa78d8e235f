"""Capacity (domain/capacity) on the nodes and pods captured from the lab, and the forecast fit.

``tests/data/scale_lab_capture.json`` holds the lab's six kwok nodes (3 servers 4 CPU/8Gi, 3 agents
8 CPU/16Gi) and every pod at capture time, as the API server listed them, plus Prometheus'
answer to the request-history subquery k3sops sends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from k3sops.domain import capacity
from k3sops.domain.capacity import Usage
from k3sops.domain.checks.capacity import quantity
from k3sops.domain.metrics import parse_result
from k3sops.services.capacity import request_history_query

pytestmark = pytest.mark.unit

DATA = json.loads((Path(__file__).parent.parent / "data" / "scale_lab_capture.json").read_text())
NODES, PODS = DATA["nodes"], DATA["pods"]


def _bound(pod: dict[str, Any]) -> bool:
    return bool(pod["spec"].get("nodeName")) and pod["status"].get("phase") in (
        "Pending", "Running")


def test_per_node_requests_are_the_bound_pods_requests() -> None:
    nodes = capacity.node_capacity(NODES, PODS)
    assert [n.name for n in nodes] == sorted(n["metadata"]["name"] for n in NODES)
    for n in nodes:
        mine = [p for p in PODS if p["spec"].get("nodeName") == n.name and _bound(p)]
        assert n.pods == len(mine)
        want = sum(quantity(c.get("resources", {}).get("requests", {}).get("cpu", 0)) or 0
                   for p in mine for c in p["spec"]["containers"])
        assert n.cpu.requests == pytest.approx(want)
        raw = next(x for x in NODES if x["metadata"]["name"] == n.name)
        assert n.memory.allocatable == quantity(raw["status"]["allocatable"]["memory"])
    total = capacity.cluster_usage(nodes, "cpu")
    assert total.allocatable == 3 * 4 + 3 * 8
    assert total.requests == pytest.approx(sum(n.cpu.requests for n in nodes))


def test_cordoned_node_room_is_not_counted() -> None:
    nodes = capacity.node_capacity(NODES, PODS)
    nodes[0].schedulable = False
    assert capacity.cluster_usage(nodes, "cpu").allocatable == pytest.approx(
        36 - nodes[0].cpu.allocatable)


def test_limits_and_containers_without_limits() -> None:
    nodes = capacity.node_capacity(NODES, PODS)
    cpu = capacity.cluster_usage(nodes, "cpu")
    mem = capacity.cluster_usage(nodes, "memory")
    containers = [c for p in PODS if _bound(p) for c in p["spec"]["containers"]]
    assert cpu.unlimited == sum(1 for c in containers
                                if "cpu" not in c.get("resources", {}).get("limits", {}))
    assert mem.limits == pytest.approx(sum(
        quantity(c["resources"]["limits"]["memory"]) or 0 for c in containers
        if "memory" in c.get("resources", {}).get("limits", {})))


def test_environments_are_their_namespaces() -> None:
    nodes = capacity.node_capacity(NODES, PODS)
    envs = capacity.env_capacity({"production": ["production"], "staging": ["staging"]}, PODS,
                                 capacity.cluster_usage(nodes, "cpu"),
                                 capacity.cluster_usage(nodes, "memory"))
    prod = next(e for e in envs if e.name == "production")
    assert prod.pods == sum(1 for p in PODS if p["metadata"]["namespace"] == "production"
                            and _bound(p))
    assert prod.cpu.allocatable == 36
    assert prod.cpu.requests_percent == pytest.approx(prod.cpu.requests / 36 * 100)


def test_linear_fit_is_least_squares() -> None:
    slope, intercept = capacity.linear_fit([(0, 1), (1, 3), (2, 5), (3, 7)])
    assert (slope, intercept) == pytest.approx((2.0, 1.0))
    slope, _ = capacity.linear_fit([(0, 0), (1, 1), (2, 0), (3, 1)])
    assert slope == pytest.approx(0.2)
    with pytest.raises(ValueError, match="two points"):
        capacity.linear_fit([(0, 1)])


def test_forecast_days_left_and_nodes_needed() -> None:
    day = 86400.0
    usage = Usage(allocatable=36.0, requests=10.0)
    # +0.5 cores a day: 85% of 36 = 30.6 reached in (30.6 - 10) / 0.5 = 41.2 days.
    hist = [(i * day, 10.0 - 0.5 * (9 - i)) for i in range(10)]
    f = capacity.forecast("cpu", hist, usage, 6)
    assert f.status == "ok"
    assert f.growth_per_day == pytest.approx(0.5)
    assert f.days_left == pytest.approx(41.2)
    # In 90 days: 55 cores requested, 24.4 over the mark; 6-core nodes at 85% -> 5 more.
    assert f.nodes_needed == 5
    assert f.method.startswith("least-squares fit over 7d")


def test_forecast_degrades_by_name() -> None:
    usage = Usage(allocatable=36.0, requests=10.0)
    f = capacity.forecast("memory", None, usage, 6, missing="prometheus (unreachable)")
    assert (f.status, f.missing) == ("no-data", "prometheus (unreachable)")
    f = capacity.forecast("cpu", [(0.0, 1.0)], usage, 6)
    assert f.status == "no-data" and f.missing is not None and "fewer than" in f.missing
    flat = [(float(i), 10.0) for i in range(10)]
    assert capacity.forecast("cpu", flat, usage, 6).status == "not-growing"
    full = capacity.forecast("cpu", flat, Usage(allocatable=10.0, requests=9.0), 2)
    assert (full.status, full.days_left, full.nodes_needed) == ("full", 0.0, 1)


def test_forecast_on_the_captured_request_history() -> None:
    """The lab's requests were flat while captured: a real fit over real points, no growth."""
    res = parse_result(DATA["requests_history_cpu"])
    hist = [(s.timestamp, s.number) for s in res.samples if s.number is not None]
    assert len(hist) >= capacity.MIN_POINTS
    nodes = capacity.node_capacity(NODES, PODS)
    f = capacity.forecast("cpu", hist, capacity.cluster_usage(nodes, "cpu"), len(nodes),
                          window="3m", step="15s")
    assert f.status in ("not-growing", "ok")
    assert f.points == len(hist)
    assert request_history_query("cpu", "7d", "1h") == (
        'sum(kube_pod_container_resource_requests{resource="cpu"})[7d:1h]')


def test_an_environment_without_namespaces_owns_them_all() -> None:
    nodes = capacity.node_capacity(NODES, PODS)
    envs = capacity.env_capacity({"production": []}, PODS, capacity.cluster_usage(nodes, "cpu"),
                                 capacity.cluster_usage(nodes, "memory"))
    assert envs[0].pods == sum(n.pods for n in nodes)


def test_json_schema_is_pinned() -> None:
    """`capacity -o json` top-level and per-item keys (documented in the README)."""
    nodes = capacity.node_capacity(NODES, PODS)
    cpu, mem = capacity.cluster_usage(nodes, "cpu"), capacity.cluster_usage(nodes, "memory")
    report = capacity.CapacityReport(
        nodes=nodes, environments=capacity.env_capacity({"staging": ["staging"]}, PODS, cpu,
                                                        mem),
        cluster_cpu=cpu, cluster_memory=mem,
        forecast=[capacity.forecast("cpu", None, cpu, len(nodes), missing="prometheus (x)")])
    doc = report.model_dump(mode="json")
    assert list(doc) == ["nodes", "environments", "cluster_cpu", "cluster_memory", "forecast",
                         "horizon_days", "full_percent", "sources"]
    assert list(doc["nodes"][0]) == ["name", "schedulable", "pods", "cpu", "memory"]
    assert list(doc["nodes"][0]["cpu"]) == ["allocatable", "requests", "limits", "unlimited"]
    assert list(doc["environments"][0]) == ["name", "namespaces", "pods", "cpu", "memory"]
    assert list(doc["forecast"][0]) == ["resource", "method", "status", "points",
                                        "requests_now", "growth_per_day", "full_at",
                                        "days_left", "nodes_needed", "missing"]
