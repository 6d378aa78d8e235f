"""What the console's pages draw: templates, charts, runbooks as HTML, remediation commands.

Templates autoescape everything; the only markup that reaches a page unescaped is built here
(SVG charts whose text goes through :func:`html.escape`, and runbooks rendered by
markdown-it with raw HTML disabled, so a ``<script>`` in a runbook or a finding is text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import cache
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from markupsafe import Markup

from k3sops.domain.findings import Finding, ResourceRef
from k3sops.output.html_report import SEVERITY_COLOURS, findings_chart

if TYPE_CHECKING:
    from jinja2 import Environment

    from k3sops.adapters.store import TrendPoint

HERE = Path(__file__).parent
SEVERITIES = ("critical", "warning", "info")

# score chart geometry (SVG user units; the SVG scales to its card's width)
W, H = 600, 200
LEFT, RIGHT, TOP, BOTTOM = 40, 12, 12, 28


@cache
def environment() -> Environment:
    """The templates' Jinja environment (autoescaping on, undefined names fail)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals["severities"] = SEVERITIES
    env.filters["objpath"] = object_path
    env.filters["pretty"] = pretty
    return env


def page(template: str, **values: Any) -> str:
    """A template rendered with ``values``."""
    return environment().get_template(template).render(**values)


def object_path(f: Finding) -> str:
    """The path part of a finding's diagnosis URL: ``kind/namespace/name`` (``-``: none)."""
    r = f.resource
    return f"{r.kind.lower()}/{r.namespace or '-'}/{r.name}"


def pretty(value: Any) -> str:
    """Structured evidence (events, a termination) as indented JSON."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def score_chart(points: Sequence[TrendPoint]) -> Markup:
    """A line of the health score (0-100) per stored run, oldest first; empty without runs."""
    if not points:
        return Markup("")
    inner_w, inner_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    n = len(points)
    xs = [LEFT + inner_w / 2] if n == 1 else [LEFT + inner_w * i / (n - 1) for i in range(n)]
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
             f'aria-label="Health score of the last {n} runs">']
    for v in (0, 50, 100):
        y = H - BOTTOM - inner_h * v / 100
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" '
                     f'class="grid"/><text x="{LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end" class="tick">{v}</text>')
    ys = [H - BOTTOM - inner_h * max(0, min(100, p.health_score)) / 100 for p in points]
    if n > 1:
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        parts.append(f'<polyline points="{line}" class="score-line" fill="none"/>')
    for x, y, p in zip(xs, ys, points, strict=True):
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" class="score-dot">'
                     f"<title>{escape(p.started_at)} ({escape(p.period)}): health "
                     f"{p.health_score}</title></circle>")
    for i in sorted({0, n - 1}):
        anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
        parts.append(f'<text x="{xs[i]:.1f}" y="{H - 8}" text-anchor="{anchor}" '
                     f'class="tick">{escape(points[i].started_at[:16].replace("T", " "))}'
                     "</text>")
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escape()d text only


def severity_chart(points: Sequence[TrendPoint]) -> Markup:
    """The HTML report's stacked bars of findings by severity per run."""
    # findings_chart escapes its text (the HTML report's own chart)
    return Markup(findings_chart(points)) if points else Markup("")  # noqa: S704


def legend() -> list[tuple[str, str]]:
    """(severity, colour) pairs of the bars."""
    return [(s, SEVERITY_COLOURS[s]) for s in SEVERITIES]


@cache
def _markdown() -> Any:
    from markdown_it import MarkdownIt

    # "commonmark" with html off: raw HTML in the source is shown as text; markdown-it's
    # link validation refuses javascript:, vbscript:, file: and data: (but images) URLs.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def markdown(source: str) -> Markup:
    """Markdown as safe HTML (raw HTML escaped)."""
    return Markup(_markdown().render(source))  # noqa: S704 - markdown-it, raw HTML off


def runbook_html(runbook_id: str) -> tuple[str, Markup] | None:
    """The runbook's title and its page as HTML (None: no such runbook)."""
    from k3sops.domain import runbooks

    rb = runbooks.by_id().get(runbook_id)
    if rb is None:
        return None
    # the Markdown links related runbooks as files (X.md): here they are console pages
    text = re.sub(r"\]\(([a-z0-9-]+)\.md\)", r"](\1)", runbooks.to_markdown(rb))
    return rb.title, markdown(text)


def fill(command: str, f: Finding) -> str:
    """A runbook command with the finding's object in its placeholders."""
    r = f.resource
    kind = r.kind.lower()
    values = {"namespace": r.namespace or "default", "name": r.name, "kind": kind,
              "app": r.name, "pod": r.name if kind == "pod" else "<pod>",
              "node": r.name if kind == "node" else "<node>"}
    return re.sub(r"<([a-z-]+)>", lambda m: values.get(m.group(1), m.group(0)), command)


RESTARTABLE = {"deployment", "statefulset"}
"""The kinds `k3sops rollout restart` takes (:data:`k3sops.domain.remediate.WORKLOAD_KINDS`)."""
CLEANABLE = {"pod-failed", "pod-stuck-terminating", "job-failed"}


class Judged(Protocol):
    """A finding or a diagnosis' root cause: an object and the rule that judged it."""

    @property
    def resource(self) -> ResourceRef:
        """The object."""

    @property
    def check(self) -> str | None:
        """The rule's id."""


def remediation(f: Judged) -> list[tuple[str, str]]:
    """(what, CLI command) of the remediation plans a finding proposes, dry-run first.

    The plans are the ones `k3sops serve`'s policies run (``restart``, ``clean-pods``,
    ``cordon``) and their CLI commands: each prints its plan without ``--apply``.
    """
    r = f.resource
    kind = r.kind.lower()
    out: list[tuple[str, str]] = []
    if kind in RESTARTABLE and r.namespace:
        out.append(("restart the workload's pods",
                    f"k3sops rollout restart {kind}/{r.name} -n {r.namespace}"))
    if f.check in CLEANABLE and r.namespace:
        out.append(("delete the namespace's failed and finished pods",
                    f"k3sops pods clean -n {r.namespace}"))
    if kind == "node":
        out.append(("stop scheduling new pods on the node", f"k3sops node cordon {r.name}"))
    return out


def runbook_commands(f: Finding) -> list[str]:
    """The k3sops commands of the finding's runbook steps, filled in with its object."""
    from k3sops.domain import runbooks

    rb = runbooks.by_id().get(f.runbook)
    if rb is None:
        return []
    seen: dict[str, None] = {}
    for s in rb.steps:
        if s.automated_by:
            seen.setdefault(fill(s.automated_by, f), None)
    return list(seen)


def rto_charts(drills: Sequence[dict[str, Any]]) -> dict[tuple[str, str], Markup]:
    """Per (kind, target), the measured restore time of each drill over time as SVG.

    ``drills``: the history store's ``restore_drills`` facts (oldest first). A failed drill
    is a red dot; drills without a measured time are left out (nothing to draw).
    """
    from datetime import datetime

    by_target: dict[tuple[str, str], list[tuple[float, float, bool, str]]] = {}
    for d in drills:
        if d.get("seconds") is None or not d.get("at"):
            continue
        at = datetime.fromisoformat(str(d["at"]))
        by_target.setdefault((str(d.get("kind")), str(d.get("target"))), []).append(
            (at.timestamp(), float(d["seconds"]), bool(d.get("ok")), str(d["at"])))
    return {key: _rto_chart(key, points) for key, points in by_target.items()}


def _rto_chart(key: tuple[str, str], points: list[tuple[float, float, bool, str]]) -> Markup:
    w, h, left, right, top, bottom = 600, 160, 72, 12, 10, 26  # left: "1.25 s" on a phone
    inner_w, inner_h = w - left - right, h - top - bottom
    t0, t1 = points[0][0], points[-1][0]
    peak = nice_ceiling(max(s for _, s, _, _ in points) * 1.05)

    def x(t: float) -> float:
        return left + inner_w / 2 if t1 == t0 else left + inner_w * (t - t0) / (t1 - t0)

    def y(s: float) -> float:
        return h - bottom - inner_h * s / peak

    label = escape(f"{key[0]} {key[1]}")
    parts = [f'<svg class="chart rto" viewBox="0 0 {w} {h}" role="img" '
             f'aria-label="Measured restore time of {label}: {len(points)} drills">']
    for v in (0.0, peak / 2, peak):
        parts.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{w - right}" y2="{y(v):.1f}" '
                     f'class="grid"/><text x="{left - 6}" y="{y(v) + 4:.1f}" '
                     f'text-anchor="end" class="tick">{v:g} s</text>')
    if len(points) > 1:
        line = " ".join(f"{x(t):.1f},{y(s):.1f}" for t, s, _, _ in points)
        parts.append(f'<polyline points="{line}" class="rto-line" fill="none"/>')
    for t, s, ok, at in points:
        parts.append(f'<circle cx="{x(t):.1f}" cy="{y(s):.1f}" r="4" '
                     f'class="{"rto-ok" if ok else "rto-failed"}"><title>{escape(at[:16])}: '
                     f'{s:.1f} s, {"passed" if ok else "failed"}</title></circle>')
    ends = [(points[0], "start")] if len(points) == 1 else [(points[0], "start"),
                                                              (points[-1], "end")]
    same_day = points[0][3][:10] == points[-1][3][:10]
    for (t, _, _, at), anchor in ends:  # within one day: the times, else the dates
        label = at[11:16] if same_day and len(points) > 1 else at[:10]
        parts.append(f'<text x="{x(t):.1f}" y="{h - 8}" text-anchor="{anchor}" '
                     f'class="tick">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escape()d text only


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value``; 1 for nothing to show.

    An axis' top whose half is a round number too, so the ticks say what their lines are.
    """
    import math

    if value <= 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(value))
    return next(m * scale for m in (1, 2, 2.5, 5, 10) if m * scale >= value * (1 - 1e-9))
