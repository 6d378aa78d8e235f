"""Workload and GitOps checks on real API objects captured from the dev lab.

Data (tests/data/, raw LISTs as `k3sops check` reads them, managedFields dropped):

* check-dev-lab.json: the whole dev lab (127.0.0.1:17000+) with the crashloop, pending,
  failed-pod, oomkilled, stuck-rollout and node-notready scenarios applied, plus a scratch
  namespace ``t-checks`` holding real objects whose status the real controllers and kwok wrote:
  Deployments ``web`` (healthy), ``orders`` (its pod crash-loops), ``idle`` (scaled to 0),
  ``spread`` (9 replicas with required anti-affinity on 5 schedulable nodes: a first rollout
  still within its deadline), ``catalog`` (3 replicas, one pod relabelled to crash-loop after the
  rollout finished: 2/3 available); StatefulSets ``queue`` (crash-looping), ``redis`` (healthy),
  ``archive`` (scaled to 0); DaemonSets ``log-shipper`` (crash-looping) and a K3s-style
  ``svclb-public-gateway-*`` (healthy); Jobs ``nightly-report`` (its pod fails with exit 2 via
  kwok's failed-pod stage: BackoffLimitExceeded) and ``db-migrate`` (Complete).
  ArgoCD cannot run here: the four ``applications.argoproj.io`` objects of ``t-checks`` were
  created against the lab's real CRD with the status the ArgoCD application controller writes
  (health/sync/resources/operationState, as ``kubectl get app -o json`` shows it on a real
  ArgoCD 3.1): ``shop-development`` Degraded and Synced, ``shop-staging`` Healthy and OutOfSync,
  ``billing-production`` Missing and OutOfSync after a failed sync, ``monitoring`` Healthy and
  Synced.
* check-rollout-starting.json: a Deployment ``reindex`` captured 8 seconds after creation
  whose pods cannot be scheduled: a first rollout under way with no replica available.
* check-healthy-lab.json: the healthy test lab (127.0.0.1:27000+), read only.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from checkkit import by_name, found, platform, run

from k3sops.domain.checks import REGISTRY
from k3sops.domain.snapshot import ClusterSnapshot, parse_time

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data"
WORKLOAD_CHECKS = ("deployment-rollout-stuck", "deployment-unavailable", "statefulset-unavailable",
                   "daemonset-unavailable", "job-failed", "argocd-app-degraded",
                   "argocd-app-out-of-sync")


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


DEV = load("check-dev-lab.json")
HEALTHY = load("check-healthy-lab.json")


def snapshot(data: dict[str, Any], shift: timedelta = timedelta(0),
             drop: tuple[str, ...] = ()) -> ClusterSnapshot:
    """The capture as the service builds it (``now`` is the capture time, plus ``shift``)."""
    now = parse_time(data["captured_at"])
    assert now is not None
    return ClusterSnapshot(now=now + shift,
                           objects={k: v for k, v in data["objects"].items() if k not in drop})


def test_checks_are_registered_for_the_daily_run() -> None:
    for check_id in WORKLOAD_CHECKS:
        assert "daily" in REGISTRY[check_id].periods
        assert REGISTRY[check_id].needs == ("kubernetes",)


def test_stuck_rollouts_are_the_deployments_past_their_deadline() -> None:
    findings = run("deployment-rollout-stuck", snapshot(DEV))
    # api: the stuck-rollout scenario; batch-big: its first rollout never got a pod scheduled
    assert found(findings) == {("Deployment", "development", "api", "critical"),
                               ("Deployment", "development", "batch-big", "critical")}
    api = by_name(findings, "api")
    assert api.environment is None  # no platform given
    ev = api.evidence
    assert ev["new_replicaset"]["name"] == "api-6b86948946"
    assert ev["new_replicaset"]["images"] == ["registry.example/api:2.0-broken"]
    assert [rs["name"] for rs in ev["old_replicasets"]] == ["api-687bc79446"]
    assert (ev["desired"], ev["updated"], ev["available"]) == (2, 1, 2)
    progressing = next(c for c in ev["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "ProgressDeadlineExceeded"
    container = ev["new_pods"][0]["containers"][0]
    assert container["waiting"] == "CrashLoopBackOff"
    assert container["last_exit"] == {"reason": "Error", "exit_code": 1}
    assert "CrashLoopBackOff" in api.message and "45s" in api.message
    big = by_name(findings, "batch-big").evidence
    assert "Insufficient cpu" in big["new_pods"][0]["unschedulable"]


def test_unavailable_deployments_skip_stuck_scaled_to_zero_and_rolling_out() -> None:
    findings = run("deployment-unavailable", snapshot(DEV))
    assert found(findings) == {
        ("Deployment", "development", "cache", "critical"),
        ("Deployment", "development", "checkout", "critical"),
        ("Deployment", "t-checks", "orders", "critical"),
        ("Deployment", "t-checks", "catalog", "warning"),
    }
    catalog = by_name(findings, "catalog")
    assert (catalog.evidence["desired"], catalog.evidence["available"]) == (3, 2)
    assert catalog.message == "deployment t-checks/catalog has 2/3 replicas available"


def test_first_rollout_with_nothing_available_is_reported_after_the_grace() -> None:
    data = load("check-rollout-starting.json")
    assert run("deployment-unavailable", snapshot(data)) == []
    later = run("deployment-unavailable", snapshot(data, shift=timedelta(minutes=2)))
    assert found(later) == {("Deployment", "t-checks", "reindex", "critical")}


def test_unavailable_statefulsets() -> None:
    findings = run("statefulset-unavailable", snapshot(DEV))
    assert found(findings) == {("StatefulSet", "t-checks", "queue", "critical")}
    ev = findings[0].evidence
    assert (ev["desired"], ev["ready"]) == (1, 0)
    assert ev["pods"][0]["pod"] == "queue-0"


def test_unavailable_daemonsets() -> None:
    findings = run("daemonset-unavailable", snapshot(DEV))
    assert found(findings) == {("DaemonSet", "t-checks", "log-shipper", "critical")}
    ev = findings[0].evidence
    assert (ev["desired"], ev["unavailable"], ev["available"]) == (5, 5, 0)
    assert len(ev["nodes_unavailable"]) == 5


def _speaker_pod_just_created(age: timedelta) -> dict[str, Any]:
    """The healthy capture with one metallb speaker pod ``age`` old and still being created
    (as the DaemonSet controller makes it on a node that just joined), the DaemonSet's
    status counting it unavailable: status fields as the controllers write them."""
    data = json.loads(json.dumps(HEALTHY))
    captured = parse_time(data["captured_at"])
    assert captured is not None
    ds = next(d for d in data["objects"]["daemonsets"] if d["metadata"]["name"] == "speaker")
    ds["status"].update(numberAvailable=ds["status"]["desiredNumberScheduled"] - 1,
                        numberReady=ds["status"]["desiredNumberScheduled"] - 1,
                        numberUnavailable=1)
    pod = next(p for p in data["objects"]["pods"]
               if p["metadata"]["namespace"] == "metallb-system"
               and p["metadata"]["name"].startswith("speaker-"))
    pod["metadata"]["creationTimestamp"] = (captured - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    pod["status"]["phase"] = "Pending"
    for c in pod["status"]["conditions"]:
        if c["type"] in ("Ready", "ContainersReady"):
            c["status"] = "False"
    for cs in pod["status"]["containerStatuses"]:
        cs.update(ready=False, started=False, restartCount=0,
                  state={"waiting": {"reason": "ContainerCreating"}})
    return data


def test_a_daemonset_pod_being_created_is_not_an_outage() -> None:
    """A pod a minute old on its way up is not a fault (CI once saw this on a loaded host
    right after the lab started); one still ContainerCreating past the grace is."""
    assert run("daemonset-unavailable", snapshot(_speaker_pod_just_created(
        timedelta(seconds=20)))) == []
    late = run("daemonset-unavailable", snapshot(_speaker_pod_just_created(
        timedelta(minutes=10))))
    assert found(late) == {("DaemonSet", "metallb-system", "speaker", "warning")}


def test_failed_jobs() -> None:
    findings = run("job-failed", snapshot(DEV))
    assert found(findings) == {("Job", "t-checks", "nightly-report", "warning")}
    f = findings[0]
    assert f.evidence["condition"]["reason"] == "BackoffLimitExceeded"
    assert f.evidence["pods"][0]["containers"][0]["last_exit"]["exit_code"] == 2


def test_environment_scope_keeps_only_its_namespaces() -> None:
    plat = platform()
    snap = snapshot(DEV)
    dev = run("deployment-unavailable", snap, plat, environment="development")
    assert {f.resource.name for f in dev} == {"cache", "checkout"}
    assert {f.environment for f in dev} == {"development"}
    assert run("deployment-unavailable", snap, plat, environment="production") == []
    assert run("job-failed", snap, plat, environment="development") == []


def test_argocd_degraded_and_missing_applications() -> None:
    findings = run("argocd-app-degraded", snapshot(DEV), platform())
    assert found(findings) == {("Application", "t-checks", "shop-development", "critical"),
                               ("Application", "t-checks", "billing-production", "warning")}
    shop = by_name(findings, "shop-development")
    assert shop.environment == "development"  # the destination's, not ArgoCD's namespace
    assert shop.evidence["unhealthy_resources"] == [
        {"kind": "Deployment", "namespace": "development", "name": "api", "sync": "Synced",
         "health": "Degraded", "message": 'Deployment "api" exceeded its progress deadline'}]
    billing = by_name(findings, "billing-production")
    assert billing.environment == "production"
    assert billing.evidence["operation"]["phase"] == "Failed"


def test_argocd_out_of_sync_applications() -> None:
    findings = run("argocd-app-out-of-sync", snapshot(DEV))
    assert found(findings) == {("Application", "t-checks", "shop-staging", "warning"),
                               ("Application", "t-checks", "billing-production", "warning")}
    staging = by_name(findings, "shop-staging")
    assert {r["name"] for r in staging.evidence["out_of_sync_resources"]} == {"web", "web-config"}
    assert staging.evidence["target_revision"] == "release-1.4"
    scoped = run("argocd-app-out-of-sync", snapshot(DEV), platform(), environment="staging")
    assert [f.resource.name for f in scoped] == ["shop-staging"]


def test_argocd_checks_need_the_crd() -> None:
    snap = snapshot(DEV, drop=("applications.argoproj.io",))
    assert run("argocd-app-degraded", snap) == []
    assert run("argocd-app-out-of-sync", snap) == []


def test_healthy_lab_has_no_workload_finding() -> None:
    snap = snapshot(HEALTHY)
    for check_id in WORKLOAD_CHECKS:
        assert run(check_id, snap, platform()) == [], check_id
