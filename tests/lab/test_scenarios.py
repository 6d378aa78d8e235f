"""Each scenario is seen by plain kubectl as described, and reset removes it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from conftest import Lab, wait_for

pytestmark = pytest.mark.lab
NS = "development"


def _json(lab: Lab, *args: str) -> Any:
    return json.loads(lab.kubectl(*args, "-o", "json").stdout)


def _wait(fn: Callable[[], Any], timeout: float = 120) -> Any:
    last = wait_for(fn, timeout=timeout, every=2)
    assert last, f"condition not met within {timeout}s; last: {last!r}"
    return last


def _pods(lab: Lab, scenario: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _json(lab, "-n", NS, "get", "pods", "-l",
                                        f"k3sops.io/scenario={scenario}")["items"]
    return items


@pytest.fixture(scope="module")
def faults(lab: Lab) -> Any:
    r = lab.k3sops("lab", "scenario", "apply", "all", timeout=300)
    assert r.returncode == 0, r.stderr
    yield lab
    r = lab.k3sops("lab", "scenario", "reset", timeout=300)
    assert r.returncode == 0, r.stderr


def test_node_not_ready_and_tainted(faults: Lab) -> None:
    def not_ready() -> Any:
        n = _json(faults, "get", "node", "k3s-agent-3")
        ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
        taints = {t["key"] for t in n["spec"].get("taints", [])}
        return ready["status"] == "False" and "node.kubernetes.io/not-ready" in taints

    _wait(not_ready)
    assert "NotReady" in faults.kubectl("get", "node", "k3s-agent-3").stdout


def test_crashloop_with_rising_restarts(faults: Lab) -> None:
    def restarts() -> int:
        pods = _pods(faults, "crashloop")
        return sum(cs.get("restartCount", 0) for p in pods
                   for cs in p["status"].get("containerStatuses", []))

    first = _wait(lambda: restarts() or None)
    _wait(lambda: restarts() > first, timeout=90)
    _wait(lambda: "CrashLoopBackOff" in faults.kubectl("-n", NS, "get", "pods", "-l",
                                                       "k3sops.io/scenario=crashloop").stdout)
    p = _pods(faults, "crashloop")[0]
    last = p["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 1


def test_pending_unschedulable(faults: Lab) -> None:
    def unschedulable() -> Any:
        for p in _pods(faults, "pending"):
            for c in p["status"].get("conditions", []):
                if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable":
                    return c
        return None

    cond = _wait(unschedulable)
    assert "Insufficient cpu" in cond["message"]
    events = faults.kubectl("-n", NS, "get", "events", "--field-selector",
                            "reason=FailedScheduling").stdout
    assert "Insufficient cpu" in events


def test_failed_pod(faults: Lab) -> None:
    p = _wait(lambda: [x for x in _pods(faults, "failed-pod")
                       if x["status"].get("phase") == "Failed"])
    assert p[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 2


def test_oomkilled(faults: Lab) -> None:
    def oom() -> Any:
        return [cs for p in _pods(faults, "oomkilled")
                for cs in p["status"].get("containerStatuses", [])
                if cs.get("lastState", {}).get("terminated", {}).get("reason") == "OOMKilled"]

    cs = _wait(oom)
    assert cs[0]["lastState"]["terminated"]["exitCode"] == 137


def test_stuck_rollout_exceeds_progress_deadline(faults: Lab) -> None:
    def exceeded() -> Any:
        d = _json(faults, "-n", NS, "get", "deployment", "api")
        return [c for c in d["status"].get("conditions", [])
                if c["type"] == "Progressing" and c["reason"] == "ProgressDeadlineExceeded"]

    _wait(exceeded, timeout=150)
    r = faults.kubectl("-n", NS, "rollout", "status", "deployment/api", "--timeout=5s",
                       check=False)
    assert r.returncode != 0 and "exceeded its progress deadline" in r.stderr


def test_pvc_pending(faults: Lab) -> None:
    pvc = _json(faults, "-n", NS, "get", "pvc", "data-orders")
    assert pvc["status"]["phase"] == "Pending"
    events = _wait(lambda: "driver.longhorn.io" in faults.kubectl(
        "-n", NS, "get", "events", "--field-selector",
        "involvedObject.name=data-orders").stdout)
    assert events


def test_service_without_endpoints(faults: Lab) -> None:
    slices = _json(faults, "-n", NS, "get", "endpointslices", "-l",
                   "kubernetes.io/service-name=payments")["items"]
    assert slices and all(not s.get("endpoints") for s in slices)


def test_ingress_points_at_missing_service(faults: Lab) -> None:
    ing = _json(faults, "-n", NS, "get", "ingress", "shop")
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    r = faults.kubectl("-n", NS, "get", "service", backend, check=False)
    assert r.returncode != 0 and "NotFound" in r.stderr


def test_loadbalancer_without_external_ip(faults: Lab) -> None:
    svc = _json(faults, "-n", NS, "get", "service", "public-gateway")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert not svc["status"].get("loadBalancer", {}).get("ingress")
    assert "<pending>" in faults.kubectl("-n", NS, "get", "service", "public-gateway").stdout
