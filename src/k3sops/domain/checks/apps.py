"""Applications: RED metrics per workload against the thresholds of its environment.

The expressions are `k3sops metrics apps`' own (:func:`k3sops.domain.metrics.app_queries`):
5xx share of requests and p95 latency over 5 minutes, grouped by the workload labels
(``namespace`` and ``job`` by default). A workload without HTTP metrics gives no finding: the
absence of data is not a fault.

Queries are declared when the check is registered, before any platform.yaml is read, so they
use the default metric and label names (``http_requests_total``, ``http_request_duration_seconds``,
``code``, ``namespace``/``job``). When ``monitoring.app_metrics`` names others the answers would
describe different series, so both checks stay silent rather than judge the wrong metrics.
"""

from __future__ import annotations

from k3sops.config.schema import AppMetrics, Platform
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding
from k3sops.domain.metrics import AppRow, InstantResult, app_queries, build_apps

DEFAULT_APP = AppMetrics()


def _app(platform: Platform | None) -> AppMetrics:
    return platform.monitoring.app_metrics if platform is not None else DEFAULT_APP


def _queries(platform: Platform | None) -> dict[str, str]:
    """`metrics apps`' expressions with the platform's configured metric names."""
    return {q.name: q.expr for q in app_queries(_app(platform))}

Q_REQUESTS = "app-error-rate:requests"
Q_5XX = "app-error-rate:5xx"
Q_P95 = "app-latency:p95"


def _rows(ctx: CheckContext) -> list[AppRow]:
    """Workload rows from this module's answers (empty when the metric names differ)."""
    results: dict[str, InstantResult] = {}
    for mine, theirs in ((Q_REQUESTS, "app_requests"), (Q_5XX, "app_5xx"), (Q_P95, "app_p95")):
        res = ctx.snapshot.metric(mine)
        if res is not None:
            results[theirs] = res
    return [r for r in build_apps(results, _app(ctx.platform))
            if ctx.in_scope(r.namespace or None)]


@check("app-error-rate", "Applications answer without 5xx errors",
       queries=lambda p: {Q_REQUESTS: _queries(p)["app_requests"], Q_5XX: _queries(p)["app_5xx"]},
       needs=("prometheus",))
def app_error_rate(ctx: CheckContext) -> list[Finding]:
    """Workloads whose 5xx share over 5m is above their environment's threshold."""
    out = []
    for row in _rows(ctx):
        if not row.request_rate or row.rate_5xx is None:
            continue
        percent = row.rate_5xx / row.request_rate * 100
        limit = ctx.thresholds(row.namespace).http_error_rate_percent
        if percent <= limit:
            continue
        out.append(ctx.finding(
            "app-error-rate", "warning", "Workload", row.namespace, row.workload,
            f"{percent:.1f}% of requests to {row.namespace}/{row.workload} failed with 5xx "
            f"over 5m (threshold {limit:g}%)", "app-error-rate",
            {"error_percent": round(percent, 3), "threshold_percent": limit,
             "requests_per_second": row.request_rate, "errors_per_second": row.rate_5xx,
             "query": _queries(ctx.platform)["app_5xx"]}))
    return out


@check("app-latency", "Applications respond fast",
       queries=lambda p: {Q_P95: _queries(p)["app_p95"]}, needs=("prometheus",))
def app_latency(ctx: CheckContext) -> list[Finding]:
    """Workloads whose p95 latency over 5m is above their environment's threshold."""
    out = []
    for row in _rows(ctx):
        if row.p95_seconds is None:
            continue
        limit = ctx.thresholds(row.namespace).p95_latency_seconds
        if row.p95_seconds <= limit:
            continue
        out.append(ctx.finding(
            "app-latency", "warning", "Workload", row.namespace, row.workload,
            f"p95 latency of {row.namespace}/{row.workload} is {row.p95_seconds:.3f}s over 5m "
            f"(threshold {limit:g}s)", "app-latency",
            {"p95_seconds": round(row.p95_seconds, 4), "threshold_seconds": limit,
             "query": _queries(ctx.platform)["app_p95"]}))
    return out
