"""The lab's real Alertmanager delivers a real firing alert to `k3sops serve` itself.

`k3sops serve` runs as a host process under its own least-privilege ServiceAccount
(tests/lab/kit/serve.py) with platform.yaml's ``serve:`` naming Alertmanager's bearer token
(a file) and two receivers (a JSON webhook and a Slack-compatible one, their URLs in files)
pointing at local sinks this test runs. The crashloop scenario makes a pod crash; k3sops'
rendered KubePodCrashLooping rule (``for: 0s``) fires in the lab's Prometheus; the lab's
Alertmanager is configured with a webhook receiver whose url is the service's
``/api/v1/alerts`` and whose ``http_config.authorization`` carries the token
(tests/lab/kit/alerting.py). First with a wrong token: Alertmanager's deliveries get 401 and
nothing is stored; then with the right one: the alert is stored once despite Alertmanager's
repeats, enriched with the crash-loop root cause and runbook, forwarded once to each sink in
its format, counted in /metrics, listed by `k3sops alerts list --server`, and closed and
forwarded again when it resolves.

With ``K3SOPS_RECORD_SERVE=DIR`` the service's ``GET /api/v1/alerts`` answers are written to
DIR (how tests/data/serve_api/alerts*.json were recorded).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from kit.alerting import ALERT, NS, Wiring, apply_crashloop, reset_scenarios
from kit.serve import (
    PORT_OFFSET,
    Rbac,
    Running,
    accounts,
    apply,
    binding,
    get,
    kill,
    label,
    start,
)

from conftest import Lab, wait_for
from webhook_sink import Sink

pytestmark = pytest.mark.lab
SERVE_NS = f"t-serve-am-{uuid.uuid4().hex[:6]}"
ROUTE = "/api/v1/alerts"


class Sinks:
    """The receivers the service forwards to: a JSON webhook and a Slack-compatible one."""

    def __init__(self) -> None:
        self.json = Sink()
        self.slack = Sink()

    def close(self) -> None:
        self.json.close()
        self.slack.close()


@pytest.fixture(scope="module")
def sinks() -> Iterator[Sinks]:
    s = Sinks()
    yield s
    s.close()


@pytest.fixture(scope="module")
def am_token() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def rbac(lab: Lab, tmp_path_factory: pytest.TempPathFactory, sinks: Sinks,
         am_token: str) -> Iterator[Rbac]:
    tmp = tmp_path_factory.mktemp("serve-am")
    (tmp / "alertmanager.token").write_text(am_token + "\n")
    (tmp / "ops.url").write_text(f"{sinks.json.url}/hook\n")
    (tmp / "chat.url").write_text(f"{sinks.slack.url}/slack\n")
    serve = {"alertmanager_token_file": str(tmp / "alertmanager.token"),
             "receivers": [{"name": "ops", "type": "webhook", "url_file": str(tmp / "ops.url")},
                           {"name": "chat", "type": "slack",
                            "url_file": str(tmp / "chat.url")}]}
    with accounts(lab, SERVE_NS, tmp, serve) as r:
        # the reader may also read the stored alerts (kit's reader may not: test_serve_lab
        # shows that 403); removed with the module's other roles (same label)
        role = f"{SERVE_NS}-alerts-reader"
        apply(lab, [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                     "metadata": {"name": role, "labels": label(SERVE_NS)},
                     "rules": [{"apiGroups": ["k3sops.io"], "resources": ["alerts"],
                                "verbs": ["get"]}]},
                    binding(role, role, "reader", SERVE_NS)])
        yield r


@pytest.fixture(scope="module")
def service(lab: Lab, rbac: Rbac) -> Iterator[Running]:
    s = start(lab, rbac, PORT_OFFSET + 20)  # its own port: another module's may be closing
    yield s
    kill(s)


@pytest.fixture
def crashloop(lab: Lab) -> Iterator[set[str]]:
    yield apply_crashloop(lab)
    reset_scenarios(lab)


@pytest.fixture
def wiring(lab: Lab) -> Iterator[Wiring]:
    w = Wiring(lab, "k3sops-serve-alertmanager-test.yml")
    yield w
    w.restore()


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus' text format (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        m = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if m is None:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def _metrics(s: Running) -> str:
    r = get(s, "/metrics", s.tokens["reader"])
    assert r.status_code == 200, r.text
    return r.text


def _alerts(s: Running, state: str | None = None) -> list[dict[str, Any]]:
    r = get(s, ROUTE + (f"?state={state}" if state else ""), s.tokens["reader"])
    assert r.status_code == 200, r.text
    alerts: list[dict[str, Any]] = r.json()["alerts"]
    return alerts


def _ours(alerts: list[dict[str, Any]], pods: set[str]) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"].get("pod") in pods]


def _cli(lab: Lab, s: Running, token_file: Path, *args: str,
         ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in lab.env.items()
           if k not in ("K3SOPS_CONFIG", "KUBECONFIG", "K3SOPS_SERVER_TOKEN")}
    env["COLUMNS"] = "250"  # the table's cells unwrapped
    return subprocess.run(
        [sys.executable, "-m", "k3sops", "alerts", "list", "--server", s.url, "--token-file",
         str(token_file), *args], env=env, capture_output=True, text=True, timeout=120)


def _wrong_token_is_refused(service: Running, sinks: Sinks, wiring: Wiring,
                            token: str, pods: set[str]) -> None:
    """Alertmanager with a wrong token: the service answers 401 and keeps nothing."""
    am_failed = "alertmanager_notifications_failed_total"

    def failed() -> float:
        text = httpx2.get(f"{wiring.alertmanager}/metrics", timeout=10).text
        return _sample(text, am_failed, integration="webhook")

    # an earlier run's alerts (its pods are gone) would be delivered too: ended first
    wiring.resolve_others(pods)
    assert wait_for(lambda: any(a["labels"].get("pod") in pods for a in wiring.active()),
                    timeout=180, every=2), f"{ALERT} did not fire for {pods} within 180s"
    before = failed()
    wiring.deliver_to(service.url + ROUTE, token=token, receiver="k3sops-wrong")
    assert wait_for(lambda: _sample(_metrics(service), "k3sops_http_requests_total",
                                    route=ROUTE, code="401") >= 1, timeout=60, every=2), (
        f"Alertmanager did not deliver {ALERT} for {pods} within 60s")
    assert wait_for(lambda: failed() > before, timeout=30), (
        "Alertmanager does not count the refused delivery as failed")
    assert _sample(_metrics(service), "k3sops_alerts_received_total") == 0
    assert _alerts(service) == []
    assert sinks.json.bodies == [] and sinks.slack.bodies == []


def _stored_once_and_forwarded(service: Running, sinks: Sinks,
                               pods: set[str]) -> dict[str, Any]:
    """Stored once though Alertmanager repeats it, enriched, forwarded once to each sink."""
    assert wait_for(lambda: _ours(_alerts(service), pods), timeout=60, every=2), (
        "Alertmanager did not deliver the alert to the service within 60s")
    # each delivery of the group carries the alert again: wait for a repeat
    first = _sample(_metrics(service), "k3sops_alerts_received_total")
    assert wait_for(lambda: _sample(_metrics(service), "k3sops_alerts_received_total") > first,
                    timeout=60, every=2), "Alertmanager did not repeat the alert within 60s"
    stored = _alerts(service)
    [record] = _ours(stored, pods)
    assert record["status"] == "firing"
    # every row once (an earlier run's pods may fire too: the rule reads 5 minutes back)
    assert len({(a["fingerprint"], a["starts_at"]) for a in stored}) == len(stored)
    pod = record["labels"]["pod"]
    enriched = record["enriched"]
    assert enriched["object"] == {"kind": "Pod", "plural": "pods", "label": "pod",
                                  "namespace": NS, "name": pod, "found": True}
    roots = enriched["diagnosis"]["root_causes"]
    assert any(r["check"] == "pod-crashloop" and r["resource"]["name"] == pod
               for r in roots), roots
    [crash] = [f for f in enriched["diagnosis"]["findings"] if f["check"] == "pod-crashloop"]
    # the previous instance's log, read by the service under its own `get pods/log`
    assert any("connection refused" in line for line in crash["evidence"]["previous_logs"])
    assert enriched["runbook"]["id"] == "pod-crash-looping" and enriched["runbook"]["steps"]
    assert enriched["receiver"] == "k3sops-serve"
    assert enriched["labels"]["cluster"] == "k3sops-lab"  # Prometheus' external label

    # each sink got it exactly once, in its format
    fingerprint = record["fingerprint"]
    assert [b for b in sinks.json.json() if b["fingerprint"] == fingerprint] == [enriched]
    assert sinks.json.paths[0] == "/hook"
    slack = [b for b in sinks.slack.json() if pod in json.dumps(b)]
    assert len(slack) == 1, slack
    assert slack[0]["text"].startswith(f"[FIRING] {ALERT}")
    assert "pod-crash-looping" in json.dumps(slack[0]["blocks"])
    assert sinks.slack.paths[0] == "/slack"

    # /metrics counts it: received (with the repeats), each stored alert enriched once and
    # forwarded to both receivers (once more to both for each one closed)
    assert wait_for(lambda: _counted(service), timeout=30), _counted(service, explain=True)
    return record


def _counted(service: Running, explain: bool = False) -> bool | str:
    """The counters agree with the store (read between two equal reads of the store)."""
    before = _alerts(service)
    text = _metrics(service)
    after = _alerts(service)
    closed = sum(1 for a in after if a["status"] == "resolved")
    got = (_sample(text, "k3sops_alerts_enriched_total"),
           _sample(text, "k3sops_alerts_forwarded_total"),
           _sample(text, "k3sops_alerts_forward_failed_total"))
    want = (len(after), 2 * (len(after) + closed), 0)
    ok = (before == after and got == want
          and _sample(text, "k3sops_alerts_received_total") >= len(after) + 1)
    if explain:
        return f"counters {got} != {want} for {len(after)} stored, {closed} closed"
    return ok


def _listed_by_the_cli(lab: Lab, rbac: Rbac, service: Running,
                       record: dict[str, Any]) -> None:
    """`k3sops alerts list --server`: the service's enriched alerts; 403 is exit 1."""
    pod = record["labels"]["pod"]
    reader = rbac.tmp / "reader.token"
    reader.write_text(service.tokens["reader"] + "\n")
    out = _cli(lab, service, reader, "-o", "json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert listed["server"] == service.url
    [mine] = [a for a in listed["alerts"] if a["fingerprint"] == record["fingerprint"]]
    assert (mine["alertname"], mine["status"], mine["object"]) == (
        ALERT, "firing", f"Pod {NS}/{pod}")
    assert mine["runbook"] == "pod-crash-looping"
    assert any(c.startswith("pod-crashloop: ") for c in mine["root_causes"]), mine
    table = _cli(lab, service, reader, "--state", "firing")
    assert table.returncode == 0, table.stderr
    assert ALERT in table.stdout and "pod-crash-looping" in table.stdout
    nobody = rbac.tmp / "nobody.token"
    nobody.write_text(service.tokens["nobody"] + "\n")
    refused = _cli(lab, service, nobody, "-o", "json")
    assert refused.returncode == 1, refused.stderr
    assert "HTTP 403" in refused.stderr and "alerts.k3sops.io" in refused.stderr
    assert service.tokens["nobody"] not in refused.stderr + refused.stdout
    record_to = os.environ.get("K3SOPS_RECORD_SERVE")
    if record_to:  # the answers tests/unit/test_alerts_server.py replays
        d = Path(record_to)
        d.mkdir(parents=True, exist_ok=True)
        (d / "alerts.json").write_text(json.dumps(
            get(service, ROUTE, service.tokens["reader"]).json(), indent=1))
        (d / "alerts-403.json").write_text(json.dumps(
            get(service, ROUTE, service.tokens["nobody"]).json(), indent=1))


def _resolution_closes_it(service: Running, sinks: Sinks, wiring: Wiring,
                          record: dict[str, Any], pods: set[str]) -> None:
    """The rule stops, the alert ends: the service closes it and tells both sinks once."""
    enriched, fingerprint = record["enriched"], record["fingerprint"]
    pod = record["labels"]["pod"]
    wiring.unload_rule()
    wiring.resolve({"labels": record["labels"], "annotations": enriched["annotations"],
                    "startsAt": enriched["startsAt"], "generatorURL": enriched["generatorURL"]})
    assert sinks.json.wait(lambda bs: any(
        json.loads(b).get("status") == "resolved" and json.loads(b)["fingerprint"] == fingerprint
        for b in bs), timeout=90), "the resolution was not forwarded within 90s"
    [closed] = _ours(_alerts(service, "resolved"), pods)
    assert closed["fingerprint"] == fingerprint and closed["ends_at"]
    assert _ours(_alerts(service, "firing"), pods) == []
    ended = [b for b in sinks.json.json() if b["fingerprint"] == fingerprint]
    assert [b["status"] for b in ended] == ["firing", "resolved"]
    assert sinks.slack.wait(lambda bs: len([b for b in bs if pod in b.decode()]) >= 2,
                            timeout=30)
    assert [json.loads(b)["text"].split(" ")[0] for b in sinks.slack.bodies
            if pod in b.decode()] == ["[FIRING]", "[RESOLVED]"]


def test_alertmanager_delivers_to_the_service(lab: Lab, rbac: Rbac, service: Running,
                                              sinks: Sinks, am_token: str,
                                              crashloop: set[str], wiring: Wiring) -> None:
    rule = wiring.load_rule()
    assert rule["annotations"]["runbook_id"] == "pod-crash-looping"
    _wrong_token_is_refused(service, sinks, wiring, "not-" + am_token, crashloop)
    wiring.deliver_to(service.url + ROUTE, token=am_token)
    record = _stored_once_and_forwarded(service, sinks, crashloop)
    _listed_by_the_cli(lab, rbac, service, record)
    _resolution_closes_it(service, sinks, wiring, record, crashloop)
    log = service.log.read_text()
    for token in (am_token, service.tokens["reader"], service.tokens["nobody"]):
        assert token not in log
