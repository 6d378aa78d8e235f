"""The markdown, JUnit and HTML reports of `k3sops check`.

The report is tests/data/check-report.json, a real `k3sops -c ~/.local/state/k3sops/lab/
platform.yaml -o json check --no-history` output captured from the dev lab with the crashloop,
pending, failed-pod, oomkilled, stuck-rollout and node-notready scenarios applied (4 critical,
1 warning). The trend is that report stored in a real SQLite history at several times.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from k3sops.adapters.store import SqliteStore, TrendPoint
from k3sops.domain import checks
from k3sops.domain.findings import CheckReport, Finding, ManualItem, ResourceRef, Source
from k3sops.errors import UsageError
from k3sops.output.reports import render

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data" / "check-report.json"
HOSTILE = 'node <script>alert("x")</script> | & "quoted" </td>'


@pytest.fixture
def report() -> CheckReport:
    return CheckReport.model_validate_json(DATA.read_text())


@pytest.fixture
def trend(tmp_path: Path, report: CheckReport) -> list[TrendPoint]:
    start = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)
    with SqliteStore.open(tmp_path / "state") as store:
        for day in range(7):
            keep = report.findings[: day % len(report.findings) + 1]
            summary = report.summary.model_copy(update={
                "started_at": (start + timedelta(days=day)).isoformat(timespec="seconds"),
                "critical": sum(f.severity == "critical" for f in keep),
                "warning": sum(f.severity == "warning" for f in keep), "total": len(keep)})
            store.record(report.model_copy(update={"summary": summary, "findings": keep}))
        return store.trend()


@pytest.fixture
def rich_report(report: CheckReport) -> CheckReport:
    """The captured report plus an info finding, a resolved one, manual steps, a down source."""
    info = Finding(check="node-cordoned", severity="info",
                   resource=ResourceRef(kind="Node", name="k3s-agent-2"), message=HOSTILE,
                   evidence={"note": "\x1b[31mcontrol\x00 bytes"}, runbook="node-cordoned")
    resolved = report.findings[0].model_copy(update={"check": "pod-failed"})
    manual = [
        ManualItem(id="review-dashboards", period="weekly", title="Dashboards still match",
                   instructions="Open each dashboard.", acknowledged_by="alice",
                   acknowledged_at="2026-11-26T08:01:00+00:00", note="fine"),
        ManualItem(id="read-incidents", period="daily", title="Read the incident channel",
                   instructions="Read #ops | follow up."),
    ]
    sources = [*report.sources, Source(name="alertmanager", ok=False,
                                       endpoint="http://127.0.0.1:17093",
                                       error="connection refused")]
    findings = [report.findings[0].model_copy(update={"new": True}), *report.findings[1:], info]
    return report.model_copy(update={"findings": findings, "resolved": [resolved],
                                     "manual": manual, "sources": sources})


def test_unknown_format_is_a_usage_error(report: CheckReport) -> None:
    with pytest.raises(UsageError):
        render(report, "pdf", [])


# -- markdown --------------------------------------------------------------------------------


def test_markdown(rich_report: CheckReport) -> None:
    md = render(rich_report, "markdown", [])
    s = rich_report.summary
    assert md.startswith(f"# k3sops daily check — health {s.health_score}/100")
    assert "| severity | check | resource | message | runbook |" in md
    rows = [line for line in md.splitlines() if line.startswith("| **") or
            line.startswith("| info")]
    assert len(rows) == len(rich_report.findings)
    for f, row in zip(rich_report.findings, rows, strict=True):
        assert f.resource.name in row and f"`{f.runbook}`" in row
        # Every row keeps the five columns: pipes inside messages are escaped.
        assert len(re.findall(r"(?<!\\)\|", row)) == 6
    assert "**NEW**" in rows[0]
    assert "&lt;script&gt;" in md and "<script>" not in md
    assert "## Resolved since the last check" in md and "`pod-failed`" in md
    assert "- [x] **Dashboards still match**" in md and "acknowledged by alice" in md
    assert "- [ ] **Read the incident channel**" in md
    assert "## Unavailable sources" in md and "connection refused" in md
    assert f"CPU {s.usage['cpu']:.1f} %" in md


def test_markdown_without_findings(report: CheckReport) -> None:
    md = render(report.model_copy(update={"findings": []}), "markdown", [])
    assert "No findings" in md and "## Findings" not in md


# -- JUnit -----------------------------------------------------------------------------------


def test_junit_shape(rich_report: CheckReport) -> None:
    xml = render(rich_report, "junit", [])
    root = ET.fromstring(xml.encode())  # noqa: S314 - our own output
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    for f in rich_report.findings:
        assert f.check in suites
        case = next(c for c in suites[f.check].findall("testcase")
                    if f.resource.name in (c.get("name") or ""))
        if f.severity == "info":
            assert case.find("failure") is None
            assert f.message in (case.findtext("system-out") or "")
        else:
            failure = case.find("failure")
            assert failure is not None and failure.get("type") == f.severity
            assert f.message in (failure.get("message") or "")
    failures = sum(f.severity != "info" for f in rich_report.findings)
    assert root.get("failures") == str(failures)
    assert sum(int(s.get("failures") or 0) for s in suites.values()) == failures
    assert root.get("tests") == str(len(root.findall("testsuite/testcase")))
    # Checks of the period that found nothing pass; an unreadable source is an error.
    clean = [c.id for c in checks.selected("daily")
             if c.id not in {f.check for f in rich_report.findings}]
    for cid in clean:
        cases = suites[cid].findall("testcase")
        assert len(cases) == 1 and cases[0].find("failure") is None
    errors = suites["k3sops-sources"].findall("testcase/error")
    assert len(errors) == 1 and "connection refused" in (errors[0].get("message") or "")
    manual = suites["k3sops-manual"]
    assert manual.get("skipped") == "1"  # the open step; the acknowledged one passes
    # Control characters from the cluster are replaced, so the file stays parseable.
    assert "\x1b" not in xml and "\x00" not in xml


def test_junit_of_a_healthy_run_passes(report: CheckReport) -> None:
    healthy = report.model_copy(update={"findings": [], "sources": []})
    root = ET.fromstring(render(healthy, "junit", []).encode())  # noqa: S314 - our own output
    assert root.get("failures") == "0" and root.get("errors") == "0"
    assert int(root.get("tests") or 0) >= 1


# -- HTML ------------------------------------------------------------------------------------


class _Tags(HTMLParser):
    """Collects tags and checks that every non-void element is closed in order."""

    VOID = frozenset({"meta", "br"})  # SVG leaves are written self-closing (<rect/>)

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()


def parse(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    p.close()
    return p


def test_html_is_self_contained_with_charts(rich_report: CheckReport,
                                            trend: list[TrendPoint]) -> None:
    html = render(rich_report, "html", trend)
    tags = parse(html)
    assert tags.errors == [] and tags.stack == []
    names = [t for t, _ in tags.tags]
    assert "script" not in names and "link" not in names and "img" not in names
    for _, attrs in tags.tags:
        for key in ("src", "href"):
            assert not re.match(r"\s*(https?:)?//", attrs.get(key) or "")
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html)
    assert "@import" not in html
    # The score ring and the two trend charts, drawn inline.
    charts = [a for t, a in tags.tags if t == "svg" and "chart" in (a.get("class") or "")]
    assert len(charts) == 2
    assert names.count("polyline") == 3  # CPU, memory and disk lines
    bars = [a for t, a in tags.tags if t == "rect"]
    assert len(bars) >= len(trend)
    for f in rich_report.findings[:-1]:
        assert escape(f.resource.name) in html and escape(f.message) in html


def test_html_escapes_text_from_the_cluster(rich_report: CheckReport,
                                            trend: list[TrendPoint]) -> None:
    html = render(rich_report, "html", trend)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;/td&gt;" in html
    assert parse(html).errors == []


def test_html_without_history_has_no_charts(report: CheckReport) -> None:
    html = render(report, "html", [])
    assert 'class="chart"' not in html and "No stored history yet" in html
    assert f">{report.summary.health_score}</text>" in html


def test_html_charts_only_the_reports_environment(report: CheckReport,
                                                  trend: list[TrendPoint]) -> None:
    prod = report.model_copy(update={"summary": report.summary.model_copy(
        update={"environment": "production"})})
    assert 'class="chart"' not in render(prod, "html", trend)
