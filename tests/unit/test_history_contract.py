"""One behaviour, two backends: every test here runs against SQLite and PostgreSQL.

SQLite is a real file in a temporary directory; PostgreSQL is a fresh database on the lab's
real server (those cases are marked ``lab`` and need the lab; ``--no-lab`` skips them). Runs
are built from a real captured report (tests/history_kit.py). No mock anywhere.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from history_kit import at, fresh_database, load_report
from k3sops.adapters.store import (
    AlertRecord,
    HistoryStore,
    RemediationRecord,
    SqliteStore,
    postgres,
    sqlite,
)
from k3sops.adapters.store.postgres import PostgresStore
from k3sops.domain.findings import CheckReport

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)
Opener = Callable[[], HistoryStore]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.lab)])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens another store (another connection) on one fresh database of the backend."""
    if request.param == "sqlite":
        yield lambda: SqliteStore.open(tmp_path / "state")
        return
    lab = request.getfixturevalue("lab")
    with fresh_database(lab) as url:
        yield lambda: PostgresStore.open(url)


@pytest.fixture
def store(opener: Opener) -> Iterator[HistoryStore]:
    s = opener()
    yield s
    s.close()


@pytest.fixture
def report() -> CheckReport:
    return load_report()


def alert(n: int, starts: datetime = T0, status: str = "firing") -> AlertRecord:
    return AlertRecord.model_validate({
        "fingerprint": f"{n:016x}", "starts_at": starts + timedelta(microseconds=123456),
        "alertname": "KubePodCrashLooping", "status": status,
        "received_at": starts + timedelta(seconds=30),
        "labels": {"alertname": "KubePodCrashLooping", "namespace": "production",
                   "pod": f"web-{n}", "severity": "warning"},
        "enriched": {"object": {"kind": "Pod", "namespace": "production", "name": f"web-{n}"},
                     "runbook": "pod-crashloop", "diagnosis": {"roots": ["pod-crashloop"]}}})


def remediation(policy: str, when: datetime, mode: str = "applied") -> RemediationRecord:
    return RemediationRecord.model_validate({
        "policy_id": policy, "trigger": "alert:KubePodCrashLooping",
        "target": "Pod production/web-0", "plan": "restart", "mode": mode, "at": when})


# -- opening and versions --------------------------------------------------------------------


def test_open_migrates_an_empty_database_and_reopening_keeps_everything(
        opener: Opener, report: CheckReport) -> None:
    with opener() as s:
        assert s.runs() == [] and s.alerts() == [] and s.schedule_claims() == []
        version = s.schema_version
        assert version == (5 if s.backend == "sqlite" else 4)
        run_id = s.record(report)
    # Opening an up-to-date database again is a no-op migration.
    with opener() as s:
        assert s.schema_version == version
        assert [r.id for r in s.runs()] == [run_id]


Insert = Callable[[str, str, str], None]
"""Stores a remediation row (target, mode, detail) as the previous version's code did."""


SQLITE_BEFORE_FOLD, POSTGRES_BEFORE_FOLD = 3, 2
"""The schema versions before each remediation attempt became one row."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.lab)])
def previous(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Insert, Opener]]:
    """A database at the schema version before the fold: (insert into it, open it now)."""
    when = T0 - timedelta(minutes=20)
    if request.param == "sqlite":
        path = tmp_path / "k3sops.db"
        sqlite.SqliteStore.open_file(path, upto=SQLITE_BEFORE_FOLD).close()

        def insert_lite(target: str, mode: str, detail: str) -> None:
            with contextlib.closing(sqlite3.connect(path)) as conn, conn:
                conn.execute(
                    "INSERT INTO remediations (policy_id, trigger, target, plan, mode, at, "
                    "at_ts, detail) VALUES ('restart', 'alert:A', ?, 'restart', ?, ?, ?, ?)",
                    (target, mode, when.isoformat(), when.timestamp(), detail))
        yield insert_lite, lambda: sqlite.SqliteStore.open_file(path)
        return
    lab = request.getfixturevalue("lab")
    with fresh_database(lab) as url:
        PostgresStore.open(url, upto=POSTGRES_BEFORE_FOLD).close()

        def insert_pg(target: str, mode: str, detail: str) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO k3sops.remediations (policy_id, trigger, target, plan, mode, "
                    "at, detail) VALUES ('restart', 'alert:A', %s, 'restart', %s, %s, %s)",
                    (target, mode, when, detail))
        yield insert_pg, lambda: PostgresStore.open(url)


def test_migration_from_the_previous_version_makes_each_attempt_one_row(
        previous: tuple[Insert, Opener]) -> None:
    """The previous version stored a failed reservation as an ``applied`` row plus a
    ``failed`` row naming it; the migration folds them, and keeps the rate's count."""
    insert, reopen = previous
    insert("pods/d/p", "applied", "plan restart on pods/d/p")
    insert("pods/d/p", "failed", "reservation #1: API server refused to patch (HTTP 403)")
    insert("pods/d/q", "applied", "plan restart on pods/d/q")
    insert("pods/d/q", "failed", "plan cannot be built")
    with reopen() as s:
        got = [(r.id, r.mode, r.detail) for r in reversed(s.remediations())]
        assert got == [(1, "failed", "API server refused to patch (HTTP 403)"),
                       (3, "applied", "plan restart on pods/d/q"),
                       (4, "failed", "plan cannot be built")]
        # Both earlier reservations still hold their slot of the rate.
        since = T0 - timedelta(hours=1)
        assert s.reserve_remediation(remediation("restart", T0, "reserved"), 3,
                                     since) is not None
        assert s.reserve_remediation(remediation("restart", T0, "reserved"), 3, since) is None


# -- runs ------------------------------------------------------------------------------------


def test_migration_from_the_previous_version_keeps_runs_and_adds_sessions(
        tmp_path: Path, report: CheckReport) -> None:
    """The version before this one had no console sessions: its runs survive the upgrade."""
    path = tmp_path / "k3sops.db"
    with sqlite.SqliteStore.open_file(path, upto=sqlite.SCHEMA_VERSION - 1) as old:
        run_id = old.record(report)
    with sqlite.SqliteStore.open_file(path) as s:
        assert [r.id for r in s.runs()] == [run_id]
        s.session_put("k" * 64, '{"name": "alice"}', T0)
        assert s.session_get("k" * 64) is not None


@pytest.mark.lab
def test_postgres_migration_from_the_previous_version_keeps_runs_and_adds_sessions(
        report: CheckReport, request: pytest.FixtureRequest) -> None:
    lab = request.getfixturevalue("lab")
    with fresh_database(lab) as url:
        with PostgresStore.open(url, upto=postgres.SCHEMA_VERSION - 1) as old:
            run_id = old.record(report)
        with PostgresStore.open(url) as s:
            assert [r.id for r in s.runs()] == [run_id]
            s.session_put("k" * 64, '{"name": "alice"}', T0)
            assert s.session_get("k" * 64) is not None


def test_record_round_trip_keeps_the_whole_report(store: HistoryStore,
                                                  report: CheckReport) -> None:
    carried = report.findings[:2]
    run_id = store.record(report, carried)
    got = store.last_run("daily", None)
    assert got is not None and got.id == run_id
    assert got.summary == report.summary
    assert got.findings == report.findings
    assert got.carried == carried
    assert got.started_at == report.summary.started_at
    # What the service serves as "the latest report" after a restart.
    assert got.report().model_dump() == report.model_copy(
        update={"suppressed": []}).model_dump()
    assert store.run(run_id) == got
    assert store.run(run_id + 1000) is None


def test_last_run_is_newest_of_its_period_and_environment(store: HistoryStore,
                                                          report: CheckReport) -> None:
    ids = {
        "daily-old": store.record(at(report, T0)),
        "daily-new": store.record(at(report, T0 + timedelta(days=1))),
        "weekly": store.record(at(report, T0 + timedelta(days=2), "weekly")),
        "daily-prod": store.record(at(report, T0 + timedelta(days=3), "daily", "production")),
    }
    # Recorded out of time order: ordering follows started_at, not insertion.
    store.record(at(report, T0 - timedelta(days=5)))
    daily = store.last_run("daily", None)
    assert daily is not None and daily.id == ids["daily-new"]
    weekly = store.last_run("weekly", None)
    assert weekly is not None and weekly.id == ids["weekly"]
    prod = store.last_run("daily", "production")
    assert prod is not None and prod.id == ids["daily-prod"]
    assert prod.environment == "production"
    assert store.last_run("daily", "staging") is None
    assert store.last_run("monthly", None) is None


def test_runs_and_trend(store: HistoryStore, report: CheckReport) -> None:
    for i in range(5):
        store.record(at(report, T0 + timedelta(hours=i), "weekly" if i == 2 else "daily"))
    runs = store.runs(limit=3)
    assert [r.started_at for r in runs] == [
        (T0 + timedelta(hours=h)).isoformat(timespec="seconds") for h in (4, 3, 2)]
    assert [r.period for r in store.runs(period="weekly")] == ["weekly"]
    assert len(store.runs(period="daily")) == 4
    trend = store.trend(limit=4)
    assert [p.started_at for p in trend] == [
        (T0 + timedelta(hours=h)).isoformat(timespec="seconds") for h in (1, 2, 3, 4)]
    point = trend[-1]
    s = report.summary
    assert (point.critical, point.warning, point.info, point.health_score) == (
        s.critical, s.warning, s.info, s.health_score)
    assert point.cpu == s.usage["cpu"] and point.disk == s.usage["disk"]


# -- acknowledgements and drills -------------------------------------------------------------


def test_acks_expire_with_their_period(store: HistoryStore) -> None:
    # Thursday 2026-11-26, 09:00 in UTC+1.
    tz = timezone(timedelta(hours=1))
    now = datetime(2026, 11, 26, 9, 0, tzinfo=tz)
    store.ack("daily-y", "daily", "alice", "done", now - timedelta(days=1))
    store.ack("daily-t", "daily", "alice", None, now - timedelta(hours=1))
    store.ack("weekly-mon", "weekly", "bob", "ok", datetime(2026, 11, 23, 8, tzinfo=tz))
    store.ack("weekly-last", "weekly", "bob", "ok", datetime(2026, 11, 22, 20, tzinfo=tz))
    store.ack("monthly-1st", "monthly", "carol", "ok", datetime(2026, 11, 1, 0, 30, tzinfo=tz))
    acks = store.acks(now)
    assert set(acks) == {"daily-t", "weekly-mon", "monthly-1st"}
    assert acks["daily-t"] == {"by": "alice",
                               "at": (now - timedelta(hours=1)).astimezone(UTC)
                               .isoformat(timespec="seconds")}
    assert acks["weekly-mon"]["note"] == "ok"
    # The day boundary is the operator's: 00:30 local on the 1st is 23:30 UTC the day before.
    assert datetime.fromisoformat(acks["monthly-1st"]["at"]).day == 31
    # Next Monday the weekly acknowledgement is open again, and on December 1st the monthly.
    assert "weekly-mon" not in store.acks(datetime(2026, 11, 30, 9, tzinfo=tz))
    assert "monthly-1st" not in store.acks(datetime(2026, 12, 1, 9, tzinfo=tz))


def test_latest_ack_wins(store: HistoryStore) -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    store.ack("item", "daily", "alice", "first", now - timedelta(hours=3))
    store.ack("item", "daily", "bob", "second", now - timedelta(hours=1))
    # An acknowledgement stored late but given earlier does not replace the later one.
    store.ack("item", "daily", "carol", "late", now - timedelta(hours=2))
    assert store.acks(now)["item"]["by"] == "bob"
    assert store.acks(now)["item"]["note"] == "second"


def test_restore_drill_facts_keep_90_days(store: HistoryStore) -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    store.record_restore_drill("etcd", "snapshot-a", True, now - timedelta(days=100), 12.5)
    store.record_restore_drill("postgres", "orders", False, now - timedelta(days=3), None)
    store.record_restore_drill("etcd", "snapshot-b", True, now - timedelta(days=1), 8.0)
    drills = store.facts(now)["restore_drills"]
    assert [(d["kind"], d["target"], d["ok"], d["seconds"]) for d in drills] == [
        ("postgres", "orders", False, None), ("etcd", "snapshot-b", True, 8.0)]
    assert drills[1]["at"] == (now - timedelta(days=1)).isoformat(timespec="seconds")


# -- alerts ----------------------------------------------------------------------------------


def test_alerts_are_stored_once_per_fingerprint_and_start(store: HistoryStore) -> None:
    first = alert(1)
    assert store.record_alert(first) is True
    # Alertmanager repeats the firing alert every group interval: a duplicate, not a new one.
    repeat = first.model_copy(update={"received_at": T0 + timedelta(minutes=5),
                                      "enriched": {"other": True}})
    assert store.record_alert(repeat) is False
    got = store.alert(first.fingerprint, first.starts_at)
    assert got is not None and got.id is not None
    assert got.model_dump(exclude={"id"}) == first.model_dump(exclude={"id"})
    # Same labels firing again later: a new startsAt, a new alert.
    again = alert(1, T0 + timedelta(hours=2))
    assert store.record_alert(again) is True
    # startsAt is part of the key to the microsecond.
    assert store.record_alert(first.model_copy(update={
        "starts_at": first.starts_at + timedelta(microseconds=1)})) is True
    assert len(store.alerts()) == 3


def test_resolve_closes_the_alert_once(store: HistoryStore) -> None:
    a, b = alert(1), alert(2, T0 + timedelta(minutes=1))
    store.record_alert(a)
    store.record_alert(b)
    ended = T0 + timedelta(minutes=20)
    assert store.resolve_alert(a.fingerprint, a.starts_at, ended) is True
    assert store.resolve_alert(a.fingerprint, a.starts_at, ended) is False  # repeat
    assert store.resolve_alert("ffff", a.starts_at, ended) is False  # unknown
    got = store.alert(a.fingerprint, a.starts_at)
    assert got is not None and got.status == "resolved" and got.ends_at == ended
    assert [x.fingerprint for x in store.alerts("firing")] == [b.fingerprint]
    assert [x.fingerprint for x in store.alerts("resolved")] == [a.fingerprint]
    # Newest startsAt first; limit counts.
    assert [x.fingerprint for x in store.alerts()] == [b.fingerprint, a.fingerprint]
    assert len(store.alerts(limit=1)) == 1
    # An alert first seen resolved (the service was down while it fired) is stored as such.
    late = alert(3, status="resolved").model_copy(update={"ends_at": ended})
    assert store.record_alert(late) is True
    assert store.resolve_alert(late.fingerprint, late.starts_at, ended) is False


# -- remediations ----------------------------------------------------------------------------


def test_remediation_counts_and_rate(store: HistoryStore) -> None:
    now = T0
    store.record_remediation(remediation("restart", now - timedelta(hours=2)))
    store.record_remediation(remediation("restart", now - timedelta(minutes=30)))
    store.record_remediation(remediation("restart", now - timedelta(minutes=10), "dry-run"))
    store.record_remediation(remediation("other", now - timedelta(minutes=5)))
    hour_ago = now - timedelta(hours=1)
    assert store.remediation_count("restart", hour_ago) == 1
    assert store.remediation_count("restart", hour_ago, ("applied", "dry-run")) == 2
    assert store.remediation_count("restart", now - timedelta(days=1)) == 2
    assert store.remediation_count("nothing", hour_ago) == 0
    # max 2 per hour: one slot left, then none.
    first = store.reserve_remediation(remediation("restart", now), 2, hour_ago)
    assert first is not None
    assert store.reserve_remediation(remediation("restart", now), 2, hour_ago) is None
    listed = store.remediations(policy_id="restart")
    assert listed[0].id == first
    assert [r.mode for r in listed] == ["applied", "dry-run", "applied", "applied"]
    assert listed[0].at == now and listed[0].target == "Pod production/web-0"
    assert len(store.remediations(limit=2)) == 2


def test_a_reservation_is_one_row_finished_in_place(store: HistoryStore) -> None:
    hour_ago = T0 - timedelta(hours=1)
    rid = store.reserve_remediation(remediation("restart", T0, "reserved"), 2, hour_ago)
    assert rid is not None
    [rec] = store.remediations()
    assert (rec.id, rec.mode) == (rid, "reserved")
    assert store.finish_remediation(rid, "failed", "HTTP 403: patch deployments") is True
    [rec] = store.remediations()
    assert (rec.id, rec.mode, rec.detail) == (rid, "failed", "HTTP 403: patch deployments")
    # Finished once: a second finish, an unknown id, a record that was no reservation.
    assert store.finish_remediation(rid, "applied", "again") is False
    assert store.finish_remediation(rid + 1000, "applied", None) is False
    dry = store.record_remediation(remediation("restart", T0, "dry-run"))
    refused = store.record_remediation(remediation("restart", T0, "reserved"))
    assert store.finish_remediation(dry, "applied", None) is False
    assert store.finish_remediation(refused, "applied", None) is False
    assert [r.mode for r in store.remediations()] == ["reserved", "dry-run", "failed"]
    # The failed attempt still holds its slot: with max 2 one more, then none.
    second = store.reserve_remediation(remediation("restart", T0, "reserved"), 2, hour_ago)
    assert second is not None
    assert store.finish_remediation(second, "refused", "would cordon the last node") is True
    assert store.reserve_remediation(remediation("restart", T0, "reserved"), 2,
                                     hour_ago) is None
    assert store.reserve_remediation(remediation("other", T0, "reserved"), 2,
                                     hour_ago) is not None
    assert store.remediation_count("restart", hour_ago, ("failed", "refused")) == 2
    assert store.remediation_count("restart", hour_ago) == 0


# -- scheduled runs --------------------------------------------------------------------------


def test_a_scheduled_run_is_claimed_once(store: HistoryStore) -> None:
    due = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    now = due + timedelta(seconds=2)
    assert store.schedule_claim("daily", due, "replica-a", now) is True
    assert store.schedule_claim("daily", due, "replica-b", now) is False
    # Another period or another due time is another claim.
    assert store.schedule_claim("weekly", due, "replica-b", now) is True
    assert store.schedule_claim("daily", due + timedelta(days=1), "replica-b", now) is True
    # A running claim is not stale yet; a done one is never taken again.
    assert store.schedule_claim("daily", due, "replica-b", now + timedelta(minutes=5),
                                stale_after=timedelta(hours=1)) is False
    store.schedule_finish("daily", due, "done", run_id=7, now=now + timedelta(minutes=1))
    assert store.schedule_claim("daily", due, "replica-b", now + timedelta(days=1),
                                stale_after=timedelta(hours=1)) is False
    claims = {(c.period, c.due_at): c for c in store.schedule_claims()}
    done = claims[("daily", due)]
    assert (done.owner, done.status, done.run_id) == ("replica-a", "done", 7)
    assert done.finished_at == now + timedelta(minutes=1)
    assert [c.period for c in store.schedule_claims(period="weekly")] == ["weekly"]


def test_an_interrupted_or_stale_claim_can_be_taken_over(store: HistoryStore) -> None:
    due = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    now = due + timedelta(seconds=1)
    assert store.schedule_claim("daily", due, "a", now)
    store.schedule_finish("daily", due, "interrupted", now=now + timedelta(seconds=5))
    # SIGTERM recorded the run as interrupted: the other replica runs it.
    assert store.schedule_claim("daily", due, "b", now + timedelta(seconds=10)) is True
    assert store.schedule_claim("daily", due, "a", now + timedelta(seconds=11)) is False
    # b died (kill -9) without finishing: after stale_after its claim is taken over.
    later = now + timedelta(hours=2)
    assert store.schedule_claim("daily", due, "c", later) is False
    assert store.schedule_claim("daily", due, "c", later,
                                stale_after=timedelta(hours=1)) is True
    (claim,) = store.schedule_claims()
    assert (claim.owner, claim.status, claim.claimed_at) == ("c", "claimed", later)


# -- concurrency -----------------------------------------------------------------------------


def test_console_sessions_are_stored_touched_dropped_and_pruned(opener: Opener) -> None:
    user = '{"extra": {}, "groups": ["system:authenticated"], "name": "alice", "uid": "u1"}'
    with opener() as a, opener() as b:  # two replicas
        a.session_put("a" * 64, user, T0)
        got = b.session_get("a" * 64)
        assert got is not None and json.loads(got.user) == json.loads(user)
        assert (got.created_at, got.seen_at) == (T0, T0)
        b.session_touch("a" * 64, T0 + timedelta(minutes=5))
        got = a.session_get("a" * 64)
        assert got is not None and (got.created_at, got.seen_at) == (
            T0, T0 + timedelta(minutes=5))
        a.session_put("b" * 64, user, T0 + timedelta(hours=2))
        a.session_put("c" * 64, user, T0 - timedelta(hours=9))
        a.session_touch("c" * 64, T0 + timedelta(hours=2))
        # unused since before T0+1h, or created before T0-8h: "a" and "c" go, "b" stays
        assert b.session_prune(T0 + timedelta(hours=1), T0 - timedelta(hours=8)) == 2
        assert [k for k in ("a", "b", "c") if a.session_get(k * 64)] == ["b"]
        b.session_drop("b" * 64)
        b.session_drop("b" * 64)  # dropping an unknown session is no error
        assert a.session_get("b" * 64) is None


def test_one_store_is_safe_from_many_threads(store: HistoryStore, report: CheckReport) -> None:
    """The service calls one store from its request threads and its scheduler at once."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                store.record(at(report, T0 + timedelta(minutes=10 * n + i)))
                store.record_alert(alert(100 * n + i))
                store.alerts(limit=5)
        except BaseException as e:  # collected and asserted on below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.runs(limit=100)) == 40
    assert len(store.alerts(limit=100)) == 40


def test_two_replicas_share_the_store_without_lost_or_duplicate_records(
        opener: Opener, report: CheckReport) -> None:
    """Two store instances (two connections, as two replicas have) write at the same time.

    Both receive every alert (Alertmanager sends to each replica), both try to claim every
    scheduled run and to reserve remediations under one rate, and each records its own runs.
    """
    n, limit = 30, 5
    hour_ago = T0 - timedelta(hours=1)
    barrier = threading.Barrier(2, timeout=60)  # a replica failing to open must not hang
    results: dict[str, dict[str, list[object]]] = {}
    errors: list[BaseException] = []

    def replica(name: str) -> None:
        got: dict[str, list[object]] = {"runs": [], "alerts": [], "claims": [],
                                         "reserved": [], "resolved": []}
        try:
            with opener() as s:
                barrier.wait()
                for i in range(n):
                    got["runs"].append(s.record(at(report, T0 + timedelta(seconds=i))))
                    if s.record_alert(alert(i)):
                        got["alerts"].append(i)
                    if s.schedule_claim("daily", T0 + timedelta(days=i), name):
                        got["claims"].append(i)
                    if s.reserve_remediation(remediation("restart", T0), limit,
                                             hour_ago) is not None:
                        got["reserved"].append(i)
                    if i and s.resolve_alert(alert(i - 1).fingerprint,
                                             alert(i - 1).starts_at, T0 + timedelta(hours=1)):
                        got["resolved"].append(i - 1)
        except BaseException as e:  # collected and asserted on below
            errors.append(e)
        results[name] = got

    threads = [threading.Thread(target=replica, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    a, b = results["a"], results["b"]
    every = set(range(n))
    # Runs: each replica's own, none lost, ids unique.
    assert len(set(a["runs"]) | set(b["runs"])) == 2 * n
    # Alerts, claims, resolutions: each exactly once, by one replica or the other.
    for key, expected in (("alerts", every), ("claims", every),
                          ("resolved", set(range(n - 1)))):
        assert not set(a[key]) & set(b[key]), key
        assert set(a[key]) | set(b[key]) == expected, key
    assert len(a["reserved"]) + len(b["reserved"]) == limit
    with opener() as s:
        assert len(s.runs(limit=1000)) == 2 * n
        stored = s.alerts(limit=1000)
        assert sorted(x.fingerprint for x in stored) == sorted(alert(i).fingerprint
                                                             for i in range(n))
        assert [x.fingerprint for x in s.alerts("firing")] == [alert(n - 1).fingerprint]
        claims = s.schedule_claims(limit=1000)
        assert len(claims) == n
        assert {c.due_at for c in claims if c.owner == "a"} == {
            T0 + timedelta(days=i) for i in a["claims"]}  # type: ignore[operator]
        assert s.remediation_count("restart", hour_ago) == limit
