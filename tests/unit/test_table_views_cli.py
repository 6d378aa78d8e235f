"""The reports of alerts, node, remediate, check, status, metrics, dashboards, logs and runbook
find their table view by type (their views moved out of the CLI modules) and draw it."""

from __future__ import annotations

import io

import pytest
from pydantic import BaseModel
from rich.console import Console

from k3sops.domain import runbooks
from k3sops.domain.alerting import SilenceList
from k3sops.domain.dashboards import RenderReport
from k3sops.domain.logs import LogsResult
from k3sops.domain.metrics import QueryReport
from k3sops.domain.models import StatusReport
from k3sops.output.render import table_of
from k3sops.services.history import Acknowledgement, CheckHistory, RunRow
from k3sops.services.nodeops import NodeStepReport
from k3sops.services.remediate import RemediationReport

pytestmark = pytest.mark.unit


def _draw(report: BaseModel) -> str:
    out = Console(record=True, width=200)
    table_of(report)(report, out)
    return out.export_text()


@pytest.mark.parametrize(("report", "expected"), [
    (RemediationReport(title="cordon node1", applied=False), "cordon node1: nothing to do"),
    (NodeStepReport(step="prune-images", node="node1", role="server", command="crictl rmi",
                    applied=False, ran=False), "on node1 (server) as root: crictl rmi"),
    (Acknowledgement(item="review", period="weekly", title="Review", by="ops",
                     at="2026-01-01T00:00:00Z", note="done"), "acknowledged review"),
    (CheckHistory(database="/tmp/k3sops.db", runs=[]), "no check runs stored yet"),
    (SilenceList(alertmanager="http://am:9093", silences=[]), "no silences in Alertmanager"),
    (StatusReport(cluster="lab", server_version="v1.31", nodes=[], pods=[], problems=[],
                  targets=[], sources=[]), "cluster lab"),
    (QueryReport(prometheus="http://prom:9090", query="up", result_type="vector", rows=[]),
     "Prometheus http://prom:9090"),
    (RenderReport(files=[]), "Dashboards written"),
    (runbooks.summaries(), "Runbooks"),
])
def test_reports_draw_their_registered_view(report: BaseModel, expected: str) -> None:
    assert expected in _draw(report)


def test_logs_view_writes_lines_raw() -> None:
    r = LogsResult.model_validate({"source": "kubernetes", "endpoint": "api", "target": "pod/x",
                                   "lines": [{"line": "[not markup] ok", "labels": {},
                                              "timestamp": None}]})
    buf = io.StringIO()
    table_of(r)(r, Console(file=buf))
    assert buf.getvalue() == "[not markup] ok\n"


def test_history_view_shows_stored_times_in_utc() -> None:
    row = RunRow(id=1, started_at="2026-11-20T08:30:00.250000+01:00", period="daily",
                 environment=None, total=0, critical=0, warning=0, info=0, health_score=100,
                 new=0, resolved=0, checks_run=3, usage={})
    bad = row.model_copy(update={"id": 2, "started_at": "yesterday"})
    text = _draw(CheckHistory(database="k3sops.db", runs=[row, bad]))
    assert "2026-11-20 07:30" in text and "yesterday" in text
