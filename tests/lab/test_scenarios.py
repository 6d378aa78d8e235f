"""Each scenario is seen by plain kubectl as described, and reset removes it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
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


EXPECTED = {
    ("node-not-ready", "Node", None, "k3s-agent-3"),
    ("pod-crashloop", "Pod", NS, "checkout-"),
    ("pod-pending", "Pod", NS, "batch-big-"),
    ("pod-failed", "Pod", NS, "report-generator"),
    ("pod-oomkilled", "Pod", NS, "cache-"),
    ("deployment-rollout-stuck", "Deployment", NS, "api"),
    ("pvc-pending", "PersistentVolumeClaim", NS, "data-orders"),
    ("service-no-endpoints", "Service", NS, "payments"),
    ("ingress-backend-missing", "Ingress", NS, "shop"),
    ("loadbalancer-no-ip", "Service", NS, "public-gateway"),
}


def test_check_reports_every_scenario_with_the_right_id_and_resource(
        faults: Lab, tmp_path: Path) -> None:
    """The accuracy bar of `k3sops check`: each injected fault, named by check id and object.

    Consequences of the NotReady node (its pods marked not ready, workloads short of replicas)
    are real findings too, so only the presence of each expected finding is asserted here; the
    healthy-lab test asserts the absence of false alarms.
    """
    def report() -> Any:
        r = faults.k3sops("-o", "json", "check", "--state-dir", str(tmp_path), timeout=180)
        assert r.returncode in (0, 4), r.stderr
        return json.loads(r.stdout)

    def missing(rep: Any) -> set[tuple[str, str, str | None, str]]:
        got = {(f["check"], f["resource"]["kind"], f["resource"]["namespace"],
                f["resource"]["name"]) for f in rep["findings"]}
        return {e for e in EXPECTED
                if not any(g[:3] == e[:3] and g[3].startswith(e[3]) for g in got)}

    # Faults settle at their own pace (the crash loop, the progress deadline): poll.
    def complete_report() -> Any:
        rep = report()
        return None if missing(rep) else rep

    complete = wait_for(complete_report, timeout=150, every=5)
    if complete is None:
        pytest.fail(f"never reported: {sorted(missing(report()))}")
    assert complete["summary"]["critical"] >= 4


def test_check_reports_a_stale_etcd_snapshot_and_a_firing_alert(lab: Lab, tmp_path: Path) -> None:
    """A stale backup and a firing alert are reported by `k3sops check`, by id and object.

    k3s cannot run here: the ETCDSnapshotFile is written as k3s writes it (spec and status in
    one object, no status subresource), dated three days ago.
    """
    import datetime as dt
    import uuid

    import httpx2

    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    name = f"etcd-snapshot-k3s-server-1-{uuid.uuid4().hex[:6]}"
    lab.kubectl("apply", "-f", "-", input=(
        "apiVersion: k3s.cattle.io/v1\nkind: ETCDSnapshotFile\n"
        f"metadata: {{name: {name}}}\n"
        f"spec: {{snapshotName: on-demand-k3s-server-1, nodeName: k3s-server-1,\n"
        f"  location: 'file:///var/lib/rancher/k3s/server/db/snapshots/{name}'}}\n"
        f"status: {{readyToUse: true, size: '4521984', creationTime: '{old}'}}\n"))
    alertname = f"K3sopsCheckTest{uuid.uuid4().hex[:6]}"
    am = lab.layout.url("alertmanager")
    ends = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat()
    alert = {"labels": {"alertname": alertname, "severity": "critical",
                        "environment": "production", "namespace": "production"},
             "annotations": {"summary": "check test", "runbook_id": "node-not-ready"},
             "endsAt": ends}
    httpx2.post(f"{am}/api/v2/alerts", json=[alert], timeout=10).raise_for_status()
    try:
        def found() -> Any:
            r = lab.k3sops("-o", "json", "check", "--state-dir", str(tmp_path), timeout=180)
            fs = json.loads(r.stdout)["findings"]
            stale = [f for f in fs if f["check"] == "backup-stale"
                     and f["resource"] == {"kind": "ETCDSnapshotFile", "namespace": None,
                                           "name": name}]
            firing = [f for f in fs if f["check"] == "alert-firing"
                      and f["resource"]["name"] == alertname]
            return (stale, firing) if stale and firing else None

        got = wait_for(found, timeout=60, every=3)
        assert got, "backup-stale or alert-firing not reported"
        stale, firing = got
        assert stale[0]["severity"] == "warning"
        assert firing[0]["severity"] == "critical"
        assert firing[0]["environment"] == "production"
    finally:
        lab.kubectl("delete", "etcdsnapshotfiles.k3s.cattle.io", name, "--ignore-not-found")
        resolved = {**alert, "endsAt": dt.datetime.now(dt.UTC).isoformat()}
        httpx2.post(f"{am}/api/v2/alerts", json=[resolved], timeout=10)


# --- k3sops diagnose: each fault diagnosed with its cause and evidence ----------------------

def _diagnose(lab: Lab, target: Any, name: str | None = None,
              namespace: str | None = None) -> Any:
    """The diagnosis through the service, against the lab (as `k3sops diagnose` runs it)."""
    import os

    from k3sops.services import context
    from k3sops.services import diagnose as diagnose_service

    settings = context.resolve(lab.layout.kubeconfig, None, lab.layout.platform_file, lab.env,
                               Path.cwd())
    return diagnose_service.diagnose(settings, lab.env, Path(os.environ.get("HOME", "/root")),
                                     target, name, namespace)


def test_diagnose_pending_pod_names_insufficient_cpu(faults: Lab) -> None:
    pod = _wait(lambda: [p for p in _pods(faults, "pending")
                         if p["status"].get("phase") == "Pending"])[0]["metadata"]["name"]

    def cause() -> Any:
        r = _diagnose(faults, "pod", pod, NS)
        return [c for f in r.findings if f.check == "pod-pending"
                for c in f.evidence.get("causes", []) if c["cause"] == "insufficient-cpu"]

    c = _wait(cause)[0]
    assert c["requested"] and c["largest_allocatable"]


def test_diagnose_network_names_the_missing_service(faults: Lab) -> None:
    r = _diagnose(faults, "network", namespace=NS)
    f = next(f for f in r.findings if f.check == "ingress-backend-missing"
             and f.resource.name == "shop")
    assert f.evidence["broken_backends"][0]["service"] == "shop-frontend"
    assert any(s.step == f"routes to Service {NS}/shop-frontend" and s.detail == "does not exist"
               and not s.ok for s in r.chain)
    assert ("ingress-backend-missing", "shop") in {(rc.check, rc.resource.name)
                                                   for rc in r.root_causes}


def test_diagnose_crashloop_pod_has_exit_code_and_previous_logs(faults: Lab) -> None:
    def crashed() -> Any:
        return [p for p in _pods(faults, "crashloop")
                if any(cs.get("lastState", {}).get("terminated")
                       for cs in p["status"].get("containerStatuses", []))]

    pod = _wait(crashed)[0]["metadata"]["name"]
    r = _diagnose(faults, "pod", pod, NS)
    f = next(f for f in r.findings if f.check == "pod-crashloop")
    assert f.evidence["last_termination"]["exitCode"] == 1
    assert any("connection refused" in line for line in f.evidence["previous_logs"])
    assert r.root_causes[0].check == "pod-crashloop"


def test_diagnose_node_not_ready_with_taints(faults: Lab) -> None:
    def finding() -> Any:
        r = _diagnose(faults, "node", "k3s-agent-3")
        return [f for f in r.findings if f.check == "node-not-ready"]

    f = _wait(finding)[0]
    assert "node.kubernetes.io/not-ready" in f.evidence["taints"]
    r = _diagnose(faults, "node", "k3s-agent-3")
    assert next(s for s in r.chain if s.step == "role").detail.startswith("agent")
    assert r.root_causes[0].check == "node-not-ready"


def test_diagnose_unknown_pod_is_not_found_with_similar_names(faults: Lab) -> None:
    from k3sops.errors import NotFound

    with pytest.raises(NotFound) as e:
        _diagnose(faults, "pod", "checkout", NS)
    assert e.value.hint and "checkout-" in e.value.hint
