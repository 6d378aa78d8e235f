"""serve/alerts: Alertmanager's real webhook bodies -> enriched, stored once, forwarded.

The payloads are recordings of the lab's real Alertmanager (tests/data/alertmanager/README.md);
the pod is the crash-looping pod the alert names, as the API server returned it. The store is
a real SQLite file; the receivers are real HTTP servers on 127.0.0.1 (tests/webhook_sink.py).
"""

from __future__ import annotations

import copy
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from k3sops.adapters.store import HistoryStore, SqliteStore
from k3sops.adapters.webhook import WebhookSender
from k3sops.domain.snapshot import ClusterSnapshot
from k3sops.errors import ExitCode, PayloadInvalid, PayloadTooLarge, Unreachable
from k3sops.serve.alerts import (
    AlertIntake,
    Receiver,
    enricher,
    object_of,
    parse_payload,
    slack_message,
)
from k3sops.services.context import Settings
from k3sops.timeparse import parse_rfc3339
from webhook_sink import Sink

DATA = Path(__file__).parents[1] / "data" / "alertmanager"
FIRING = (DATA / "crashloop-firing.json").read_bytes()
RESOLVED = (DATA / "crashloop-resolved.json").read_bytes()
POD = json.loads((DATA / "crashloop-pod.json").read_text())
POD_NAME = "checkout-7558c8f54c-v2pgz"
FINGERPRINT = "71388b4c19be67b9"


def _snapshot() -> ClusterSnapshot:
    # "now": shortly after the container's last crash, as when Alertmanager delivered it
    last = max(parse_rfc3339(cs["lastState"]["terminated"]["finishedAt"])
               for cs in POD["status"]["containerStatuses"])
    return ClusterSnapshot(now=last + timedelta(seconds=5),
                           objects={"pods": [POD], "nodes": []})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    with SqliteStore.open_file(tmp_path / "k3sops.db") as s:
        yield s


@pytest.fixture
def sinks() -> Iterator[tuple[Sink, Sink]]:
    hook, slack = Sink(), Sink()
    yield hook, slack
    hook.close()
    slack.close()


def _intake(store: HistoryStore, receivers: list[Receiver], **kw: Any) -> AlertIntake:
    enrich = enricher(_snapshot, Settings(None, None, None))
    return AlertIntake(store, enrich, receivers, sender=WebhookSender(timeout=2), **kw)


def _receivers(hook: Sink, slack: Sink, hook_path: str = "T000/B000/XXXX") -> list[Receiver]:
    return [Receiver("ops", "webhook", SecretStr(f"{hook.url}/hook")),
            Receiver("chat", "slack", SecretStr(f"{slack.url}/services/{hook_path}"))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_recorded_payload_parses_every_field() -> None:
    m = parse_payload(FIRING)
    assert (m.version, m.status, m.receiver) == ("4", "firing", "k3sops")
    assert m.group_key == '{}:{alertname="KubePodCrashLooping", namespace="development"}'
    assert m.group_labels == {"alertname": "KubePodCrashLooping", "namespace": "development"}
    assert m.common_annotations["runbook_id"] == "pod-crash-looping"
    assert m.truncated_alerts == 0
    [a] = m.alerts
    assert a.fingerprint == FINGERPRINT and a.alertname == "KubePodCrashLooping"
    assert a.labels["pod"] == POD_NAME and a.labels["namespace"] == "development"
    assert a.starts_at == parse_rfc3339("2026-12-05T17:26:54.756Z")
    assert a.ends_at is None  # Go's zero time while firing
    assert a.generator_url.startswith("http://") and "CrashLoopBackOff" in a.generator_url
    [r] = parse_payload(RESOLVED).alerts
    assert r.status == "resolved" and r.fingerprint == FINGERPRINT
    assert r.starts_at == a.starts_at and r.ends_at is not None and r.ends_at > r.starts_at


def test_firing_alert_is_enriched_stored_and_forwarded(store: HistoryStore,
                                                       sinks: tuple[Sink, Sink]) -> None:
    hook, slack = sinks
    intake = _intake(store, _receivers(hook, slack))
    result = intake.receive(FIRING)
    assert (result.alerts, result.stored, result.duplicates, result.forwarded) == (1, 1, 0, 2)
    assert (intake.received, intake.enriched, intake.forwarded, intake.failed) == (1, 1, 2, 0)

    stored = store.alert(FINGERPRINT, parse_rfc3339("2026-12-05T17:26:54.756Z"))
    assert stored is not None and stored.status == "firing"
    assert stored.alertname == "KubePodCrashLooping" and stored.labels["pod"] == POD_NAME
    record = stored.enriched
    assert record["object"] == {"kind": "Pod", "plural": "pods", "label": "pod",
                                "namespace": "development", "name": POD_NAME, "found": True}
    diagnosis = record["diagnosis"]
    assert diagnosis["target"] == f"pod/development/{POD_NAME}"
    [root] = diagnosis["root_causes"]
    assert root["check"] == "pod-crashloop" and root["resource"]["name"] == POD_NAME
    assert "CrashLoopBackOff" in root["message"] and "last exit 1" in root["message"]
    runbook = record["runbook"]
    assert runbook["id"] == "pod-crash-looping" and runbook["from"] == "rule"
    assert runbook["known"] is True and runbook["title"] and len(runbook["steps"]) >= 2

    # the generic webhook receives the enriched record as stored
    [forwarded] = hook.json()
    assert forwarded == record and hook.paths == ["/hook"]
    # the Slack-compatible one: text + blocks naming the pod, its root cause and the runbook
    [msg] = slack.json()
    assert msg["text"] == ("[FIRING] KubePodCrashLooping: Pod development/"
                           f"{POD_NAME} is crash looping")
    assert msg["blocks"][0]["type"] == "header"
    flat = json.dumps(msg["blocks"])
    assert f"Pod development/{POD_NAME}" in flat and "Root causes" in flat
    assert "pod-crash-looping" in flat


def test_repeated_delivery_is_stored_and_forwarded_once(store: HistoryStore,
                                                        sinks: tuple[Sink, Sink]) -> None:
    hook, slack = sinks
    intake = _intake(store, _receivers(hook, slack))
    results = [intake.receive(FIRING) for _ in range(3)]  # Alertmanager's repeat_interval
    assert [(r.stored, r.duplicates) for r in results] == [(1, 0), (0, 1), (0, 1)]
    assert len(store.alerts()) == 1
    assert len(hook.bodies) == 1 and len(slack.bodies) == 1
    assert intake.received == 3 and intake.forwarded == 2


def test_resolved_closes_the_stored_alert_and_tells_the_receivers_once(
        store: HistoryStore, sinks: tuple[Sink, Sink]) -> None:
    hook, slack = sinks
    intake = _intake(store, _receivers(hook, slack))
    intake.receive(FIRING)
    result = intake.receive(RESOLVED)
    assert result.resolved == 1 and result.stored == 0 and result.forwarded == 2
    [alert] = store.alerts()
    [sent] = parse_payload(RESOLVED).alerts
    assert alert.status == "resolved" and alert.ends_at == sent.ends_at
    assert store.alerts("firing") == []
    fired, ended = hook.json()
    assert ended == {**fired, "status": "resolved", "endsAt": sent.ends_at.isoformat()}
    assert slack.json()[1]["text"].startswith("[RESOLVED] KubePodCrashLooping: ")
    repeat = intake.receive(RESOLVED)  # Alertmanager repeats the resolution: no change
    assert repeat.resolved == 0 and repeat.forwarded == 0
    assert len(hook.bodies) == 2 and len(slack.bodies) == 2


def test_resolution_of_an_alert_never_stored_changes_nothing(store: HistoryStore) -> None:
    result = _intake(store, []).receive(RESOLVED)
    assert (result.alerts, result.resolved, result.stored) == (1, 0, 0)
    assert store.alerts() == []


def test_two_replicas_sharing_a_store_forward_each_alert_once(
        store: HistoryStore, sinks: tuple[Sink, Sink], tmp_path: Path) -> None:
    """Alertmanager's repeats may reach either replica (the Service picks one): the one whose
    insert wins forwards, the other finds the record and does not; the same for resolving."""
    hook, slack = sinks
    replica_a = _intake(store, _receivers(hook, slack))
    with SqliteStore.open_file(tmp_path / "k3sops.db") as other:  # same file, 2nd connection
        replica_b = _intake(other, _receivers(hook, slack))
        first = replica_a.receive(FIRING)
        repeat = replica_b.receive(FIRING)
        assert (first.stored, first.forwarded) == (1, 2)
        assert (repeat.stored, repeat.duplicates, repeat.forwarded) == (0, 1, 0)
        closed = replica_b.receive(RESOLVED)
        again = replica_a.receive(RESOLVED)
    assert (closed.resolved, closed.forwarded) == (1, 2)
    assert (again.resolved, again.forwarded) == (0, 0)
    assert len(hook.bodies) == 2 and len(slack.bodies) == 2


def test_a_failing_receiver_does_not_block_the_others(store: HistoryStore,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    broken, good = Sink(status=500), Sink()
    token = "T0SECRET/B0SECRET/secretsecret"
    receivers = [Receiver("broken", "webhook", SecretStr(f"{broken.url}/x?token={token}")),
                 Receiver("gone", "slack",
                          SecretStr(f"http://127.0.0.1:{_free_port()}/services/{token}")),
                 Receiver("good", "webhook", SecretStr(f"{good.url}/hook"))]
    try:
        with caplog.at_level(logging.WARNING):
            result = _intake(store, receivers).receive(FIRING)
    finally:
        broken.close()
        good.close()
    assert (result.stored, result.forwarded, result.failed) == (1, 1, 2)
    assert len(good.bodies) == 1 and len(broken.bodies) == 1
    assert "receiver broken" in caplog.text and "HTTP 500" in caplog.text
    assert "receiver gone" in caplog.text
    assert token not in caplog.text and "SECRET" not in caplog.text


def test_sender_errors_name_the_host_never_the_token() -> None:
    token = "xoxb-very-secret"
    sender = WebhookSender(timeout=1)
    with pytest.raises(Unreachable) as e:
        sender.post("chat", SecretStr(f"http://127.0.0.1:{_free_port()}/{token}"), {})
    assert token not in str(e.value) and "127.0.0.1" in str(e.value)


def _body(mutate: Any) -> bytes:
    data = json.loads(FIRING)
    mutate(data)
    return json.dumps(data).encode()


def _set(path: str, value: Any) -> Any:
    def mutate(data: Any) -> None:
        *head, last = path.split(".")
        for part in head:
            data = data[int(part)] if part.isdigit() else data[part]
        if value is KeyError:
            del data[last]
        else:
            data[last] = value
    return mutate


def _two_alerts_second_bad(data: Any) -> None:
    second = copy.deepcopy(data["alerts"][0])
    second["fingerprint"] = "0000000000000001"
    second["startsAt"] = "yesterday"
    data["alerts"].append(second)


@pytest.mark.parametrize(("body", "named"), [
    (b"{not json", "not JSON at line 1 column 2"),
    (b"\xff\xfe", "not JSON"),
    (b"[]", "must be a JSON object"),
    (_body(_set("version", "3")), "version '3' is not supported"),
    (_body(_set("version", KeyError)), "version is missing"),
    (_body(_set("alerts", KeyError)), "alerts is missing"),
    (_body(_set("alerts", {})), "alerts must be a list"),
    (_body(_set("alerts.0.labels", KeyError)), "alerts[0].labels is missing"),
    (_body(_set("alerts.0.labels", {"pod": 3})), "alerts[0].labels.pod must be a string"),
    (_body(_set("alerts.0.status", "pending")), "alerts[0].status must be firing or resolved"),
    (_body(_set("alerts.0.startsAt", "soon")), "alerts[0].startsAt is not an RFC 3339 time"),
    (_body(_set("alerts.0.fingerprint", KeyError)), "alerts[0].fingerprint is missing"),
    (_body(_set("groupKey", 7)), "groupKey must be a str"),
    (_body(_two_alerts_second_bad), "alerts[1].startsAt is not an RFC 3339 time"),
], ids=["syntax", "not-utf8", "array", "version", "no-version", "no-alerts", "alerts-object",
        "no-labels", "label-type", "status", "startsAt", "no-fingerprint", "groupKey",
        "second-alert"])
def test_invalid_payload_is_400_names_the_field_and_stores_nothing(
        store: HistoryStore, sinks: tuple[Sink, Sink], body: bytes, named: str) -> None:
    hook, slack = sinks
    intake = _intake(store, _receivers(hook, slack))
    with pytest.raises(PayloadInvalid) as e:
        intake.receive(body)
    assert e.value.http_status == 400 and e.value.exit_code == ExitCode.USAGE
    assert named in e.value.message
    assert store.alerts() == [] and hook.bodies == [] and slack.bodies == []
    assert intake.rejected == 1 and intake.received == 0


def test_body_over_the_limit_is_413_and_not_parsed(store: HistoryStore) -> None:
    intake = _intake(store, [], max_body=len(FIRING) - 1)
    with pytest.raises(PayloadTooLarge) as e:
        intake.receive(FIRING)
    assert e.value.http_status == 413
    assert f"{len(FIRING)} bytes" in e.value.message and str(len(FIRING) - 1) in e.value.message
    assert store.alerts() == []
    assert _intake(store, [], max_body=len(FIRING)).receive(FIRING).stored == 1  # at the limit


@pytest.mark.parametrize(("labels", "expected"), [
    ({"namespace": "shop", "pod": "web-0", "node": "n1"}, ("Pod", "shop", "web-0")),
    ({"namespace": "shop", "job_name": "nightly", "job": "kube-state-metrics"},
     ("Job", "shop", "nightly")),
    ({"namespace": "shop", "persistentvolumeclaim": "data"},
     ("PersistentVolumeClaim", "shop", "data")),
    ({"node": "k3s-agent-1", "instance": "10.0.0.4:9100"}, ("Node", None, "k3s-agent-1")),
    ({"namespace": "shop"}, ("Namespace", None, "shop")),
    ({"pod": "web-0"}, None),  # a pod without its namespace cannot be found
    ({"instance": "10.0.0.4:9100", "job": "node-exporter"}, None),
])
def test_object_is_found_from_the_labels(labels: dict[str, str],
                                         expected: tuple[str, str | None, str] | None) -> None:
    obj = object_of(labels)
    assert (obj if obj is None else (obj["kind"], obj["namespace"], obj["name"])) == expected


def test_alert_about_an_object_not_in_the_cluster_keeps_its_runbook(
        store: HistoryStore) -> None:
    node_alert = _body(lambda d: d["alerts"][0].update(
        labels={"alertname": "NodeCPUHighUsage", "node": "lab-host", "severity": "warning"},
        annotations={"summary": "CPU high", "runbook_id": "node-high-cpu",
                     "runbook_url": "https://runbooks.example/node-high-cpu"}))
    _intake(store, []).receive(node_alert)
    record = store.alerts()[0].enriched
    assert record["object"]["kind"] == "Node" and record["object"]["found"] is False
    assert record["diagnosis"] is None
    assert record["runbook"]["id"] == "node-high-cpu" and record["runbook"]["known"] is True
    assert record["runbook"]["url"] == "https://runbooks.example/node-high-cpu"


def test_enrichment_failure_keeps_and_forwards_the_alert(store: HistoryStore,
                                                         sinks: tuple[Sink, Sink]) -> None:
    hook, slack = sinks

    def unreadable() -> ClusterSnapshot:
        raise Unreachable("API server 127.0.0.1:6443 unreachable")

    intake = AlertIntake(store, enricher(unreadable, Settings(None, None, None)),
                         _receivers(hook, slack))
    result = intake.receive(FIRING)
    assert result.stored == 1 and result.forwarded == 2 and intake.enriched == 0
    record = store.alerts()[0].enriched
    assert record["enrich_error"] == "API server 127.0.0.1:6443 unreachable"
    assert record["runbook"]["id"] == "pod-crash-looping" and record["diagnosis"] is None


def test_a_stale_snapshot_is_refreshed_in_the_background() -> None:
    built: list[int] = []
    refresh_may_finish = threading.Event()
    now = [0.0]
    base = _snapshot().now

    def snap() -> ClusterSnapshot:
        n = len(built)
        built.append(n)
        if n == 1:  # the refresh is slow (the engine on a large cluster)
            assert refresh_may_finish.wait(10)
        return ClusterSnapshot(now=base + timedelta(seconds=n), objects={"pods": [POD]})

    enrich = enricher(snap, Settings(None, None, None), max_age=2.0, clock=lambda: now[0])
    labels = {"namespace": "development", "pod": POD_NAME}

    def served() -> str:
        record = enrich(labels, {})
        assert record["object"]["found"] is True and record["diagnosis"]["root_causes"]
        return str(record["snapshot_at"])

    first, second = base.isoformat(), (base + timedelta(seconds=1)).isoformat()
    assert served() == first and built == [0]  # the first alert waits for a snapshot
    now[0] = 1.0
    assert served() == first and built == [0]  # still fresh: no rebuild
    now[0] = 5.0
    assert served() == first  # stale: answered at once from the old one, refresh started
    now[0] = 6.0
    assert served() == first  # the refresh is still running: not started twice
    refresh_may_finish.set()
    deadline = time.monotonic() + 10
    while served() != second and time.monotonic() < deadline:
        time.sleep(0.01)
    assert served() == second and built == [0, 1]


def test_previous_logs_of_the_crash_looping_pod_join_its_diagnosis() -> None:
    asked: list[list[str]] = []

    def logs(pods: list[Any]) -> dict[str, dict[str, list[str]]]:
        asked.append([p["metadata"]["name"] for p in pods])
        return {POD_NAME: {"checkout": ["panic: dial tcp: connection refused"]}}

    enrich = enricher(_snapshot, Settings(None, None, None), previous_logs=logs)
    record = enrich({"namespace": "development", "pod": POD_NAME}, {})
    [finding] = [f for f in record["diagnosis"]["findings"] if f["check"] == "pod-crashloop"]
    assert finding["evidence"]["previous_logs"] == ["panic: dial tcp: connection refused"]
    assert asked == [[POD_NAME]]
    # a pod that is not crash looping costs no log read
    enrich({"namespace": "development", "pod": "absent-pod"}, {})
    assert asked == [[POD_NAME]]


def test_slack_text_escapes_its_control_characters() -> None:
    msg = slack_message({"alertname": "X", "status": "firing", "labels": {},
                         "annotations": {"summary": "a <b> & c"}})
    assert msg["text"] == "[FIRING] X: a &lt;b&gt; &amp; c"
