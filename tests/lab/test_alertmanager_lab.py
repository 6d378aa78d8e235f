"""`k3sops alerts list | silence | unsilence | silences` against the lab's real Alertmanager.

Each test posts alerts with a unique alertname (so runs and other engineers' alerts do not
mix), and cleans up: its alerts are resolved and every silence it made is expired.
"""

from __future__ import annotations

import getpass
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest

from conftest import Lab, wait_for
from k3sops.adapters.alertmanager import AlertmanagerAdapter
from k3sops.adapters.prometheus import HttpApi
from k3sops.config import load_platform

pytestmark = pytest.mark.lab


class Posted:
    """Alerts one test posted, and the Alertmanager to clean them up from."""

    def __init__(self, am: AlertmanagerAdapter, name: str) -> None:
        self.am = am
        self.name = name
        self.alerts: list[dict[str, Any]] = []

    def post(self, severity: str, environment: str, **labels: str) -> None:
        alert = {"labels": {"alertname": self.name, "severity": severity,
                            "environment": environment, **labels},
                 "annotations": {"summary": f"{self.name} test alert"},
                 "generatorURL": "http://127.0.0.1/k3sops-test"}
        self.alerts.append(alert)
        self.am.post_alerts([alert])

    def my_silences(self) -> list[dict[str, Any]]:
        return [s for s in self.am.silences()
                if any(m.get("value") == self.name for m in s.get("matchers", []))]

    def cleanup(self) -> None:
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
        if self.alerts:
            self.am.post_alerts([{**a, "endsAt": past} for a in self.alerts])
        for s in self.my_silences():
            if s.get("status", {}).get("state") != "expired":
                self.am.expire_silence(s["id"])


@pytest.fixture
def posted(lab: Lab) -> Iterator[Posted]:
    platform = load_platform(lab.layout.platform_file)
    url = platform.monitoring.alertmanager.url
    assert url is not None and url.startswith("http://127.0.0.1:"), url
    am = AlertmanagerAdapter(HttpApi("Alertmanager", url, httpx2.Client(timeout=10), url))
    p = Posted(am, f"K3sopsTest{uuid.uuid4().hex[:10]}")
    try:
        yield p
    finally:
        p.cleanup()
        am.close()


def _json(lab: Lab, *args: str) -> Any:
    r = lab.k3sops(*args, "-o", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _list(lab: Lab, name: str, *flags: str) -> Any:
    return _json(lab, "alerts", "list", "-l", f"alertname={name}", *flags)


def _groups(report: Any) -> list[tuple[str, str, int]]:
    return [(g["severity"], g["environment"], g["count"]) for g in report["groups"]]


def _silence(lab: Lab, name: str, *extra: str) -> str:
    r = lab.k3sops("alerts", "silence", "-m", f"alertname={name}", "-m", "environment=staging",
                   "--duration", "30m", "--comment", "k3sops lab test", *extra)
    assert r.returncode == 0, r.stderr
    silence_id = r.stdout.strip()
    uuid.UUID(silence_id)  # only the id on stdout
    return silence_id


def _silence_state(posted: Posted, silence_id: str) -> str:
    return str(posted.am.silence(silence_id)["status"]["state"])


def test_list_groups_firing_alerts_by_severity_and_environment(lab: Lab,
                                                                posted: Posted) -> None:
    posted.post("warning", "staging", instance="a")
    posted.post("critical", "production", instance="a")
    posted.post("warning", "staging", instance="b")
    report = wait_for(lambda: (r := _list(lab, posted.name)) and r["total"] == 3 and r)
    assert report["alertmanager"] == posted.am.where
    assert _groups(report) == [("critical", "production", 1), ("warning", "staging", 2)]
    staging = report["groups"][1]["alerts"]
    assert {a["labels"]["instance"] for a in staging} == {"a", "b"}
    assert all(a["state"] == "active" and a["summary"] == f"{posted.name} test alert"
               for a in staging)

    only_prod = _list(lab, posted.name, "--env", "production")
    assert _groups(only_prod) == [("critical", "production", 1)]
    only_warn = _list(lab, posted.name, "--severity", "warning", "-l", "instance=~b")
    assert _groups(only_warn) == [("warning", "staging", 1)]

    table = lab.k3sops("alerts", "list", "-l", f"alertname={posted.name}")
    assert table.returncode == 0, table.stderr
    assert "critical" in table.stdout and "staging" in table.stdout


def test_silence_hides_alerts_and_unsilence_expires_it(lab: Lab, posted: Posted) -> None:
    posted.post("warning", "staging")
    posted.post("critical", "production")
    wait_for(lambda: _list(lab, posted.name)["total"] == 2)

    silence_id = _silence(lab, posted.name)
    hidden = wait_for(lambda: (r := _list(lab, posted.name)) and r["total"] == 1 and r)
    assert _groups(hidden) == [("critical", "production", 1)]
    shown = _list(lab, posted.name, "--silenced")
    staging = [a for g in shown["groups"] for a in g["alerts"] if a["environment"] == "staging"]
    assert [(a["state"], a["silenced_by"]) for a in staging] == [("suppressed", [silence_id])]

    listed = {s["id"]: s for s in _json(lab, "alerts", "silences")["silences"]}
    mine = listed[silence_id]
    assert mine["state"] == "active"
    assert mine["matchers"] == [
        {"name": "alertname", "op": "=", "value": posted.name},
        {"name": "environment", "op": "=", "value": "staging"}]
    assert mine["created_by"] == getpass.getuser()  # author defaults to the OS user
    assert mine["comment"] == "k3sops lab test"

    result = _json(lab, "alerts", "unsilence", silence_id)
    assert (result["id"], result["action"]) == (silence_id, "expired")
    assert result["silence"]["state"] == "expired"
    assert silence_id not in {s["id"] for s in _json(lab, "alerts", "silences")["silences"]}
    expired = {s["id"]: s["state"] for s in _json(lab, "alerts", "silences", "--all")["silences"]}
    assert expired[silence_id] == "expired"
    wait_for(lambda: _list(lab, posted.name)["total"] == 2)
    assert _list(lab, posted.name)["total"] == 2

    again = _json(lab, "alerts", "unsilence", silence_id)
    assert again["action"] == "already-expired"


def test_expired_silences_are_never_resurrected(lab: Lab, posted: Posted) -> None:
    first = _silence(lab, posted.name, "--author", "k3sops-test")
    assert lab.k3sops("alerts", "unsilence", first).returncode == 0
    assert _silence_state(posted, first) == "expired"

    second = _silence(lab, posted.name, "--author", "k3sops-test")
    assert second != first
    assert _silence_state(posted, first) == "expired"
    assert _silence_state(posted, second) == "active"

    # --extend of an expired silence: a new one with its matchers and comment; the old stays.
    r = _json(lab, "alerts", "silence", "--extend", first, "--duration", "1h")
    third = r["id"]
    assert third not in (first, second) and r["replaced"] == first
    assert [m["value"] for m in r["silence"]["matchers"]] == [posted.name, "staging"]
    assert r["silence"]["comment"] == "k3sops lab test"
    assert _silence_state(posted, first) == "expired"

    # --extend of an active silence replaces it: new id, and the old one is expired.
    r = _json(lab, "alerts", "silence", "--extend", second, "--duration", "2h")
    assert r["id"] not in (first, second, third) and r["replaced"] == second
    assert _silence_state(posted, second) == "expired"
    assert _silence_state(posted, r["id"]) == "active"


@pytest.mark.parametrize(("args", "says"), [
    (["-m", "alertname~X", "--comment", "c"], "has no operator"),
    (["-m", "alertname=~(", "--comment", "c"], "not a valid regex"),
    (["-m", "alertname=X", "--duration", "2hours", "--comment", "c"], "is not understood"),
    (["-m", "alertname=X"], "needs a comment"),
    (["-m", "alertname=~.*", "--comment", "c"], "mute everything"),
])
def test_bad_silence_input_exits_2_saying_what_is_wrong(lab: Lab, args: list[str],
                                                        says: str) -> None:
    r = lab.k3sops("alerts", "silence", *args)
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and "hint" in r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr


def test_unknown_silence_id_is_not_found(lab: Lab) -> None:
    unknown = str(uuid.uuid4())
    r = lab.k3sops("alerts", "unsilence", unknown)
    assert r.returncode == 1, r.stderr
    assert f"no silence {unknown}" in r.stderr and "alerts silences --all" in r.stderr
    r = lab.k3sops("alerts", "unsilence", "not-an-id")
    assert r.returncode == 2 and "is not a silence id" in r.stderr
    r = lab.k3sops("alerts", "list", "-l", "alertname")
    assert r.returncode == 2 and "label=~regex" in r.stderr
