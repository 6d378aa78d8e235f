"""The lab's Prometheus and Alertmanager wired to deliver one real alert to a test's endpoint.

Shared by the alert lab tests: the crashloop scenario's pods, k3sops' rendered
KubePodCrashLooping rule for development (its ``for`` lowered to 0s so it fires within a test)
loaded into the lab's Prometheus, and Alertmanager configured with a webhook receiver for
that alert (short group_wait/group_interval/repeat_interval), optionally with a bearer token
in ``http_config.authorization`` as a deployment would give it. :meth:`Wiring.restore` puts
back the lab's own rule files and Alertmanager configuration.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import yaml

from conftest import Lab
from k3sops.config import load_platform
from k3sops.domain.rules import build_rules
from k3sops.lab import configs

NS = "development"
"""The crashloop scenario's namespace (an environment of the lab's platform.yaml)."""
ALERT = "KubePodCrashLooping"


def reload(url: str) -> None:
    """POST /-/reload to Prometheus or Alertmanager at ``url``."""
    httpx2.post(f"{url}/-/reload", timeout=30).raise_for_status()


def crashing_pods(lab: Lab) -> set[str]:
    """Names of the crashloop scenario's pods."""
    items = json.loads(lab.kubectl("-n", NS, "get", "pods", "-l",
                                   "k3sops.io/scenario=crashloop", "-o", "json").stdout)["items"]
    return {p["metadata"]["name"] for p in items}


def apply_crashloop(lab: Lab) -> set[str]:
    """Start the crashloop scenario; its pods' names."""
    r = lab.k3sops("lab", "scenario", "apply", "crashloop", timeout=300)
    assert r.returncode == 0, r.stderr
    return crashing_pods(lab)


def reset_scenarios(lab: Lab) -> None:
    """Undo every scenario."""
    r = lab.k3sops("lab", "scenario", "reset", timeout=300)
    assert r.returncode == 0, r.stderr


class Wiring:
    """The lab's Prometheus and Alertmanager pointed at a test's receiver; undone after."""

    def __init__(self, lab: Lab, rule_file: str = "k3sops-alert-intake-test.yml") -> None:
        self.lab = lab
        self.platform = load_platform(lab.layout.platform_file)
        mon = self.platform.monitoring
        assert mon.prometheus.url and mon.alertmanager.url and mon.rule_files_dir
        self.prometheus = mon.prometheus.url.rstrip("/")
        self.alertmanager = mon.alertmanager.url.rstrip("/")
        self.rule_file = Path(mon.rule_files_dir) / rule_file
        self.am_config = lab.layout.run_dir / "alertmanager.yml"

    def deliver_to(self, url: str, token: str | None = None,
                   receiver: str = "k3sops-serve") -> None:
        """Alertmanager: ALERT goes to ``url`` (repeats every 10s), the rest as before.

        ``token``: sent as ``Authorization: Bearer`` (Alertmanager's ``http_config``).
        """
        cfg = yaml.safe_load(configs.alertmanager_yaml())
        cfg["route"]["routes"] = [{
            "receiver": receiver, "matchers": [f'alertname="{ALERT}"'],
            "group_by": ["alertname", "namespace"], "group_wait": "1s",
            "group_interval": "5s", "repeat_interval": "10s"}]
        hook: dict[str, Any] = {"url": url, "send_resolved": True, "max_alerts": 0}
        if token is not None:
            hook["http_config"] = {"authorization": {"type": "Bearer", "credentials": token}}
        cfg["receivers"].append({"name": receiver, "webhook_configs": [hook]})
        configs.write(self.am_config, yaml.safe_dump(cfg, sort_keys=False))
        reload(self.alertmanager)

    def load_rule(self) -> dict[str, Any]:
        """k3sops' rendered rule for development, with ``for: 0s``, loaded into Prometheus."""
        [inst] = [i for i in build_rules(self.platform).instances
                  if i.rule.id == ALERT and i.environment == NS]
        rule = {**inst.to_rule(), "for": "0s"}
        group = {"name": self.rule_file.stem, "interval": "5s", "rules": [rule]}
        self.rule_file.write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False))
        reload(self.prometheus)
        return rule

    def unload_rule(self) -> None:
        """Remove the test's rule file from Prometheus."""
        self.rule_file.unlink(missing_ok=True)
        reload(self.prometheus)

    def resolve(self, alert: dict[str, Any]) -> None:
        """End the alert in Alertmanager (as Prometheus would once the rule stops firing)."""
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        httpx2.post(f"{self.alertmanager}/api/v2/alerts", timeout=10, json=[{
            "labels": alert["labels"], "annotations": alert["annotations"],
            "startsAt": alert["startsAt"], "endsAt": now,
            "generatorURL": alert["generatorURL"]}]).raise_for_status()

    def active(self) -> list[dict[str, Any]]:
        """ALERT's alerts Alertmanager holds as active (API v2)."""
        r = httpx2.get(f"{self.alertmanager}/api/v2/alerts", timeout=10,
                       params={"filter": f'alertname="{ALERT}"', "silenced": "false",
                               "inhibited": "false"})
        r.raise_for_status()
        return [a for a in r.json() if a["status"]["state"] == "active"]

    def resolve_others(self, pods: set[str]) -> None:
        """End ALERT for pods not in ``pods`` (an earlier run's, still held by Alertmanager)."""
        for alert in self.active():
            if alert["labels"].get("pod") not in pods:
                self.resolve(alert)

    def restore(self) -> None:
        """The lab's own rule files and Alertmanager configuration, reloaded."""
        self.unload_rule()
        configs.write(self.am_config, configs.alertmanager_yaml())
        reload(self.alertmanager)
