"""`alerts apply` against the lab: a rule fires from real node-exporter series, reaches
Alertmanager, and PrometheusRule objects are applied to the real API server.

The end-to-end test lowers the CPU threshold of every environment to 0.01% with ``for: 0s`` in a
temporary copy of the lab's platform.yaml, so NodeCPUHighUsage fires from the host's real CPU
series. It removes its rule file and reloads Prometheus afterwards, so other tests see a clean
Prometheus.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from conftest import Lab, wait_for
from k3sops.adapters.promtool import remove_rule_file
from k3sops.config import load_platform
from k3sops.domain.rules import RULE_FILE_NAME, build_rules

pytestmark = pytest.mark.lab

def k3sops(lab: Lab, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "k3sops", "-c", str(config), *args], env=lab.env,
                          capture_output=True, text=True, timeout=180)


def lab_platform(lab: Lab) -> dict[str, Any]:
    data = yaml.safe_load(lab.layout.platform_file.read_text())
    assert isinstance(data, dict)
    return data


def write_platform(data: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def prometheus_url(lab: Lab) -> str:
    return str(lab_platform(lab)["monitoring"]["prometheus"]["url"]).rstrip("/")


def alertmanager_url(lab: Lab) -> str:
    return str(lab_platform(lab)["monitoring"]["alertmanager"]["url"]).rstrip("/")


def get(url: str) -> Any:
    resp = httpx2.get(url, timeout=10)
    resp.raise_for_status()
    return resp.json()


def k3sops_groups(lab: Lab) -> list[dict[str, Any]]:
    groups = get(f"{prometheus_url(lab)}/api/v1/rules")["data"]["groups"]
    return [g for g in groups if Path(g["file"]).name == RULE_FILE_NAME]


@pytest.fixture
def rules_dir(lab: Lab) -> Iterator[Path]:
    """The lab's rule directory; afterwards our file is removed and Prometheus reloaded."""
    directory = Path(lab_platform(lab)["monitoring"]["rule_files_dir"])
    yield directory
    remove_rule_file(directory, RULE_FILE_NAME)
    httpx2.post(f"{prometheus_url(lab)}/-/reload", timeout=30).raise_for_status()
    assert wait_for(lambda: not k3sops_groups(lab), timeout=30)


def test_high_cpu_fires_from_real_series_and_reaches_alertmanager(
        lab: Lab, rules_dir: Path, tmp_path: Path) -> None:
    data = lab_platform(lab)
    for env in data["environments"].values():
        env["thresholds"] = {"cpu_percent": 0.01, "for": "0s"}
    config = write_platform(data, tmp_path / "platform.yaml")

    r = k3sops(lab, config, "-o", "json", "alerts", "apply")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    [applied] = report["applied"]
    assert report["mode"] == "rule-file" and not report["dry_run"]
    assert applied["target"] == str(rules_dir / RULE_FILE_NAME)
    assert applied["loaded_groups"] == applied["groups"] > 0
    assert applied["loaded_rules"] == applied["rules"]
    assert (rules_dir / RULE_FILE_NAME).is_file()
    assert not [p for p in rules_dir.iterdir() if p.name.startswith(".")]  # no temp files left

    groups = k3sops_groups(lab)
    assert len(groups) == applied["groups"]
    assert "k3sops-nodes-production" in {g["name"] for g in groups}

    def cpu_alert_in_prometheus() -> dict[str, Any] | None:
        alerts = get(f"{prometheus_url(lab)}/api/v1/alerts")["data"]["alerts"]
        return next((a for a in alerts if a["labels"].get("alertname") == "NodeCPUHighUsage"
                     and a["state"] == "firing"), None)

    alert = wait_for(cpu_alert_in_prometheus, timeout=90, every=2)
    assert alert is not None, "NodeCPUHighUsage did not fire in Prometheus within 90s"
    assert alert["labels"]["environment"] == "production"  # the lab's contexts are shared
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["instance"] == f"127.0.0.1:{lab.layout.port('node-exporter')}"  # real
    assert alert["annotations"]["runbook_id"] == "node-high-cpu"
    assert "above 0.01%" in alert["annotations"]["summary"]

    def cpu_alert_in_alertmanager() -> dict[str, Any] | None:
        alerts = get(f"{alertmanager_url(lab)}/api/v2/alerts")
        return next((a for a in alerts if a["labels"].get("alertname") == "NodeCPUHighUsage"
                     and a["labels"].get("environment") == "production"), None)

    received = wait_for(cpu_alert_in_alertmanager, timeout=90, every=2)
    assert received is not None, "NodeCPUHighUsage did not reach Alertmanager within 90s"
    assert received["status"]["state"] in ("active", "suppressed")
    assert received["annotations"]["runbook_id"] == "node-high-cpu"
    assert received["labels"]["cluster"] == "k3sops-lab"  # Prometheus' external label

    # The operator's view: `k3sops alerts list` shows it, grouped under warning/production.
    r = k3sops(lab, config, "-o", "json", "alerts", "list", "--env", "production")
    assert r.returncode == 0, r.stderr
    listed = json.dumps(json.loads(r.stdout))
    assert "NodeCPUHighUsage" in listed and "production" in listed

    # Applying again is idempotent: same content, same groups.
    before = (rules_dir / RULE_FILE_NAME).read_text()
    r = k3sops(lab, config, "-o", "json", "alerts", "apply")
    assert r.returncode == 0, r.stderr
    assert (rules_dir / RULE_FILE_NAME).read_text() == before


def test_dry_run_prints_the_file_and_writes_nothing(lab: Lab, tmp_path: Path) -> None:
    data = lab_platform(lab)
    data["monitoring"]["rule_files_dir"] = str(tmp_path / "rules")
    (tmp_path / "rules").mkdir()
    config = write_platform(data, tmp_path / "platform.yaml")
    r = k3sops(lab, config, "alerts", "apply", "--dry-run")
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(r.stdout.split("would apply")[0])
    assert doc["groups"][0]["name"] == "k3sops-nodes-production"
    assert "would apply 33 rules in 12 groups" in r.stdout
    assert list((tmp_path / "rules").iterdir()) == []


def test_rule_dir_prometheus_does_not_read_is_reported(lab: Lab, tmp_path: Path) -> None:
    """Prometheus reloads fine but never lists the groups: exit 1 and say why."""
    data = lab_platform(lab)
    data["monitoring"]["rule_files_dir"] = str(tmp_path)
    config = write_platform(data, tmp_path / "platform.yaml")
    r = k3sops(lab, config, "alerts", "apply")
    assert r.returncode == 1
    assert "lists only 0 of the 12 k3sops rule groups" in r.stderr
    assert "rule_files glob" in r.stderr and "Traceback" not in r.stderr


def test_unreachable_prometheus_names_the_endpoint(lab: Lab, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = lab_platform(lab)
    data["monitoring"]["rule_files_dir"] = str(tmp_path)
    data["monitoring"]["prometheus"] = {"url": f"http://127.0.0.1:{port}"}
    config = write_platform(data, tmp_path / "platform.yaml")
    r = k3sops(lab, config, "alerts", "apply")
    assert r.returncode == 1
    assert f"127.0.0.1:{port}" in r.stderr and "did not reload" in r.stderr
    assert "Traceback" not in r.stderr
    assert (tmp_path / RULE_FILE_NAME).is_file()


@pytest.fixture
def scratch_namespace(lab: Lab) -> Iterator[str]:
    name = f"k3sops-test-rules-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", name)
    yield name
    lab.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_prometheus_rule_objects_applied_and_read_back(
        lab: Lab, scratch_namespace: str, tmp_path: Path) -> None:
    data = lab_platform(lab)
    del data["monitoring"]["rule_files_dir"]
    data["monitoring"]["namespace"] = scratch_namespace
    config = write_platform(data, tmp_path / "platform.yaml")

    r = k3sops(lab, config, "-o", "json", "alerts", "apply")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["mode"] == "prometheusrule"
    by_name = {a["target"]: a for a in report["applied"]}
    assert set(by_name) == {f"{scratch_namespace}/k3sops-{e}"
                            for e in ("production", "staging", "development")}
    for a in by_name.values():
        assert a["loaded_groups"] == a["groups"] and a["loaded_rules"] == a["rules"]
        assert "context k3sops-lab" in a["cluster"]

    got = json.loads(lab.kubectl("get", "prometheusrules", "-n", scratch_namespace,
                                 "-o", "json", "--show-managed-fields").stdout)["items"]
    assert len(got) == 3
    expected = {i.rule.id for i in build_rules(load_platform(config)).instances}
    rules = {rule["alert"] for o in got for g in o["spec"]["groups"] for rule in g["rules"]}
    assert rules == expected
    for o in got:
        assert o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "k3sops"
        assert any(m["manager"] == "k3sops" and m["operation"] == "Apply"
                   for m in o["metadata"]["managedFields"])
    versions = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in got}

    r = k3sops(lab, config, "alerts", "apply")  # unchanged content: a no-op for the server
    assert r.returncode == 0, r.stderr
    again = json.loads(lab.kubectl("get", "prometheusrules", "-n", scratch_namespace,
                                   "-o", "json").stdout)["items"]
    assert {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in again} == versions


def test_prometheus_rule_into_missing_namespace_says_what_to_check(
        lab: Lab, tmp_path: Path) -> None:
    data = lab_platform(lab)
    del data["monitoring"]["rule_files_dir"]
    data["monitoring"]["namespace"] = f"k3sops-missing-{uuid.uuid4().hex[:6]}"
    config = write_platform(data, tmp_path / "platform.yaml")
    r = k3sops(lab, config, "alerts", "apply")
    assert r.returncode == 1
    assert "prometheusrules" in r.stderr and "does namespace" in r.stderr
    assert "Traceback" not in r.stderr
