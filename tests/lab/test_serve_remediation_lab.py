"""Remediation by policy against the lab: a crash-looping pod's alert -> rollout restart, applied.

The lab's crashloop scenario makes Deployment checkout's pod crash in the development
namespace. Alertmanager's recorded webhook body (tests/data/alertmanager/crashloop-firing.json)
is given that pod's name and delivered to the real intake (SQLite store); its ``on_stored``
hook hands it to the remediator with an enabled ``restart`` policy for development, whose
executor is the one `k3sops serve` uses: :mod:`k3sops.services.remediate` against the lab, as
`k3sops remediate rollout restart deployment/checkout --apply`. The Deployment's template gets
its ``restartedAt`` annotation and a new pod; the audit log has the step; the store records it
``applied``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Lab, wait_for
from k3sops.adapters.store import SqliteStore
from k3sops.adapters.webhook import WebhookSender
from k3sops.config import load_platform
from k3sops.config.schema.serve import Remediation
from k3sops.domain.remediate import RESTARTED_AT
from k3sops.serve.alerts import AlertIntake, object_of
from k3sops.serve.remediation import Remediator, cluster_executor
from k3sops.services.context import Settings

pytestmark = pytest.mark.lab
NS = "development"
DATA = Path(__file__).parents[1] / "data" / "alertmanager"


def _pods(lab: Lab) -> list[dict[str, Any]]:
    out = lab.kubectl("-n", NS, "get", "pods", "-l", "k3sops.io/scenario=crashloop",
                      "-o", "json").stdout
    return list(json.loads(out)["items"])


@pytest.fixture
def crashloop(lab: Lab) -> Iterator[str]:
    r = lab.k3sops("lab", "scenario", "apply", "crashloop", timeout=300)
    assert r.returncode == 0, r.stderr
    pods = wait_for(lambda: [p["metadata"]["name"] for p in _pods(lab)
                             if p["metadata"]["name"].startswith("checkout-")], timeout=90)
    assert pods, "the crashloop scenario made no checkout pod"
    yield pods[0]
    r = lab.k3sops("lab", "scenario", "reset", timeout=300)
    assert r.returncode == 0, r.stderr


def test_an_enabled_restart_policy_restarts_the_crashing_pod_s_deployment(
        lab: Lab, crashloop: str, tmp_path: Path) -> None:
    platform = load_platform(lab.layout.platform_file)
    assert NS in platform.environments["development"].namespaces
    settings = Settings(kubeconfig=None, context=None, platform=platform)
    cfg = Remediation.model_validate({"enabled": True, "policies": [
        {"id": "crashloop-restart", "when": {"alert": "KubePodCrashLooping"},
         "plan": "restart", "environments": ["development"], "max_per_hour": 1}]})
    state = tmp_path / "state"
    body = json.loads((DATA / "crashloop-firing.json").read_text())
    body["alerts"][0]["labels"]["pod"] = crashloop
    before = {p["metadata"]["name"] for p in _pods(lab)}
    with SqliteStore.open_file(tmp_path / "k3sops.db") as store:
        remediator = Remediator(cfg, platform, store, lambda: True,
                                cluster_executor(settings, lab.env, Path.home(), state))
        # The enrichment is not what is tested here: only the object the alert names.
        intake = AlertIntake(store, lambda labels, _a: {"object": object_of(labels)}, [],
                             sender=WebhookSender(timeout=2), on_stored=remediator.on_alert)
        assert intake.receive(json.dumps(body).encode()).stored == 1
        records = store.remediations()
        # a second firing (another startsAt) inside the hour: refused by max_per_hour 1
        body["alerts"][0]["startsAt"] = "2026-12-05T17:40:00Z"
        assert intake.receive(json.dumps(body).encode()).stored == 1
        after = store.remediations()
    [rec] = records
    assert (rec.mode, rec.target, rec.plan) == ("applied", f"pods/{NS}/{crashloop}", "restart")
    assert [r.mode for r in after] == ["refused", "applied"]

    template = json.loads(lab.kubectl("-n", NS, "get", "deployment", "checkout", "-o",
                                      "json").stdout)["spec"]["template"]
    stamped = (template["metadata"].get("annotations") or {}).get(RESTARTED_AT)
    assert stamped, "the Deployment's pod template was not stamped"
    new = wait_for(lambda: [p for p in _pods(lab) if p["metadata"]["name"] not in before
                            and (p["metadata"].get("annotations") or {}).get(RESTARTED_AT)
                            == stamped], timeout=60)
    assert new, "no pod of the restarted template appeared"

    audit = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
    assert [(a["what"]["action"], a["what"]["target"], a["result"]) for a in audit] == [
        ("restart", f"{NS}/deployments/checkout", "ok")]
