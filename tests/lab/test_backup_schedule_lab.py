"""`backup schedule`: CronJobs accepted by the real API server and run by the real CronJob
controller (concurrencyPolicy Forbid: no second Job while the first is active); systemd units
checked by the real ``systemd-analyze verify`` (skipped where it is not installed).

Everything is applied into a scratch namespace that is deleted afterwards. kwok completes Job
pods within seconds, so for the Forbid check the test pins the Job template to a node that does
not exist (its pod stays Pending and the first Job active) with a patch of its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Lab, wait_for
from k3sops.adapters.audit import AuditLog
from k3sops.adapters.kube import KubeClient
from k3sops.domain import schedule as sch
from k3sops.errors import PlanRejected, UsageError
from k3sops.services import context
from k3sops.services.backup import schedule as svc

pytestmark = pytest.mark.lab

ENTRIES = sch.default_entries([("etcd", ["backup", "etcd"], "0 2 * * *"),
                               ("orders", ["backup", "app", "orders"], "30 1 * * 1-5")])


@pytest.fixture
def objects(lab: Lab) -> Iterator[KubeClient]:
    settings = context.Settings(kubeconfig=lab.layout.kubeconfig, context=None, platform=None)
    objs = context.kube(settings, {}, Path.home())
    yield objs
    objs.close()


@pytest.fixture
def scratch(lab: Lab) -> Iterator[str]:
    ns = f"k3sops-sched-{uuid.uuid4().hex[:6]}"
    try:
        yield ns
    finally:
        lab.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false",
                    check=False)


def _cronjob(lab: Lab, ns: str, name: str) -> dict[str, Any]:
    return dict(json.loads(lab.kubectl("get", "cronjob", name, "-n", ns, "-o", "json",
                                       "--show-managed-fields").stdout))


def test_dry_run_renders_and_changes_nothing(lab: Lab, objects: KubeClient, scratch: str,
                                             tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    report = svc.cronjobs(ENTRIES, namespace=scratch, image="k3sops:test",
                          password=sch.PasswordSource(env="RESTIC_PASSWORD"),
                          objects=objects, apply=False, audit=audit)
    assert [m["metadata"]["name"] for m in report.manifests] == [
        "k3sops-backup-etcd", "k3sops-backup-orders", "k3sops-verify-weekly"]
    assert all(m["spec"]["concurrencyPolicy"] == "Forbid" for m in report.manifests)
    verify = report.manifests[-1]["spec"]
    assert verify["schedule"] == "0 4 * * 0"
    assert verify["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "--config", "/etc/k3sops/platform.yaml", "backup", "verify", "--since", "8d"]
    assert lab.kubectl("get", "namespace", scratch, check=False).returncode != 0
    assert audit.read() == []


def test_apply_is_accepted_and_idempotent(lab: Lab, objects: KubeClient, scratch: str,
                                          tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    for _ in range(2):  # a second apply changes nothing and does not fail
        report = svc.cronjobs(ENTRIES, namespace=scratch, image="k3sops:test",
                              password=sch.PasswordSource(file="/run/secrets/restic/pw"),
                              objects=objects, apply=True, audit=audit)
    assert report.written == [f"{scratch}/cronjobs/k3sops-backup-etcd",
                              f"{scratch}/cronjobs/k3sops-backup-orders",
                              f"{scratch}/cronjobs/k3sops-verify-weekly"]
    stored = _cronjob(lab, scratch, "k3sops-backup-orders")
    spec = stored["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == (
        "30 1 * * 1-5", "Etc/UTC", "Forbid")
    assert spec["suspend"] is False  # defaulted by the API server: it will run
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["volumes"][1]["secret"]["items"] == [{"key": "restic-password", "path": "pw"}]
    assert "env" not in pod["containers"][0] or pod["containers"][0]["env"] == []
    managers = {m["manager"] for m in stored["metadata"]["managedFields"]}
    assert "k3sops" in managers
    assert next(r["what"]["target"] for r in audit.read()) == f"namespaces/{scratch}"


def test_the_cronjob_controller_runs_it_and_forbid_holds(lab: Lab, objects: KubeClient,
                                                         scratch: str, tmp_path: Path) -> None:
    lab.kubectl("create", "namespace", scratch)
    lab.kubectl("create", "serviceaccount", "k3sops", "-n", scratch)
    every_minute = [sch.ScheduleEntry(name="backup-etcd", cron="* * * * *",
                                      args=["backup", "etcd"])]
    svc.cronjobs(every_minute, namespace=scratch, image="k3sops:test",
                 password=sch.PasswordSource(env="RESTIC_PASSWORD"), objects=objects,
                 apply=True, audit=None)
    lab.kubectl("patch", "cronjob", "k3sops-backup-etcd", "-n", scratch, "--type=merge", "-p",
                json.dumps({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
                    "nodeSelector": {"k3sops.io/no-such-node": "true"}}}}}}}))

    def jobs() -> list[dict[str, Any]]:
        r = lab.kubectl("get", "jobs", "-n", scratch, "-o", "json")
        return list(json.loads(r.stdout)["items"])

    first = wait_for(jobs, timeout=130, every=2)
    assert len(first) == 1, "the CronJob controller did not start a Job"
    owner = first[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("CronJob", "k3sops-backup-etcd")
    status = wait_for(lambda: _cronjob(lab, scratch, "k3sops-backup-etcd").get("status", {})
                      .get("active"), timeout=30)
    assert status and status[0]["name"] == first[0]["metadata"]["name"]
    # The next minute, with the first Job still active, Forbid makes the controller skip the
    # run and say so with a JobAlreadyActive event (kube-controller-manager's cronjob v2).
    def skipped() -> bool:
        r = lab.kubectl("get", "events", "-n", scratch, "--field-selector",
                        "reason=JobAlreadyActive", "-o", "name")
        return bool(r.stdout.strip()) or len(jobs()) > 1
    assert wait_for(skipped, timeout=130, every=3)
    assert len(jobs()) == 1, "a second Job started although the first is active"


def test_bad_schedules_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="5-field"):
        sch.cronjobs([sch.ScheduleEntry(name="x", cron="0 2 * *", args=["backup", "etcd"])],
                     namespace="k3sops", image="i", password=sch.PasswordSource())
    with pytest.raises(UsageError, match="unique"):
        sch.cronjobs([ENTRIES[0], ENTRIES[0]], namespace="k3sops", image="i",
                     password=sch.PasswordSource())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze not installed")
def test_systemd_units_pass_systemd_analyze_and_are_written(tmp_path: Path) -> None:
    binary = shutil.which("k3sops") or str(Path(__file__).parents[2] / ".venv/bin/k3sops")
    audit = AuditLog(tmp_path / "audit.jsonl")
    out = tmp_path / "units"
    dry = svc.systemd_units(ENTRIES, binary=binary, config="/etc/k3sops/platform.yaml",
                            env_file="/etc/k3sops/backup.env", user=None, out=out,
                            apply=False, audit=audit)
    assert dry.verified is True and not out.exists()
    timer = dry.units["k3sops-backup-orders.timer"]
    assert "OnCalendar=Mon..Fri *-*-* 01:30:00 UTC" in timer
    cal = subprocess.run(["systemd-analyze", "calendar", "Mon..Fri *-*-* 01:30:00 UTC"],
                         capture_output=True, text=True, check=True).stdout
    assert "Next elapse" in cal
    service = dry.units["k3sops-backup-orders.service"]
    assert "EnvironmentFile=/etc/k3sops/backup.env" in service
    assert "Type=oneshot" in service and "password" not in service.split("ExecStart=")[1]
    done = svc.systemd_units(ENTRIES, binary=binary, config="/etc/k3sops/platform.yaml",
                             env_file=None, user=None, out=out, apply=True, audit=audit)
    assert sorted(p.name for p in out.iterdir()) == sorted(done.units)
    assert len(audit.read()) == 6
    with pytest.raises(PlanRejected, match="systemd-analyze verify"):
        svc.systemd_units(ENTRIES, binary="/nonexistent/k3sops", config="/x", env_file=None,
                          user=None, out=None, apply=False, audit=None)
    assert yaml.safe_dump(done.model_dump(mode="json"))  # the report serialises


def _platform(lab: Lab, tmp: Path, ns: str) -> dict[str, str]:
    doc = yaml.safe_load(lab.layout.platform_file.read_text())
    doc["backup"] = {"repository": str(tmp / "repo"), "password_env": "SCHED_TEST_PW",
                     "targets": [{"name": "orders", "namespace": "production",
                                  "pod": "postgres-0", "schedule": "15 1 * * *"}],
                     "schedule": {"namespace": ns, "image": "k3sops:test",
                                  "volumes": [{"namespace": "production", "pvc": "data"}]}}
    config = tmp / "platform.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return {**lab.env, "K3SOPS_CONFIG": str(config), "K3SOPS_STATE_DIR": str(tmp / "state")}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "k3sops", *args], env=env,
                          capture_output=True, text=True, timeout=180)


def test_cli_schedule_from_platform_yaml(lab: Lab, scratch: str, tmp_path: Path) -> None:
    """`backup schedule` reads platform.yaml (no password needed to render or apply)."""
    env = _platform(lab, tmp_path, scratch)
    dry = _cli(env, "backup", "schedule")
    assert dry.returncode == 0, dry.stderr
    docs = [d for d in yaml.safe_load_all(dry.stdout) if d]  # stdout is only the manifests
    assert [d["metadata"]["name"] for d in docs] == [
        "k3sops-backup-etcd", "k3sops-backup-orders",
        "k3sops-backup-volume-production-data", "k3sops-verify-weekly"]
    assert lab.kubectl("get", "namespace", scratch, check=False).returncode != 0
    applied = _cli(env, "-o", "json", "backup", "schedule", "--apply")
    assert applied.returncode == 0, applied.stderr
    assert len(json.loads(applied.stdout)["written"]) == 4
    names = lab.kubectl("get", "cronjobs", "-n", scratch, "-o", "name").stdout.split()
    assert len(names) == 4
    if shutil.which("systemd-analyze"):
        out = tmp_path / "units"
        r = _cli(env, "-o", "json", "backup", "schedule", "--kind", "systemd", "--apply",
                 "--out", str(out), "--binary", sys.executable)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["verified"] is True
        assert len(list(out.glob("k3sops-*.timer"))) == 4
