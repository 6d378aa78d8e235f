"""`k3sops check` metric, alert and backup checks against the test lab's real components.

The test lab is healthy: its control plane and etcd checks must find nothing, and the K3s
defaults (scheduler and controller-manager embedded) must never report those two. A test alert
posted to the lab's Alertmanager (unique alertname, resolved afterwards) must come back as an
``alert-firing`` finding with its severity. The backup objects the unit tests use are validated
against the lab's real CRDs with a server-side dry run (nothing is stored).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from conftest import Lab, wait_for
from k3sops.adapters.alertmanager import AlertmanagerAdapter
from k3sops.adapters.prometheus import HttpApi
from k3sops.config import load_platform

pytestmark = pytest.mark.lab

DATA = Path(__file__).parent.parent / "data"
CONTROL_PLANE_CHECKS = {"apiserver-errors", "apiserver-latency", "etcd-health",
                        "control-plane-targets"}


def check_json(lab: Lab, *args: str) -> dict[str, Any]:
    """Run the check as the brief's user would, on the lab's platform file."""
    r = lab.k3sops("-c", str(lab.layout.platform_file), "-o", "json", "check", "--no-history",
                   *args, timeout=180)
    assert r.returncode in (0, 3), r.stderr
    report: dict[str, Any] = json.loads(r.stdout)
    return report


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def alertmanager(lab: Lab) -> Iterator[AlertmanagerAdapter]:
    url = load_platform(lab.layout.platform_file).monitoring.alertmanager.url
    assert url is not None and url.startswith("http://127.0.0.1:"), url
    am = AlertmanagerAdapter(HttpApi("Alertmanager", url, httpx2.Client(timeout=10), url))
    try:
        yield am
    finally:
        am.close()


def test_monthly_check_on_the_healthy_lab(lab: Lab) -> None:
    report = check_json(lab, "--monthly")
    assert {s["name"]: s["ok"] for s in report["sources"]} == {
        "kubernetes": True, "prometheus": True, "alertmanager": True}
    assert report["summary"]["period"] == "monthly"
    findings = report["findings"]
    assert [f for f in findings if f["check"] in CONTROL_PLANE_CHECKS] == []
    # K3s awareness: the lab scrapes a scheduler and controller-manager, but with
    # embedded_control_plane (the default) they are never judged
    assert not any("kube-scheduler" in f["resource"]["name"]
                   or "kube-controller-manager" in f["resource"]["name"] for f in findings)
    # the lab has no backups, backup section or restore history (--no-history)
    assert not [f for f in findings if f["check"].startswith(("backup-", "restore-"))]
    # manual steps of every period are listed, unacknowledged
    assert {m["id"] for m in report["manual"]} >= {
        "review-overnight-incidents", "review-dashboards", "review-access",
        "dr-runbook-review", "security-patches"}


def test_a_firing_alert_is_reported(lab: Lab, alertmanager: AlertmanagerAdapter) -> None:
    name = f"K3sopsCheckTest{uuid.uuid4().hex[:10]}"
    alert = {"labels": {"alertname": name, "severity": "critical",
                        "environment": "development"},
             "annotations": {"summary": f"{name} test alert", "runbook_id": "node-down"},
             "generatorURL": "http://127.0.0.1/k3sops-test"}
    now = datetime.now(UTC)
    alertmanager.post_alerts([{**alert, "startsAt": _iso(now),
                               "endsAt": _iso(now + timedelta(minutes=5))}])
    try:
        def mine() -> list[dict[str, Any]]:
            report = check_json(lab)
            return [f for f in report["findings"]
                    if f["check"] == "alert-firing" and f["resource"]["name"] == name]

        found = wait_for(mine, timeout=60, every=2)
        assert len(found) == 1, found
        [f] = found
        assert f["severity"] == "critical"
        assert f["resource"]["kind"] == "Alert"
        assert f["environment"] == "development"
        assert f["runbook"] == "node-down"
        assert f["evidence"]["labels"]["alertname"] == name
        assert f["evidence"]["startsAt"]
    finally:
        alertmanager.post_alerts([{**alert, "startsAt": _iso(now),
                                   "endsAt": _iso(datetime.now(UTC))}])
    resolved = wait_for(lambda: not [a for a in alertmanager.alerts()
                                     if a["labels"].get("alertname") == name], timeout=30)
    assert resolved


def test_backup_fixture_objects_fit_the_lab_crds(lab: Lab) -> None:
    """The unit tests' ETCDSnapshotFile/Longhorn objects pass the real CRD schemas (dry run)."""
    data = json.loads((DATA / "check-prom-backup-objects.json").read_text())
    items = [*data["etcdsnapshotfiles.k3s.cattle.io"], *data["backups.longhorn.io"],
             *data["volumes.longhorn.io"]]
    for item in items:
        obj = {**item, "metadata": {k: v for k, v in item["metadata"].items()
                                    if k != "creationTimestamp"}}
        r = lab.kubectl("create", "--dry-run=server", "--validate=strict", "-o", "json",
                        "-f", "-", input=json.dumps(obj), check=False)
        assert r.returncode == 0, (obj["metadata"]["name"], r.stderr)
        echoed = json.loads(r.stdout)
        # nothing pruned as unknown (defaults may be added)
        assert {k: echoed["spec"].get(k) for k in obj["spec"]} == obj["spec"]
        if obj["kind"] == "ETCDSnapshotFile":  # no status subresource: status is kept, checked
            assert echoed["status"] == obj["status"]
