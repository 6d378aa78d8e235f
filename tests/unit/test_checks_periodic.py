"""Weekly and monthly checks, and the manual checklist items.

Prometheus answers and API objects come from the captures described in test_checks_metrics.py:
the dev lab (tests/data/check-prom-devlab.json), fault series on a real Prometheus
(tests/data/check-prom-faults.json) and backup objects written from the lab's CRD schemas
(tests/data/check-prom-backup-objects.json). Where the lab cannot show a fault (kwok nodes
report no images, and every kwok node runs the same version and kernel), a real node object of
the dev lab is copied and the one field in question changed; each test says which.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from k3sops.config import Platform
from k3sops.domain.checks import MANUAL, REGISTRY, CheckContext, selected
from k3sops.domain.checks.capacity import normalize_image, pod_request, quantity
from k3sops.domain.findings import Finding
from k3sops.domain.metrics import parse_result
from k3sops.domain.snapshot import ClusterSnapshot

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data"
DEVLAB = json.loads((DATA / "check-prom-devlab.json").read_text())
FAULTS = json.loads((DATA / "check-prom-faults.json").read_text())
BACKUPS = json.loads((DATA / "check-prom-backup-objects.json").read_text())


def platform(**extra: Any) -> Platform:
    """The lab's platform.yaml shape (three environments, one namespace each)."""
    return Platform.model_validate({
        "name": "k3sops-lab",
        "environments": {env: {"namespaces": [env]}
                         for env in ("development", "staging", "production")},
        **extra})


def snapshot(capture: dict[str, Any], objects: dict[str, Any] | None = None) -> ClusterSnapshot:
    """A snapshot at the capture's evaluation time, with its answers as InstantResults."""
    return ClusterSnapshot(
        now=datetime.fromtimestamp(capture["evaluated_at"], UTC),
        objects=objects if objects is not None else capture.get("objects", {}),
        metrics={n: parse_result(d) for n, d in capture["answers"].items()})


def run(check_id: str, snap: ClusterSnapshot, plat: Platform | None = None,
        **ctx: Any) -> list[Finding]:
    context = CheckContext(snapshot=snap, platform=plat if plat is not None else platform(),
                           period="monthly", **ctx)
    return REGISTRY[check_id].fn(context)

WEEKLY = ("capacity-requests", "capacity-forecast", "images-unused", "restore-not-verified")
MONTHLY = ("version-drift", "kernel-drift", "cert-expiry-horizon", "noisy-alerts",
           "usage-trend", "restore-test-due")


def nodes() -> list[dict[str, Any]]:
    return copy.deepcopy(DEVLAB["objects"]["nodes"])


def pods() -> list[dict[str, Any]]:
    return copy.deepcopy(DEVLAB["objects"]["pods"])


def node_named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(n for n in items if n["metadata"]["name"] == name)


def test_periods_select_the_right_checks() -> None:
    daily = {c.id for c in selected("daily")}
    weekly = {c.id for c in selected("weekly")}
    monthly = {c.id for c in selected("monthly")}
    assert not daily & {*WEEKLY, *MONTHLY}
    assert set(WEEKLY) <= weekly and not weekly & set(MONTHLY)
    assert {*WEEKLY, *MONTHLY, "alert-firing", "etcd-health"} <= monthly


@pytest.mark.parametrize("check_id", WEEKLY + MONTHLY)
def test_dev_lab_gives_nothing(check_id: str) -> None:
    """Six identical kwok nodes, minutes-to-hours of history: nothing to report."""
    assert run(check_id, snapshot(DEVLAB)) == []


# --------------------------------------------------------------------------------------------
# capacity-requests


def test_quantities() -> None:
    assert quantity("250m") == pytest.approx(0.25)
    assert quantity("1.5Gi") == 1.5 * 2**30
    assert quantity("2") == 2.0
    assert quantity("1e3") == 1000.0
    assert quantity("128M") == 128e6
    assert quantity("lots") is None


def test_pod_request_as_the_scheduler_counts() -> None:
    pod = {"spec": {"containers": [{"resources": {"requests": {"cpu": "100m"}}},
                                   {"resources": {"requests": {"cpu": "200m"}}}],
                    "initContainers": [{"resources": {"requests": {"cpu": "1"}}},
                                       {"restartPolicy": "Always",
                                        "resources": {"requests": {"cpu": "50m"}}}],
                    "overhead": {"cpu": "10m"}}}
    assert pod_request(pod, "cpu") == pytest.approx(1.01)  # the init container dominates
    pod["spec"]["initContainers"][0]["resources"]["requests"]["cpu"] = "100m"
    assert pod_request(pod, "cpu") == pytest.approx(0.36)  # 100m + 200m + sidecar 50m + 10m


def test_capacity_requests_when_a_big_pod_lands() -> None:
    """The dev lab's real batch-big pod (64 CPU, 256Gi, Pending) bound to k3s-agent-1."""
    items = pods()
    big = next(p for p in items if p["metadata"]["name"].startswith("batch-big"))
    big["spec"]["nodeName"] = "k3s-agent-1"
    snap = ClusterSnapshot(now=snapshot(DEVLAB).now,
                           objects={"nodes": nodes(), "pods": items})
    found = run("capacity-requests", snap)
    assert {(f.resource.name, f.evidence["resource"]) for f in found} == {
        ("k3s-agent-1", "cpu"), ("k3s-agent-1", "memory")}
    cpu = next(f for f in found if f.evidence["resource"] == "cpu")
    assert cpu.severity == "warning"
    assert cpu.evidence["allocatable"] == 8.0
    assert cpu.evidence["requested"] == pytest.approx(64.6)  # 64 + the 600m already there


# --------------------------------------------------------------------------------------------
# capacity-forecast


def test_capacity_forecast_on_faults() -> None:
    found = run("capacity-forecast", snapshot(FAULTS, objects={}))
    got = {f.evidence["resource"]: f for f in found}
    assert set(got) == {"disk", "memory", "cpu"}
    assert all(f.resource.name == "k3s-agent-1" and f.severity == "warning" for f in found)
    disk = got["disk"]
    assert disk.message.startswith("disk /var/lib/rancher on k3s-agent-1 full within 7 days")
    # 53.3 GB left, losing 20 GB a day
    assert disk.evidence["days_left"] == pytest.approx(53.34 / 20, abs=0.05)
    assert disk.runbook == "node-disk-filling-up"
    assert got["memory"].evidence["days_left"] == pytest.approx(6.92, abs=0.05)
    assert got["cpu"].evidence["days_left"] == pytest.approx(0.72, abs=0.05)


# --------------------------------------------------------------------------------------------
# images-unused


def test_normalize_image() -> None:
    assert normalize_image("nginx") == "docker.io/library/nginx:latest"
    assert normalize_image("nginx:1.27") == "docker.io/library/nginx:1.27"
    assert normalize_image("bitnami/redis:7") == "docker.io/bitnami/redis:7"
    assert normalize_image("ghcr.io/org/app@sha256:ab") == "ghcr.io/org/app@sha256:ab"
    assert normalize_image("localhost:5000/app") == "localhost:5000/app:latest"


def test_images_unused_on_a_node() -> None:
    """kwok nodes list no images: k3s-agent-1 is given the kubelet's images list it would have."""
    items, node_pods = nodes(), pods()
    node = node_named(items, "k3s-agent-1")
    in_use = {c["image"] for p in node_pods if p["spec"].get("nodeName") == "k3s-agent-1"
              for c in p["spec"]["containers"]}
    assert in_use, "the dev lab runs pods on k3s-agent-1"
    assert "postgres:15" in in_use
    used_image = sorted(in_use)[0]
    node["status"]["images"] = [
        {"names": [normalize_image(used_image)], "sizeBytes": 900 * 2**20},
        {"names": ["docker.io/rancher/mirrored-pause@sha256:74c4", "docker.io/rancher/"
                   "mirrored-pause:3.6"], "sizeBytes": 300_000},
        # postgres:15 runs on k3s-agent-1; grafana only on another node
        {"names": ["docker.io/library/postgres@sha256:9f1e", "docker.io/library/postgres:15"],
         "sizeBytes": 400 * 2**20},
        {"names": ["docker.io/grafana/grafana@sha256:5d2a", "docker.io/grafana/grafana:11.6.0"],
         "sizeBytes": 1_600 * 2**20},
        {"names": ["ghcr.io/example/ml-model:2024-01"], "sizeBytes": 3 * 2**30},
    ]
    snap = ClusterSnapshot(now=snapshot(DEVLAB).now, objects={"nodes": items,
                                                             "pods": node_pods})
    [finding] = run("images-unused", snap)
    assert (finding.resource.name, finding.severity) == ("k3s-agent-1", "info")
    assert [i["image"] for i in finding.evidence["images"]] == [
        "ghcr.io/example/ml-model:2024-01", "docker.io/grafana/grafana:11.6.0"]
    assert finding.evidence["unused_bytes"] == 3 * 2**30 + 1_600 * 2**20


# --------------------------------------------------------------------------------------------
# restore drills


def drill_snapshot() -> ClusterSnapshot:
    """Etcd snapshots exist (check-prom-backup-objects.json): there is something to restore."""
    return ClusterSnapshot(
        now=snapshot(DEVLAB).now,
        objects={"nodes": nodes(),
                 "etcdsnapshotfiles.k3s.cattle.io": BACKUPS["etcdsnapshotfiles.k3s.cattle.io"]})


def drills(*days_ago_ok: tuple[float, bool]) -> dict[str, Any]:
    now = snapshot(DEVLAB).now
    return {"restore_drills": [{"at": (now - timedelta(days=d)).isoformat(), "kind": "etcd",
                                "ok": ok} for d, ok in days_ago_ok]}


def restore_findings(history: dict[str, Any]) -> dict[str, Finding]:
    snap = drill_snapshot()
    return {c: f for c in ("restore-not-verified", "restore-test-due")
            for f in run(c, snap, history=history)}


def test_restore_drills() -> None:
    assert restore_findings({}) == {}  # --no-history: nothing known, nothing said
    never = restore_findings({"restore_drills": []})
    assert set(never) == {"restore-not-verified", "restore-test-due"}
    assert never["restore-not-verified"].message.startswith(
        "no backup restore was verified this week")
    assert never["restore-test-due"].severity == "warning"
    # a successful drill 10 days ago satisfies the month but not the week; a failed one
    # yesterday does not count, and is shown
    found = restore_findings(drills((10, True), (1, False)))
    assert set(found) == {"restore-not-verified"}
    assert found["restore-not-verified"].evidence["failed_drills_in_window"][0]["ok"] is False
    assert restore_findings(drills((2, True))) == {}


def test_restore_drills_without_anything_to_restore() -> None:
    snap = ClusterSnapshot(now=snapshot(DEVLAB).now, objects={"nodes": nodes()})
    assert run("restore-not-verified", snap, history={"restore_drills": []}) == []
    with_backup = platform(backup={"repository": "/srv/restic", "password_env": "RESTIC_PW"})
    assert len(run("restore-not-verified", snap, with_backup,
                   history={"restore_drills": []})) == 1


# --------------------------------------------------------------------------------------------
# versions


def test_version_and_kernel_drift() -> None:
    """Two real dev lab nodes given an older K3s and kernel, as after a half-done upgrade."""
    items = nodes()
    for name in ("k3s-agent-2", "k3s-agent-3"):
        info = node_named(items, name)["status"]["nodeInfo"]
        info["kubeletVersion"] = "v1.33.6+k3s1"
        info["kernelVersion"] = "6.1.0-26-amd64"
    snap = ClusterSnapshot(now=snapshot(DEVLAB).now, objects={"nodes": items},
                           server_version="v1.34.4+k3s1")
    [drift] = run("version-drift", snap)
    assert (drift.severity, drift.resource.kind) == ("warning", "Cluster")
    assert drift.evidence["versions"]["v1.33.6+k3s1"] == ["k3s-agent-2", "k3s-agent-3"]
    assert len(drift.evidence["versions"]["v1.34.4+k3s1"]) == 4
    assert "v1.33.6+k3s1: k3s-agent-2, k3s-agent-3" in drift.message
    [kernel] = run("kernel-drift", snap)
    assert kernel.severity == "info"
    assert set(kernel.evidence["kernels"]) == {"6.1.0-26-amd64", "6.1.0-28-amd64"}


def test_cert_expiry_horizon_on_faults() -> None:
    found = run("cert-expiry-horizon", snapshot(FAULTS, objects={}))
    got = {(f.resource.kind, f.resource.name): f for f in found}
    assert {k: f.severity for k, f in got.items()} == {
        ("ClientCertificate", "apiserver"): "warning",  # 20 days: bucket (7d, 30d]
        ("Node", "k3s-agent-1"): "warning",  # kubelet client cert, 10 days (serving: 200)
        ("Certificate", "api-tls"): "warning",  # 20 days
        ("Certificate", "shop-tls"): "critical",  # 5 days
    }
    assert "7 days to 30 days" in got[("ClientCertificate", "apiserver")].message
    assert got[("Certificate", "shop-tls")].resource.namespace == "development"
    assert got[("Certificate", "shop-tls")].runbook == "cert-manager-cert-expiry"
    assert got[("Node", "k3s-agent-1")].runbook == "kubelet-cert-expiry"
    scoped = run("cert-expiry-horizon", snapshot(FAULTS, objects={}), environment="production")
    assert ("Certificate", "shop-tls") not in {(f.resource.kind, f.resource.name) for f in scoped}


def test_cert_expiry_short_lived_client_certificate_is_a_warning() -> None:
    """Real test-lab answer (check-prom-shortlived-cert.json): a 1h client certificate was used.

    The histogram cannot tell it from a certificate about to lapse: reported, capped at warning.
    """
    capture = json.loads((DATA / "check-prom-shortlived-cert.json").read_text())
    [found] = run("cert-expiry-horizon", snapshot(capture, objects={}))
    assert (found.resource.name, found.severity) == ("apiserver", "warning")
    assert "30 minutes to 60 minutes" in found.message


def test_noisy_alerts_on_faults() -> None:
    found = run("noisy-alerts", snapshot(FAULTS, objects={}))
    assert [f.resource.name for f in found] == ["CPUThrottlingHigh", "KubeHpaMaxedOut",
                                                "NodeMemoryHighUtilization",
                                                "KubePodCrashLooping", "NodeDown"]
    assert all(f.severity == "info" for f in found)
    assert found[0].evidence == {"rank": 1, "firing_samples_30d": 2410.0}


def test_usage_trend_on_faults() -> None:
    found = run("usage-trend", snapshot(FAULTS, objects={}))
    got = {(f.resource.name, f.evidence["resource"]): f for f in found}
    assert set(got) == {("k3s-agent-1", "cpu"), ("k3s-agent-1", "memory")}  # agent-2 is flat
    assert got[("k3s-agent-1", "cpu")].evidence["percent_30d_ago"] == pytest.approx(20.0)
    assert got[("k3s-agent-1", "memory")].evidence["rise_points"] == pytest.approx(44.1,
                                                                                   abs=0.1)


# --------------------------------------------------------------------------------------------
# manual items


def test_manual_items() -> None:
    assert {i: MANUAL[i].period for i in ("review-overnight-incidents", "review-dashboards",
                                          "review-access", "dr-runbook-review",
                                          "security-patches")} == {
        "review-overnight-incidents": "daily", "review-dashboards": "weekly",
        "review-access": "monthly", "dr-runbook-review": "monthly",
        "security-patches": "monthly"}
    for item in MANUAL.values():
        assert len(item.instructions) > 100 and item.title
        assert item.acknowledged_by is None


def test_every_check_declares_prefixed_queries() -> None:
    mine = {"alerts", "controlplane", "apps", "backups", "capacity", "versions"}
    specs = [s for s in REGISTRY.values() if s.fn.__module__.rsplit(".", 1)[-1] in mine]
    assert len(specs) == 21
    for spec in specs:
        queries = spec.queries_for(None)
        for name in queries:
            assert name.startswith(spec.id + ":"), name
        if queries:
            assert "prometheus" in spec.needs or spec.id == "backup-stale"


def test_no_platform_is_fine() -> None:
    snap = snapshot(FAULTS, objects={})
    for check_id in ("etcd-health", "apiserver-errors", "cert-expiry-horizon",
                     "capacity-forecast", "backup-stale"):
        context = CheckContext(snapshot=snap, platform=None, period="monthly")
        assert REGISTRY[check_id].fn(context), check_id  # the faults show without a platform
