"""A real firing alert, end to end: Prometheus rule -> Alertmanager -> the alert intake.

The lab's crashloop scenario makes a pod crash; k3sops' rendered KubePodCrashLooping rule (the
development instance, its ``for`` lowered from 15m to 0s so it fires within the test) is loaded
into the lab's Prometheus, which evaluates it on kube-state-metrics' real series; the lab's
Alertmanager is configured (and reloaded) with a webhook receiver: a small HTTP server in this
test that hands each body to :class:`AlertIntake` (tests/lab/test_serve_alertmanager_lab.py has
Alertmanager deliver to `k3sops serve`'s own endpoint instead; the wiring is in
tests/lab/kit/alerting.py). The intake's snapshot is a fresh collect from the lab; its store is
SQLite; it forwards to a second local HTTP server. Afterwards the rule file and Alertmanager's
own configuration are restored and both servers reloaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from kit.alerting import ALERT, NS, Wiring, apply_crashloop, reset_scenarios
from pydantic import SecretStr

from conftest import Lab
from k3sops.adapters.store import HistoryStore, SqliteStore
from k3sops.domain import checks as registry
from k3sops.errors import PayloadInvalid
from k3sops.serve.alerts import AlertIntake, Receiver, cli_previous_logs, enricher
from k3sops.services import check as check_service
from k3sops.services.context import Settings, kube
from webhook_sink import Sink

pytestmark = pytest.mark.lab


@pytest.fixture
def crashloop(lab: Lab) -> Iterator[set[str]]:
    yield apply_crashloop(lab)
    reset_scenarios(lab)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    with SqliteStore.open_file(tmp_path / "k3sops.db") as s:
        yield s


@pytest.fixture
def wiring(lab: Lab) -> Iterator[Wiring]:
    w = Wiring(lab)
    yield w
    w.restore()


def _answer(intake: AlertIntake, body: bytes) -> tuple[int, Any]:
    # What the app's endpoint will answer: 200 with the counts, 400/413 with the message.
    try:
        return 200, intake.receive(body).as_json()
    except PayloadInvalid as e:
        return e.http_status, {"error": e.message}


def _assert_enriched(record: dict[str, Any], pod: str) -> None:
    """The stored record names the pod, its crash-loop root, its previous log, the runbook."""
    assert record["object"] == {"kind": "Pod", "plural": "pods", "label": "pod",
                                "namespace": NS, "name": pod, "found": True}
    roots = record["diagnosis"]["root_causes"]
    assert any(r["check"] == "pod-crashloop" and r["resource"]["name"] == pod
               for r in roots), roots
    assert record["diagnosis"]["target"] == f"pod/{NS}/{pod}"
    [crash] = [f for f in record["diagnosis"]["findings"] if f["check"] == "pod-crashloop"]
    assert crash["evidence"]["last_termination"]["exitCode"] == 1
    # the previous instance's log, as `k3sops diagnose pod` attaches it
    assert any("connection refused" in line for line in crash["evidence"]["previous_logs"])
    assert record["runbook"]["id"] == "pod-crash-looping" and record["runbook"]["steps"]
    assert record["labels"]["cluster"] == "k3sops-lab"  # Prometheus' external label


def test_real_alert_is_enriched_stored_once_and_forwarded(
        lab: Lab, crashloop: set[str], wiring: Wiring, store: HistoryStore) -> None:
    settings = Settings(kubeconfig=None, context=None, platform=wiring.platform)

    def snapshot() -> Any:
        k = kube(settings, lab.env, Path.home())
        try:
            snap, _ = check_service.collect(k, settings, registry.selected("monthly"),
                                            datetime.now(UTC))
        finally:
            k.close()
        return snap

    forward = Sink()
    logs = cli_previous_logs(settings, lab.env, Path.home())
    intake = AlertIntake(store, enricher(snapshot, settings, previous_logs=logs),
                         [Receiver("ops", "webhook", SecretStr(f"{forward.url}/hook"))])
    am_side = Sink(on_body=lambda body: _answer(intake, body))
    try:
        wiring.deliver_to(f"{am_side.url}/api/v1/alerts")
        rule = wiring.load_rule()
        assert rule["annotations"]["runbook_id"] == "pod-crash-looping"

        def ours(bodies: list[bytes]) -> list[dict[str, Any]]:
            return [a for b in bodies for a in json.loads(b)["alerts"]
                    if a["labels"].get("pod") in crashloop and a["status"] == "firing"]

        # Alertmanager delivers, then repeats (repeat_interval 10s): two deliveries of one alert
        assert am_side.wait(lambda bs: len(ours(bs)) >= 2, timeout=180), (
            f"Alertmanager did not deliver {ALERT} for {crashloop} twice within 180s; "
            f"got {len(am_side.bodies)} bodies")
        first = ours(am_side.bodies)[0]
        assert {a["fingerprint"] for a in ours(am_side.bodies)} == {first["fingerprint"]}

        stored = [a for a in store.alerts("firing") if a.labels.get("pod") in crashloop]
        assert len(stored) == 1, "a repeated delivery must not store the alert again"
        record = stored[0].enriched
        _assert_enriched(record, first["labels"]["pod"])

        # forwarded once, as stored, though Alertmanager delivered it at least twice
        mine = [b for b in forward.json() if b["fingerprint"] == first["fingerprint"]]
        assert mine == [record]
        assert intake.forwarded >= 1 and intake.failed == 0

        # resolved: the rule stops, the alert ends, Alertmanager sends it resolved; the
        # receiver is told once
        wiring.unload_rule()
        wiring.resolve(first)
        assert am_side.wait(lambda bs: any(
            a["status"] == "resolved" and a["fingerprint"] == first["fingerprint"]
            for b in bs for a in json.loads(b)["alerts"]), timeout=90)
        closed = store.alert(stored[0].fingerprint, stored[0].starts_at)
        assert closed is not None and closed.status == "resolved" and closed.ends_at
        ended = [b for b in forward.json() if b["fingerprint"] == first["fingerprint"]]
        assert [b["status"] for b in ended] == ["firing", "resolved"]
        assert ended[1]["endsAt"] == closed.ends_at.isoformat()

        # a malformed body on the same path is refused with 400 and stores nothing
        before = len(store.alerts())
        r = httpx2.post(f"{am_side.url}/api/v1/alerts", content=b'{"version": "4"}',
                        timeout=10)
        assert r.status_code == 400 and "alerts is missing" in r.json()["error"]
        assert len(store.alerts()) == before
    finally:
        am_side.close()
        forward.close()
        intake.close()
