"""The lab's parts are real: controllers, scheduler, Prometheus, Alertmanager, kwok, PostgreSQL."""

from __future__ import annotations

import json
import uuid

import httpx2
import pytest

from conftest import Lab, wait_for

pytestmark = pytest.mark.lab


def test_deployment_scaled_to_five_runs_five_pods_on_fake_nodes(lab: Lab) -> None:
    ns = f"t-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", ns)
    try:
        lab.kubectl("-n", ns, "create", "deployment", "demo", "--image=nginx:1.27")
        lab.kubectl("-n", ns, "scale", "deployment/demo", "--replicas=5")
        lab.kubectl("-n", ns, "rollout", "status", "deployment/demo", "--timeout=120s",
                    timeout=150)
        pods = json.loads(lab.kubectl("-n", ns, "get", "pods", "-o", "json").stdout)["items"]
        running = [p for p in pods if p["status"]["phase"] == "Running"]
        assert len(running) == 5
        nodes = {p["spec"]["nodeName"] for p in running}
        # Placed by the real scheduler onto the kwok nodes the lab created.
        lab_nodes = {f"k3s-{r}-{i}" for r in ("server", "agent") for i in (1, 2, 3)}
        assert nodes <= lab_nodes
        events = lab.kubectl("-n", ns, "get", "events", "-o", "json").stdout
        assert "default-scheduler" in events and "ScalingReplicaSet" in events
    finally:
        lab.kubectl("delete", "namespace", ns, "--wait=false")


def test_every_prometheus_target_is_up(lab: Lab) -> None:
    url = lab.layout.url("prometheus") + "/api/v1/targets"

    def all_up() -> list[dict[str, object]] | None:
        active = httpx2.get(url, timeout=5).json()["data"]["activeTargets"]
        return active if active and all(t["health"] == "up" for t in active) else None

    active = wait_for(all_up, timeout=90, every=3)
    assert active, httpx2.get(url, timeout=5).text[:2000]
    jobs = {t["labels"]["job"] for t in active}
    assert {"apiserver", "etcd", "kube-state-metrics", "node-exporter", "alertmanager",
            "kube-controller-manager", "kube-scheduler", "prometheus", "kwok"} <= jobs
    # kube-state-metrics really sees the cluster: it reports the lab's six nodes.
    q = httpx2.get(lab.layout.url("prometheus") + "/api/v1/query",
                   params={"query": "count(kube_node_info)"}, timeout=5).json()
    assert q["data"]["result"] and q["data"]["result"][0]["value"][1] == "6"


def test_alert_posted_to_alertmanager_is_listed(lab: Lab) -> None:
    base = lab.layout.url("alertmanager")
    name = f"K3sopsLabTest{uuid.uuid4().hex[:6]}"
    r = httpx2.post(f"{base}/api/v2/alerts", json=[{
        "labels": {"alertname": name, "severity": "warning", "environment": "development"},
        "annotations": {"summary": "lab test alert"}}], timeout=5)
    assert r.status_code == 200
    alerts = wait_for(lambda: [a for a in httpx2.get(f"{base}/api/v2/alerts", timeout=5).json()
                            if a["labels"]["alertname"] == name], timeout=30)
    assert alerts and alerts[0]["status"]["state"] == "active"


def test_exec_into_postgres_pod_reaches_the_lab_postgres(lab: Lab) -> None:
    out = lab.kubectl("-n", "production", "exec", "postgres-0", "--", "psql", "-tAc",
                      "select current_setting('port')")
    assert out.stdout.strip() == str(lab.layout.port("postgres"))


def test_port_forward_to_prometheus_service_reaches_real_prometheus(lab: Lab) -> None:
    import subprocess

    port = lab.layout.port_base + 900
    proc = subprocess.Popen([str(lab.binaries["kubectl"]), "--kubeconfig",
                             str(lab.layout.kubeconfig), "-n", "monitoring", "port-forward",
                             "svc/prometheus-server", f"{port}:80"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def ready() -> str | None:
            try:
                r = httpx2.get(f"http://127.0.0.1:{port}/-/ready", timeout=2)
            except httpx2.HTTPError:
                return None
            return r.text if r.status_code == 200 else None

        assert "Prometheus" in (wait_for(ready, timeout=20, every=0.5) or "")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_logs_of_a_lab_pod(lab: Lab) -> None:
    out = lab.kubectl("-n", "production", "logs", "postgres-0", "--previous").stdout
    assert "connection refused" in out


def test_cluster_is_shaped_like_k3s(lab: Lab) -> None:
    nodes = json.loads(lab.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    role = "node-role.kubernetes.io/control-plane"
    servers = [n for n in nodes if role in n["metadata"]["labels"]]
    assert len(servers) == 3 and len(nodes) == 6
    assert all(n["status"]["nodeInfo"]["kubeletVersion"].endswith("+k3s1") for n in nodes)
    crds = lab.kubectl("get", "crd", "-o", "name").stdout
    for crd in ("volumes.longhorn.io", "backups.longhorn.io", "ipaddresspools.metallb.io",
                "applications.argoproj.io", "etcdsnapshotfiles.k3s.cattle.io",
                "prometheusrules.monitoring.coreos.com"):
        assert crd in crds
    svcs = lab.kubectl("-n", "monitoring", "get", "svc", "-o", "name").stdout
    assert {"service/prometheus-server", "service/alertmanager", "service/grafana"} <= set(
        svcs.split())
    # A CRD's status subresource is real: write a Longhorn Backup and its status.
    lab.kubectl("apply", "-f", "-", input=(
        "apiVersion: longhorn.io/v1beta2\nkind: Backup\nmetadata:\n  name: t-backup\n"
        "  namespace: longhorn-system\n  labels: {backup-volume: pvc-1}\n"
        "spec:\n  snapshotName: snap-1\n"))
    lab.kubectl("-n", "longhorn-system", "patch", "backups.longhorn.io", "t-backup",
                "--subresource=status", "--type=merge", "-p",
                '{"status":{"state":"Completed","progress":100,"url":"s3://b/x"}}')
    got = json.loads(lab.kubectl("-n", "longhorn-system", "get", "backups.longhorn.io",
                                 "t-backup", "-o", "json").stdout)
    assert got["status"]["state"] == "Completed"
    lab.kubectl("-n", "longhorn-system", "delete", "backups.longhorn.io", "t-backup")
