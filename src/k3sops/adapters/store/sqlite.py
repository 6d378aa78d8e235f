"""The SQLite history store: one file (``k3sops.db``) in the user's state directory.

The CLI's embedded default. The file is opened in WAL mode with a busy timeout so that two
processes at the same time (a cron job and a person, or two threads of the service) both
succeed; every write is one ``BEGIN IMMEDIATE`` transaction, so a record is stored whole or not
at all and a counted write (a remediation under its rate) sees every earlier one. The schema is
versioned with ``PRAGMA user_version`` and migrated on open, openers taking turns on an flock.

    runs            id, started_at (ISO), started_ts (epoch, for ordering), period,
                    environment, summary, findings, resolved (JSON), carried (JSON, v2:
                    findings of rules not evaluated in this run), details (JSON, v3: sources,
                    manual items, not-evaluated rules)
    acks            id, item_id, period, by, at (ISO), at_ts, note
    restore_drills  id, at (ISO), at_ts, kind, target, ok, seconds
    alerts          (v3) id, fingerprint, starts_at (UTC ISO to the µs), unique together;
                    starts_ts, alertname, status, ends_at, received_at, labels, enriched (JSON)
    remediations    (v3) id, policy_id, trigger, target, plan, mode, at, at_ts, detail;
                    (v4) reserved: the row took a slot of its policy's rate (a reservation,
                    finished in place, or a record stored ``applied``)
    schedule_claims (v3) period, due_at (UTC ISO), primary key together; due_ts, owner,
                    claimed_at, claimed_ts, status, run_id, finished_at

sqlite3 errors never leave this module: they become :class:`HistoryError` naming the file and
what to do.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from k3sops.adapters.store.base import (
    DRILL_WINDOW,
    AlertRecord,
    AlertState,
    FinalMode,
    HistoryStore,
    RemediationMode,
    RemediationRecord,
    ScheduleClaim,
    StoredRun,
    StoredSession,
    TrendPoint,
    current_acks,
    dump_findings,
    iso_seconds,
    local_now,
    parse_time,
    run_details,
    stored_run,
    trend_point,
    utc,
)
from k3sops.domain.findings import CheckReport, Finding, Period, Summary
from k3sops.errors import HistoryError

DB_NAME = "k3sops.db"
SCHEMA_VERSION = 5
BUSY_TIMEOUT_SECONDS = 30.0
"""How long a writer waits for another one; a record is written in milliseconds."""

_SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at TEXT NOT NULL,
        started_ts REAL NOT NULL,
        period TEXT NOT NULL,
        environment TEXT,
        summary TEXT NOT NULL,
        findings TEXT NOT NULL,
        resolved TEXT NOT NULL DEFAULT '[]')""",
    "CREATE INDEX IF NOT EXISTS runs_by_period ON runs (period, environment, started_ts)",
    "CREATE INDEX IF NOT EXISTS runs_by_time ON runs (started_ts)",
    """CREATE TABLE IF NOT EXISTS acks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        item_id TEXT NOT NULL,
        period TEXT NOT NULL,
        by TEXT NOT NULL,
        at TEXT NOT NULL,
        at_ts REAL NOT NULL,
        note TEXT)""",
    "CREATE INDEX IF NOT EXISTS acks_by_item ON acks (item_id, at_ts)",
    """CREATE TABLE IF NOT EXISTS restore_drills (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        at_ts REAL NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        ok INTEGER NOT NULL,
        seconds REAL)""",
    "CREATE INDEX IF NOT EXISTS drills_by_time ON restore_drills (at_ts)",
)
_SCHEMA_V2 = ("ALTER TABLE runs ADD COLUMN carried TEXT NOT NULL DEFAULT '[]'",)
_SCHEMA_V3 = (
    "ALTER TABLE runs ADD COLUMN details TEXT NOT NULL DEFAULT '{}'",
    """CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        fingerprint TEXT NOT NULL,
        starts_at TEXT NOT NULL,
        starts_ts REAL NOT NULL,
        alertname TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
        ends_at TEXT,
        received_at TEXT NOT NULL,
        labels TEXT NOT NULL,
        enriched TEXT NOT NULL,
        UNIQUE (fingerprint, starts_at))""",
    "CREATE INDEX alerts_by_status ON alerts (status, starts_ts)",
    "CREATE INDEX alerts_by_time ON alerts (starts_ts)",
    """CREATE TABLE remediations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        policy_id TEXT NOT NULL,
        trigger TEXT NOT NULL,
        target TEXT NOT NULL,
        plan TEXT NOT NULL,
        mode TEXT NOT NULL,
        at TEXT NOT NULL,
        at_ts REAL NOT NULL,
        detail TEXT)""",
    "CREATE INDEX remediations_by_policy ON remediations (policy_id, mode, at_ts)",
    """CREATE TABLE schedule_claims (
        period TEXT NOT NULL,
        due_at TEXT NOT NULL,
        due_ts REAL NOT NULL,
        owner TEXT NOT NULL,
        claimed_at TEXT NOT NULL,
        claimed_ts REAL NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('claimed', 'done', 'interrupted')),
        run_id INTEGER,
        finished_at TEXT,
        PRIMARY KEY (period, due_at))""",
    "CREATE INDEX claims_by_due ON schedule_claims (due_ts)",
)
_SCHEMA_V4 = (
    "ALTER TABLE remediations ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0",
    # Up to v3 the rate counted rows stored "applied", and every reservation was one.
    "UPDATE remediations SET reserved = 1 WHERE mode = 'applied'",
    # v3 recorded a failed reservation as a second row "reservation #ID: why": fold it into
    # the reservation's own row, so each attempt is one row (as finish_remediation keeps it).
    """UPDATE remediations SET mode = 'failed', detail = (
        SELECT substr(f.detail, length('reservation #' || remediations.id || ': ') + 1)
        FROM remediations f WHERE f.mode = 'failed' AND f.reserved = 0
        AND f.policy_id = remediations.policy_id
        AND f.detail LIKE 'reservation #' || remediations.id || ': %' ORDER BY f.id LIMIT 1)
    WHERE reserved = 1 AND EXISTS (
        SELECT 1 FROM remediations f WHERE f.mode = 'failed' AND f.reserved = 0
        AND f.policy_id = remediations.policy_id
        AND f.detail LIKE 'reservation #' || remediations.id || ': %')""",
    """DELETE FROM remediations WHERE mode = 'failed' AND reserved = 0 AND EXISTS (
        SELECT 1 FROM remediations r WHERE r.reserved = 1 AND r.policy_id =
        remediations.policy_id AND remediations.detail LIKE 'reservation #' || r.id || ': %')""",
    "CREATE INDEX remediations_reserved ON remediations (policy_id, reserved, at_ts)",
)
_SCHEMA_V5 = (
    # The console's logged-in sessions, shared by every replica using this store. The key is a
    # SHA-256 of the session id: a copy of the database gives no live cookie.
    """CREATE TABLE console_sessions (
        key TEXT PRIMARY KEY, user TEXT NOT NULL, created_at TEXT NOT NULL,
        created_ts REAL NOT NULL, seen_at TEXT NOT NULL, seen_ts REAL NOT NULL)""",
    "CREATE INDEX console_sessions_seen ON console_sessions (seen_ts)",
)
MIGRATIONS: dict[int, tuple[str, ...]] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3,
                                          4: _SCHEMA_V4, 5: _SCHEMA_V5}
"""Statements that bring the schema from version ``n - 1`` to ``n``. Released versions are
never edited: a change is a new version."""

_RUN_COLUMNS = ("id, started_at, period, environment, summary, findings, resolved, carried, "
                "details")
_ALERT_COLUMNS = ("id, fingerprint, starts_at, alertname, status, ends_at, received_at, "
                  "labels, enriched")
_REMEDIATION_COLUMNS = "id, policy_id, trigger, target, plan, mode, at, detail"


def _key_time(at: datetime) -> str:
    """The stored form of a time that is part of a key: UTC ISO-8601 to the microsecond."""
    return utc(at).isoformat(timespec="microseconds")


def default_dir(env: Mapping[str, str], home: Path) -> Path:
    """K3SOPS_STATE_DIR, else $XDG_STATE_HOME/k3sops, else ~/.local/state/k3sops."""
    if env.get("K3SOPS_STATE_DIR"):
        return Path(env["K3SOPS_STATE_DIR"]).expanduser()
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]).expanduser() / "k3sops"
    return home / ".local" / "state" / "k3sops"


class SqliteStore(HistoryStore):
    """The SQLite history; open it with :meth:`open`, close it with :meth:`close`."""

    backend: Literal["sqlite", "postgresql"] = "sqlite"

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        super().__init__()
        self._conn = conn
        self.path = path
        self.location = str(path)
        self.schema_version = SCHEMA_VERSION

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path) -> SqliteStore:
        """Open (creating if needed) ``directory/k3sops.db`` and migrate its schema."""
        return cls.open_file(directory / DB_NAME)

    @classmethod
    def open_file(cls, path: Path, upto: int = SCHEMA_VERSION) -> SqliteStore:
        """Open (creating if needed) the database file ``path`` and migrate its schema.

        ``upto``: the version to migrate to (tests build older databases with it).

        Raises:
            HistoryError: the directory cannot be created, or the file is unwritable, corrupt,
                or was written by a newer k3sops.
        """
        directory = path.parent
        try:
            # 0700: the history names namespaces, workloads and who acknowledged what.
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                # Create the file 0600 ourselves; sqlite3 would use 0644 & umask.
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            lock_fd = os.open(directory / (path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise HistoryError(f"cannot create the check history at {path}: {e.strerror}",
                               location=str(path), path=path,
                               hint="check the permissions of the directory, or pass "
                                    "--state-dir DIR (or K3SOPS_STATE_DIR) to use another "
                                    "one") from e
        conn: sqlite3.Connection | None = None
        # Openers take turns (an flock on a side file): switching a new database to WAL while
        # another connection migrates it can deadlock both until the busy timeout.
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so a writer takes the
            # write lock up front and waits (busy timeout) instead of failing on upgrade.
            # check_same_thread=False: the service calls one store from several threads; the
            # store's own lock serialises them.
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            store = cls(conn, path)
            store._migrate(upto)
            return store
        except sqlite3.Error as e:
            if conn is not None:
                conn.close()
            raise _db_error(path, "open", e) from e
        except HistoryError:
            if conn is not None:
                conn.close()
            raise
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            os.close(lock_fd)

    def _migrate(self, upto: int) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"the check history at {self.path} has schema version {version}, newer than "
                f"this k3sops understands ({SCHEMA_VERSION})", location=self.location,
                path=self.path,
                hint="upgrade k3sops, or pass --state-dir DIR to keep a separate history")
        if version >= upto:
            return
        with self._write():
            # Re-read inside the lock: a concurrent opener may have migrated meanwhile.
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version + 1, upto + 1):
                for stmt in MIGRATIONS[target]:
                    self._conn.execute(stmt)
                self._conn.execute(f"PRAGMA user_version = {target}")

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._serial():
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction: all of it is stored, or (on any error) none of it."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        with self._serial():
            try:
                yield
            except sqlite3.Error as e:
                raise _db_error(self.path, what, e) from e
            except (ValidationError, ValueError) as e:
                raise HistoryError(
                    f"the check history at {self.path} holds a record k3sops cannot read "
                    f"({what}): {e}", location=self.location, path=self.path,
                    hint=f"move the file aside (mv {self.path} {self.path}.bad) to start a new "
                         "history") from e

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._conn.execute(sql, params).fetchall()

    # -- runs ------------------------------------------------------------------------------

    def record(self, report: CheckReport, carried: Iterable[Finding] = ()) -> int:
        """Store a run (summary, findings, resolved, carried, details); return its id."""
        s = report.summary
        with self._guard("record a run"):
            row = (s.started_at, parse_time(s.started_at).timestamp(), s.period,
                   s.environment, s.model_dump_json(), dump_findings(report.findings),
                   dump_findings(report.resolved), dump_findings(carried),
                   run_details(report))
            with self._write():
                cur = self._conn.execute(
                    "INSERT INTO runs (started_at, started_ts, period, environment, summary, "
                    "findings, resolved, carried, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row)
            # An INSERT into a rowid table always sets lastrowid.
            return int(cur.lastrowid or 0)

    def last_run(self, period: Period, environment: str | None) -> StoredRun | None:
        """The newest run of ``period`` for ``environment`` (None: the all-environments run)."""
        with self._guard("read the last run"):
            rows = self._rows(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE period = ? AND environment IS ? "  # noqa: S608  # constant column list
                "ORDER BY started_ts DESC, id DESC LIMIT 1", (period, environment))
            return stored_run(*rows[0]) if rows else None

    def runs(self, limit: int = 20, period: Period | None = None) -> list[StoredRun]:
        """The newest ``limit`` runs (of ``period`` if given), newest first."""
        with self._guard("list runs"):
            # "? IS NULL OR": one constant statement whether or not a period is asked for.
            rows = self._rows(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE (? IS NULL OR period = ?) "  # noqa: S608  # constant column list
                "ORDER BY started_ts DESC, id DESC LIMIT ?", (period, period, limit))
            return [stored_run(*r) for r in rows]

    def run(self, run_id: int) -> StoredRun | None:
        """The run with this id."""
        with self._guard("read a run"):
            rows = self._rows(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))  # noqa: S608  # constant column list
            return stored_run(*rows[0]) if rows else None

    def trend(self, limit: int = 90) -> list[TrendPoint]:
        """The newest ``limit`` runs as chart points, oldest first."""
        with self._guard("read the trend"):
            rows = self._rows("SELECT summary FROM runs ORDER BY started_ts DESC, id DESC "
                              "LIMIT ?", (limit,))
            return [trend_point(Summary.model_validate_json(text)) for (text,) in reversed(rows)]

    # -- acknowledgements ------------------------------------------------------------------

    def ack(self, item_id: str, period: str, by: str, note: str | None,
            at: datetime) -> None:
        """Record that ``by`` did manual step ``item_id`` (of ``period``) at ``at``."""
        with self._guard("record an acknowledgement"), self._write():
            self._conn.execute(
                "INSERT INTO acks (item_id, period, by, at, at_ts, note) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (item_id, period, by, iso_seconds(at), utc(at).timestamp(), note))

    def acks(self, now: datetime | None = None) -> dict[str, dict[str, str]]:
        """The current acknowledgement of each manual item (see :class:`HistoryStore`)."""
        now = local_now(now)
        with self._guard("read acknowledgements"):
            rows = self._rows(
                "SELECT item_id, period, by, at, note FROM acks a WHERE id = "
                "(SELECT id FROM acks b WHERE b.item_id = a.item_id "
                "ORDER BY at_ts DESC, id DESC LIMIT 1) ORDER BY id")
            return current_acks([(i, p, b, parse_time(at), n) for i, p, b, at, n in rows], now)

    # -- restore drills --------------------------------------------------------------------

    def record_restore_drill(self, kind: str, target: str, ok: bool, at: datetime,
                             seconds: float | None) -> None:
        """Record a restore drill (``kind`` e.g. etcd|volume|postgres, what was restored)."""
        with self._guard("record a restore drill"), self._write():
            self._conn.execute(
                "INSERT INTO restore_drills (at, at_ts, kind, target, ok, seconds) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (iso_seconds(at), utc(at).timestamp(), kind, target, int(ok), seconds))

    def facts(self, now: datetime | None = None) -> dict[str, Any]:
        """Facts for the checks: ``{"restore_drills": [...]}`` of the last 90 days, oldest first."""
        since = utc(now or datetime.now(UTC)) - DRILL_WINDOW
        with self._guard("read restore drills"):
            rows = self._rows(
                "SELECT at, kind, target, ok, seconds FROM restore_drills WHERE at_ts >= ? "
                "ORDER BY at_ts, id", (since.timestamp(),))
            return {"restore_drills": [
                {"at": at, "kind": kind, "target": target, "ok": bool(ok), "seconds": seconds}
                for at, kind, target, ok, seconds in rows]}

    # -- alerts ----------------------------------------------------------------------------

    def record_alert(self, alert: AlertRecord) -> bool:
        """Store an alert once per (fingerprint, starts_at); False: already stored."""
        with self._guard("record an alert"), self._write():
            cur = self._conn.execute(
                "INSERT INTO alerts (fingerprint, starts_at, starts_ts, alertname, status, "
                "ends_at, received_at, labels, enriched) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (fingerprint, starts_at) DO NOTHING",
                (alert.fingerprint, _key_time(alert.starts_at), utc(alert.starts_at).timestamp(),
                 alert.alertname, alert.status,
                 _key_time(alert.ends_at) if alert.ends_at else None,
                 _key_time(alert.received_at), json.dumps(alert.labels),
                 json.dumps(alert.enriched)))
            return cur.rowcount == 1

    def resolve_alert(self, fingerprint: str, starts_at: datetime, ended_at: datetime) -> bool:
        """Close a firing alert; False when it is unknown or already resolved."""
        with self._guard("resolve an alert"), self._write():
            cur = self._conn.execute(
                "UPDATE alerts SET status = 'resolved', ends_at = ? WHERE fingerprint = ? "
                "AND starts_at = ? AND status = 'firing'",
                (_key_time(ended_at), fingerprint, _key_time(starts_at)))
            return cur.rowcount == 1

    def alert(self, fingerprint: str, starts_at: datetime) -> AlertRecord | None:
        """The alert stored for (fingerprint, starts_at)."""
        with self._guard("read an alert"):
            rows = self._rows(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE fingerprint = ? "  # noqa: S608  # constant column list
                              "AND starts_at = ?", (fingerprint, _key_time(starts_at)))
            return _alert(rows[0]) if rows else None

    def alerts(self, state: AlertState | None = None, limit: int = 100) -> list[AlertRecord]:
        """The newest ``limit`` alerts (in ``state`` if given), newest ``starts_at`` first."""
        with self._guard("list alerts"):
            rows = self._rows(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE (? IS NULL OR status = ?) "  # noqa: S608  # constant column list
                "ORDER BY starts_ts DESC, id DESC LIMIT ?", (state, state, limit))
            return [_alert(r) for r in rows]

    # -- remediations ----------------------------------------------------------------------

    def _insert_remediation(self, rec: RemediationRecord, reserved: bool) -> int:
        cur = self._conn.execute(
            "INSERT INTO remediations (policy_id, trigger, target, plan, mode, at, at_ts, "
            "detail, reserved) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rec.policy_id, rec.trigger, rec.target, rec.plan, rec.mode, _key_time(rec.at),
             utc(rec.at).timestamp(), rec.detail, int(reserved)))
        return int(cur.lastrowid or 0)

    def _count(self, policy_id: str, since: datetime, modes: Sequence[str]) -> int:
        marks = ", ".join("?" * len(modes))
        row = self._conn.execute(
            f"SELECT count(*) FROM remediations WHERE policy_id = ? AND at_ts >= ? "  # noqa: S608  # placeholders only
            f"AND mode IN ({marks})", (policy_id, utc(since).timestamp(), *modes)).fetchone()
        return int(row[0])

    def _reserved(self, policy_id: str, since: datetime) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM remediations WHERE policy_id = ? AND reserved = 1 "
            "AND at_ts >= ?", (policy_id, utc(since).timestamp())).fetchone()
        return int(row[0])

    def record_remediation(self, rec: RemediationRecord) -> int:
        """Store a remediation record; return its id."""
        with self._guard("record a remediation"), self._write():
            return self._insert_remediation(rec, reserved=rec.mode == "applied")

    def remediation_count(self, policy_id: str, since: datetime,
                          modes: Sequence[RemediationMode] = ("applied",)) -> int:
        """How many remediations of ``policy_id`` in ``modes`` happened since ``since``."""
        with self._guard("count remediations"):
            return self._count(policy_id, since, modes) if modes else 0

    def reserve_remediation(self, rec: RemediationRecord, limit: int,
                            since: datetime) -> int | None:
        """Store ``rec`` if the policy's rate allows it (see :class:`HistoryStore`)."""
        # BEGIN IMMEDIATE holds the database's write lock from the count to the insert.
        with self._guard("reserve a remediation"), self._write():
            if self._reserved(rec.policy_id, since) >= limit:
                return None
            return self._insert_remediation(rec, reserved=True)

    def finish_remediation(self, rid: int, mode: FinalMode, detail: str | None) -> bool:
        """Record how reservation ``rid`` ended (see :class:`HistoryStore`)."""
        with self._guard("finish a remediation"), self._write():
            cur = self._conn.execute(
                "UPDATE remediations SET mode = ?, detail = ? WHERE id = ? AND reserved = 1 "
                "AND mode = 'reserved'", (mode, detail, rid))
            return cur.rowcount == 1

    def remediations(self, limit: int = 100,
                     policy_id: str | None = None) -> list[RemediationRecord]:
        """The newest ``limit`` remediation records (of ``policy_id`` if given)."""
        with self._guard("list remediations"):
            rows = self._rows(
                f"SELECT {_REMEDIATION_COLUMNS} FROM remediations "  # noqa: S608  # constant column list
                "WHERE (? IS NULL OR policy_id = ?) ORDER BY at_ts DESC, id DESC LIMIT ?",
                (policy_id, policy_id, limit))
            return [RemediationRecord(id=i, policy_id=p, trigger=tr, target=ta, plan=pl,
                                      mode=m, at=parse_time(at), detail=d)
                    for i, p, tr, ta, pl, m, at, d in rows]

    # -- scheduled runs --------------------------------------------------------------------

    def schedule_claim(self, period: Period, due_at: datetime, owner: str = "",
                       now: datetime | None = None,
                       stale_after: timedelta | None = None) -> bool:
        """Claim the scheduled run of ``period`` at ``due_at`` (see :class:`HistoryStore`)."""
        now = utc(now or datetime.now(UTC))
        # A claim older than this (still "claimed") is taken over; None: never.
        stale_ts = (now - stale_after).timestamp() if stale_after is not None else None
        with self._guard("claim a scheduled run"), self._write():
            cur = self._conn.execute(
                "INSERT INTO schedule_claims (period, due_at, due_ts, owner, claimed_at, "
                "claimed_ts, status) VALUES (?, ?, ?, ?, ?, ?, 'claimed') "
                "ON CONFLICT (period, due_at) DO UPDATE SET owner = excluded.owner, "
                "claimed_at = excluded.claimed_at, claimed_ts = excluded.claimed_ts, "
                "status = 'claimed', run_id = NULL, finished_at = NULL "
                "WHERE schedule_claims.status = 'interrupted' OR (schedule_claims.status = "
                "'claimed' AND ? IS NOT NULL AND schedule_claims.claimed_ts < ?)",
                (period, _key_time(due_at), utc(due_at).timestamp(), owner, _key_time(now),
                 now.timestamp(), stale_ts, stale_ts))
            return cur.rowcount == 1

    def schedule_finish(self, period: Period, due_at: datetime,
                        status: Literal["done", "interrupted"], run_id: int | None = None,
                        now: datetime | None = None) -> None:
        """Record how a claimed run ended (``run_id``: the run it stored)."""
        with self._guard("finish a scheduled run"), self._write():
            self._conn.execute(
                "UPDATE schedule_claims SET status = ?, run_id = ?, finished_at = ? "
                "WHERE period = ? AND due_at = ?",
                (status, run_id, _key_time(now or datetime.now(UTC)), period,
                 _key_time(due_at)))

    def schedule_claims(self, limit: int = 100,
                        period: Period | None = None) -> list[ScheduleClaim]:
        """The newest ``limit`` claims (of ``period`` if given), newest ``due_at`` first."""
        with self._guard("list scheduled runs"):
            rows = self._rows(
                "SELECT period, due_at, owner, claimed_at, status, run_id, finished_at "
                "FROM schedule_claims WHERE (? IS NULL OR period = ?) "
                "ORDER BY due_ts DESC LIMIT ?", (period, period, limit))
            return [ScheduleClaim(period=p, due_at=parse_time(d), owner=o,
                                  claimed_at=parse_time(c), status=s, run_id=r,
                                  finished_at=parse_time(f) if f else None)
                    for p, d, o, c, s, r, f in rows]


    # -- console sessions ------------------------------------------------------------------

    def session_put(self, key: str, user: str, at: datetime) -> None:
        """Store a logged-in session under ``key`` (a digest of its id)."""
        with self._guard("store a console session"), self._write():
            self._conn.execute(
                "INSERT OR REPLACE INTO console_sessions (key, user, created_at, created_ts, "
                "seen_at, seen_ts) VALUES (?, ?, ?, ?, ?, ?)",
                (key, user, _key_time(at), utc(at).timestamp(), _key_time(at),
                 utc(at).timestamp()))

    def session_get(self, key: str) -> StoredSession | None:
        """The session stored under ``key``, expired or not."""
        with self._guard("read a console session"):
            rows = self._rows("SELECT user, created_at, seen_at FROM console_sessions "
                              "WHERE key = ?", (key,))
            if not rows:
                return None
            user, created, seen = rows[0]
            return StoredSession(user=user, created_at=parse_time(created),
                                 seen_at=parse_time(seen))

    def session_touch(self, key: str, at: datetime) -> None:
        """Record that the session under ``key`` was used at ``at``."""
        with self._guard("record a console session's use"), self._write():
            self._conn.execute("UPDATE console_sessions SET seen_at = ?, seen_ts = ? "
                               "WHERE key = ?", (_key_time(at), utc(at).timestamp(), key))

    def session_drop(self, key: str) -> None:
        """Forget the session under ``key``."""
        with self._guard("drop a console session"), self._write():
            self._conn.execute("DELETE FROM console_sessions WHERE key = ?", (key,))

    def session_prune(self, seen_before: datetime, created_before: datetime) -> int:
        """Forget sessions unused since ``seen_before`` or created before ``created_before``."""
        with self._guard("prune console sessions"), self._write():
            cur = self._conn.execute(
                "DELETE FROM console_sessions WHERE seen_ts < ? OR created_ts < ?",
                (utc(seen_before).timestamp(), utc(created_before).timestamp()))
            return cur.rowcount

def _alert(row: tuple[Any, ...]) -> AlertRecord:
    rid, fp, starts, name, status, ends, received, labels, enriched = row
    return AlertRecord(id=rid, fingerprint=fp, starts_at=parse_time(starts), alertname=name,
                       status=status, ends_at=parse_time(ends) if ends else None,
                       received_at=parse_time(received), labels=json.loads(labels),
                       enriched=json.loads(enriched))


def _db_error(path: Path, what: str, e: sqlite3.Error) -> HistoryError:
    """Translate a sqlite3 error into a message that says what to do."""
    text = str(e)
    loc = str(path)
    if isinstance(e, sqlite3.DatabaseError) and ("not a database" in text
                                                 or "malformed" in text):
        return HistoryError(
            f"the check history at {path} is corrupt ({text})", location=loc, path=path,
            hint=f"move it aside (mv {path} {path}.corrupt) and run again: a new history is "
                 "started; or pass --state-dir DIR")
    if "readonly" in text or "unable to open" in text or "permission" in text.lower():
        return HistoryError(
            f"cannot write the check history at {path} ({text})", location=loc, path=path,
            hint="check the permissions of the file and its directory, or pass "
                 "--state-dir DIR (or K3SOPS_STATE_DIR); `check --no-history` skips it")
    if "locked" in text or "busy" in text:
        return HistoryError(
            f"the check history at {path} stayed locked for {BUSY_TIMEOUT_SECONDS:.0f}s "
            f"while trying to {what}", location=loc, path=path,
            hint="another k3sops process is holding it; retry when it has finished")
    return HistoryError(f"could not {what} in the check history at {path}: {text}",
                        location=loc, path=path, hint="`check --no-history` runs without it")
