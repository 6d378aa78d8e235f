"""``/metrics``: the service's state in Prometheus' text format (prometheus-client).

One :class:`ServiceMetrics` per app, on its own ``CollectorRegistry`` (never the process-wide
default: two apps in one process, as the tests build them, must not share series). Gauges of
the latest reports, the cache and the leadership are computed at scrape time from the objects
that hold them, so they are never stale; alert counters are counted as alerts arrive.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from k3sops.domain.findings import CheckReport
    from k3sops.serve.cache import KindStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServiceMetrics:
    """The registry behind ``/metrics`` and the counters the API increments.

    Args:
        reports: the latest report per period (read at scrape time).
        cache_status: the watch cache's per-kind status (read at scrape time).
        is_leader: whether this replica leads (read at scrape time).
    """

    def __init__(self, reports: Callable[[], Mapping[str, CheckReport]],
                 cache_status: Callable[[], Mapping[str, KindStatus]],
                 is_leader: Callable[[], bool]) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client import Counter as PromCounter

        self.registry = CollectorRegistry(auto_describe=False)
        self._reports = reports
        self._cache_status = cache_status
        self._is_leader = is_leader
        self._lock = threading.Lock()
        self.alerts_received = PromCounter(
            "k3sops_alerts_received", "Alerts received from Alertmanager's webhook.",
            registry=self.registry)
        self.alerts_enriched = PromCounter(
            "k3sops_alerts_enriched", "Alerts stored with their object, diagnosis and runbook.",
            registry=self.registry)
        self.alerts_forwarded = PromCounter(
            "k3sops_alerts_forwarded", "Enriched alerts delivered to receivers (one per "
            "receiver).", registry=self.registry)
        self.alerts_forward_failed = PromCounter(
            "k3sops_alerts_forward_failed", "Deliveries to receivers that failed.",
            registry=self.registry)
        self.alerts_rejected = PromCounter(
            "k3sops_alerts_rejected", "Webhook bodies refused (malformed or too large).",
            ["reason"], registry=self.registry)
        self.remediations = PromCounter(
            "k3sops_remediations", "Remediations decided by policy, by policy and mode "
            "(applied, dry-run, refused, failed).", ["policy", "mode"], registry=self.registry)
        self.requests = PromCounter(
            "k3sops_http_requests", "API requests answered, by route and status code.",
            ["route", "code"], registry=self.registry)
        self.registry.register(_StateCollector(self))

    def render(self) -> bytes:
        """The exposition text of every metric."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def count_intake(self, result: Any) -> None:
        """Count one webhook delivery from serve.alerts' IntakeResult.

        ``alerts`` received, ``stored`` (enriched and kept: repeats are not counted twice),
        ``forwarded`` deliveries and ``failed`` ones.
        """
        for counter, name in ((self.alerts_received, "alerts"), (self.alerts_enriched, "stored"),
                              (self.alerts_forwarded, "forwarded"),
                              (self.alerts_forward_failed, "failed")):
            n = int(getattr(result, name, 0) or 0)
            if n:
                counter.inc(n)


class _StateCollector:
    """Gauges computed at scrape time from the reports, the cache and the election."""

    def __init__(self, owner: ServiceMetrics) -> None:
        self._owner = owner

    def describe(self) -> list[Any]:
        """Nothing up front (the registry asks ``collect`` when it needs names)."""
        return []

    def collect(self) -> Iterator[Any]:
        """Yield the gauges of the current state."""
        from prometheus_client.core import GaugeMetricFamily

        owner = self._owner
        findings = GaugeMetricFamily(
            "k3sops_findings", "Findings of the latest check run.",
            labels=["period", "check", "severity", "namespace", "environment"])
        score = GaugeMetricFamily("k3sops_health_score",
                                  "Health score (0-100) of the latest run.", labels=["period"])
        duration = GaugeMetricFamily("k3sops_check_duration_seconds",
                                     "How long the latest run took.", labels=["period"])
        last = GaugeMetricFamily("k3sops_check_last_run_timestamp_seconds",
                                 "When the latest run started (Unix time).", labels=["period"])
        not_evaluated = GaugeMetricFamily(
            "k3sops_check_not_evaluated", "Rules of the latest run that could not be evaluated.",
            labels=["period"])
        for period, report in sorted(owner._reports().items()):
            counts: Counter[tuple[str, str, str, str]] = Counter(
                (f.check, f.severity, f.resource.namespace or "", f.environment or "")
                for f in report.findings)
            for (check, severity, namespace, environment), n in sorted(counts.items()):
                findings.add_metric([period, check, severity, namespace, environment], n)
            s = report.summary
            score.add_metric([period], s.health_score)
            duration.add_metric([period], s.duration_seconds)
            not_evaluated.add_metric([period], s.not_evaluated)
            with contextlib.suppress(ValueError):  # a run stored without a parseable time
                last.add_metric([period], datetime.fromisoformat(s.started_at).timestamp())
        yield from (findings, score, duration, last, not_evaluated)

        synced = GaugeMetricFamily("k3sops_cache_synced",
                                   "1 when the kind is listed and watched (or unreadable by "
                                   "RBAC), 0 while it lags.", labels=["kind"])
        objects = GaugeMetricFamily("k3sops_cache_objects", "Objects cached.", labels=["kind"])
        lag = GaugeMetricFamily("k3sops_cache_last_event_age_seconds",
                                "Seconds since the kind's last event, bookmark or list.",
                                labels=["kind"])
        relists = GaugeMetricFamily("k3sops_cache_relists",
                                    "LISTs after the first (410 Gone, broken streams).",
                                    labels=["kind"])
        for kind, st in sorted(owner._cache_status().items()):
            synced.add_metric([kind], 1.0 if st.synced else 0.0)
            objects.add_metric([kind], st.objects)
            relists.add_metric([kind], st.relists)
            if st.last_event_age is not None:
                lag.add_metric([kind], st.last_event_age)
        yield from (synced, objects, lag, relists)

        leader = GaugeMetricFamily("k3sops_leader", "1 on the replica holding the Lease.")
        leader.add_metric([], 1.0 if owner._is_leader() else 0.0)
        yield leader
