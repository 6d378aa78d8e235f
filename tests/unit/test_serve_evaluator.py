"""The report kept current in the background (serve.evaluator) on a captured lab cluster.

The reports are judged by the real engine (``Reports.run`` -> ``report_from``) on the objects
of tests/data/rules/pods.json, compared with a real SQLite history. Only the collection is
replaced: the objects come from a dict standing in for the watch cache (the lab tests run the
real cache) and no Prometheus is asked, so the snapshot is the capture's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from labdata import load
from servekit import READER, asgi_get, review_client

from k3sops.adapters.store import SqliteStore
from k3sops.domain import checks as registry
from k3sops.domain.findings import CheckReport, Period, Source
from k3sops.domain.snapshot import ClusterSnapshot, parse_time
from k3sops.serve.api import ApiContext, Reports
from k3sops.serve.auth import Authorizer, SharedToken
from k3sops.serve.evaluator import Evaluator, encode
from k3sops.serve.metrics import ServiceMetrics
from k3sops.services.context import Settings

CRASHING = "local-image"
"""A pod of the capture in a container error: a finding until it is deleted."""


class Objects:
    """The captured objects, changed by the test as watch events would change the cache."""

    def __init__(self) -> None:
        data = load("pods.json")
        self.now = parse_time(data["captured_at"])
        self.objects: dict[str, list[Any]] = {k: list(v) for k, v in data["objects"].items()}
        self.generation = 0
        self.synced = True
        self.pokes: list[Any] = []
        self.lock = threading.Lock()

    def snapshot(self, now: datetime, kinds: Iterable[str] | None = None) -> ClusterSnapshot:
        with self.lock:
            objects = {k: list(v) for k, v in self.objects.items()
                       if kinds is None or k in set(kinds)}
        assert self.now is not None
        return ClusterSnapshot(now=self.now, objects=objects)

    def in_sync(self) -> bool:
        return self.synced

    def status(self) -> dict[str, Any]:
        return {}

    def source(self, kinds: Iterable[str] | None = None) -> Source:
        return Source(name="kubernetes", ok=True, endpoint="https://127.0.0.1:6443")

    def remove(self, kind: str, name_part: str) -> None:
        """Delete the objects whose name contains ``name_part``, as DELETED events would."""
        with self.lock:
            self.objects[kind] = [o for o in self.objects[kind]
                                  if name_part not in o["metadata"]["name"]]
            self.generation += 1
        for fn in self.pokes:
            fn()


class CacheReports(Reports):
    """Reports on the cache alone: the capture has no Prometheus to ask."""

    gate: threading.Event | None = None
    runs = 0

    def snapshot(self, specs: list[registry.CheckSpec], now: datetime,
                 ) -> tuple[ClusterSnapshot, list[Source]]:
        self.runs += 1
        if self.gate is not None:
            assert self.gate.wait(30)
        snap = self.cache.snapshot(now, None)
        return replace(snap, metric_errors={}), [self.cache.source()]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Objects, CacheReports, Evaluator]]:
    objects = Objects()
    with SqliteStore.open_file(tmp_path / "k3sops.db") as store:
        reports = CacheReports(Settings(None, None, None), objects, None,  # type: ignore[arg-type]
                               store)
        ev = Evaluator(reports, lambda: objects.generation, ready=objects.in_sync,
                       refresh_seconds=3600)
        objects.pokes.append(ev.poke)
        yield objects, reports, ev
        ev.stop()


def failing(report: CheckReport) -> list[str]:
    return [f.resource.name for f in report.findings if CRASHING in f.resource.name]


def comparable(report: CheckReport) -> dict[str, Any]:
    out = report.model_dump(mode="json")
    out["summary"].pop("duration_seconds", None)
    return out


def test_the_background_report_is_the_on_demand_report(
        setup: tuple[Objects, CacheReports, Evaluator]) -> None:
    _objects, reports, ev = setup
    ev.start()
    got = ev.wait("daily", 60)
    assert got is not None and got.generation == 0
    on_demand = reports.run("daily")
    assert comparable(got.report) == comparable(on_demand)
    assert failing(on_demand), "the capture's failing pod is a finding"
    assert got.body == encode(got.report)


def test_a_change_is_judged_by_the_next_run_and_fresh_waits_for_it(
        setup: tuple[Objects, CacheReports, Evaluator]) -> None:
    objects, reports, ev = setup
    ev.start()
    first = ev.wait("daily", 60)
    assert first is not None and failing(first.report)
    objects.remove("pods", CRASHING)
    fresh = ev.fresh("daily", 60)
    assert fresh is not None
    assert fresh.started >= first.started and fresh.generation == 1
    assert failing(fresh.report) == []
    # the latest is now that run, and the same as judging the changed objects on demand
    latest = ev.latest("daily")
    assert latest is not None and failing(latest.report) == []
    assert comparable(latest.report) == comparable(reports.run("daily"))


def test_changes_during_a_run_coalesce_into_one_next_run(
        setup: tuple[Objects, CacheReports, Evaluator]) -> None:
    objects, reports, ev = setup
    reports.gate = threading.Event()
    ev.start()
    for _ in range(50):  # events arriving while the first run is held in its snapshot
        objects.generation += 1
        ev.poke()
    reports.gate.set()
    got = ev.wait("daily", 60, after=None)
    assert got is not None
    settled = ev.fresh("daily", 60)
    assert settled is not None and settled.generation == 50
    # the first run, at most one for the burst, and the fresh one: never one per event
    assert reports.runs <= 3


def test_no_run_before_the_cache_is_in_sync_unless_a_request_waits(
        setup: tuple[Objects, CacheReports, Evaluator]) -> None:
    objects, reports, ev = setup
    objects.synced = False
    ev.start()
    objects.remove("pods", "no-such-pod")
    assert ev.latest("daily") is None and reports.runs == 0
    got = ev.wait("daily", 60)
    assert got is not None and reports.runs == 1


def test_without_the_thread_a_request_judges_on_its_own(
        setup: tuple[Objects, CacheReports, Evaluator]) -> None:
    _objects, _reports, ev = setup
    got = ev.fresh("weekly", 5)
    assert got is not None and got.period == "weekly"
    assert ev.latest("weekly") is got


def test_another_period_joins_when_first_asked(
        setup: tuple[Objects, CacheReports, Evaluator]) -> None:
    objects, _reports, ev = setup
    ev.start()
    assert ev.wait("daily", 60) is not None
    weekly = ev.wait("weekly", 60)
    assert weekly is not None and weekly.report.summary.period == "weekly"
    objects.remove("pods", CRASHING)
    period: Period
    for period in ("daily", "weekly"):
        got = ev.fresh(period, 60)
        assert got is not None and failing(got.report) == []


def _app(reports: Reports, ev: Evaluator | None) -> Any:
    from k3sops.serve.app import create_app

    ctx = ApiContext(reports=reports, authorizer=Authorizer(review_client()),
                     alertmanager=SharedToken(None),
                     metrics=ServiceMetrics(reports.reports, lambda: {}, lambda: True),
                     is_leader=lambda: True, evaluator=ev)
    return create_app(ctx)


def test_the_route_answers_the_kept_report_with_its_age(
        setup: tuple[Objects, CacheReports, Evaluator]) -> None:
    objects, reports, ev = setup
    ev.start()
    app = _app(reports, ev)
    r = asgi_get(app, "/api/v1/report", READER)
    assert r.status_code == 200, r.text
    kept = ev.latest("daily")
    assert kept is not None and r.content == kept.body
    assert r.headers["x-k3sops-as-of"] == kept.as_of.isoformat()
    assert int(r.headers["age"]) >= 0 and r.headers["x-k3sops-cache-generation"] == "0"
    # the CLI reading the service parses it as the report it is
    assert CheckReport.model_validate_json(r.content).findings == kept.report.findings
    objects.remove("pods", CRASHING)
    fresh = asgi_get(app, "/api/v1/report?fresh=true", READER)
    assert fresh.status_code == 200
    assert fresh.headers["x-k3sops-cache-generation"] == "1"
    assert failing(CheckReport.model_validate_json(fresh.content)) == []
    assert asgi_get(app, "/api/v1/report").status_code == 401


def test_the_route_is_the_same_report_with_or_without_the_evaluator(
        setup: tuple[Objects, CacheReports, Evaluator]) -> None:
    _objects, reports, ev = setup
    ev.start()
    kept = asgi_get(_app(reports, ev), "/api/v1/report", READER).json()
    judged = asgi_get(_app(reports, None), "/api/v1/report", READER).json()
    for body in (kept, judged):
        body["summary"].pop("duration_seconds", None)
    assert kept == judged


def test_a_report_judged_out_of_sync_is_not_answered_once_the_cache_is_back(
        setup: tuple[Objects, CacheReports, Evaluator]) -> None:
    objects, _reports, ev = setup
    objects.synced = False  # the API server went away: the run judges what the cache has
    during = ev.wait("daily", 5)
    assert during is not None and not during.in_sync
    assert ev.current("daily", 5) is during  # still out of sync: the best there is
    objects.synced = True  # re-synced: that report must not be the answer any more
    ev.start()
    after = ev.current("daily", 60)
    assert after is not None and after.in_sync and after.started > during.started
