"""Daily metric, alert and backup checks on real Prometheus and Alertmanager answers.

Data (tests/data/):

* check-prom-devlab.json: every query of these checks answered by the dev lab's Prometheus
  (127.0.0.1:17090), with the dev lab's nodes and pods, captured while the lab ran the
  crashloop, pending, failed-pod, oomkilled, stuck-rollout and node-notready scenarios: a
  cluster whose control plane is healthy.
* check-prom-faults.json: the same queries answered by a real Prometheus 2.42 started just for
  the capture (127.0.0.1 only) over fault series backfilled with ``promtool tsdb
  create-blocks-from openmetrics``: an etcd member without leader, a slow and a nearly full one,
  10 % API server 5xx, a 2s p99, down targets (apiserver, scheduler, controller-manager), a stale
  k3sops backup, an application with 20 % 5xx and a 2.1s p95, and the ALERTS history of a night.
  The lab's own Prometheus has none of these faults, and must not be broken to get them.
* check-prom-alertmanager.json: ``GET /api/v2/alerts`` of a real Alertmanager started for the
  capture, after posting alerts, silencing TargetDown and inhibiting KubeletDown with NodeDown.
* check-prom-backup-objects.json: ETCDSnapshotFile and Longhorn Backup/Volume objects written
  from the lab's CRD schemas (k3s and the Longhorn manager cannot run here; the lab test
  validates the objects against the real CRDs with a server-side dry run).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from k3sops.config import Platform
from k3sops.domain.checks import REGISTRY, CheckContext
from k3sops.domain.findings import Finding
from k3sops.domain.metrics import parse_result
from k3sops.domain.snapshot import ClusterSnapshot

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


DEVLAB = load("check-prom-devlab.json")
FAULTS = load("check-prom-faults.json")
ALERTMANAGER = load("check-prom-alertmanager.json")
BACKUPS = load("check-prom-backup-objects.json")


def platform(**extra: Any) -> Platform:
    """The lab's platform.yaml shape (three environments, one namespace each)."""
    return Platform.model_validate({
        "name": "k3sops-lab",
        "environments": {env: {"namespaces": [env]}
                         for env in ("development", "staging", "production")},
        **extra})


def snapshot(capture: dict[str, Any], objects: dict[str, Any] | None = None,
             alerts: list[Any] | None = None, now: datetime | None = None) -> ClusterSnapshot:
    return ClusterSnapshot(
        now=now or datetime.fromtimestamp(capture["evaluated_at"], UTC),
        objects=objects if objects is not None else capture.get("objects", {}),
        metrics=_renamed({n: parse_result(d) for n, d in capture["answers"].items()}),
        alerts=alerts)


def _renamed(metrics: dict[str, Any]) -> dict[str, Any]:
    # The captures predate backup-missing's own query (same expression as backup-stale's).
    if "backup-stale:last_success" in metrics:
        metrics["backup-missing:last_success"] = metrics["backup-stale:last_success"]
    return metrics


def run(check_id: str, snap: ClusterSnapshot, plat: Platform | None = None,
        **ctx: Any) -> list[Finding]:
    context = CheckContext(snapshot=snap, platform=plat if plat is not None else platform(),
                           period="monthly", **ctx)
    return REGISTRY[check_id].fn(context)


def by_name(findings: list[Finding]) -> dict[str, Finding]:
    return {f.resource.name: f for f in findings}


DAILY_METRIC_CHECKS = ("alert-overnight", "apiserver-errors", "apiserver-latency", "etcd-health",
                       "control-plane-targets", "app-error-rate", "app-latency", "backup-stale",
                       "backup-missing", "backup-failed")


# --------------------------------------------------------------------------------------------
# The healthy dev lab


@pytest.mark.parametrize("check_id", DAILY_METRIC_CHECKS)
def test_dev_lab_control_plane_and_apps_give_nothing(check_id: str) -> None:
    snap = snapshot(DEVLAB)
    assert snap.metric("etcd-health:has_leader") is not None  # the query did answer
    assert run(check_id, snap) == []


def test_dev_lab_answers_are_the_declared_queries() -> None:
    declared = {n: q for c in REGISTRY.values() for n, q in c.queries_for(None).items()}
    for name, expr in DEVLAB["queries"].items():
        assert declared[name] == expr, f"{name} changed since the capture: re-capture"


# --------------------------------------------------------------------------------------------
# alert-firing


def test_alert_firing_reports_active_alerts_with_their_severity_and_runbook() -> None:
    snap = snapshot(FAULTS, objects={}, alerts=ALERTMANAGER["alerts"],
                    now=datetime.fromisoformat(ALERTMANAGER["captured_at"]))
    found = run("alert-firing", snap)
    names = sorted((f.resource.name, f.resource.namespace) for f in found)
    # TargetDown is silenced, KubeletDown inhibited by NodeDown, Watchdog fires on purpose.
    assert names == [("CPUThrottlingHigh", "staging"), ("KubePodCrashLooping", "development"),
                     ("KubePodCrashLooping", "production"), ("NodeDown", None)]
    node_down = next(f for f in found if f.resource.name == "NodeDown")
    assert node_down.severity == "critical"
    assert node_down.resource.kind == "Alert"
    assert node_down.runbook == "node-down"
    assert node_down.evidence["labels"]["node"] == "k3s-agent-3"
    assert node_down.evidence["startsAt"]
    assert "Node k3s-agent-3 is down" in node_down.message
    crash = next(f for f in found if f.resource.namespace == "development")
    assert (crash.severity, crash.runbook, crash.environment) == (
        "warning", "pod-crash-looping", "development")
    info = next(f for f in found if f.resource.name == "CPUThrottlingHigh")
    assert (info.severity, info.runbook) == ("info", "alert-firing")


def test_alert_firing_respects_the_environment_and_ends_at() -> None:
    alerts = ALERTMANAGER["alerts"]
    now = datetime.fromisoformat(ALERTMANAGER["captured_at"])
    scoped = run("alert-firing", snapshot(FAULTS, objects={}, alerts=alerts, now=now),
                 environment="production")
    assert [(f.resource.name, f.resource.namespace) for f in scoped
            if f.resource.namespace] == [("KubePodCrashLooping", "production")]
    # Past their endsAt the same alerts are resolved: nothing fires.
    later = now + timedelta(hours=2)
    assert run("alert-firing", snapshot(FAULTS, objects={}, alerts=alerts, now=later)) == []


# --------------------------------------------------------------------------------------------
# alert-overnight


def test_alert_overnight_lists_alerts_that_fired_and_stopped() -> None:
    found = run("alert-overnight", snapshot(FAULTS, objects={}))
    got = {(f.resource.name, f.resource.namespace): f for f in found}
    # NodeDown still fires (alert-firing's), KubeAPIErrorsHigh ended 27h ago (outside 24h),
    # Watchdog never stops.
    assert set(got) == {("KubePodCrashLooping", "development"), ("KubeJobFailed", "production"),
                        ("TargetDown", "monitoring")}
    crash = got[("KubePodCrashLooping", "development")]
    assert crash.severity == "info"
    assert crash.evidence["series_count"] == 2
    assert crash.evidence["highest_severity"] == "warning"
    assert {s["pod"] for s in crash.evidence["series"]} == {"checkout-7d9f8-abcde",
                                                             "checkout-7d9f8-fghij"}
    # last seen about 5h before the capture (the later of the two pods), sampled per minute
    last = datetime.fromisoformat(crash.evidence["series"][0]["last_seen_firing"])
    ago = datetime.fromtimestamp(FAULTS["evaluated_at"], UTC) - last
    assert timedelta(hours=4, minutes=58) <= ago <= timedelta(hours=5, minutes=2)


def test_alert_overnight_starts_at_the_last_check() -> None:
    at = datetime.fromtimestamp(FAULTS["evaluated_at"], UTC)
    last_check = (at - timedelta(hours=12)).isoformat()
    found = run("alert-overnight", snapshot(FAULTS, objects={}), last_check=last_check)
    # TargetDown stopped 19h ago: the previous check, 12h ago, saw it already.
    assert {f.resource.name for f in found} == {"KubePodCrashLooping", "KubeJobFailed"}
    assert all(f.evidence["since"] for f in found)


def test_alert_overnight_needs_the_current_alerts() -> None:
    snap = snapshot(FAULTS, objects={})
    metrics = {k: v for k, v in snap.metrics.items() if k != "alert-overnight:now"}
    partial = ClusterSnapshot(now=snap.now, metrics=metrics)
    assert run("alert-overnight", partial) == []


# --------------------------------------------------------------------------------------------
# control plane


def test_apiserver_errors_and_latency_on_faults() -> None:
    snap = snapshot(FAULTS, objects={})
    [errors] = run("apiserver-errors", snap)
    assert (errors.severity, errors.resource.kind, errors.runbook) == (
        "warning", "APIServer", "apiserver-errors")
    assert errors.evidence["error_percent"] == pytest.approx(9.091, abs=0.001)
    assert errors.evidence["threshold_percent"] == 5
    [latency] = run("apiserver-latency", snap)
    assert latency.evidence["p99_seconds"] == pytest.approx(2.0)
    # a more tolerant environment threshold silences the error check
    lax = platform(environments={"production": {"thresholds": {"http_error_rate_percent": 10}}})
    assert run("apiserver-errors", snap, lax) == []


def test_etcd_health_on_faults() -> None:
    found = run("etcd-health", snapshot(FAULTS, objects={}))
    got = {(f.resource.name, f.runbook): f.severity for f in found}
    assert got == {("10.0.0.11:2381", "etcd-no-leader"): "critical",
                   ("10.0.0.12:2381", "etcd-slow-disk"): "warning",
                   ("10.0.0.12:2381", "etcd-db-quota"): "warning"}
    slow = next(f for f in found if f.runbook == "etcd-slow-disk")
    assert slow.evidence["wal_fsync_p99_seconds"] == pytest.approx(0.975)


def test_etcd_health_is_off_without_etcd_metrics() -> None:
    plat = platform(monitoring={"etcd_metrics": False})
    assert run("etcd-health", snapshot(FAULTS, objects={}), plat) == []


def test_control_plane_targets_k3s_aware() -> None:
    """K3s embeds the scheduler and controller-manager: never reported when embedded."""
    snap = snapshot(FAULTS, objects={})
    embedded = run("control-plane-targets", snap)
    assert [f.resource.name for f in embedded] == ["apiserver/10.0.0.11:6443",
                                                   "node-exporter/10.0.0.22:9100"]
    assert all(f.severity == "critical" for f in embedded)
    assert embedded[0].runbook == "apiserver-down"
    assert embedded[0].evidence["targets_up_in_job"] == 1
    separate = run("control-plane-targets", snap,
                   platform(monitoring={"embedded_control_plane": False}))
    assert {f.resource.name for f in separate} - {f.resource.name for f in embedded} == {
        "kube-controller-manager/10.0.0.11:10257", "kube-scheduler/10.0.0.11:10259"}


def test_control_plane_targets_without_platform_uses_k3s_defaults() -> None:
    context = CheckContext(snapshot=snapshot(FAULTS, objects={}), platform=None, period="daily")
    names = {f.resource.name for f in REGISTRY["control-plane-targets"].fn(context)}
    assert not any(n.startswith(("kube-scheduler", "kube-controller-manager")) for n in names)


# --------------------------------------------------------------------------------------------
# applications


def test_app_red_metrics_against_environment_thresholds() -> None:
    snap = snapshot(FAULTS, objects={})
    [errors] = run("app-error-rate", snap)
    assert (errors.resource.namespace, errors.resource.name, errors.environment) == (
        "development", "checkout", "development")
    assert errors.evidence["error_percent"] == pytest.approx(20.0)
    [slow] = run("app-latency", snap)
    assert slow.resource.name == "checkout"
    assert slow.evidence["p95_seconds"] == pytest.approx(2.125)
    # production/api: 1.96 % errors, 0.2s p95: under the defaults; over stricter ones.
    strict = platform(environments={
        "development": {"namespaces": ["development"]},
        "production": {"namespaces": ["production"],
                       "thresholds": {"http_error_rate_percent": 1.0, "p95_latency_seconds": 0.1}}})
    assert {f.resource.name for f in run("app-error-rate", snap, strict)} == {"checkout", "api"}
    assert {f.resource.name for f in run("app-latency", snap, strict)} == {"checkout", "api"}


def test_app_checks_scope_and_custom_metric_names() -> None:
    snap = snapshot(FAULTS, objects={})
    assert run("app-error-rate", snap, environment="production") == []
    custom = platform(monitoring={"app_metrics": {"requests_total": "requests_total"}})
    # The queries follow platform.yaml's metric names (the service runs what queries_for gives).
    queries = REGISTRY["app-error-rate"].queries_for(custom)
    assert all("http_requests_total" not in q and "requests_total" in q
               for q in queries.values())


# --------------------------------------------------------------------------------------------
# backups


def backup_snapshot(with_metrics: dict[str, Any] | None = None) -> ClusterSnapshot:
    nodes = [n for n in DEVLAB["objects"]["nodes"]]
    objects = {"nodes": nodes, **{k: BACKUPS[k] for k in (
        "etcdsnapshotfiles.k3s.cattle.io", "backups.longhorn.io", "volumes.longhorn.io")}}
    metrics = _renamed({n: parse_result(d) for n, d in (with_metrics or {}).items()})
    return ClusterSnapshot(now=datetime.fromisoformat(BACKUPS["now"]), objects=objects,
                           metrics=metrics)


def test_backup_stale_from_the_metric() -> None:
    found = run("backup-stale", snapshot(FAULTS, objects={}))
    [stale] = found
    assert (stale.resource.kind, stale.resource.name, stale.severity) == (
        "Backup", "etcd/k3s-server-1", "warning")
    assert stale.evidence["age_seconds"] == 30 * 3600


def test_backup_stale_once_per_target_when_two_jobs_export_the_gauge() -> None:
    # `k3sops serve` and the textfile collector both scraped: the same (kind, target) twice
    capture = json.loads(json.dumps(FAULTS))
    series = capture["answers"]["backup-stale:last_success"]["result"]
    now = capture["evaluated_at"]
    for s in list(series):
        twin = json.loads(json.dumps(s))
        twin["metric"].update(job="node-exporter", instance="10.0.0.1:9100")
        twin["value"][1] = str(float(s["value"][1]) - 3600)  # the textfile an hour older
        series.append(twin)
    [stale] = run("backup-stale", snapshot(capture, objects={}))
    assert stale.resource.name == "etcd/k3s-server-1"
    assert stale.evidence["age_seconds"] == 30 * 3600  # the newest of the two
    # a stale textfile does not make a target stale that the service reports fresh
    fresh = [s for s in series if s["metric"]["job"] == "k3sops"]
    for s in fresh:
        s["value"][1] = str(now - 60)
    assert run("backup-stale", snapshot(capture, objects={})) == []


def test_backup_stale_from_snapshots_and_longhorn() -> None:
    found = run("backup-stale", backup_snapshot())
    got = {(f.resource.kind, f.resource.name): f for f in found}
    # server-2's newest is 36h old; pvc-cache's 40h; server-9 is gone, pvc-gone too.
    assert set(got) == {("ETCDSnapshotFile", next(
        o["metadata"]["name"] for o in BACKUPS["etcdsnapshotfiles.k3s.cattle.io"]
        if o["spec"]["nodeName"] == "k3s-server-2")), ("Volume", "pvc-cache")}
    assert all(f.severity == "warning" for f in found)
    assert next(f for f in found if f.resource.kind == "Volume").evidence["age_seconds"] == (
        40 * 3600)


def test_backup_failed_newer_than_last_success() -> None:
    found = run("backup-failed", backup_snapshot())
    got = {(f.resource.kind, f.resource.name): f for f in found}
    assert len(found) == 2
    snap_fail = next(f for f in found if f.resource.kind == "ETCDSnapshotFile")
    assert snap_fail.severity == "critical"
    assert "context deadline exceeded" in snap_fail.message
    assert snap_fail.evidence["node"] == "k3s-server-3"
    lh = got[("Backup", "backup-0a1b2c3d4e5f4a02")]
    assert (lh.severity, lh.resource.namespace, lh.evidence["volume"]) == (
        "critical", "longhorn-system", "pvc-orders")
    # pvc-logs failed once but completed afterwards: not reported
    assert all(f.evidence.get("volume") != "pvc-logs" for f in found)


def test_backup_missing_only_with_a_backup_section(tmp_path: Path) -> None:
    empty = {"backup-stale:last_success": DEVLAB["answers"]["backup-stale:last_success"]}
    snap = backup_snapshot(empty)
    assert run("backup-missing", snap) == []
    configured = platform(backup={"repository": str(tmp_path), "password_env": "RESTIC_PW"})
    [missing] = run("backup-missing", snap, configured)
    assert (missing.check, missing.severity) == ("backup-missing", "warning")
    assert "no successful backup recorded" in missing.message
    # Prometheus did not answer: a missing answer is not a missing backup
    assert run("backup-missing", backup_snapshot(), configured) == []
    # with series recorded, nothing is missing
    assert run("backup-missing", snapshot(FAULTS, objects={}), configured) == []


def test_no_backups_anywhere_gives_nothing() -> None:
    snap = snapshot(DEVLAB)
    for check_id in ("backup-stale", "backup-missing", "backup-failed"):
        assert run(check_id, snap) == []
