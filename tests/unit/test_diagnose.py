"""Diagnosis chains over real objects.

The snapshot is ``tests/data/check-dev-lab.json``: raw LISTs captured (read-only) from the DEV
lab with the crashloop, pending, failed-pod, oomkilled, stuck-rollout, node-notready and
svc-no-endpoints scenarios applied (plus the check tests' t-checks objects). A diagnosis runs
the same rules as `check` (the engine) and walks the dependency graph; these tests hold it to
that: every finding `check` makes about an object and what it depends on is in its diagnosis.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from k3sops.domain import checks as registry
from k3sops.domain import diagnose as dg
from k3sops.domain import engine
from k3sops.domain.checks import CheckContext
from k3sops.domain.graph import links
from k3sops.domain.snapshot import CLUSTER_SCOPED, KIND_NAMES, PLURALS, ClusterSnapshot, meta

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
    # the reason ruling out most nodes comes first, in the message too
    assert f.evidence["causes"][0]["cause"] == "insufficient-cpu"
    assert "requests 64000m cpu" in f.message
    assert f.runbook == "pod-pending"
    assert [rc.check for rc in r.root_causes] == ["pod-pending"]


def test_node_selector_and_pvc_causes(snap: ClusterSnapshot) -> None:
    pod = next(p for p in snap.get("pods") if meta(p)[1].startswith("batch-big-"))
    pod["spec"]["nodeSelector"] = {"disktype": "ssd"}
    pod["spec"]["volumes"] = [{"name": "d", "persistentVolumeClaim": {"claimName": "nope"}}]
    causes = dg.scheduling_causes(snap, pod, "0/6 nodes are available: 6 node(s) didn't match "
                                  "Pod's node affinity/selector, 6 pod has unbound immediate "
                                  "PersistentVolumeClaims.")
    assert causes[0]["cause"] == "node-selector"
    assert causes[0]["node_selector"] == {"disktype": "ssd"}
    assert causes[1]["cause"] == "pvc-unbound"
    assert causes[1]["claims"] == [{"claim": "nope", "detail": "PVC nope does not exist",
                                    "missing": True}]
    # the message without node counts (a claim on a missing class) is still understood
    [cause] = dg.scheduling_causes(snap, pod, "0/6 nodes are available: pod has unbound "
                                   "immediate PersistentVolumeClaims. not found")
    assert cause["cause"] == "pvc-unbound" and "does not exist" in cause["detail"]


def test_crashloop_pod_has_exit_code_logs_and_owner_rollout(snap: ClusterSnapshot) -> None:
    name = _pod(snap, "checkout-")
    r = dg.diagnose_pod(snap, NS, name, {"checkout": ["dial tcp: connection refused"]}).report(
        "pod")
    [f] = [f for f in r.findings if f.check == "pod-crashloop"]
    assert f.evidence["last_termination"]["exitCode"] == 1
    assert f.evidence["restarts"] > 0
    assert f.evidence["previous_logs"] == ["dial tcp: connection refused"]
    assert any(s.step == "owner rollout" and "Deployment checkout" in s.detail for s in r.chain)
    assert r.root_causes[0].check == "pod-crashloop"


def test_oomkilled_names_the_limit(snap: ClusterSnapshot) -> None:
    r = dg.diagnose_pod(snap, NS, _pod(snap, "cache-")).report("pod")
    f = next(f for f in r.findings if f.check == "pod-oomkilled")
    assert f.evidence["memory_limit"] == "64Mi" and f.evidence["termination"]["exitCode"] == 137
    assert r.root_causes[0].check == "pod-oomkilled"


def test_image_pull_evicted_and_not_ready(snap: ClusterSnapshot) -> None:
    pod = next(p for p in snap.get("pods") if meta(p)[1].startswith("web-"))
    cs = pod["status"]["containerStatuses"][0]
    cs["state"] = {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}
    r = dg.diagnose_pod(_fresh(snap), meta(pod)[0] or "", meta(pod)[1]).report("pod")
    assert any(f.check == "pod-image-pull" for f in r.findings)
    cs["state"] = {"running": {"startedAt": "2026-11-26T11:00:00Z"}}
    cs["ready"] = False
    for c in pod["status"]["conditions"]:
        if c["type"] == "Ready":
            c.update(status="False", lastTransitionTime="2026-11-26T09:00:00Z")
    r = dg.diagnose_pod(_fresh(snap), meta(pod)[0] or "", meta(pod)[1]).report("pod")
    assert any(f.check == "pod-not-ready" for f in r.findings)
    pod["status"].update(phase="Failed", reason="Evicted", message="low on memory")
    r = dg.diagnose_pod(_fresh(snap), meta(pod)[0] or "", meta(pod)[1]).report("pod")
    assert any(f.check == "pod-failed" and f.runbook == "pod-evicted" for f in r.findings)


def _fresh(snap: ClusterSnapshot) -> ClusterSnapshot:
    """The same objects without the cached analysis (a test changed an object in place)."""
    return ClusterSnapshot(now=snap.now, objects=snap.objects)


def test_node_not_ready_with_taints_and_role(snap: ClusterSnapshot) -> None:
    r = dg.diagnose_node(snap, "k3s-agent-3").report("node")
    f = next(f for f in r.findings if f.check == "node-not-ready")
    assert "node.kubernetes.io/not-ready" in f.evidence["taints"]
    steps = {s.step: s for s in r.chain}
    assert steps["role"].detail.startswith("agent") and not steps["ready"].ok
    assert steps["kubelet version"].ok  # the same version everywhere
    assert dg.node_role(next(n for n in snap.get("nodes")
                             if meta(n)[1] == "k3s-server-1")) == "server"


def test_node_version_skew_is_the_version_drift_check(snap: ClusterSnapshot) -> None:
    node = next(n for n in snap.get("nodes") if meta(n)[1] == "k3s-agent-1")
    node["status"]["nodeInfo"]["kubeletVersion"] = "v1.32.1+k3s1"
    r = dg.diagnose_node(_fresh(snap), "k3s-agent-1").report("node")
    assert not next(s for s in r.chain if s.step == "kubelet version").ok


def test_deployment_stuck_rollout_reaches_its_crashing_pods(snap: ClusterSnapshot) -> None:
    r = dg.diagnose_deployment(snap, NS, "api").report("deployment")
    checks = {f.check for f in r.findings}
    assert {"deployment-rollout-stuck", "pod-crashloop"} <= checks
    assert r.chain[0].step == "rollout" and not r.chain[0].ok
    # the stuck rollout is explained by the crashing pods below it
    assert {rc.check for rc in r.root_causes} == {"pod-crashloop"}
    assert all(rc.path[0] == "Deployment development/api" for rc in r.root_causes)


def test_network_names_the_missing_service_and_the_wrong_port(snap: ClusterSnapshot) -> None:
    r = dg.diagnose_network(snap).report("network")
    shop = next(f for f in r.findings if f.check == "ingress-backend-missing"
                and f.resource.name == "shop")
    assert shop.evidence["broken_backends"][0]["service"] == "shop-frontend"
    assert any(s.step == "routes to Service t-checks/shop-frontend" and not s.ok
               and s.detail == "does not exist" for s in r.chain)
    roots = {(rc.check, rc.resource.name) for rc in r.root_causes}
    assert {("ingress-backend-missing", "shop"), ("ingress-backend-missing", "web-admin")} \
        <= roots
    assert any(s.step == "kube-dns endpoints" and s.ok for s in r.chain)


def test_storage_pending_pvc_reason_and_longhorn(snap: ClusterSnapshot) -> None:
    r = dg.diagnose_storage(snap).report("storage")
    pending = {f.resource.name: f for f in r.findings if f.check == "pvc-pending"}
    assert "driver.longhorn.io" in pending["data-orders"].message
    assert pending["scratch"].severity == "info"  # WaitForFirstConsumer is not a problem
    assert {"longhorn-volume-degraded", "longhorn-volume-faulted", "pvc-lost",
            "storageclass-missing"} <= {f.check for f in r.findings}
    assert "scratch" not in {rc.resource.name for rc in r.root_causes}


def test_cluster_diagnosis_covers_nodes_pods_network_storage(snap: ClusterSnapshot) -> None:
    r = dg.diagnose_cluster(snap).report("cluster")
    checks = {f.check for f in r.findings}
    assert {"node-not-ready", "pod-pending", "pod-crashloop", "pod-oomkilled",
            "ingress-backend-missing", "pvc-pending"} <= checks
    roots = {rc.check for rc in r.root_causes}
    assert {"node-not-ready", "pod-crashloop", "pod-oomkilled", "ingress-backend-missing"} \
        <= roots
    # a symptom explained by something below it is not a root
    assert "deployment-unavailable" not in roots
    json.loads(r.model_dump_json())  # the JSON contract serialises


def test_similar_names_for_not_found(snap: ClusterSnapshot) -> None:
    assert "k3s-agent-3" in dg.similar(snap, "nodes", "k3s-agent-9")


def _dependencies(snap: ClusterSnapshot, kind: str, ns: str | None,
                  name: str) -> set[tuple[str, str | None, str]]:
    """Everything reachable from an object along the dependency graph (by Kind)."""
    out: set[tuple[str, str | None, str]] = set()
    stack = [(kind, ns, name)]
    while stack:
        k, n, nm = stack.pop()
        obj = next((o for o in snap.get(k) if meta(o) == (n, nm)), None) if k in \
            snap.objects else None
        if obj is None or (KIND_NAMES[k], n, nm) in out:
            continue
        out.add((KIND_NAMES[k], n, nm))
        stack += [(lk.kind, None if lk.kind in CLUSTER_SCOPED else lk.namespace, lk.name)
                  for lk in links(snap, k, obj) if lk.explains != "never"]
    return out


def test_diagnosis_contains_every_check_finding_of_the_object_and_its_dependencies(
        snap: ClusterSnapshot) -> None:
    """The agreement property, over every object `check` has something to say about."""
    ctx = CheckContext(snapshot=snap, platform=None, period="monthly")
    checked = engine.evaluate(ctx, registry.selected("monthly")).findings
    by_object = engine.by_object(checked)
    targets = {(f.resource.kind, f.resource.namespace, f.resource.name) for f in checked
               if f.resource.kind in PLURALS}
    assert len(targets) > 20
    for kind, ns, name in sorted(targets, key=str):
        plural = PLURALS[kind]
        if dg.find(snap, plural, name, ns) is None:
            continue  # findings about pseudo-objects (a backup target, a drill)
        report = dg.diagnose_object(snap, plural, ns, name).report(f"{kind}/{name}")
        got = {f.key for f in report.findings}
        for dep in _dependencies(snap, plural, ns, name):
            for f in by_object.get(dep, []):
                assert f.key in got, (kind, name, f.key)
        if any(f.severity != "info" for f in by_object.get((kind, ns, name), [])):
            assert report.root_causes, (kind, name)


def test_unreadable_link_is_named_as_an_undetermined_root(snap: ClusterSnapshot) -> None:
    objects = dict(snap.objects)
    del objects["persistentvolumeclaims"]
    limited = ClusterSnapshot(now=snap.now, objects=objects,
                              errors={"persistentvolumeclaims": "forbidden"})
    pod = next(p for p in snap.get("pods") if meta(p)[1].startswith("batch-big-"))
    pod = copy.deepcopy(pod)
    pod["spec"]["volumes"] = [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]
    for c in pod["status"]["conditions"]:
        if c["type"] == "PodScheduled":
            c["message"] = "0/6 nodes are available: pod has unbound immediate " \
                           "PersistentVolumeClaims. not found"
    objects["events"] = []
    objects["pods"] = [*snap.get("pods"), {**pod, "metadata": {**pod["metadata"],
                                                                "name": "needs-data"}}]
    r = dg.diagnose_pod(limited, str(meta(pod)[0]), "needs-data").report("pod")
    undetermined = [rc for rc in r.root_causes if not rc.determined]
    assert undetermined and "could not read persistentvolumeclaims (forbidden)" in \
        undetermined[0].missing
    assert any(s.detail.startswith("could not read persistentvolumeclaims") for s in r.chain)
    # and no rule judged the claims it could not read
    assert not any(f.check in ("pvc-pending", "storageclass-missing", "pvc-lost")
                   for f in r.findings)
