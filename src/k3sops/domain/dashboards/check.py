"""Checking panel queries against Prometheus: what to send and how to read the answer (pure).

Grafana cannot run here, so the check plays its part for the query side: it takes every target
of the rendered JSON, substitutes the template variables as Grafana would (with a concrete value
that selects everything), and classifies Prometheus' answer as ``ok``, ``no data`` or ``error``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from k3sops.domain.dashboards.model import RenderedDashboard, WrittenFile

__all__ = [
    "CheckReport",
    "PanelCheck",
    "PanelQuery",
    "RenderReport",
    "classify",
    "failed",
    "panel_queries",
    "substitute",
    "variable_names",
]

CheckStatus = Literal["ok", "no data", "error"]
# Grafana's global variables, with the values a default (6h, ~1000 points) view gives them.
_BUILTINS: dict[str, str] = {
    "__rate_interval": "5m", "__interval": "30s", "__range": "6h", "__range_s": "21600",
}
# $name, ${name}, ${name:format} and the deprecated [[name]] are the forms Grafana expands.
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PanelQuery(_Model):
    """One target of one panel, ready to send."""

    dashboard: str
    """Dashboard uid."""
    panel: str
    """Panel title."""
    ref_id: str
    expr: str
    """The target's expression as in the dashboard JSON."""
    query: str
    """``expr`` with template variables substituted, as sent to Prometheus."""
    expects_data: bool


class PanelCheck(_Model):
    """The outcome of one panel query."""

    dashboard: str
    panel: str
    ref_id: str
    query: str
    expects_data: bool
    status: CheckStatus
    series: int = 0
    """Series (or scalars) returned."""
    error: str | None = None
    """Prometheus' error, for ``error``."""

    @property
    def problem(self) -> bool:
        """An error, or no data where a healthy platform has data."""
        return self.status == "error" or (self.status == "no data" and self.expects_data)


class CheckReport(_Model):
    """Every panel query of the rendered dashboards, checked against one Prometheus."""

    prometheus: str
    """Where Prometheus was reached."""
    panels: list[PanelCheck]

    @property
    def errors(self) -> list[PanelCheck]:
        """Queries Prometheus rejected."""
        return [p for p in self.panels if p.status == "error"]

    @property
    def missing(self) -> list[PanelCheck]:
        """Queries with no data although the platform should have some."""
        return [p for p in self.panels if p.status == "no data" and p.expects_data]


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Expand Grafana template variables in ``expr`` as Grafana would before querying.

    Args:
        expr: A target expression.
        variables: Value per dashboard variable name; Grafana's ``$__interval``-style
            globals are filled in too. Unknown ``$names`` are left alone (``$`` is also a
            regex anchor inside label matchers).

    Returns:
        The expression Prometheus would receive.
    """
    values = {**_BUILTINS, **variables}

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return values.get(name, m.group(0))

    return _VAR.sub(repl, expr)


def variable_names(d: RenderedDashboard) -> list[str]:
    """Names of the dashboard's template variables."""
    templating = d.json_model.get("templating") or {}
    return [str(v["name"]) for v in templating.get("list", []) if "name" in v]


def _targets(panels: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in panels:
        # Collapsed rows carry their panels inside; open rows have none.
        yield from _targets(panel.get("panels") or [])
        for target in panel.get("targets") or []:
            yield panel, target


def panel_queries(d: RenderedDashboard, value: str = ".*") -> list[PanelQuery]:
    """Every target of the dashboard's JSON, variables set to ``value`` (select everything).

    Args:
        d: A rendered dashboard.
        value: What each template variable is replaced with; ``.*`` matches every label
            value, as "All" does in Grafana.
    """
    values = {name: value for name in variable_names(d)}
    expects = {p.title: p.expects_data for p in d.definition.panels}
    return [
        PanelQuery(dashboard=d.definition.uid, panel=str(panel.get("title", "")),
                   ref_id=str(target.get("refId", "")), expr=str(target.get("expr", "")),
                   query=substitute(str(target.get("expr", "")), values),
                   expects_data=expects.get(str(panel.get("title", "")), True))
        for panel, target in _targets(d.json_model.get("panels") or [])
    ]


def classify(q: PanelQuery, body: Any) -> PanelCheck:
    """Read a /api/v1/query answer (a success body) for ``q``.

    Args:
        q: The query that was sent.
        body: The decoded JSON answer.

    Returns:
        ``ok`` with the number of series, ``no data`` for an empty result, or ``error`` when
        the answer is not a success.
    """
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(body, dict) or body.get("status") != "success" or not isinstance(data, dict):
        msg = body.get("error") if isinstance(body, dict) else None
        return failed(q, str(msg or "unexpected answer from /api/v1/query"))
    result = data.get("result")
    if data.get("resultType") in ("scalar", "string"):
        n = 1
    elif isinstance(result, list):
        n = len(result)
    else:
        return failed(q, "unexpected result in /api/v1/query answer")
    return PanelCheck(dashboard=q.dashboard, panel=q.panel, ref_id=q.ref_id, query=q.query,
                      expects_data=q.expects_data, status="ok" if n else "no data", series=n)


def failed(q: PanelQuery, error: str) -> PanelCheck:
    """The check of ``q`` when Prometheus rejected it with ``error``."""
    return PanelCheck(dashboard=q.dashboard, panel=q.panel, ref_id=q.ref_id, query=q.query,
                      expects_data=q.expects_data, status="error", error=error)


class RenderReport(_Model):
    """What `dashboards render --out DIR` wrote, and the check when asked for."""

    files: list[WrittenFile]
    check: CheckReport | None = None
