"""The HTML report of `k3sops check`: one self-contained file with inline CSS and SVG charts.

Nothing is loaded at view time (no script, stylesheet, font or image from the network), so
the file can be mailed, attached to a ticket or archived and still look the same. Every piece
of text from the cluster goes through :func:`html.escape`. The charts are drawn here as SVG
from the stored history: cluster CPU, memory and disk use over time (lines) and findings by
severity per run (stacked bars). Hovering a point or bar shows its values (SVG ``<title>``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from k3sops.domain.findings import CheckReport, Finding
from k3sops.output.reports import ack_text, usage_line, when
from k3sops.timeparse import parse_time

if TYPE_CHECKING:
    from k3sops.adapters.store import TrendPoint

SEVERITY_COLOURS = {"critical": "#d93025", "warning": "#e8a200", "info": "#1a73e8"}
USAGE_SERIES = (("cpu", "CPU", "#1a73e8"), ("memory", "Memory", "#9334e6"),
                ("disk", "Disk", "#0f9d8a"))

# Chart geometry (SVG user units; the SVG scales to its card's width).
W, H = 600, 250
LEFT, RIGHT, TOP, BOTTOM = 44, 16, 14, 34


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _score_colour(score: int) -> str:
    if score >= 90:
        return "#188038"
    if score >= 60:
        return "#e8a200"
    return "#d93025"


def _label(iso: str, days: int) -> str:
    """Time of day within one day, the date over weeks, both in between."""
    t = parse_time(iso)
    if t is None:
        return iso[:16]
    if days <= 1:
        return t.strftime("%H:%M")
    return t.strftime("%d %b") if days > 3 else t.strftime("%d %b %H:%M")


def _x_positions(n: int) -> list[float]:
    """Evenly spaced x centres for n runs (one run: the middle)."""
    inner = W - LEFT - RIGHT
    if n == 1:
        return [LEFT + inner / 2]
    step = inner / n
    return [LEFT + step * (i + 0.5) for i in range(n)]


def _x_axis(points: Sequence[TrendPoint], xs: list[float]) -> str:
    days = len({p.started_at[:10] for p in points})
    every = max(1, -(-len(points) // 6))  # at most ~6 labels, whatever the number of runs
    out = [f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" '
           'class="axis"/>']
    for i in range(0, len(points), every):
        label = _label(points[i].started_at, days)
        # Keep edge labels inside the drawing (about 6 units per character at 11px).
        half = len(label) * 3.1
        x = min(max(xs[i], LEFT - 20 + half), W - 2 - half)
        out.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 18}" text-anchor="middle" '
                   f'class="tick">{_e(label)}</text>')
    return "".join(out)


def _y_grid(top: float, ticks: Sequence[float], suffix: str = "") -> str:
    inner = H - TOP - BOTTOM
    out = []
    for v in ticks:
        y = H - BOTTOM - inner * v / top
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" '
                   'class="grid"/>'
                   f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
                   f"{v:g}{suffix}</text>")
    return "".join(out)


def usage_chart(points: Sequence[TrendPoint]) -> str:
    """Line chart of CPU, memory and disk use (percent, 0-100) per stored run."""
    xs = _x_positions(len(points))
    inner = H - TOP - BOTTOM
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
             'aria-label="CPU, memory and disk use over time">',
             _y_grid(100, (0, 25, 50, 75, 100), "%"), _x_axis(points, xs)]
    radius = 3.2 if len(points) <= 30 else 1.8  # dense history: lighter dots
    for key, label, colour in USAGE_SERIES:
        segments: list[list[tuple[float, float]]] = [[]]
        dots = []
        for x, p in zip(xs, points, strict=True):
            value = getattr(p, key)
            if value is None:
                segments.append([])  # a run without the metric breaks the line
                continue
            y = H - BOTTOM - inner * max(0.0, min(100.0, value)) / 100
            segments[-1].append((x, y))
            dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{colour}">'
                        f"<title>{_e(label)} {value:.1f}% at {_e(when(p.started_at))}"
                        "</title></circle>")
        for seg in segments:
            if len(seg) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in seg)
                parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                             'stroke-width="2.2" stroke-linejoin="round" '
                             'stroke-linecap="round"/>')
        parts += dots
    parts.append("</svg>")
    return "".join(parts)


def _nice_top(n: int) -> tuple[int, list[int]]:
    """An axis maximum >= n and 3-5 round ticks."""
    n = max(n, 1)
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000):
        if n / step <= 5:
            top = -(-n // step) * step
            return top, list(range(0, top + 1, step))
    top = n
    return top, [0, top]


def findings_chart(points: Sequence[TrendPoint]) -> str:
    """Stacked bars of critical, warning and info findings per stored run."""
    xs = _x_positions(len(points))
    top, ticks = _nice_top(max(p.critical + p.warning + p.info for p in points))
    inner = H - TOP - BOTTOM
    bar = min(26.0, (W - LEFT - RIGHT) / len(points) * 0.68)
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
             'aria-label="Findings by severity over time">', _y_grid(top, ticks)]
    for x, p in zip(xs, points, strict=True):
        base = float(H - BOTTOM)
        tip = (f"{when(p.started_at)} ({p.period}): {p.critical} critical, {p.warning} warning, "
               f"{p.info} info; health {p.health_score}")
        parts.append(f"<g><title>{_e(tip)}</title>")
        for sev in ("critical", "warning", "info"):
            count = getattr(p, sev)
            if not count:
                continue
            h = inner * count / top
            base -= h
            parts.append(f'<rect x="{x - bar / 2:.1f}" y="{base:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{SEVERITY_COLOURS[sev]}"/>')
        if base == H - BOTTOM:
            # A clean run: a small green tick so it reads as "checked, nothing found".
            parts.append(f'<rect x="{x - bar / 2:.1f}" y="{H - BOTTOM - 2}" '
                         f'width="{bar:.1f}" height="2" fill="#188038"/>')
        parts.append("</g>")
    parts.append(_x_axis(points, xs))
    parts.append("</svg>")
    return "".join(parts)


def _legend(items: Sequence[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{colour}"></i>{_e(label)}</span>'
        for label, colour in items) + "</div>"


def _score_ring(score: int) -> str:
    r = 46
    circumference = 2 * 3.14159265 * r
    filled = circumference * max(0, min(100, score)) / 100
    colour = _score_colour(score)
    return (f'<svg class="ring" viewBox="0 0 120 120" role="img" '
            f'aria-label="health score {score} of 100">'
            f'<circle cx="60" cy="60" r="{r}" fill="none" stroke="#e8eaed" stroke-width="12"/>'
            + (f'<circle cx="60" cy="60" r="{r}" fill="none" stroke="{colour}" '
               f'stroke-width="12" stroke-linecap="round" '
               f'stroke-dasharray="{filled:.1f} {circumference:.1f}" '
               'transform="rotate(-90 60 60)"/>' if score > 0 else "")
            + f'<text x="60" y="62" text-anchor="middle" class="score" fill="{colour}" '
            f'font-size="{30 if score >= 100 else 34}">{score}</text>'
            '<text x="60" y="82" text-anchor="middle" class="score-sub">health</text></svg>')


def _resource(f: Finding) -> str:
    r = f.resource
    ns = f' · <span class="ns">{_e(r.namespace)}</span>' if r.namespace else ""
    # The environment, when the namespace's name does not already say it.
    env = (f' <span class="tag env">{_e(f.environment)}</span>'
           if f.environment and f.environment != r.namespace else "")
    return (f'<div class="kind">{_e(r.kind)}{ns}{env}</div>'
            f'<div class="name">{_e(r.name)}</div>')


def _finding_row(f: Finding) -> str:
    new = ' <span class="tag new">new</span>' if f.new else ""
    evidence = ""
    if f.evidence:
        evidence = ("<details><summary>evidence</summary><pre>"
                    + _e(json.dumps(f.evidence, indent=2, sort_keys=True, default=str))
                    + "</pre></details>")
    return (f'<tr class="sev-{_e(f.severity)}">'
            f'<td><span class="badge {_e(f.severity)}">{_e(f.severity)}</span></td>'
            f'<td class="check">{_e(f.check)}{new}</td>'
            f'<td class="res">{_resource(f)}</td>'
            f'<td class="msg">{_e(f.message)}{evidence}</td>'
            f'<td class="rb"><code>{_e(f.runbook)}</code></td></tr>')


def _findings(report: CheckReport) -> str:
    if not report.findings:
        return ('<section><h2>Findings</h2><p class="allgood">No findings: everything checked '
                "is healthy.</p></section>")
    rows = "".join(_finding_row(f) for f in report.findings)
    return ('<section><h2>Findings <span class="count">'
            f"{len(report.findings)}</span></h2>"
            '<table class="findings"><thead><tr><th>Severity</th><th>Check</th>'
            "<th>Resource</th><th>Message</th><th>Runbook</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></section>")


def _resolved(report: CheckReport) -> str:
    if not report.resolved:
        return ""
    items = "".join(
        f'<li><span class="badge resolved">resolved</span> <b>{_e(f.check)}</b> '
        f'<span class="muted">{_e(f.resource.kind)}</span> '
        f"{_e((f.resource.namespace + '/') if f.resource.namespace else '')}"
        f"{_e(f.resource.name)} — {_e(f.message)}</li>" for f in report.resolved)
    return f'<section><h2>Resolved since the last check</h2><ul class="plain">{items}</ul>' \
           "</section>"


def _manual(report: CheckReport) -> str:
    if not report.manual:
        return ""
    rows = []
    for m in report.manual:
        state = (f'<span class="badge ok">done</span> <span class="muted">{_e(ack_text(m))}'
                 "</span>" if m.acknowledged_by else '<span class="badge open">open</span>')
        rows.append(f"<tr><td><b>{_e(m.title)}</b><br><code>{_e(m.id)}</code> "
                    f'<span class="tag env">{_e(m.period)}</span></td>'
                    f'<td class="msg">{_e(m.instructions)}</td><td>{state}</td></tr>')
    return ('<section><h2>Manual steps</h2><p class="muted">Acknowledge a step with '
            "<code>k3sops check ack ITEM --note TEXT</code>.</p>"
            '<table class="manual"><thead><tr><th>Step</th><th>What to do</th>'
            f"<th>State</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>")


def _charts(report: CheckReport, trend: Sequence[TrendPoint]) -> str:
    # Counts differ between environments, so chart only the runs of the report's scope.
    points = [p for p in trend if p.environment == report.summary.environment]
    if not points:
        return ('<section><h2>History</h2><p class="muted">No stored history yet: the charts '
                "appear once check runs are recorded (run <code>k3sops check</code> without "
                "<code>--no-history</code>).</p></section>")
    last = points[-1]
    usage = _legend([(label + (f" {getattr(last, key):.1f}%" if getattr(last, key) is not None
                               else ""), colour) for key, label, colour in USAGE_SERIES])
    sev = _legend([("Critical", SEVERITY_COLOURS["critical"]),
                   ("Warning", SEVERITY_COLOURS["warning"]),
                   ("Info", SEVERITY_COLOURS["info"])])
    span = f"{len(points)} run{'s' if len(points) != 1 else ''}, {when(points[0].started_at)}"
    if len(points) > 1:
        span += f" to {when(points[-1].started_at)}"
    return ('<section><h2>History <span class="muted small">' + _e(span) + "</span></h2>"
            '<div class="charts">'
            '<div class="card"><h3>Cluster usage (%)</h3>' + usage_chart(points) + usage
            + "</div>"
            '<div class="card"><h3>Findings per run</h3>' + findings_chart(points) + sev
            + "</div></div></section>")


def _header(report: CheckReport) -> str:
    s = report.summary
    scope = f"environment {s.environment}" if s.environment else "all environments"
    tiles = "".join(
        f'<div class="tile {cls}"><div class="n">{n}</div><div class="l">{label}</div></div>'
        for n, label, cls in ((s.critical, "critical", "critical" if s.critical else "zero"),
                              (s.warning, "warning", "warning" if s.warning else "zero"),
                              (s.info, "info", "info" if s.info else "zero"),
                              (s.new, "new", "plain"), (s.resolved, "resolved", "plain")))
    sources = "".join(
        f'<span class="src {"ok" if src.ok else "down"}" '
        f'title="{_e(src.endpoint)}{": " + _e(src.error) if src.error else ""}">'
        f'{"●"} {_e(src.name)}{"" if src.ok else " unavailable"}</span>'
        for src in report.sources)
    usage = usage_line(report)
    down = [src for src in report.sources if not src.ok]
    warning = ""
    if down:
        warning = ('<div class="partial"><b>Partial result.</b> Could not read: ' + "; ".join(
            f"{_e(src.name)} ({_e(src.endpoint)}): {_e(src.error or 'unavailable')}"
            for src in down) + ". The checks that need it were skipped.</div>")
    return ('<header class="top">' + _score_ring(s.health_score)
            + f'<div class="head"><h1>{_e(s.period.capitalize())} check '
            f'<span class="muted">· {_e(scope)}</span></h1>'
            f'<p class="sub">{_e(when(s.started_at))} · {s.checks_run} checks in '
            f"{s.duration_seconds:.1f} s" + (f" · {_e(usage)}" if usage else "") + "</p>"
            f'<div class="tiles">{tiles}</div><div class="sources">Sources: {sources}</div>'
            "</div></header>" + warning)


CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f6f8;color:#202124;font:14px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:24px 28px 40px}
h1{font-size:26px;margin:0 0 4px;font-weight:650}
h2{font-size:18px;margin:0 0 12px;font-weight:620}
h3{font-size:14px;margin:0 0 6px;font-weight:600;color:#3c4043}
section{background:#fff;border:1px solid #e3e6ea;border-radius:12px;padding:18px 20px;
margin-top:18px}
.top{display:flex;gap:26px;align-items:center;background:#fff;border:1px solid #e3e6ea;
border-radius:12px;padding:18px 22px}
.ring{width:124px;height:124px;flex:none}
.score{font-weight:700}
.score-sub{font-size:12px;fill:#5f6368;letter-spacing:.04em}
.head{flex:1;min-width:0}
.sub{margin:0 0 12px;color:#5f6368}
.muted{color:#5f6368;font-weight:normal}
.small{font-size:13px;margin-left:6px}
.tiles{display:flex;gap:10px;flex-wrap:wrap}
.tile{min-width:92px;padding:8px 14px;border-radius:10px;background:#f1f3f4}
.tile .n{font-size:24px;font-weight:700;line-height:1.1}
.tile .l{font-size:12px;color:#5f6368;text-transform:uppercase;letter-spacing:.05em}
.tile.critical{background:#fce8e6}.tile.critical .n{color:#c5221f}
.tile.warning{background:#fef4d6}.tile.warning .n{color:#a86b00}
.tile.info{background:#e8f0fe}.tile.info .n{color:#1967d2}
.tile.zero .n{color:#188038}
.sources{margin-top:12px;color:#5f6368;font-size:13px}
.src{display:inline-block;margin:0 6px 4px 4px;padding:2px 10px;border-radius:999px;
font-size:12px;font-weight:600}
.src.ok{background:#e6f4ea;color:#137333}.src.down{background:#fce8e6;color:#c5221f}
.partial{margin-top:14px;padding:10px 14px;border-radius:10px;background:#fce8e6;
color:#a50e0e;border:1px solid #f6c6c2}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:16px}
@media (max-width:900px){.charts{grid-template-columns:1fr}}
@media (max-width:640px){.top{flex-direction:column;align-items:flex-start}}
.card{border:1px solid #eceff1;border-radius:10px;padding:12px 14px 8px}
.chart{width:100%;height:auto;display:block}
.chart .grid{stroke:#eceff1;stroke-width:1}
.chart .axis{stroke:#bdc1c6;stroke-width:1}
.chart .tick{font-size:11px;fill:#5f6368}
.legend{display:flex;gap:16px;justify-content:center;font-size:12px;color:#3c4043;
padding:4px 0 6px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;
vertical-align:-1px}
table{width:100%;border-collapse:collapse}
th{text-align:left;font-size:12px;text-transform:uppercase;letter-spacing:.05em;
color:#5f6368;font-weight:600;padding:8px 10px;border-bottom:2px solid #e3e6ea}
td{padding:10px;border-bottom:1px solid #eceff1;vertical-align:top}
tbody tr:last-child td{border-bottom:none}
.findings tr.sev-critical td:first-child{box-shadow:inset 4px 0 0 #d93025}
.findings tr.sev-warning td:first-child{box-shadow:inset 4px 0 0 #e8a200}
.findings tr.sev-info td:first-child{box-shadow:inset 4px 0 0 #1a73e8}
.findings td:first-child{padding-left:14px;white-space:nowrap}
.check{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;
white-space:nowrap}
.msg{overflow-wrap:anywhere}
.kind{font-size:11px;color:#5f6368;letter-spacing:.03em}
.ns{color:#3c4043}.name{font-weight:600;overflow-wrap:anywhere}
.findings td.res{min-width:170px;max-width:250px}
.findings td.msg{width:42%}
td.rb{white-space:nowrap}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;
background:#f1f3f4;padding:1px 6px;border-radius:5px}
.badge{display:inline-block;padding:2px 9px;border-radius:999px;font-size:12px;
font-weight:650;color:#fff}
.badge.critical{background:#d93025}.badge.warning{background:#e8a200}
.badge.info{background:#1a73e8}.badge.ok,.badge.resolved{background:#188038}
.badge.open{background:#fef4d6;color:#a86b00}
.tag{display:inline-block;margin-left:6px;padding:0 7px;border-radius:999px;font-size:11px;
font-weight:650;font-family:system-ui,sans-serif;vertical-align:1px}
.tag.new{background:#fce8e6;color:#c5221f;text-transform:uppercase}
.tag.env{background:#e8f0fe;color:#1967d2}
details{margin-top:6px}
summary{cursor:pointer;color:#1967d2;font-size:12px}
pre{margin:6px 0 0;padding:10px;background:#f8f9fa;border:1px solid #eceff1;border-radius:8px;
font-size:12px;max-height:320px;overflow:auto;white-space:pre-wrap;overflow-wrap:anywhere}
.allgood{margin:0;padding:12px 14px;border-radius:10px;background:#e6f4ea;color:#137333;
font-weight:600}
.count{display:inline-block;margin-left:6px;padding:0 8px;border-radius:999px;
background:#f1f3f4;color:#3c4043;font-size:13px;vertical-align:2px}
ul.plain{list-style:none;margin:0;padding:0}ul.plain li{padding:6px 0;
border-bottom:1px solid #eceff1}ul.plain li:last-child{border-bottom:none}
footer{margin-top:18px;text-align:center;color:#80868b;font-size:12px}
@media print{body{background:#fff}section,.top{break-inside:avoid;border-color:#ccc}}
"""


def html(report: CheckReport, trend: Sequence[TrendPoint]) -> str:
    """The whole report as one HTML document (inline CSS and SVG, no external resources)."""
    s = report.summary
    title = (f"k3sops {s.period} check — health {s.health_score}/100 — "
             f"{when(s.started_at)}")
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            # No network at view time: forbid every fetch, allow only the inline style.
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; img-src data:\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>"
            + _header(report) + _charts(report, trend) + _findings(report)
            + _resolved(report) + _manual(report)
            + f"<footer>Generated by k3sops · {_e(s.started_at)}</footer>"
            "</main></body></html>\n")
