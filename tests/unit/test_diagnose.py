"""Diagnosis chains over real objects.

The snapshot is ``tests/data/check-dev-lab.json``: raw LISTs captured (read-only) from the DEV
lab with the crashloop, pending, failed-pod, oomkilled, stuck-rollout, node-notready and
svc-no-endpoints scenarios applied (plus the check tests' t-checks objects).
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from k3sops.domain import diagnose as dg
from k3sops.domain.snapshot import ClusterSnapshot, meta

pytestmark = pytest.mark.unit
DATA = Path(__file__).parent.parent / "data" / "check-dev-lab.json"
NS = "development"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA.read_text())
    return data


def _snap(raw: dict[str, Any]) -> ClusterSnapshot:
    return ClusterSnapshot(now=datetime.fromisoformat(raw["captured_at"].replace("Z", "+00:00")),
                           objects=copy.deepcopy(raw["objects"]))


@pytest.fixture
def snap(raw: dict[str, Any]) -> ClusterSnapshot:
    return _snap(raw)


def _pod(snap: ClusterSnapshot, prefix: str) -> str:
    return next(meta(p)[1] for p in snap.get("pods")
                if meta(p)[0] == NS and meta(p)[1].startswith(prefix))


def test_parse_failed_scheduling_splits_the_reasons() -> None:
    msg = ("0/6 nodes are available: 1 node(s) had untolerated taint(s), 5 Insufficient cpu, "
           "5 Insufficient memory. no new claims to deallocate, preemption: 0/6 nodes are "
           "available: 6 Preemption is not helpful for scheduling.")
    assert dg.parse_failed_scheduling(msg) == [
        {"nodes": 1, "reason": "node(s) had untolerated taint(s)"},
        {"nodes": 5, "reason": "Insufficient cpu"},
        {"nodes": 5, "reason": "Insufficient memory"}]


def test_pending_pod_names_insufficient_cpu_with_request_and_largest_allocatable(
        snap: ClusterSnapshot) -> None:
    name = _pod(snap, "batch-big-")
    r = dg.diagnose_pod(snap, NS, name).report("pod")
    f = next(f for f in r.findings if f.check == "pod-pending")
    causes = {c["cause"]: c for c in f.evidence["causes"]}
    assert causes["insufficient-cpu"]["requested"] == "64000m"
    assert causes["insufficient-cpu"]["largest_allocatable"] == "8000m"
    assert "node.kubernetes.io/not-ready=:NoSchedule (k3s-agent-3)" in \
        causes["untolerated-taints"]["taints"]
    assert any(s.step == "cause: insufficient-cpu" and not s.ok for s in r.chain)
    assert f.runbook == "pod-pending"


def test_node_selector_and_pvc_causes(snap: ClusterSnapshot) -> None:
    pod = next(p for p in snap.get("pods") if meta(p)[1].startswith("batch-big-"))
    pod["spec"]["nodeSelector"] = {"disktype": "ssd"}
    pod["spec"]["volumes"] = [{"name": "d", "persistentVolumeClaim": {"claimName": "nope"}}]
    causes = dg.scheduling_causes(snap, pod, "0/6 nodes are available: 6 node(s) didn't match "
                                  "Pod's node affinity/selector, 6 pod has unbound immediate "
                                  "PersistentVolumeClaims.")
    assert causes[0]["cause"] == "node-selector"
    assert causes[0]["node_selector"] == {"disktype": "ssd"}
    assert causes[1] == {**causes[1], "cause": "pvc-unbound", "claims": ["nope"]}


def test_crashloop_pod_has_exit_code_rate_logs_and_owner_rollout(snap: ClusterSnapshot) -> None:
    name = _pod(snap, "checkout-")
    r = dg.diagnose_pod(snap, NS, name, {"checkout": ["dial tcp: connection refused"]}).report(
        "pod")
    f = next(f for f in r.findings if f.check == "pod-crashloop")
    assert f.evidence["exit_code"] == 1
    assert f.evidence["restarts"] > 0 and f.evidence["restarts_per_hour"] > 0
    assert f.evidence["previous_logs"] == ["dial tcp: connection refused"]
    assert len([x for x in r.findings if x.check == "pod-crashloop"]) == 1  # merged with check
    assert any(s.step == "owner rollout" and "Deployment checkout" in s.detail for s in r.chain)


def test_oomkilled_compares_limit_and_request(snap: ClusterSnapshot) -> None:
    r = dg.diagnose_pod(snap, NS, _pod(snap, "cache-")).report("pod")
    f = next(f for f in r.findings if f.check == "pod-oomkilled")
    assert f.evidence["memory_limit"] == "64Mi" and f.evidence["exit_code"] == 137


def test_image_pull_evicted_and_not_ready(snap: ClusterSnapshot) -> None:
    pod = next(p for p in snap.get("pods") if meta(p)[1].startswith("web-"))
    cs = pod["status"]["containerStatuses"][0]
    cs["state"] = {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}
    r = dg.diagnose_pod(snap, meta(pod)[0] or "", meta(pod)[1]).report("pod")
    assert any(f.check == "pod-image-pull" for f in r.findings)
    cs["state"] = {"running": {"startedAt": "2026-11-26T11:00:00Z"}}
    cs["ready"] = False
    r = dg.diagnose_pod(snap, meta(pod)[0] or "", meta(pod)[1]).report("pod")
    assert any(f.check == "pod-not-ready" for f in r.findings)
    pod["status"].update(phase="Failed", reason="Evicted", message="low on memory")
    r = dg.diagnose_pod(snap, meta(pod)[0] or "", meta(pod)[1]).report("pod")
    assert any(f.check == "pod-evicted" and f.runbook == "pod-evicted" for f in r.findings)


def test_node_not_ready_with_taints_role_and_no_skew(snap: ClusterSnapshot) -> None:
    r = dg.diagnose_node(snap, "k3s-agent-3").report("node")
    f = next(f for f in r.findings if f.check == "node-not-ready")
    assert {t["key"] for t in f.evidence["taints"]} == {"node.kubernetes.io/not-ready"}
    assert f.evidence["role"] == "agent" and f.evidence["since"]
    assert not any(f.check == "node-version-skew" for f in r.findings)
    assert dg.node_role(next(n for n in snap.get("nodes")
                             if meta(n)[1] == "k3s-server-1")) == "server"


def test_node_version_skew(snap: ClusterSnapshot) -> None:
    node = next(n for n in snap.get("nodes") if meta(n)[1] == "k3s-agent-1")
    node["status"]["nodeInfo"]["kubeletVersion"] = "v1.32.1+k3s1"
    r = dg.diagnose_node(snap, "k3s-agent-1").report("node")
    f = next(f for f in r.findings if f.check == "node-version-skew")
    assert f.evidence["others"] == ["v1.34.4+k3s1"]


def test_deployment_stuck_rollout_includes_its_pods_chains(snap: ClusterSnapshot) -> None:
    r = dg.diagnose_deployment(snap, NS, "api").report("deployment")
    checks = {f.check for f in r.findings}
    assert {"deployment-rollout-stuck", "pod-crashloop"} <= checks
    assert r.chain[0].step == "rollout" and not r.chain[0].ok


def test_network_names_the_missing_service_and_lb_context(snap: ClusterSnapshot) -> None:
    r = dg.diagnose_network(snap).report("network")
    f = next(f for f in r.findings if f.check == "ingress-backend-missing"
             and f.resource.name == "shop")
    assert f.evidence["service"] == "shop-frontend"
    assert any("shop-frontend: missing" in s.detail for s in r.chain)
    assert any(s.step == "servicelb vs MetalLB" and not s.ok for s in r.chain)
    assert any(s.step == "kube-dns endpoints" and s.ok for s in r.chain)


def test_storage_pending_pvc_reason_and_longhorn(snap: ClusterSnapshot) -> None:
    r = dg.diagnose_storage(snap).report("storage")
    pending = {f.resource.name: f for f in r.findings if f.check == "pvc-pending"}
    assert "driver.longhorn.io" in pending["data-orders"].message
    assert "scratch" not in pending  # WaitForFirstConsumer is not a problem
    assert {"longhorn-volume-degraded", "longhorn-volume-faulted"} <= {f.check
                                                                      for f in r.findings}


def test_cluster_diagnosis_covers_nodes_pods_network_storage(snap: ClusterSnapshot) -> None:
    r = dg.diagnose_cluster(snap).report("cluster")
    checks = {f.check for f in r.findings}
    assert {"node-not-ready", "pod-pending", "pod-crashloop", "pod-oomkilled",
            "ingress-backend-missing", "pvc-pending"} <= checks
    assert all(s.ok is False for s in r.chain if s.step.startswith("Ingress"))
    json.loads(r.model_dump_json())  # the JSON contract serialises


def test_similar_names_for_not_found(snap: ClusterSnapshot) -> None:
    assert "k3s-agent-3" in dg.similar(snap, "nodes", "k3s-agent-9")
