"""The console's Capacity page: requests vs allocatable, and the forecast chart (issue 15).

Requests against allocatable per node and per environment, and per resource the forecast.
The report is `k3sops capacity`'s own, built by :func:`k3sops.services.capacity.collect`: its
nodes and pods come from the service's watch cache instead of two LISTs
(:class:`CacheLister`), and Prometheus is reached as the checks reach it (URL, or the service
proxy with the service's client). The request history collect asked Prometheus for is kept
(:class:`KeptHistory`) so the chart draws exactly the points the forecast was fitted to.
Needs ``get`` on ``capacity.k3sops.io``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from k3sops.errors import AdapterError, K3sopsError

if TYPE_CHECKING:
    from k3sops.domain.capacity import CapacityReport, Forecast
    from k3sops.domain.metrics import InstantResult
    from k3sops.serve.api import CacheView
    from k3sops.serve.console.pages import Console

TTL = 30.0
"""Seconds one report serves the page (its two Prometheus queries cover 7 days)."""
WINDOW, STEP = "7d", "1h"
"""`k3sops capacity`'s defaults (``--window``, ``--step``; here ``?window=&step=``)."""
DURATION = re.compile(r"[1-9][0-9]{0,3}[smhdw]")
"""A Prometheus duration as the page takes it (one unit: 30m, 7d)."""
MAX_NODES = 100
"""Nodes listed, the fullest first (a 1,000-node page would be a long scroll)."""
W, H = 600, 220
LEFT, RIGHT, TOP, BOTTOM = 84, 16, 12, 28  # left: "36.0 GiB" at a phone's tick size


class CacheLister:
    """What :func:`services.capacity.collect` lists, answered from the watch cache."""

    def __init__(self, cache: CacheView) -> None:
        self._cache = cache

    def list_raw_many(self, paths: Mapping[str, str]) -> dict[str, Any]:
        """``{what: objects}`` for ``nodes`` and ``pods``; a kind the cache lacks: its error."""
        snap = self._cache.snapshot(datetime.now(UTC), list(paths))
        out: dict[str, Any] = {}
        for kind in paths:
            if kind in snap.objects:
                out[kind] = list(snap.objects[kind])
            else:
                out[kind] = AdapterError(snap.errors.get(kind)
                                         or f"the service's watch cache holds no {kind}")
        return out


class KeptHistory:
    """A Prometheus adapter that keeps the answers it gave (the forecast's points)."""

    def __init__(self, prom: Any) -> None:
        self._prom = prom
        self.answers: dict[str, InstantResult | K3sopsError] = {}

    def query_many(self, exprs: Mapping[str, str], at: Any = None,
                   ) -> dict[str, InstantResult | K3sopsError]:
        """The wrapped adapter's answers, kept."""
        self.answers = self._prom.query_many(exprs, at)
        return self.answers

    def points(self, resource: str) -> list[tuple[float, float]]:
        """The (time, total requests) history of ``resource`` (empty: none)."""
        from k3sops.domain.metrics import InstantResult

        ans = self.answers.get(resource)
        if not isinstance(ans, InstantResult):
            return []
        return [(s.timestamp, s.number) for s in ans.samples if s.number is not None]


def build(console: Console, window: str = WINDOW, step: str = STEP,
          ) -> tuple[CapacityReport, dict[str, list[tuple[float, float]]]]:
    """The capacity report on the cache and Prometheus, and the history per resource."""
    from k3sops.adapters.prometheus import HttpApi, PrometheusAdapter
    from k3sops.services import capacity
    from k3sops.services.context import monitoring

    reports = console.ctx.reports
    settings = reports.settings
    api = None
    prom: Any
    try:
        api = HttpApi.from_endpoint("Prometheus", monitoring(settings).prometheus,
                                    reports.client)
        prom = KeptHistory(PrometheusAdapter(api))
    except K3sopsError as e:  # not configured, no client: the tables still come
        prom = e
    try:
        report = capacity.collect(CacheLister(reports.cache),  # type: ignore[arg-type]
                                  prom, capacity.environments(settings),
                                  window=window, step=step)
    finally:
        if api is not None:
            api.close()
    kept = prom if isinstance(prom, KeptHistory) else None
    return report, {r: kept.points(r) if kept else [] for r in ("cpu", "memory")}


class Cached:
    """One report per (window, step) per :data:`TTL` seconds, one caller computing at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], tuple[float, Any]] = {}

    def get(self, console: Console, window: str, step: str) -> Any:
        """The report and its histories."""
        with self._lock:
            hit = self._by_key.get((window, step))
            if hit is None or time.monotonic() - hit[0] >= TTL:
                if len(self._by_key) > 16:  # a few windows at most are looked at
                    self._by_key.clear()
                hit = (time.monotonic(), build(console, window, step))
                self._by_key[(window, step)] = hit
            return hit[1]


def _fmt(resource: str, value: float) -> str:
    if resource == "cpu":
        return f"{value:.2f}" if value < 10 else f"{value:.0f}"
    gib = value / 2**30
    return f"{gib:.1f} GiB" if gib < 10 else f"{gib:.0f} GiB"


def amount(resource: str, value: float | None) -> str:
    """A quantity as people read it: cores, or GiB."""
    if value is None:
        return "–"
    return _fmt(resource, value) + (" cores" if resource == "cpu" else "")


def percent(part: float, whole: float) -> float:
    """``part`` as a percentage of ``whole`` (0 when there is no whole)."""
    return 100.0 * part / whole if whole > 0 else 0.0


def forecast_chart(f: Forecast, history: Sequence[tuple[float, float]],
                   allocatable: float, now: float, window: str = WINDOW) -> Markup:
    """The forecast as SVG: total requests over the window and their fitted trend.

    The trend runs to the horizon (or a little past the day requests reach the full line);
    the full line and the allocatable are drawn across. Empty without a history.
    """
    from k3sops.domain.capacity import HORIZON_DAYS, linear_fit

    if len(history) < 2:
        return Markup("")
    try:
        slope, intercept = linear_fit(history)
    except ValueError:
        return Markup("")
    t0 = min(t for t, _ in history)
    last = max(t for t, _ in history)
    span = (last - t0) or 60.0
    if f.status == "ok" and f.days_left is not None:  # the trend reaches the full line
        end = min(now + HORIZON_DAYS * 86400, now + max(f.days_left * 86400 * 1.15, span / 4))
    else:  # no date to reach: the history alone, not squeezed against a 90-day axis
        end = last + span * 0.05
    end = max(end, last)
    full = f.full_at or 0.0
    top = max([v for _, v in history] + [full, allocatable, slope * end + intercept, 1e-9])
    inner_w, inner_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + inner_w * (t - t0) / (end - t0 or 1)

    def y(v: float) -> float:
        return H - BOTTOM - inner_h * max(0.0, v) / (top * 1.05)

    r = f.resource
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="fc-{r}">',
             f'<title id="fc-{r}">Total {r} requests over {escape(window)} and their trend '
             f"to {HORIZON_DAYS} days</title>"]
    for v in (0.0, top / 2, top):
        parts.append(f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{W - RIGHT}" y2="{y(v):.1f}" '
                     f'class="grid"/><text x="{LEFT - 6}" y="{y(v) + 4:.1f}" '
                     f'text-anchor="end" class="tick">{escape(_fmt(r, v))}</text>')
    if allocatable > 0:
        parts.append(f'<line x1="{LEFT}" y1="{y(allocatable):.1f}" x2="{W - RIGHT}" '
                     f'y2="{y(allocatable):.1f}" class="alloc-line"/>')
    if full > 0:
        parts.append(f'<line x1="{LEFT}" y1="{y(full):.1f}" x2="{W - RIGHT}" '
                     f'y2="{y(full):.1f}" class="full-line"/>')
    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in history)
    parts.append(f'<polyline points="{line}" class="req-line" fill="none"/>')
    parts.append(f'<line x1="{x(t0):.1f}" y1="{y(slope * t0 + intercept):.1f}" '
                 f'x2="{x(end):.1f}" y2="{y(slope * end + intercept):.1f}" class="fit-line"/>')
    ticks: list[tuple[float, str, str]] = [(t0, "start", _when(t0, end - t0)),
                                           (end, "end", _when(end, end - t0))]
    if t0 < now < end:
        parts.append(f'<line x1="{x(now):.1f}" y1="{TOP}" x2="{x(now):.1f}" '
                     f'y2="{H - BOTTOM}" class="now-line"/>')
        if min(x(now) - x(t0), x(end) - x(now)) > 90:  # room for its label between the ends
            ticks.append((now, "middle", "now"))
    for t, anchor, label in ticks:
        parts.append(f'<text x="{x(t):.1f}" y="{H - 8}" text-anchor="{anchor}" '
                     f'class="tick">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escape()d text only


def _when(t: float, span: float) -> str:
    """A time axis label: the date over days, the time of day (UTC) within one."""
    fmt = "%Y-%m-%d" if span > 86400 else "%H:%M UTC"
    return datetime.fromtimestamp(t, UTC).strftime(fmt)


def routes(ui: APIRouter, console: Console) -> None:
    """``GET /capacity``."""
    cached = Cached()

    @ui.get("/capacity")
    def capacity_page(request: Request) -> Response:
        """Requests vs allocatable per node and environment; the forecast per resource."""
        from k3sops.serve.console.pages import Refused

        s, _ = console.user(request, "get", "capacity")
        window = request.query_params.get("window", WINDOW)
        step = request.query_params.get("step", STEP)
        for name, value in (("window", window), ("step", step)):
            if not DURATION.fullmatch(value):
                raise Refused(400, f"{name} must be a Prometheus duration such as 30m or 7d, "
                                   f"not {value[:20]!r}")
        report, history = cached.get(console, window, step)
        now = time.time()
        alloc = {"cpu": report.cluster_cpu.allocatable,
                 "memory": report.cluster_memory.allocatable}
        charts = {f.resource: forecast_chart(f, history[f.resource], alloc[f.resource], now,
                                             window) for f in report.forecast}
        fullest = sorted(report.nodes, key=lambda n: -max(
            percent(n.cpu.requests, n.cpu.allocatable),
            percent(n.memory.requests, n.memory.allocatable)))[:MAX_NODES]
        return console.html("capacity.html", s, page="capacity", r=report, charts=charts,
                            nodes=fullest, amount=amount, percent=percent, window=window,
                            step=step)
