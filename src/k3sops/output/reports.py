"""Report formats of `k3sops check`: markdown, JUnit XML and a self-contained HTML page.

``render(report, fmt, trend)`` is the one entry point; ``trend`` is the stored history
(oldest first) that the HTML report draws its charts from. Markdown suits a chat message or a
merge-request comment, JUnit lets a CI system show each finding as a failed test case, and
the HTML page is one file that can be mailed or archived (no network needed to view it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

from k3sops.domain import checks as registry
from k3sops.domain.findings import CheckReport, Finding, ManualItem
from k3sops.errors import UsageError
from k3sops.timeparse import parse_time

if TYPE_CHECKING:
    from k3sops.adapters.store import TrendPoint

FORMATS = ("markdown", "html", "junit")
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters XML 1.0 cannot carry (control bytes in a container's log line, say)."""


def render(report: CheckReport, fmt: str, trend: list[TrendPoint]) -> str:
    """The report as ``fmt`` (markdown | html | junit), ending with a newline.

    Raises:
        UsageError: ``fmt`` is not one of the report formats.
    """
    renderers: dict[str, Callable[[], str]] = {
        "markdown": lambda: markdown(report),
        "junit": lambda: junit(report),
        "html": lambda: _html(report, trend),
    }
    if fmt not in renderers:
        raise UsageError(f"-o {fmt} is not a report format",
                         hint="use markdown, html or junit (or table, json, yaml)")
    return renderers[fmt]()


def _html(report: CheckReport, trend: list[TrendPoint]) -> str:
    from k3sops.output.html_report import html

    return html(report, trend)


# -- shared helpers --------------------------------------------------------------------------


def where(f: Finding) -> str:
    """``Kind/namespace/name`` (``Kind/name`` for cluster-scoped objects)."""
    r = f.resource
    return f"{r.kind}/{r.namespace + '/' if r.namespace else ''}{r.name}"


def when(iso: str | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM UTC`` (the text as-is when it does not parse)."""
    if not iso:
        return ""
    t = parse_time(iso)
    if t is None:
        return iso
    zone = t.tzname() or ""
    return t.strftime("%Y-%m-%d %H:%M") + (" UTC" if zone in ("UTC", "UTC+00:00")
                                            else f" {zone}" if zone else "")


def headline(report: CheckReport) -> str:
    """One line: period, scope, counts, new/resolved and how many checks ran."""
    s = report.summary
    scope = f"environment {s.environment}" if s.environment else "all environments"
    return (f"{s.period} check of {scope} at {when(s.started_at)}: {s.total} finding(s) — "
            f"{s.critical} critical, {s.warning} warning, {s.info} info; {s.new} new, "
            f"{s.resolved} resolved; {s.checks_run} checks in {s.duration_seconds:.1f}s")


def usage_line(report: CheckReport) -> str:
    """``CPU 13.7 %, memory 9.9 %, disk 72.1 %`` (empty when Prometheus gave nothing)."""
    u = report.summary.usage
    parts = [f"{label} {u[key]:.1f} %" for key, label in
             (("cpu", "CPU"), ("memory", "memory"), ("disk", "disk")) if key in u]
    return ", ".join(parts)


def ack_text(m: ManualItem) -> str:
    """``acknowledged by X at T: note`` or ``open``."""
    if not m.acknowledged_by:
        return "open"
    text = f"acknowledged by {m.acknowledged_by} at {when(m.acknowledged_at)}"
    return text + (f": {m.note}" if m.note else "")


# -- markdown --------------------------------------------------------------------------------


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell: no pipes or line breaks, no HTML."""
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")
            .replace(">", "&gt;").replace("\r", " ").replace("\n", "<br>"))


def markdown(report: CheckReport) -> str:
    """GitHub/GitLab-flavoured markdown: summary, findings table, resolved, manual steps."""
    s = report.summary
    lines = [f"# k3sops {s.period} check — health {s.health_score}/100", "",
             _cell(headline(report)) + "  "]
    if usage := usage_line(report):
        lines.append(f"Cluster usage: {usage}")
    lines.append("")
    if report.findings:
        lines += ["## Findings", "", "| severity | check | resource | message | runbook |",
                  "|---|---|---|---|---|"]
        for f in report.findings:
            sev = f"**{f.severity}**" if f.severity != "info" else "info"
            check = f"`{_cell(f.check)}`" + (" **NEW**" if f.new else "")
            lines.append(f"| {sev} | {check} | {_cell(where(f))} | {_cell(f.message)} | "
                         f"`{_cell(f.runbook)}` |")
        lines.append("")
    else:
        lines += ["No findings: everything checked is healthy.", ""]
    if report.resolved:
        lines += ["## Resolved since the last check", ""]
        lines += [f"- `{_cell(f.check)}` {_cell(where(f))} — {_cell(f.message)}"
                  for f in report.resolved]
        lines.append("")
    if report.manual:
        lines += ["## Manual steps", ""]
        for m in report.manual:
            box = "x" if m.acknowledged_by else " "
            lines.append(f"- [{box}] **{_cell(m.title)}** (`{m.id}`, {m.period}) — "
                         f"{_cell(ack_text(m))}")
            lines.append(f"  {_cell(m.instructions)}")
        lines.append("")
    missing = [src for src in report.sources if not src.ok]
    if missing:
        lines += ["## Unavailable sources", "",
                  "These could not be read; the checks that need them were skipped.", ""]
        lines += [f"- **{_cell(src.name)}** ({_cell(src.endpoint)}): {_cell(src.error or '')}"
                  for src in missing]
        lines.append("")
    return "\n".join(lines)


# -- JUnit -----------------------------------------------------------------------------------


def check_ids(report: CheckReport) -> tuple[list[str], dict[str, str]]:
    """Check ids of the report's period (registry order) and those skipped for a source.

    The report does not list the checks that ran, only how many; the registry names those
    selected for the period, and a check that needs a source the report marks unavailable was
    skipped. Ids that appear only in findings (a report from another version) are added.

    Returns:
        (ids, skipped) where skipped maps an id to the reason.
    """
    down = {src.name: src for src in report.sources if not src.ok}
    ids: list[str] = []
    skipped: dict[str, str] = {}
    for spec in registry.selected(report.summary.period):
        ids.append(spec.id)
        missing = [n for n in spec.needs if n in down]
        if missing:
            skipped[spec.id] = "skipped: " + ", ".join(missing) + " could not be read"
    for f in [*report.findings]:
        if f.check not in ids:
            ids.append(f.check)
    return ids, skipped


def _evidence(f: Finding) -> str:
    text = f"{f.message}\nresource: {where(f)}\nrunbook: {f.runbook}"
    if f.environment:
        text += f"\nenvironment: {f.environment}"
    if f.evidence:
        text += "\nevidence:\n" + json.dumps(f.evidence, indent=2, sort_keys=True)
    return text


def _suite(root: ET.Element, name: str, timestamp: str) -> ET.Element:
    return ET.SubElement(root, "testsuite", name=name, timestamp=timestamp)


def _check_suites(root: ET.Element, report: CheckReport) -> None:
    """One suite per check id: a case per finding, or one case when it found nothing."""
    by_check: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_check.setdefault(f.check, []).append(f)
    titles = {spec.id: spec.title for spec in registry.REGISTRY.values()}
    ids, skipped = check_ids(report)
    for cid in ids:
        suite = _suite(root, cid, report.summary.started_at)
        findings = by_check.get(cid, [])
        for f in findings:
            case = ET.SubElement(suite, "testcase", classname=cid, name=where(f))
            if f.severity == "info":
                ET.SubElement(case, "system-out").text = _evidence(f)
            else:
                failure = ET.SubElement(case, "failure", type=f.severity,
                                        message=f"{f.severity}: {f.message}")
                failure.text = _evidence(f)
        if not findings:
            case = ET.SubElement(suite, "testcase", classname=cid, name=titles.get(cid, cid))
            if cid in skipped:
                ET.SubElement(case, "skipped", message=skipped[cid])


def _other_suites(root: ET.Element, report: CheckReport) -> None:
    """Sources (an error case when unreadable) and manual steps (skipped while open)."""
    if report.sources:
        suite = _suite(root, "k3sops-sources", report.summary.started_at)
        for src in report.sources:
            case = ET.SubElement(suite, "testcase", classname="sources",
                                 name=f"{src.name} ({src.endpoint})")
            if not src.ok:
                ET.SubElement(case, "error", type="unavailable",
                              message=src.error or "could not be read")
    if report.manual:
        suite = _suite(root, "k3sops-manual", report.summary.started_at)
        for m in report.manual:
            case = ET.SubElement(suite, "testcase", classname="manual", name=m.id)
            if m.acknowledged_by:
                ET.SubElement(case, "system-out").text = ack_text(m)
            else:
                ET.SubElement(case, "skipped", message=f"open: {m.title}")


def junit(report: CheckReport) -> str:
    """JUnit XML: a testsuite per check (a failure per critical/warning finding).

    Info findings are passing test cases with the message in ``system-out``; a check without
    findings is one passing case; a check skipped for a missing source is a skipped case; the
    sources and the manual steps get a suite each so CI shows them too.
    """
    s = report.summary
    root = ET.Element("testsuites", name=f"k3sops {s.period} check")
    _check_suites(root, report)
    _other_suites(root, report)
    if not root.findall("testsuite"):
        suite = _suite(root, "k3sops-check", s.started_at)
        ET.SubElement(suite, "testcase", classname="k3sops-check", name="no findings")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for suite in root.findall("testsuite"):
        counts = {"tests": len(suite.findall("testcase")),
                  "failures": len(suite.findall("testcase/failure")),
                  "errors": len(suite.findall("testcase/error")),
                  "skipped": len(suite.findall("testcase/skipped"))}
        for key, n in counts.items():
            suite.set(key, str(n))
            totals[key] += n
    for key, n in totals.items():
        root.set(key, str(n))
    root.set("time", f"{s.duration_seconds:.3f}")
    for el in root.iter():
        # ElementTree would write control characters verbatim and make the file unparseable.
        el.text = _NOT_XML.sub("\ufffd", el.text) if el.text else el.text
        for key, value in el.attrib.items():
            el.set(key, _NOT_XML.sub("\ufffd", value))
    ET.indent(root)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            + ET.tostring(root, encoding="unicode") + "\n")
