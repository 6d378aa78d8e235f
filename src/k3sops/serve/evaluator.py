"""The report kept current from watch events: judged in the background, answered at once.

Judging 30,000 pods takes seconds; a request should not. The :class:`Evaluator` re-runs the
checklist (the same :meth:`Reports.run` the on-demand path runs: the cache's snapshot, the
Prometheus and Alertmanager queries, the CLI's engine, the comparison with the history) on
its own thread whenever the cache changed, and keeps the latest report per period with its
JSON already encoded. ``GET /api/v1/report`` answers that report and says how old it is.

* Bursts coalesce: changes that arrive while a run is in progress are all judged by the next
  run, so under any churn the evaluator runs back to back, never queues.
* Without changes it still re-runs every ``refresh_seconds``: metrics, alerts, the history
  (a scheduled run recorded meanwhile) and the clock (certificate expiry, ages) move too.
* A request may ask for a *fresh* report (:meth:`Evaluator.fresh`): it waits for a run that
  started after the request arrived.
* Staleness (a change to its finding in the answer) is the wait for the run in progress plus
  one run; ``bench/serve_staleness.py`` measures it under churn.

Each replica (leader or follower) keeps its own: every replica has its own cache, and the
reports are not recorded (only the scheduler's runs are).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from k3sops.domain.findings import CheckReport, Period

if TYPE_CHECKING:
    from k3sops.serve.api import Reports

log = logging.getLogger("k3sops.serve.evaluator")

REFRESH_SECONDS = 30.0
"""Re-run at least this often without any change (metrics, alerts, history, the clock)."""


@dataclass(frozen=True)
class Evaluated:
    """One background run of a period's checklist."""

    period: Period
    report: CheckReport
    body: bytes
    """The report as JSON (what ``/api/v1/report`` answers), encoded once per run."""
    generation: int
    """The cache's generation before the snapshot: every change up to it is judged here."""
    started: float
    """Monotonic seconds when the run started (before the snapshot was taken)."""
    as_of: datetime
    """Wall time the run started: the report judges the cluster as of (at least) then."""
    seconds: float
    """How long the run took."""
    in_sync: bool = True
    """The cache was in sync from the run's start to its end. A report judged otherwise (the
    API server went away during the run) is not answered once the cache is back in sync."""


def encode(report: CheckReport) -> bytes:
    """The report's JSON, as ``/api/v1/report`` answers it."""
    return report.model_dump_json().encode()


class Evaluator:
    """Keeps the latest report of each tracked period current; one background thread.

    Args:
        reports: what judges a checklist on the cache (:class:`k3sops.serve.api.Reports`).
        generation: the cache's change counter (:attr:`WatchCache.generation`); the cache
            calls :meth:`poke` on each change (:meth:`WatchCache.on_generation`).
        periods: the periods kept current from the start (others join when first asked).
        refresh_seconds: the longest time between two runs without changes.
        ready: whether the cache is in sync; until it is, only a waiting request starts a
            run (judging a half-listed cache over and over would only slow the sync down).
        clock: monotonic seconds.
        wall: wall time, timezone-aware (the ``as_of`` of a run).
    """

    def __init__(self, reports: Reports, generation: Callable[[], int], *,
                 periods: Iterable[Period] = ("daily",),
                 refresh_seconds: float = REFRESH_SECONDS,
                 ready: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] | None = None) -> None:
        self._reports = reports
        self._generation = generation
        self._refresh = refresh_seconds
        self._ready = ready
        self._clock = clock
        self._wall = wall or (lambda: datetime.now().astimezone())
        self._cond = threading.Condition()
        self._periods: list[Period] = list(dict.fromkeys(periods))
        self._latest: dict[str, Evaluated] = {}
        self._forced = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        """Background runs completed (each judges every tracked period)."""

    # -----------------------------------------------------------------------------------------
    # Lifecycle

    def start(self) -> None:
        """Start the background thread; returns at once."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="evaluator")
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (a run in progress finishes first, within ``timeout``)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        """The background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def poke(self) -> None:
        """The cache changed: wake the thread (a run in progress is followed by another)."""
        with self._cond:
            self._cond.notify_all()

    # -----------------------------------------------------------------------------------------
    # Answers

    def latest(self, period: Period) -> Evaluated | None:
        """The newest run of ``period`` (None: not judged yet)."""
        with self._cond:
            return self._latest.get(period)

    def age(self, evaluated: Evaluated) -> float:
        """Seconds since ``evaluated`` started (what ``Age`` says)."""
        return max(0.0, self._clock() - evaluated.started)

    def track(self, period: Period) -> None:
        """Keep ``period`` current from now on (the next run judges it)."""
        with self._cond:
            if period not in self._periods:
                self._periods.append(period)
                self._forced = True
                self._cond.notify_all()

    def wait(self, period: Period, timeout: float, *, after: float | None = None,
             ) -> Evaluated | None:
        """A run of ``period`` that started at or after ``after`` (monotonic; None: any).

        Tracks ``period`` and, when the newest run is older than ``after``, asks for another.
        Without the background thread (not started, or stopped) the run happens here, on
        the caller's thread. None when none came within ``timeout`` seconds.
        """
        self.track(period)
        if not self.running:
            return self._run_one(period)
        deadline = self._clock() + timeout

        def newer() -> bool:
            e = self._latest.get(period)
            return e is not None and (after is None or e.started >= after)

        with self._cond:
            if not newer():
                self._forced = True
                self._cond.notify_all()
            while not newer():
                left = deadline - self._clock()
                if left <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(left)
            return self._latest[period]

    def current(self, period: Period, timeout: float) -> Evaluated | None:
        """The latest run of ``period``, unless it is older than the cache's last re-sync.

        A run judged while the cache was out of sync (kinds named unreadable in the report)
        stays the answer while the cache is out of sync; once it is back, the request waits
        for the run the re-sync started.
        """
        got = self.latest(period)
        if got is not None and (got.in_sync or not self._ready()):
            return got
        return self.wait(period, timeout, after=None if got is None else got.started + 1e-9)

    def fresh(self, period: Period, timeout: float) -> Evaluated | None:
        """A run of ``period`` that started after this call: every change until now judged."""
        return self.wait(period, timeout, after=self._clock())

    # -----------------------------------------------------------------------------------------
    # The thread

    def _loop(self) -> None:
        done = -1
        last_run = float("-inf")
        while not self._stop.is_set():
            with self._cond:
                while not self._stop.is_set():
                    due = last_run + self._refresh
                    if self._forced or (self._ready() and (
                            self._generation() != done or self._clock() >= due)):
                        break
                    # not ready: look again at least every second (the sync ends with no poke)
                    wait = due - self._clock() if self._ready() else 1.0
                    self._cond.wait(max(0.0, min(wait, self._refresh)))
                self._forced = False
                periods = list(self._periods)
            if self._stop.is_set():
                return
            done = self._generation()  # read before the snapshot: later changes re-run
            last_run = self._clock()
            for period in periods:
                try:
                    self._run_one(period, done)
                except Exception:  # a failing run must not end the thread; the next may pass
                    if self._stop.is_set():
                        return  # the store or client closed under a run while stopping
                    log.exception("background check of %s failed", period)
            self.runs += 1

    def _run_one(self, period: Period, generation: int | None = None) -> Evaluated:
        gen = self._generation() if generation is None else generation
        started = self._clock()
        as_of = self._wall()
        synced = self._ready()
        report = self._reports.run(period)
        done = Evaluated(period=period, report=report, body=encode(report), generation=gen,
                         started=started, as_of=as_of, seconds=self._clock() - started,
                         in_sync=synced and self._ready())
        with self._cond:
            current = self._latest.get(period)
            if current is None or current.started <= done.started:
                self._latest[period] = done
            self._cond.notify_all()
        return done
