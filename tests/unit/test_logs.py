"""Logs: parsing the API server's lines, LogQL requests, and the Loki client.

Loki cannot run here, so the Loki client is tested against RECORDED real Loki responses,
served through an ``httpx2.MockTransport`` passed into the adapter (no monkeypatching):

- ``loki-query-range-streams.json`` and ``loki-query-range-matrix.json``: the
  ``query_range`` examples of grafana/loki ``docs/sources/reference/loki-http-api.md``
  (commit c41ee8c8), whose elided ``"stats": {...}`` is filled with the statistics example of
  the same page;
- ``loki-query-range-streams-v3.json`` and ``loki-query-range-categorized.json``: the
  expected ``/loki/api/v1/query_range`` bodies of grafana/loki
  ``pkg/util/marshal/marshal_test.go`` (commit 82d30445; the Loki 3 marshaller, with
  warnings, full empty stats and, with the ``categorize-labels`` encoding flag, a third
  per-line element carrying structured metadata);
- ``loki-query-range-parse-error.json``: status and plain-text body of Loki's answer to a
  query that is not LogQL, as quoted in grafana/loki pull request #10413.

The API server log lines are the ones kwok serves for the lab's pods (CRI log files).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from k3sops.adapters.loki import LokiAdapter
from k3sops.adapters.prometheus import HttpApi
from k3sops.config import Endpoint, Platform
from k3sops.domain import logs as dlogs
from k3sops.domain.logs import Direction
from k3sops.errors import (
    AdapterError,
    ConfigError,
    ExitCode,
    NotFound,
    Unreachable,
    UsageError,
)
from k3sops.services import logs as slogs
from k3sops.services.context import Settings

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data"
LOKI_URL = "http://loki.invalid:3100"  # never contacted: the transport answers
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _recorded(name: str) -> Any:
    return json.loads((DATA / name).read_text())


class Recorder:
    """A MockTransport handler that answers with one recorded response and keeps requests."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        self.status, self.body, self.content_type = status, body, content_type
        self.requests: list[httpx2.Request] = []

    @classmethod
    def json_file(cls, name: str) -> Recorder:
        return cls(200, (DATA / name).read_bytes(), "application/json; charset=UTF-8")

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return httpx2.Response(self.status, content=self.body,
                               headers={"Content-Type": self.content_type})


def _adapter(handler: Callable[[httpx2.Request], httpx2.Response]) -> LokiAdapter:
    return LokiAdapter.from_endpoint(Endpoint(url=LOKI_URL), None,
                                     transport=httpx2.MockTransport(handler))


def _query(query: str = '{job="varlogs"}') -> dlogs.LokiQuery:
    return dlogs.loki_query(query, NOW, timedelta(hours=1), 100)


# --- Kubernetes log lines ----------------------------------------------------------------

KWOK_PREVIOUS = [
    '2026-01-01T00:00:00.000000000Z level=info msg="starting" component=app',
    '2026-01-01T00:00:01.000000000Z level=error msg="cannot connect to database" '
    'err="dial tcp 10.43.12.7:5432: connect: connection refused"',
    "2026-01-01T00:00:02.000000000Z panic: dial tcp: connection refused",
]


def test_kube_lines_split_the_timestamp_prefix() -> None:
    lines = dlogs.kube_lines(KWOK_PREVIOUS)
    assert [x.line for x in lines] == [
        'level=info msg="starting" component=app',
        'level=error msg="cannot connect to database" '
        'err="dial tcp 10.43.12.7:5432: connect: connection refused"',
        "panic: dial tcp: connection refused"]
    assert lines[2].timestamp == datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)
    assert all(x.labels == {} for x in lines)


def test_kube_lines_without_a_timestamp_are_kept_whole() -> None:
    lines = dlogs.kube_lines(["no timestamp here", "2026-13-45T99:00:00Z odd"])
    assert [(x.timestamp, x.line) for x in lines] == [
        (None, "no timestamp here"), (None, "2026-13-45T99:00:00Z odd")]


# --- LogQL requests ----------------------------------------------------------------------

def test_pod_selector_quotes_values() -> None:
    assert dlogs.pod_selector("production", "postgres-0") == (
        '{namespace="production", pod="postgres-0"}')
    assert dlogs.pod_selector("a", 'we"ird', "c") == (
        '{namespace="a", pod="we\\"ird", container="c"}')


def test_loki_query_params_are_nanoseconds() -> None:
    q = dlogs.loki_query('{app="web"}', NOW, timedelta(minutes=30), 50, Direction.forward)
    assert q.params() == {"query": '{app="web"}', "start": "1795692600000000000",
                          "end": "1795694400000000000", "limit": "50",
                          "direction": "forward"}


@pytest.mark.parametrize(("query", "limit", "says"), [
    ("  ", 10, "query is empty"), ('{a="b"}', 0, "at least 1")])
def test_loki_query_refuses_bad_input(query: str, limit: int, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        dlogs.loki_query(query, NOW, timedelta(hours=1), limit)


# --- Loki client against recorded answers ------------------------------------------------

def test_query_range_sends_the_documented_parameters() -> None:
    rec = Recorder.json_file("loki-query-range-streams.json")
    loki = _adapter(rec)
    q = _query()
    body = loki.query_range(q.params())
    assert body["status"] == "success"
    (req,) = rec.requests
    assert req.method == "GET"
    assert str(req.url).startswith(f"{LOKI_URL}/loki/api/v1/query_range?")
    assert dict(req.url.params) == q.params()


def test_documented_streams_answer_prints_oldest_first() -> None:
    loki = _adapter(Recorder.json_file("loki-query-range-streams.json"))
    lines = dlogs.loki_lines(loki.query_range(_query().params()), loki.where)
    # Loki answered backward (newest first); the lines print oldest first, as kubectl does.
    assert [x.line for x in lines] == ["bar", "foo"]
    assert lines[0].timestamp == datetime(2019, 9, 23, 19, 21, 32, 548155, tzinfo=UTC)
    assert lines[0].labels == {"filename": "/var/log/myproject.log", "job": "varlogs",
                               "level": "info"}


def test_loki3_answer_with_warnings_and_full_stats() -> None:
    loki = _adapter(Recorder.json_file("loki-query-range-streams-v3.json"))
    lines = dlogs.loki_lines(loki.query_range(_query().params()), loki.where)
    assert [(x.line, x.labels) for x in lines] == [
        ("super line", {"test": "test"}), ("super line with labels", {"test": "test"})]
    assert lines[0].timestamp is not None and lines[0].timestamp.year == 1970


def test_categorized_labels_third_element_is_ignored() -> None:
    loki = _adapter(Recorder.json_file("loki-query-range-categorized.json"))
    lines = dlogs.loki_lines(loki.query_range(_query().params()), loki.where)
    assert [x.line for x in lines] == ["super line", "super line with labels",
                                       "super line with labels msg=text"]


def test_metric_query_answer_is_a_usage_error() -> None:
    loki = _adapter(Recorder.json_file("loki-query-range-matrix.json"))
    body = loki.query_range(_query('sum(rate({job="varlogs"}[10m])) by (level)').params())
    with pytest.raises(UsageError, match=r"metric query .*matrix"):
        dlogs.loki_lines(body, loki.where)


def test_bad_logql_is_a_usage_error_with_lokis_position() -> None:
    recorded = _recorded("loki-query-range-parse-error.json")
    loki = _adapter(Recorder(recorded["status_code"], recorded["body"].encode(),
                             recorded["content_type"]))
    with pytest.raises(UsageError) as e:
        loki.query_range(_query("job=varlogs").params())
    assert e.value.exit_code == ExitCode.USAGE
    assert "parse error at line 1, col 1" in e.value.message
    assert LOKI_URL in e.value.message


def test_http_failures_map_to_k3sops_errors() -> None:
    with pytest.raises(NotFound, match="query_range not found"):
        _adapter(Recorder(404, b"404 page not found\n", "text/plain")).query_range({})
    with pytest.raises(AdapterError, match="HTTP 500"):
        _adapter(Recorder(500, b"too many outstanding requests", "text/plain")).query_range({})
    with pytest.raises(AdapterError, match="not JSON"):
        _adapter(Recorder(200, b"<html>", "text/html")).query_range({})

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    with pytest.raises(Unreachable, match=r"cannot reach Loki at http://loki\.invalid:3100"):
        _adapter(refuse).query_range({})


def test_unexpected_answer_is_an_adapter_error() -> None:
    with pytest.raises(AdapterError, match="unexpected answer"):
        dlogs.loki_lines({"status": "error"}, LOKI_URL)


# --- the service, with the transport swapped in ------------------------------------------

def _settings(loki: dict[str, Any] | None) -> Settings:
    monitoring = {"loki": loki} if loki is not None else {}
    platform = Platform.model_validate({"name": "t", "environments": {"production": None},
                                        "monitoring": monitoring})
    return Settings(kubeconfig=None, context=None, platform=platform)


def test_loki_logs_for_a_pod_builds_its_selector() -> None:
    rec = Recorder.json_file("loki-query-range-streams-v3.json")
    result = slogs.loki_logs(_settings({"url": LOKI_URL}), {}, Path("/nonexistent"), now=NOW,
                             pod="postgres-0", namespace="production", since="2h", limit=20,
                             transport=httpx2.MockTransport(rec))
    (req,) = rec.requests
    assert req.url.params["query"] == '{namespace="production", pod="postgres-0"}'
    assert req.url.params["limit"] == "20"
    assert req.url.params["direction"] == "backward"
    assert int(req.url.params["end"]) - int(req.url.params["start"]) == 2 * 3600 * 10**9
    assert result.source == "loki" and result.endpoint == LOKI_URL
    assert result.target == '{namespace="production", pod="postgres-0"}'
    assert [x.line for x in result.lines] == ["super line", "super line with labels"]


def test_loki_logs_without_loki_configured_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Loki is not configured"):
        slogs.loki_logs(_settings(None), {}, Path("/nonexistent"), now=NOW, query='{a="b"}')


def test_loki_logs_needs_a_query_or_a_pod() -> None:
    with pytest.raises(UsageError, match="give a pod or a LogQL --query"):
        slogs.loki_logs(_settings({"url": LOKI_URL}), {}, Path("/nonexistent"), now=NOW,
                        transport=httpx2.MockTransport(Recorder(500, b"", "text/plain")))


def test_http_api_for_loki_keeps_the_transport() -> None:
    # The adapter is built on the same HttpApi as Prometheus/Alertmanager; the transport given
    # is the one that answers (nothing leaves the process).
    loki = _adapter(Recorder.json_file("loki-query-range-streams.json"))
    assert isinstance(loki.api, HttpApi) and loki.where == LOKI_URL


def test_json_schema_is_pinned() -> None:
    schema = dlogs.LogsResult.model_json_schema()
    assert list(schema["properties"]) == ["source", "endpoint", "target", "lines"]
    assert list(schema["$defs"]["LogLine"]["properties"]) == ["timestamp", "line", "labels"]
