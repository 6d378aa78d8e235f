"""Alert and silence domain: matcher and duration parsing, filtering, grouping, silence bodies.

The Alertmanager payloads below were captured from the lab's real Alertmanager 0.25
(``GET /api/v2/alerts`` and ``GET /api/v2/silences``) after posting alerts with severity and
environment labels and silencing one of them with `k3sops alerts silence`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k3sops.domain import alerting
from k3sops.domain.alerting import Matcher, MatchOp
from k3sops.errors import ExitCode, UsageError

pytestmark = pytest.mark.unit

SILENCE_ID = "59160c9d-960e-40d7-a88b-624bf1154e91"
CAPTURED_ALERTS: list[dict[str, Any]] = [
 {'annotations': {},
  'endsAt': '2026-11-26T11:17:21.983Z',
  'fingerprint': '003b0a0f7d3fa569',
  'receivers': [{'name': 'default'}],
  'startsAt': '2026-11-26T11:12:21.983Z',
  'status': {'inhibitedBy': [], 'silencedBy': [], 'state': 'active'},
  'updatedAt': '2026-11-26T11:12:21.983Z',
  'labels': {'alertname': 'Watchdog'}},
 {'annotations': {'summary': 'node down'},
  'endsAt': '2026-11-26T11:17:21.983Z',
  'fingerprint': '8ecf961e5b32845c',
  'receivers': [{'name': 'default'}],
  'startsAt': '2026-11-26T11:12:21.983Z',
  'status': {'inhibitedBy': [], 'silencedBy': [], 'state': 'active'},
  'updatedAt': '2026-11-26T11:12:21.983Z',
  'labels': {'alertname': 'NodeDown',
             'environment': 'production',
             'node': 'k3s-agent-2',
             'severity': 'critical'}},
 {'annotations': {},
  'endsAt': '2026-11-26T11:17:21.983Z',
  'fingerprint': '932013c54f4b7177',
  'receivers': [{'name': 'default'}],
  'startsAt': '2026-11-26T11:12:21.983Z',
  'status': {'inhibitedBy': [], 'silencedBy': [], 'state': 'active'},
  'updatedAt': '2026-11-26T11:12:21.983Z',
  'labels': {'alertname': 'DiskFilling', 'environment': 'development', 'severity': 'info'}},
 {'annotations': {'summary': 'CPU above 80% for 5m'},
  'endsAt': '2026-11-26T11:17:21.983Z',
  'fingerprint': 'a4bc7e22b48271f9',
  'receivers': [{'name': 'default'}],
  'startsAt': '2026-11-26T11:12:21.983Z',
  'status': {'inhibitedBy': [], 'silencedBy': [], 'state': 'active'},
  'updatedAt': '2026-11-26T11:12:21.983Z',
  'generatorURL': 'http://127.0.0.1:27090/graph',
  'labels': {'alertname': 'HighCPU',
             'environment': 'production',
             'instance': 'k3s-agent-1',
             'severity': 'warning'}},
 {'annotations': {'summary': 'restarts'},
  'endsAt': '2026-11-26T11:17:21.983Z',
  'fingerprint': 'f4cf97fbe4561a57',
  'receivers': [{'name': 'default'}],
  'startsAt': '2026-11-26T11:12:21.983Z',
  'status': {'inhibitedBy': [],
             'silencedBy': ['59160c9d-960e-40d7-a88b-624bf1154e91'],
             'state': 'suppressed'},
  'updatedAt': '2026-11-26T11:12:21.983Z',
  'labels': {'alertname': 'PodRestartLoop',
             'environment': 'staging',
             'namespace': 'staging',
             'severity': 'warning'}}]

CAPTURED_SILENCES: list[dict[str, Any]] = [
 {'id': '59160c9d-960e-40d7-a88b-624bf1154e91',
  'status': {'state': 'active'},
  'updatedAt': '2026-11-26T11:12:24.079Z',
  'comment': 'capture for unit tests',
  'createdBy': 'ops',
  'endsAt': '2026-11-26T12:12:23.884Z',
  'matchers': [{'isEqual': True,
                'isRegex': False,
                'name': 'alertname',
                'value': 'PodRestartLoop'},
               {'isEqual': True, 'isRegex': False, 'name': 'environment', 'value': 'staging'}],
  'startsAt': '2026-11-26T11:12:24.079Z'},
 {'id': 'dbe5bfa1-cd5d-463f-827f-11324a200446',
  'status': {'state': 'expired'},
  'updatedAt': '2026-11-26T11:12:09.590Z',
  'comment': 'trying',
  'createdBy': 'root',
  'endsAt': '2026-11-26T11:12:09.590Z',
  'matchers': [{'isEqual': True, 'isRegex': False, 'name': 'alertname', 'value': 'K3sopsTryB'},
               {'isEqual': True, 'isRegex': False, 'name': 'environment', 'value': 'staging'}],
  'startsAt': '2026-11-26T11:12:03.497Z'}]


# --- matchers ----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "name", "op", "value"), [
    ("alertname=HighCPU", "alertname", MatchOp.EQ, "HighCPU"),
    ("environment!=staging", "environment", MatchOp.NE, "staging"),
    ("instance=~k3s-agent-.*", "instance", MatchOp.RE, "k3s-agent-.*"),
    ("severity!~info|none", "severity", MatchOp.NRE, "info|none"),
    (' summary = "High CPU on \\"node\\"" ', "summary", MatchOp.EQ, 'High CPU on "node"'),
    ('job=""', "job", MatchOp.EQ, ""),
    ("url=http://x/?a=b", "url", MatchOp.EQ, "http://x/?a=b"),
])
def test_parse_matcher_accepts_the_four_operators(text: str, name: str, op: MatchOp,
                                                  value: str) -> None:
    assert alerting.parse_matcher(text) == Matcher(name=name, op=op, value=value)


@pytest.mark.parametrize(("text", "says"), [
    ("alertname", "has no operator"),
    ("alertname~x", "has no operator"),
    ("=value", "is not a label name"),
    ("1abc=x", "is not a label name"),
    ("a-b=x", "is not a label name"),
    ("alertname=~(", "is not a valid regex"),
    ('alertname="High', "unbalanced double quote"),
])
def test_bad_matcher_is_a_usage_error_showing_the_forms(text: str, says: str) -> None:
    with pytest.raises(UsageError) as e:
        alerting.parse_matcher(text)
    assert says in e.value.message
    assert e.value.exit_code == ExitCode.USAGE
    assert e.value.hint is not None and "label=~regex" in e.value.hint


@pytest.mark.parametrize("op", list(MatchOp))
def test_matcher_api_form_round_trips(op: MatchOp) -> None:
    m = Matcher(name="alertname", op=op, value="High.*")
    assert Matcher.from_api(m.to_api()) == m
    assert m.to_api()["isRegex"] == (op in (MatchOp.RE, MatchOp.NRE))
    assert m.to_api()["isEqual"] == (op in (MatchOp.EQ, MatchOp.RE))


@given(name=st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True),
       op=st.sampled_from([MatchOp.EQ, MatchOp.NE]),
       value=st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20))
def test_printed_matcher_parses_back(name: str, op: MatchOp, value: str) -> None:
    m = Matcher(name=name, op=op, value=value)
    assert alerting.parse_matcher(str(m)) == m


def test_matching_is_anchored_and_a_missing_label_is_empty() -> None:
    labels = {"alertname": "HighCPU", "instance": "k3s-agent-1"}
    assert alerting.parse_matcher("instance=~k3s-agent-.*").matches(labels)
    assert not alerting.parse_matcher("instance=~agent").matches(labels)
    assert alerting.parse_matcher("instance!~agent").matches(labels)
    assert alerting.parse_matcher('team=""').matches(labels)
    assert alerting.parse_matcher("team!=ops").matches(labels)
    assert not alerting.parse_matcher("alertname!=HighCPU").matches(labels)


# --- durations and ids -------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("30m", timedelta(minutes=30)), ("2h", timedelta(hours=2)), ("1d", timedelta(days=1)),
    ("1h30m", timedelta(hours=1, minutes=30)), ("1w", timedelta(weeks=1)),
    ("90s", timedelta(seconds=90)), (" 2h ", timedelta(hours=2)),
])
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert alerting.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "2", "h", "1.5h", "-1h", "30m2h", "2 h", "2q", "0m"])
def test_bad_duration_is_a_usage_error_showing_the_forms(text: str) -> None:
    with pytest.raises(UsageError) as e:
        alerting.parse_duration(text)
    assert repr(text) in e.value.message
    assert e.value.exit_code == ExitCode.USAGE
    assert e.value.hint is not None and "30m, 2h, 1d" in e.value.hint


def test_format_duration() -> None:
    assert alerting.format_duration(timedelta(days=1, hours=2, minutes=3)) == "1d2h"
    assert alerting.format_duration(timedelta(minutes=45)) == "45m"
    assert alerting.format_duration(timedelta(seconds=-5)) == "0s"


def test_silence_id_must_be_a_uuid() -> None:
    assert alerting.check_silence_id(SILENCE_ID) == SILENCE_ID
    with pytest.raises(UsageError, match="not a silence id"):
        alerting.check_silence_id("59160c9d")


# --- alerts ------------------------------------------------------------------------------

def _alerts() -> list[alerting.Alert]:
    return [alerting.alert_from_api(a) for a in CAPTURED_ALERTS]


def test_alert_from_api_reads_labels_state_and_silences() -> None:
    by_name = {a.alertname: a for a in _alerts()}
    cpu = by_name["HighCPU"]
    assert (cpu.severity, cpu.environment, cpu.state) == ("warning", "production", "active")
    assert cpu.summary == "CPU above 80% for 5m"
    assert cpu.generator_url == "http://127.0.0.1:27090/graph"
    assert cpu.starts_at == datetime(2026, 11, 26, 11, 12, 21, 983000, tzinfo=UTC)
    loop = by_name["PodRestartLoop"]
    assert loop.state == "suppressed" and loop.silenced_by == [SILENCE_ID]
    assert (by_name["Watchdog"].severity, by_name["Watchdog"].environment) == (None, None)


def test_firing_alerts_grouped_by_severity_then_environment() -> None:
    chosen = alerting.select_alerts(_alerts())
    report = alerting.alert_report("http://127.0.0.1:27093", chosen)
    assert report.total == 4
    assert [(g.severity, g.environment, [a.alertname for a in g.alerts])
            for g in report.groups] == [
        ("critical", "production", ["NodeDown"]),
        ("warning", "production", ["HighCPU"]),
        ("info", "development", ["DiskFilling"]),
        (None, None, ["Watchdog"]),
    ]
    assert all(g.count == len(g.alerts) for g in report.groups)


def test_silenced_alerts_only_when_asked() -> None:
    names = {a.alertname for a in alerting.select_alerts(_alerts(), include_silenced=True)}
    assert "PodRestartLoop" in names
    # Inhibited-only is not the same as silenced: a silenced alert stays out.
    names = {a.alertname for a in alerting.select_alerts(_alerts(), include_inhibited=True)}
    assert "PodRestartLoop" not in names


def test_filters_by_environment_severity_and_selectors() -> None:
    alerts = _alerts()
    prod = alerting.select_alerts(alerts, environments=["production"])
    assert {a.alertname for a in prod} == {"NodeDown", "HighCPU"}
    sev = alerting.select_alerts(alerts, severities=["critical", "info"])
    assert {a.alertname for a in sev} == {"NodeDown", "DiskFilling"}
    sel = alerting.select_alerts(alerts, selectors=alerting.parse_matchers(
        ["instance=~k3s-agent-.*", "severity!=critical"]))
    assert [a.alertname for a in sel] == ["HighCPU"]


def test_unknown_severities_sort_after_known_ones_and_none_last() -> None:
    ranks = sorted(["info", None, "page", "critical", "warning"], key=alerting.severity_rank)
    assert ranks == ["critical", "warning", "info", "page", None]


# --- silences ----------------------------------------------------------------------------

def test_silence_from_api_and_listing_order() -> None:
    silences = [alerting.silence_from_api(s) for s in CAPTURED_SILENCES]
    active = silences[0]
    assert active.id == SILENCE_ID and active.state == "active"
    assert [str(m) for m in active.matchers] == ['alertname="PodRestartLoop"',
                                                 'environment="staging"']
    assert (active.created_by, active.comment) == ("ops", "capture for unit tests")
    assert [s.id for s in alerting.select_silences(silences, include_expired=False)] == [
        SILENCE_ID]
    both = alerting.select_silences(list(reversed(silences)), include_expired=True)
    assert [s.state for s in both] == ["active", "expired"]


NOW = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)


def test_new_silence_body_never_carries_an_id() -> None:
    matchers = alerting.parse_matchers(["alertname=HighCPU", "environment=~prod.*"])
    body = alerting.new_silence_body(matchers, NOW, NOW + timedelta(hours=2), "ops",
                                     "maintenance TICKET-1")
    assert "id" not in body
    assert body == {
        "matchers": [
            {"name": "alertname", "value": "HighCPU", "isRegex": False, "isEqual": True},
            {"name": "environment", "value": "prod.*", "isRegex": True, "isEqual": True}],
        "startsAt": "2026-11-26T11:00:00Z",
        "endsAt": "2026-11-26T13:00:00Z",
        "createdBy": "ops",
        "comment": "maintenance TICKET-1",
    }


@pytest.mark.parametrize(("matchers", "author", "comment", "hours", "says"), [
    ([], "ops", "why", 1, "at least one matcher"),
    (["alertname=~.*"], "ops", "why", 1, "mute everything"),
    (['team=""', "x!=y"], "ops", "why", 1, "mute everything"),
    (["alertname=X"], "ops", "  ", 1, "needs a comment"),
    (["alertname=X"], "", "why", 1, "needs an author"),
    (["alertname=X"], "ops", "why", 0, "before it starts"),
])
def test_silence_body_refuses_what_alertmanager_would(matchers: list[str], author: str,
                                                      comment: str, hours: int,
                                                      says: str) -> None:
    with pytest.raises(UsageError, match=says):
        alerting.new_silence_body(alerting.parse_matchers(matchers), NOW,
                                  NOW + timedelta(hours=hours), author, comment)


def test_json_schemas_are_pinned() -> None:
    report = alerting.AlertReport.model_json_schema()
    assert list(report["properties"]) == ["alertmanager", "total", "groups"]
    defs = report["$defs"]
    assert list(defs["AlertGroup"]["properties"]) == ["severity", "environment", "count",
                                                      "alerts"]
    assert list(defs["Alert"]["properties"]) == [
        "alertname", "severity", "environment", "state", "silenced_by", "inhibited_by",
        "starts_at", "summary", "labels", "annotations", "fingerprint", "generator_url"]
    silences = alerting.SilenceList.model_json_schema()
    assert list(silences["properties"]) == ["alertmanager", "silences"]
    assert list(silences["$defs"]["Silence"]["properties"]) == [
        "id", "state", "matchers", "starts_at", "ends_at", "updated_at", "created_by", "comment"]
    assert list(silences["$defs"]["Matcher"]["properties"]) == ["name", "op", "value"]
    assert list(alerting.SilenceResult.model_json_schema()["properties"]) == [
        "id", "action", "silence", "replaced"]
