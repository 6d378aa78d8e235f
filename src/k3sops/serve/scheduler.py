"""Scheduled daily/weekly/monthly runs of `k3sops serve`: due times from cron, once per cluster.

The due times come from platform.yaml's cron expressions read by the CronJob controller's
evaluator (:mod:`k3sops.domain.checks.cron`) in the configured time zone (``zoneinfo``): a
wall time that a spring-forward skips runs an hour later in that night's new offset, one that
a fall-back repeats runs once (at its first pass). Each :meth:`Scheduler.tick`, for each
period, the latest due time at or before now is the candidate; it is run when

- this replica leads (``is_leader()``; a follower does nothing, so that it can run what is due
  the moment it takes over),
- it lies within one period of now (a replica starting, or taking over after a failover,
  still runs the run the dead leader missed, but not last month's daily runs), and
- the store's claim of ``(period, due_at)`` succeeds: the claim is a unique row in the shared
  store, so across replicas (and restarts) a due time runs exactly once.

Due times that passed while nobody ran (a gap longer than the schedule's interval) are
coalesced into the latest one, as the CronJob controller starts only the most recent missed
job: a week-old daily check is of no use to anyone.

``run(period, due_at)`` returns the id of the run it stored (or None); the claim is then
finished as ``done``. A run that raises is finished as ``interrupted`` (a later leader may
claim it again) and is not retried by this replica.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from k3sops.adapters.store.base import HistoryStore
from k3sops.domain.checks import cron
from k3sops.domain.findings import Period
from k3sops.errors import AdapterError, ConfigError

log = logging.getLogger(__name__)

WINDOW: dict[Period, timedelta] = {"daily": timedelta(days=1), "weekly": timedelta(days=7),
                                   "monthly": timedelta(days=31)}
"""How old a missed due time may be and still be run (one period)."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Where ``@every`` intervals are counted from: the same due times on every replica."""
TICK_SECONDS = 1.0
"""How often the background thread ticks (a claim is one short transaction)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(f"serve.schedule.timezone: unknown time zone {name!r}",
                          hint="use an IANA name such as Europe/Berlin or UTC") from e


def _parse(period: str, expr: str) -> cron.Schedule:
    try:
        return cron.parse(expr)
    except cron.CronError as e:
        raise ConfigError(f"serve.schedule.{period}: {expr!r} is not a cron schedule: {e}",
                          hint='five fields (minute hour day month weekday), e.g. '
                               '"0 7 * * *", or @daily/@weekly/@monthly') from e


class Scheduler:
    """Runs the due scheduled checks on the leader, each due time once across replicas.

    Args:
        schedule: cron expression per period (periods left out are not scheduled).
        timezone: IANA zone the expressions are read in (empty: UTC).
        store: the history store shared by the replicas (its claims arbitrate).
        run: runs one check ``(period, due_at)``; returns the stored run's id or None.
        is_leader: whether this replica may schedule now.
        owner: this replica's name, recorded with its claims.
        clock: the current time (aware datetime).
        interval: seconds between the background thread's ticks.
        stale_after: a claim still ``claimed`` after this long (its owner died mid-run) may
            be claimed again; None (the default): never, a claimed run is never run twice.

    Raises:
        ConfigError: a cron expression or the time zone cannot be read.
    """

    def __init__(self, schedule: Mapping[Period, str], timezone: str, store: HistoryStore,
                 run: Callable[[Period, datetime], int | None], is_leader: Callable[[], bool],
                 owner: str, *, clock: Callable[[], datetime] = _utcnow,
                 interval: float = TICK_SECONDS, stale_after: timedelta | None = None) -> None:
        self.zone = _zone(timezone)
        self.schedules: dict[Period, cron.Schedule] = {
            p: _parse(p, expr) for p, expr in schedule.items() if expr}
        self.store = store
        self._run = run
        self._is_leader = is_leader
        self.owner = owner
        self._clock = clock
        self.interval = interval
        self.stale_after = stale_after
        # The due time this replica last tried per period (claimed, lost or failed): not
        # tried again, so a lost claim costs one insert, not one per tick.
        self._tried: dict[Period, datetime] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def due(self, period: Period, now: datetime) -> datetime | None:
        """The latest due time of ``period`` at or before ``now`` within one period, or None."""
        sched = self.schedules.get(period)
        if sched is None:
            return None
        # fold=0: in the hour a fall-back repeats, read the clock as its first pass. The
        # evaluator builds due times with now's fold, so the second pass would otherwise
        # turn "02:30" into a second, later due time of the same day.
        local = now.astimezone(self.zone).replace(fold=0)
        fired = cron.previous_runs(sched, local, count=1, since=EPOCH.astimezone(self.zone))
        if not fired:
            return None
        due_at = fired[0].astimezone(UTC)
        return due_at if now - due_at < WINDOW[period] else None

    def tick(self, now: datetime) -> list[tuple[Period, datetime]]:
        """Run what is due at ``now`` and this replica claims; return what it ran."""
        ran: list[tuple[Period, datetime]] = []
        for period in self.schedules:
            due_at = self.due(period, now)
            if due_at is None or self._tried.get(period) == due_at:
                continue
            # Asked per period: leadership lost during a long run stops the next one.
            if not self._is_leader():
                break
            try:
                claimed = self.store.schedule_claim(period, due_at, self.owner, now=now,
                                                    stale_after=self.stale_after)
            except AdapterError as e:
                log.warning("scheduled %s run due %s: could not claim it: %s", period,
                            due_at.isoformat(), e)
                continue  # the store is down: try again next tick
            if self.stale_after is None or claimed:
                self._tried[period] = due_at
            if not claimed:
                continue  # another replica has it (or had it)
            self._execute(period, due_at)
            ran.append((period, due_at))
        return ran

    def _execute(self, period: Period, due_at: datetime) -> None:
        log.info("scheduled %s run due %s: starting (owner %s)", period, due_at.isoformat(),
                 self.owner)
        try:
            run_id = self._run(period, due_at)
        except Exception:  # any failure of the run is recorded, and the scheduler goes on
            log.exception("scheduled %s run due %s failed", period, due_at.isoformat())
            self._finish(period, due_at, "interrupted", None)
            return
        self._finish(period, due_at, "done", run_id)

    def _finish(self, period: Period, due_at: datetime, status: Literal["done", "interrupted"],
                run_id: int | None) -> None:
        try:
            self.store.schedule_finish(period, due_at, status, run_id, now=self._clock())
        except AdapterError as e:
            log.warning("scheduled %s run due %s: could not record its end: %s", period,
                        due_at.isoformat(), e)

    # -- background thread -------------------------------------------------------------------

    def start(self) -> None:
        """Tick every ``interval`` seconds in a daemon thread; returns at once."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking; a run in progress finishes (and is recorded) before this returns."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick(self._clock())
            except Exception:  # the thread must outlive one bad tick
                log.exception("scheduler tick failed")
            self._stopping.wait(self.interval)
