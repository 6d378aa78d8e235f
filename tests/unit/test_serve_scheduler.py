"""The serve scheduler: real cron evaluator, real SQLite store, a fake clock (issue 14).

Every due time is computed by domain/checks/cron.py in a real zone (zoneinfo) and claimed in a
real SQLite history file; two schedulers are two stores (two connections) on the same file,
as two replicas are on one PostgreSQL database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from k3sops.adapters.store import HistoryStore, SqliteStore
from k3sops.domain.findings import Period
from k3sops.errors import ConfigError
from k3sops.serve.leader import lease_expired, micro_time
from k3sops.serve.scheduler import Scheduler

pytestmark = pytest.mark.unit

BERLIN = "Europe/Berlin"
# 2026-12-07 is a Monday; Berlin is UTC+1 in December, so 07:00 there is 06:00 UTC.
DAY = datetime(2026, 12, 7, tzinfo=UTC)


class Runs:
    """Records every run a scheduler started: (owner, period, due_at)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, Period, datetime]] = []

    def runner(self, owner: str, fail: bool = False) -> Callable[[Period, datetime], int | None]:
        def run(period: Period, due_at: datetime) -> int | None:
            with self.lock:
                self.calls.append((owner, period, due_at))
            if fail:
                raise RuntimeError("prometheus went away")
            return len(self.calls)
        return run

    def dues(self) -> list[tuple[Period, datetime]]:
        return [(p, d) for _, p, d in self.calls]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Callable[[], HistoryStore]]:
    opened: list[HistoryStore] = []

    def open_one() -> HistoryStore:
        s = SqliteStore.open(tmp_path / "state")
        opened.append(s)
        return s
    yield open_one
    for s in opened:
        s.close()


def make(store: HistoryStore, runs: Runs, owner: str = "a",
         schedule: dict[Period, str] | None = None, leader: Callable[[], bool] = lambda: True,
         fail: bool = False, **kw: object) -> Scheduler:
    return Scheduler(schedule or {"daily": "0 7 * * *"}, BERLIN, store, runs.runner(owner, fail),
                     leader, owner, **kw)  # type: ignore[arg-type]


def test_due_times_are_read_in_the_configured_zone(stores: Callable[[], HistoryStore]) -> None:
    s = make(stores(), Runs(), schedule={"daily": "0 7 * * *", "weekly": "0 8 * * 1",
                                         "monthly": "0 9 1 * *"})
    # Winter: 07:00 Berlin = 06:00 UTC; summer (CEST): 07:00 Berlin = 05:00 UTC.
    assert s.due("daily", DAY.replace(hour=6, minute=30)) == DAY.replace(hour=6)
    july = datetime(2026, 7, 7, 12, tzinfo=UTC)
    assert s.due("daily", july) == july.replace(hour=5)
    # Weekly on Monday 08:00 Berlin; at Monday 06:59 UTC it is still last Monday's.
    assert s.due("weekly", DAY.replace(hour=7, minute=1)) == DAY.replace(hour=7)
    last_week = DAY.replace(hour=7) - timedelta(days=7)
    assert s.due("weekly", DAY.replace(hour=6, minute=59)) == last_week  # within one week
    assert s.due("monthly", DAY) == datetime(2026, 12, 1, 8, tzinfo=UTC)
    # Nothing older than one period is due: a daily check from 40 days ago is of no use.
    assert make(stores(), Runs(), schedule={"daily": "0 7 1 1 *"}).due("daily", DAY) is None


def test_one_run_per_due_time_as_the_clock_passes_it(stores: Callable[[], HistoryStore]) -> None:
    store, runs = stores(), Runs()
    s = make(store, runs)
    # On start at 05:00 UTC the latest due time (yesterday 06:00 UTC) is within one day:
    # the run a dead leader missed is run now.
    assert s.tick(DAY.replace(hour=5)) == [("daily", DAY - timedelta(hours=18))]
    t = DAY.replace(hour=5)
    while t < DAY.replace(hour=8):
        s.tick(t)
        t += timedelta(seconds=30)
    assert runs.dues() == [("daily", DAY - timedelta(hours=18)), ("daily", DAY.replace(hour=6))]
    claims = store.schedule_claims()
    assert [(c.due_at, c.status, c.run_id, c.owner) for c in claims] == [
        (DAY.replace(hour=6), "done", 2, "a"), (DAY - timedelta(hours=18), "done", 1, "a")]


def test_a_follower_runs_nothing_and_runs_the_due_time_when_it_leads(
        stores: Callable[[], HistoryStore]) -> None:
    runs, leading = Runs(), [False]
    s = make(stores(), runs, leader=lambda: leading[0])
    for minute in range(0, 120, 5):
        assert s.tick(DAY.replace(hour=5) + timedelta(minutes=minute)) == []
    assert runs.calls == []
    leading[0] = True
    assert s.tick(DAY.replace(hour=7, minute=1)) == [("daily", DAY.replace(hour=6))]
    assert s.tick(DAY.replace(hour=7, minute=2)) == []


def test_two_schedulers_sharing_a_store_never_run_a_due_time_twice(
        stores: Callable[[], HistoryStore]) -> None:
    """Both believe they lead (the worst case: a split brain): the store's claim decides."""
    runs = Runs()
    schedule: dict[Period, str] = {"daily": "*/5 * * * *", "weekly": "*/7 * * * *"}
    a = make(stores(), runs, "a", schedule)
    b = make(stores(), runs, "b", schedule)
    start = DAY.replace(hour=5)
    ticks = [start + timedelta(seconds=20 * i) for i in range(3 * 60 * 3)]  # three hours

    def drive(s: Scheduler) -> None:
        for t in ticks:
            s.tick(t)
    threads = [threading.Thread(target=drive, args=(s,)) for s in (a, b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    dues = runs.dues()
    assert len(dues) == len(set(dues))
    expected_daily = {start + timedelta(minutes=m) for m in range(0, 180, 5)}
    assert {d for p, d in dues if p == "daily"} == expected_daily
    weekly = {d for p, d in dues if p == "weekly"}
    assert weekly and all(d.minute % 7 == 0 for d in weekly)
    owners = {o for o, _, _ in runs.calls}
    assert owners <= {"a", "b"}
    claims = {(c.period, c.due_at): c for c in a.store.schedule_claims(limit=1000)}
    assert set(claims) == set(dues)
    assert all(c.status == "done" for c in claims.values())


def test_a_missed_due_time_after_a_gap_runs_once(stores: Callable[[], HistoryStore]) -> None:
    runs = Runs()
    s = make(stores(), runs)
    s.tick(DAY.replace(hour=6, minute=1))  # today's run
    # The process is frozen (or every replica is down) for two days and a half.
    later = DAY + timedelta(days=2, hours=12)
    assert s.tick(later) == [("daily", DAY.replace(hour=6) + timedelta(days=2))]
    assert s.tick(later + timedelta(minutes=1)) == []
    # Another replica starting now finds it claimed: it is not run again.
    other = make(stores(), runs, "b")
    assert other.tick(later + timedelta(minutes=2)) == []
    assert runs.dues() == [("daily", DAY.replace(hour=6)),
                           ("daily", DAY.replace(hour=6) + timedelta(days=2))]


def test_failover_runs_the_due_time_the_dead_leader_missed_once(
        stores: Callable[[], HistoryStore]) -> None:
    runs = Runs()
    a_leads = [True]
    a = make(stores(), runs, "a", leader=lambda: a_leads[0])
    b = make(stores(), runs, "b", leader=lambda: not a_leads[0])
    a.tick(DAY.replace(hour=5, minute=59))
    b.tick(DAY.replace(hour=5, minute=59))
    # a dies at 05:59:30; b takes the lease 12 s after the due time and ticks.
    a_leads[0] = False
    assert b.tick(DAY.replace(hour=6, second=12)) == [("daily", DAY.replace(hour=6))]
    assert runs.dues().count(("daily", DAY.replace(hour=6))) == 1
    # a comes back as leader later: the due time is claimed, nothing runs twice.
    a_leads[0] = True
    assert a.tick(DAY.replace(hour=6, minute=5)) == []


def test_a_failed_run_is_recorded_interrupted_and_a_later_leader_retries_it(
        stores: Callable[[], HistoryStore]) -> None:
    runs = Runs()
    a = make(stores(), runs, "a", fail=True)
    due = DAY.replace(hour=6)
    assert a.tick(DAY.replace(hour=6, minute=1)) == [("daily", due)]
    assert a.tick(DAY.replace(hour=6, minute=2)) == []  # not retried by the same replica
    claim = a.store.schedule_claims()[0]
    assert (claim.due_at, claim.status, claim.run_id) == (due, "interrupted", None)
    b = make(stores(), runs, "b")
    assert b.tick(DAY.replace(hour=6, minute=3)) == [("daily", due)]
    claim = b.store.schedule_claims()[0]
    assert (claim.status, claim.owner) == ("done", "b")


def test_a_dead_owners_claim_is_taken_over_only_with_stale_after(
        stores: Callable[[], HistoryStore]) -> None:
    runs, due = Runs(), DAY.replace(hour=6)
    dead = stores()
    assert dead.schedule_claim("daily", due, "dead", now=due + timedelta(seconds=1))
    plain = make(stores(), runs, "b")
    assert plain.tick(due + timedelta(hours=1)) == []
    stale = make(stores(), runs, "c", stale_after=timedelta(minutes=30))
    assert stale.tick(due + timedelta(minutes=10)) == []  # the owner may still be running
    assert stale.tick(due + timedelta(minutes=40)) == [("daily", due)]
    assert runs.dues() == [("daily", due)]


def test_every_intervals_are_the_same_on_every_replica(
        stores: Callable[[], HistoryStore]) -> None:
    runs = Runs()
    a = make(stores(), runs, "a", {"daily": "@every 1m"})
    b = make(stores(), runs, "b", {"daily": "@every 1m"})
    for s in range(0, 300, 7):
        a.tick(DAY + timedelta(seconds=s))
        b.tick(DAY + timedelta(seconds=s + 3))
    assert runs.dues() == [("daily", DAY + timedelta(minutes=m)) for m in range(5)]


def test_the_background_thread_ticks_and_stops(stores: Callable[[], HistoryStore]) -> None:
    runs, ticked = Runs(), threading.Event()
    now = DAY.replace(hour=6, minute=1)

    def clock() -> datetime:
        ticked.set()
        return now
    s = make(stores(), runs, clock=clock, interval=0.01)
    s.start()
    assert ticked.wait(10)
    s.stop()
    assert runs.dues() == [("daily", DAY.replace(hour=6))]


@pytest.mark.parametrize(("schedule", "zone", "names"), [
    ({"daily": "0 25 * * *"}, "UTC", "serve.schedule.daily"),
    ({"weekly": "every monday"}, "UTC", "serve.schedule.weekly"),
    ({"daily": "0 7 * * *"}, "Mars/Olympus", "serve.schedule.timezone"),
])
def test_bad_schedules_are_config_errors_naming_the_setting(
        stores: Callable[[], HistoryStore], schedule: dict[Period, str], zone: str,
        names: str) -> None:
    with pytest.raises(ConfigError) as e:
        Scheduler(schedule, zone, stores(), Runs().runner("a"), lambda: True, "a")
    assert names in str(e.value)
    assert e.value.hint


def test_lease_expiry_as_client_go_judges_it() -> None:
    now = datetime(2026, 12, 5, 17, 0, 10, tzinfo=UTC)
    held = {"holderIdentity": "a", "leaseDurationSeconds": 3,
            "renewTime": micro_time(now - timedelta(seconds=2))}
    assert not lease_expired(held, now)
    assert lease_expired(held, now + timedelta(seconds=1))
    assert lease_expired({**held, "holderIdentity": ""}, now)  # released
    assert lease_expired({"leaseDurationSeconds": 3}, now)
    assert micro_time(now) == "2026-12-05T17:00:10.000000Z"


@pytest.mark.parametrize("days", [
    (datetime(2026, 3, 28, tzinfo=UTC), 3),   # spring forward: 02:30 does not exist on 29 March
    (datetime(2026, 10, 24, tzinfo=UTC), 3),  # fall back: 02:30 happens twice on 25 October
])
def test_a_daily_run_happens_once_a_day_across_daylight_saving_changes(
        stores: Callable[[], HistoryStore], days: tuple[datetime, int]) -> None:
    start, count = days
    runs = Runs()
    s = make(stores(), runs, schedule={"daily": "30 2 * * *"})
    t = start
    while t < start + timedelta(days=count):
        s.tick(t)
        t += timedelta(minutes=5)
    dues = [d for _, d in runs.dues()]
    assert len(dues) == len(set(dues))
    local_days = [d.astimezone(s.zone).date() for d in dues]
    # The first tick runs the day before's (within one period); then one per day.
    assert local_days == sorted(set(local_days))
    assert len(dues) == count + 1
