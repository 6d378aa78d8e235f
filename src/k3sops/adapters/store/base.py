"""The history store's interface, its records and what both backends share.

A :class:`HistoryStore` keeps what k3sops learns over time: check runs (with the findings
carried over from rules that could not be evaluated), acknowledgements of manual steps,
restore drills and, for `k3sops serve`, enriched alerts, remediations and the claims that make
a scheduled run happen once across replicas. Two backends implement it with the same
behaviour (one test suite runs against both): SQLite (:mod:`.sqlite`, the CLI's embedded
default) and PostgreSQL (:mod:`.postgres`, shared by the service's replicas).

Every method is one transaction and is safe to call from several threads of one process
(each store serialises its own calls) and from several processes or replicas at once (the
database arbitrates: unique keys for idempotent records, locks for counted ones).
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.domain.findings import (
    CheckReport,
    Finding,
    ManualItem,
    NotEvaluated,
    Period,
    Source,
    Summary,
)
from k3sops.timeparse import parse_rfc3339

DRILL_WINDOW = timedelta(days=90)
"""How far back :meth:`HistoryStore.facts` reports restore drills."""

AlertState = Literal["firing", "resolved"]
RemediationMode = Literal["reserved", "applied", "dry-run", "refused", "failed"]
"""``reserved``: a slot of the rate taken, the plan being applied (until
:meth:`HistoryStore.finish_remediation` records how it ended: ``applied``, ``failed`` or
``refused``; a row left ``reserved`` means its replica stopped mid-apply)."""
FinalMode = Literal["applied", "failed", "refused"]
ClaimStatus = Literal["claimed", "done", "interrupted"]


class TrendPoint(BaseModel):
    """One stored run, reduced to what the trend charts draw."""

    started_at: str
    period: Period
    environment: str | None
    total: int
    critical: int
    warning: int
    info: int
    health_score: int
    cpu: float | None = None
    memory: float | None = None
    disk: float | None = None


class StoredRun(BaseModel):
    """A run read back from the history."""

    id: int
    started_at: str
    period: Period
    environment: str | None
    summary: Summary
    findings: list[Finding]
    resolved: list[Finding] = []
    carried: list[Finding] = []
    """Findings of rules not evaluated in this run, kept for the next comparison."""
    sources: list[Source] = []
    """Where the run read from (empty for runs stored before schema v3/v2)."""
    manual: list[ManualItem] = []
    not_evaluated: list[NotEvaluated] = []

    def report(self) -> CheckReport:
        """The run as the report it was (what `k3sops serve` answers after a restart)."""
        return CheckReport(summary=self.summary, findings=self.findings, sources=self.sources,
                           resolved=self.resolved, manual=self.manual,
                           not_evaluated=self.not_evaluated)


class AlertRecord(BaseModel):
    """An alert the service received from Alertmanager, with what it added to it.

    An alert is identified by Alertmanager's ``fingerprint`` (a hash of its labels) and its
    ``startsAt``: Alertmanager repeats a firing alert on every group interval with the same
    pair, and a new firing of the same labels gets a new ``startsAt``.
    """

    fingerprint: str
    starts_at: datetime
    """Aware; stored in UTC to the microsecond."""
    alertname: str
    status: AlertState = "firing"
    ends_at: datetime | None = None
    received_at: datetime
    labels: dict[str, str] = Field(default_factory=dict)
    enriched: dict[str, Any] = Field(default_factory=dict)
    """The service's enriched alert (object, diagnosis, runbook, forwarding) as JSON."""
    id: int | None = None
    """Set when read back."""


class RemediationRecord(BaseModel):
    """One remediation decided by a policy: applied, only planned (dry-run), refused, failed.

    A remediation that was applied (or attempted) is one row: reserved under the rate, then
    finished with its outcome; the rate counts it whatever the outcome.
    """

    policy_id: str
    trigger: str
    """What fired it: ``alert:NAME`` or ``check:ID``."""
    target: str
    """The object acted on, e.g. ``Pod production/web-0``."""
    plan: str
    mode: RemediationMode
    at: datetime
    detail: str | None = None
    id: int | None = None


class ScheduleClaim(BaseModel):
    """The claim of one scheduled run: the replica that inserted it runs it."""

    period: Period
    due_at: datetime
    owner: str
    claimed_at: datetime
    status: ClaimStatus = "claimed"
    run_id: int | None = None
    finished_at: datetime | None = None


def utc(at: datetime) -> datetime:
    """Aware UTC time; a naive datetime is taken as UTC (callers pass aware ones)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def parse_time(text: str) -> datetime:
    """A stored RFC 3339 time as an aware UTC datetime (the one parser: k3sops.timeparse)."""
    return utc(parse_rfc3339(text))


def iso_seconds(at: datetime) -> str:
    """UTC ISO-8601 to the second: how acknowledgements and drills are shown."""
    return utc(at).isoformat(timespec="seconds")


def period_start(period: str, now: datetime) -> datetime:
    """Start of the calendar day, ISO week (Monday) or month containing ``now`` (its zone)."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    return day


def dump_findings(findings: Iterable[Finding]) -> str:
    """Findings as one JSON array (the stored form)."""
    return json.dumps([f.model_dump(mode="json") for f in findings])


def run_details(report: CheckReport) -> str:
    """The parts of a report not stored in their own columns, as one JSON object."""
    return json.dumps({"sources": [s.model_dump(mode="json") for s in report.sources],
                       "manual": [m.model_dump(mode="json") for m in report.manual],
                       "not_evaluated": [n.model_dump(mode="json")
                                         for n in report.not_evaluated]})


def stored_run(rid: int, started_at: str, period: str, environment: str | None,
               summary: Any, findings: Any, resolved: Any, carried: Any,
               details: Any) -> StoredRun:
    """A run from its columns; JSON columns as text (SQLite) or already parsed (PostgreSQL)."""

    def load(value: Any, empty: Any) -> Any:
        if value is None:
            return empty
        return json.loads(value) if isinstance(value, str | bytes) else value

    extra = load(details, {})
    return StoredRun.model_validate({
        "id": rid, "started_at": started_at, "period": period, "environment": environment,
        "summary": load(summary, {}), "findings": load(findings, []),
        "resolved": load(resolved, []), "carried": load(carried, []),
        "sources": extra.get("sources", []), "manual": extra.get("manual", []),
        "not_evaluated": extra.get("not_evaluated", [])})


def trend_point(summary: Summary) -> TrendPoint:
    """A run's summary as a chart point."""
    return TrendPoint(
        started_at=summary.started_at, period=summary.period, environment=summary.environment,
        total=summary.total, critical=summary.critical, warning=summary.warning,
        info=summary.info, health_score=summary.health_score, cpu=summary.usage.get("cpu"),
        memory=summary.usage.get("memory"), disk=summary.usage.get("disk"))


def current_acks(latest: Sequence[tuple[str, str, str, datetime, str | None]],
                 now: datetime) -> dict[str, dict[str, str]]:
    """Fold each item's latest acknowledgement ``(item, period, by, at, note)`` against now.

    An acknowledgement holds for the calendar period it was given in, counted in the time
    zone of ``now``: a daily item acknowledged yesterday is open again today, a weekly one on
    Monday, a monthly one on the 1st.
    """
    out: dict[str, dict[str, str]] = {}
    for item_id, period, by, at, note in latest:
        if utc(at).astimezone(now.tzinfo) < period_start(period, now):
            continue
        ack = {"by": by, "at": iso_seconds(at)}
        if note:
            ack["note"] = note
        out[item_id] = ack
    return out


def local_now(now: datetime | None) -> datetime:
    """``now`` if aware, else the machine's local time (acknowledgement periods are local)."""
    if now is not None and now.tzinfo is not None:
        return now
    return (now or datetime.now()).astimezone()


class StoredSession(BaseModel):
    """A logged-in console session as the store keeps it (never its id: only a digest)."""

    user: str
    """The reviewed user, as JSON (name, uid, groups, extra)."""
    created_at: datetime
    seen_at: datetime


class HistoryStore(ABC):
    """Runs, acknowledgements, drills, alerts, remediations, claims and console sessions.

    Open one with :func:`k3sops.adapters.store.open_store` (or a backend's ``open``); close it
    with :meth:`close` or a ``with`` block. Errors are :class:`HistoryError`, naming the
    database (never a password) and what to do.
    """

    location: str
    """The database as it may be shown: a file path, or a URL without password."""
    backend: Literal["sqlite", "postgresql"]
    schema_version: int
    """The schema version this store migrated the database to."""

    def __init__(self) -> None:
        # One connection per store: calls from several threads take turns.
        self._lock = threading.RLock()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _serial(self) -> Iterator[None]:
        with self._lock:
            yield

    @abstractmethod
    def close(self) -> None:
        """Close the connection (idempotent)."""

    # -- runs ------------------------------------------------------------------------------

    @abstractmethod
    def record(self, report: CheckReport, carried: Iterable[Finding] = ()) -> int:
        """Store a run in one transaction; return its id.

        ``carried``: earlier findings of rules that could not be evaluated in this run.
        """

    @abstractmethod
    def last_run(self, period: Period, environment: str | None) -> StoredRun | None:
        """The newest run of ``period`` for ``environment`` (None: the all-environments run).

        Newest by ``started_at``, then by id: a run recorded late does not hide a later one.
        """

    @abstractmethod
    def runs(self, limit: int = 20, period: Period | None = None) -> list[StoredRun]:
        """The newest ``limit`` runs (of ``period`` if given), newest first."""

    @abstractmethod
    def run(self, run_id: int) -> StoredRun | None:
        """The run with this id."""

    @abstractmethod
    def trend(self, limit: int = 90) -> list[TrendPoint]:
        """The newest ``limit`` runs as chart points, oldest first."""

    # -- acknowledgements ------------------------------------------------------------------

    @abstractmethod
    def ack(self, item_id: str, period: str, by: str, note: str | None,
            at: datetime) -> None:
        """Record that ``by`` did manual step ``item_id`` (of ``period``) at ``at``."""

    @abstractmethod
    def acks(self, now: datetime | None = None) -> dict[str, dict[str, str]]:
        """The current acknowledgement of each manual item: ``{id: {"by", "at", "note"}}``.

        Only the latest acknowledgement of an item counts, and only within the calendar period
        it was given in, in the time zone of ``now`` (default: the machine's).
        """

    # -- restore drills --------------------------------------------------------------------

    @abstractmethod
    def record_restore_drill(self, kind: str, target: str, ok: bool, at: datetime,
                             seconds: float | None) -> None:
        """Record a restore drill (``kind`` e.g. etcd|volume|postgres, what was restored)."""

    @abstractmethod
    def facts(self, now: datetime | None = None) -> dict[str, Any]:
        """Facts for the checks: ``{"restore_drills": [...]}`` of the last 90 days, oldest first."""

    # -- alerts (k3sops serve) -------------------------------------------------------------

    @abstractmethod
    def record_alert(self, alert: AlertRecord) -> bool:
        """Store an alert once per (fingerprint, starts_at); False: already stored (a repeat)."""

    @abstractmethod
    def resolve_alert(self, fingerprint: str, starts_at: datetime, ended_at: datetime) -> bool:
        """Close a firing alert; False when it is unknown or already resolved."""

    @abstractmethod
    def alert(self, fingerprint: str, starts_at: datetime) -> AlertRecord | None:
        """The alert stored for (fingerprint, starts_at)."""

    @abstractmethod
    def alerts(self, state: AlertState | None = None, limit: int = 100) -> list[AlertRecord]:
        """The newest ``limit`` alerts (in ``state`` if given), newest ``starts_at`` first."""

    # -- remediations (k3sops serve) -------------------------------------------------------

    @abstractmethod
    def record_remediation(self, rec: RemediationRecord) -> int:
        """Store a remediation record; return its id."""

    @abstractmethod
    def remediation_count(self, policy_id: str, since: datetime,
                          modes: Sequence[RemediationMode] = ("applied",)) -> int:
        """How many remediations of ``policy_id`` in ``modes`` happened at or after ``since``."""

    @abstractmethod
    def reserve_remediation(self, rec: RemediationRecord, limit: int,
                            since: datetime) -> int | None:
        """Store ``rec`` as a reservation unless its policy's rate is used up; its id, or None.

        The rate: fewer than ``limit`` reservations (whatever became of them: applied, failed
        or refused after reserving) and ``applied`` records of the policy since ``since``.
        Count and insert are one step under a lock, so two replicas (or a leader and the one
        taking over) cannot both take the last slot.
        """

    @abstractmethod
    def finish_remediation(self, rid: int, mode: FinalMode, detail: str | None) -> bool:
        """Record how reservation ``rid`` ended: its mode and detail, in the same row.

        False (nothing changed) when ``rid`` is not a reservation still ``reserved``: a
        reservation is finished once. It keeps counting against the rate.
        """

    @abstractmethod
    def remediations(self, limit: int = 100,
                     policy_id: str | None = None) -> list[RemediationRecord]:
        """The newest ``limit`` remediation records (of ``policy_id`` if given), newest first."""

    # -- scheduled runs (k3sops serve) -----------------------------------------------------

    @abstractmethod
    def schedule_claim(self, period: Period, due_at: datetime, owner: str = "",
                       now: datetime | None = None,
                       stale_after: timedelta | None = None) -> bool:
        """Claim the scheduled run of ``period`` due at ``due_at``; True: this caller runs it.

        The first insert of (period, due_at) wins; every other caller gets False. A claim
        recorded as ``interrupted`` (its owner stopped before finishing) can be claimed again,
        and so can one still ``claimed`` after ``stale_after`` (its owner died).
        """

    @abstractmethod
    def schedule_finish(self, period: Period, due_at: datetime,
                        status: Literal["done", "interrupted"], run_id: int | None = None,
                        now: datetime | None = None) -> None:
        """Record how a claimed run ended (``run_id``: the run it stored)."""

    @abstractmethod
    def schedule_claims(self, limit: int = 100,
                        period: Period | None = None) -> list[ScheduleClaim]:
        """The newest ``limit`` claims (of ``period`` if given), newest ``due_at`` first."""

    # -- console sessions (k3sops serve) ---------------------------------------------------

    @abstractmethod
    def session_put(self, key: str, user: str, at: datetime) -> None:
        """Store a logged-in session under ``key`` (a digest of its id), created and seen ``at``."""

    @abstractmethod
    def session_get(self, key: str) -> StoredSession | None:
        """The session stored under ``key``, expired or not (the caller judges its age)."""

    @abstractmethod
    def session_touch(self, key: str, at: datetime) -> None:
        """Record that the session under ``key`` was used at ``at``."""

    @abstractmethod
    def session_drop(self, key: str) -> None:
        """Forget the session under ``key`` (logout, expiry); nothing if it is unknown."""

    @abstractmethod
    def session_prune(self, seen_before: datetime, created_before: datetime) -> int:
        """Forget sessions unused since ``seen_before`` or created before ``created_before``.

        Returns:
            How many were forgotten.
        """
