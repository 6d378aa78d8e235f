"""The history of `k3sops check`: runs, acknowledgements of manual steps, restore drills.

One SQLite file (``k3sops.db``) in the user's state directory. It is opened in WAL mode with
a busy timeout so that two checks started at the same time (a cron job and a person) both
succeed; every write is one ``BEGIN IMMEDIATE`` transaction, so a run is stored whole or not
at all. The schema is versioned with ``PRAGMA user_version`` and migrated on open.

    runs            id, started_at (ISO), started_ts (epoch, for ordering), period,
                    environment, summary (JSON), findings (JSON), resolved (JSON),
                    carried (JSON, v2: findings of rules not evaluated in this run, kept
                    for the next comparison — neither reported nor resolved)
    acks            id, item_id, period, by, at (ISO), at_ts, note
    restore_drills  id, at (ISO), at_ts, kind, target, ok, seconds

sqlite3 errors never leave this module: they become :class:`HistoryError` naming the file
and what to do.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from k3sops.domain.findings import CheckReport, Finding, Period, Summary
from k3sops.errors import HistoryError
from k3sops.timeparse import parse_rfc3339

DB_NAME = "k3sops.db"
SCHEMA_VERSION = 2
BUSY_TIMEOUT_SECONDS = 30.0
"""How long a writer waits for another one; a run is written in milliseconds."""
DRILL_WINDOW = timedelta(days=90)

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
MIGRATIONS: dict[int, tuple[str, ...]] = {1: _SCHEMA_V1, 2: _SCHEMA_V2}
"""Statements that bring the schema from version ``n - 1`` to ``n``."""


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


def _utc(at: datetime) -> datetime:
    """Aware UTC time; a naive datetime is taken as UTC (callers pass aware ones)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _parse_time(text: str) -> datetime:
    return _utc(parse_rfc3339(text))


def _period_start(period: str, now: datetime) -> datetime:
    """Start of the calendar day, ISO week (Monday) or month containing ``now`` (its zone)."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    return day


class HistoryStore:
    """The SQLite history; open it with :meth:`open`, close it with :meth:`close`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    # -- opening ---------------------------------------------------------------------------

    @staticmethod
    def default_dir(env: Mapping[str, str], home: Path) -> Path:
        """K3SOPS_STATE_DIR, else $XDG_STATE_HOME/k3sops, else ~/.local/state/k3sops."""
        if env.get("K3SOPS_STATE_DIR"):
            return Path(env["K3SOPS_STATE_DIR"]).expanduser()
        if env.get("XDG_STATE_HOME"):
            return Path(env["XDG_STATE_HOME"]).expanduser() / "k3sops"
        return home / ".local" / "state" / "k3sops"

    @classmethod
    def open(cls, directory: Path) -> HistoryStore:
        """Open (creating if needed) ``directory/k3sops.db`` and migrate its schema.

        Raises:
            HistoryError: the directory cannot be created, or the file is unwritable, corrupt,
                or was written by a newer k3sops.
        """
        path = directory / DB_NAME
        try:
            # 0700: the history names namespaces, workloads and who acknowledged what.
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                # Create the file 0600 ourselves; sqlite3 would use 0644 & umask.
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            lock_fd = os.open(directory / (DB_NAME + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise HistoryError(f"cannot create the check history at {path}: {e.strerror}",
                               path=path, hint="check the permissions of the directory, or "
                               "pass --state-dir DIR (or K3SOPS_STATE_DIR) to use another "
                               "one") from e
        conn: sqlite3.Connection | None = None
        # Openers take turns (an flock on a side file): switching a new database to WAL while
        # another connection migrates it can deadlock both until the busy timeout.
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so a writer takes the
            # write lock up front and waits (busy timeout) instead of failing on upgrade.
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            store = cls(conn, path)
            store._migrate()
            return store
        except sqlite3.Error as e:
            if conn is not None:
                conn.close()
            raise _db_error(path, "open", e) from e
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            os.close(lock_fd)

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"the check history at {self.path} has schema version {version}, newer than "
                f"this k3sops understands ({SCHEMA_VERSION})", path=self.path,
                hint="upgrade k3sops, or pass --state-dir DIR to keep a separate history")
        if version == SCHEMA_VERSION:
            return
        with self._write():
            # Re-read inside the lock: a concurrent opener may have migrated meanwhile.
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in MIGRATIONS[target]:
                    self._conn.execute(stmt)
                self._conn.execute(f"PRAGMA user_version = {target}")

    def close(self) -> None:
        """Close the database (idempotent)."""
        self._conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        try:
            yield
        except sqlite3.Error as e:
            raise _db_error(self.path, what, e) from e
        except (ValidationError, ValueError) as e:
            raise HistoryError(
                f"the check history at {self.path} holds a record k3sops cannot read "
                f"({what}): {e}", path=self.path,
                hint=f"move the file aside (mv {self.path} {self.path}.bad) to start a new "
                     "history") from e

    # -- runs ------------------------------------------------------------------------------

    def record(self, report: CheckReport, carried: Iterable[Finding] = ()) -> int:
        """Store a run (summary, findings, resolved, carried) in one transaction; return its id.

        ``carried``: earlier findings of rules that could not be evaluated in this run.
        """
        s = report.summary
        with self._guard("record a run"):
            row = (s.started_at, _parse_time(s.started_at).timestamp(), s.period,
                   s.environment, s.model_dump_json(),
                   json.dumps([f.model_dump(mode="json") for f in report.findings]),
                   json.dumps([f.model_dump(mode="json") for f in report.resolved]),
                   json.dumps([f.model_dump(mode="json") for f in carried]))
            with self._write():
                cur = self._conn.execute(
                    "INSERT INTO runs (started_at, started_ts, period, environment, summary, "
                    "findings, resolved, carried) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
            # An INSERT into a rowid table always sets lastrowid.
            return int(cur.lastrowid or 0)

    def last_run(self, period: Period, environment: str | None) -> StoredRun | None:
        """The newest run of ``period`` for ``environment`` (None: the all-environments run)."""
        with self._guard("read the last run"):
            row = self._conn.execute(
                "SELECT id, started_at, period, environment, summary, findings, resolved, carried "
                "FROM runs WHERE period = ? AND environment IS ? "
                "ORDER BY started_ts DESC, id DESC LIMIT 1", (period, environment)).fetchone()
            return _stored(row) if row else None

    def runs(self, limit: int = 20, period: Period | None = None) -> list[StoredRun]:
        """The newest ``limit`` runs (of ``period`` if given), newest first."""
        with self._guard("list runs"):
            # "? IS NULL OR": one constant statement whether or not a period is asked for.
            rows = self._conn.execute(
                "SELECT id, started_at, period, environment, summary, findings, resolved, carried "
                "FROM runs WHERE (? IS NULL OR period = ?) "
                "ORDER BY started_ts DESC, id DESC LIMIT ?", (period, period, limit)).fetchall()
            return [_stored(r) for r in rows]

    def trend(self, limit: int = 90) -> list[TrendPoint]:
        """The newest ``limit`` runs as chart points, oldest first."""
        with self._guard("read the trend"):
            rows = self._conn.execute(
                "SELECT summary FROM runs ORDER BY started_ts DESC, id DESC LIMIT ?",
                (limit,)).fetchall()
            points = []
            for (text,) in reversed(rows):
                s = Summary.model_validate_json(text)
                points.append(TrendPoint(
                    started_at=s.started_at, period=s.period, environment=s.environment,
                    total=s.total, critical=s.critical, warning=s.warning, info=s.info,
                    health_score=s.health_score, cpu=s.usage.get("cpu"),
                    memory=s.usage.get("memory"), disk=s.usage.get("disk")))
            return points

    # -- acknowledgements ------------------------------------------------------------------

    def ack(self, item_id: str, period: str, by: str, note: str | None,
            at: datetime) -> None:
        """Record that ``by`` did manual step ``item_id`` (of ``period``) at ``at``."""
        at = _utc(at)
        with self._guard("record an acknowledgement"), self._write():
            self._conn.execute(
                "INSERT INTO acks (item_id, period, by, at, at_ts, note) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (item_id, period, by, at.isoformat(timespec="seconds"), at.timestamp(), note))

    def acks(self, now: datetime | None = None) -> dict[str, dict[str, str]]:
        """The current acknowledgement of each manual item: ``{id: {"by", "at", "note"}}``.

        An acknowledgement holds for the calendar period it was given in, counted in the
        local time zone of ``now`` (default: the machine's): a daily item acknowledged
        yesterday is open again today, a weekly one on Monday, a monthly one on the 1st.
        Only the latest acknowledgement of an item counts.
        """
        now = now if now is not None and now.tzinfo is not None else (
            (now or datetime.now()).astimezone())
        with self._guard("read acknowledgements"):
            rows = self._conn.execute(
                "SELECT item_id, period, by, at, note FROM acks a WHERE at_ts = "
                "(SELECT MAX(at_ts) FROM acks b WHERE b.item_id = a.item_id) "
                "ORDER BY id").fetchall()
            out: dict[str, dict[str, str]] = {}
            for item_id, period, by, at, note in rows:
                if _parse_time(at).astimezone(now.tzinfo) < _period_start(period, now):
                    out.pop(item_id, None)
                    continue
                ack = {"by": by, "at": at}
                if note:
                    ack["note"] = note
                out[item_id] = ack
            return out

    # -- restore drills --------------------------------------------------------------------

    def record_restore_drill(self, kind: str, target: str, ok: bool, at: datetime,
                             seconds: float | None) -> None:
        """Record a restore drill (``kind`` e.g. etcd|volume|postgres, what was restored)."""
        at = _utc(at)
        with self._guard("record a restore drill"), self._write():
            self._conn.execute(
                "INSERT INTO restore_drills (at, at_ts, kind, target, ok, seconds) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (at.isoformat(timespec="seconds"), at.timestamp(), kind, target, int(ok),
                 seconds))

    def facts(self, now: datetime | None = None) -> dict[str, Any]:
        """Facts for the checks: ``{"restore_drills": [...]}`` of the last 90 days, oldest first."""
        since = _utc(now or datetime.now(UTC)) - DRILL_WINDOW
        with self._guard("read restore drills"):
            rows = self._conn.execute(
                "SELECT at, kind, target, ok, seconds FROM restore_drills WHERE at_ts >= ? "
                "ORDER BY at_ts, id", (since.timestamp(),)).fetchall()
            return {"restore_drills": [
                {"at": at, "kind": kind, "target": target, "ok": bool(ok), "seconds": seconds}
                for at, kind, target, ok, seconds in rows]}


def _stored(row: tuple[Any, ...]) -> StoredRun:
    rid, started_at, period, environment, summary, findings, resolved, carried = row
    return StoredRun(
        id=rid, started_at=started_at, period=period, environment=environment,
        summary=Summary.model_validate_json(summary),
        findings=[Finding.model_validate(f) for f in json.loads(findings)],
        resolved=[Finding.model_validate(f) for f in json.loads(resolved or "[]")],
        carried=[Finding.model_validate(f) for f in json.loads(carried or "[]")])


def _db_error(path: Path, what: str, e: sqlite3.Error) -> HistoryError:
    """Translate a sqlite3 error into a message that says what to do."""
    text = str(e)
    if isinstance(e, sqlite3.DatabaseError) and ("not a database" in text
                                                 or "malformed" in text):
        return HistoryError(
            f"the check history at {path} is corrupt ({text})", path=path,
            hint=f"move it aside (mv {path} {path}.corrupt) and run again: a new history is "
                 "started; or pass --state-dir DIR")
    if "readonly" in text or "unable to open" in text or "permission" in text.lower():
        return HistoryError(
            f"cannot write the check history at {path} ({text})", path=path,
            hint="check the permissions of the file and its directory, or pass "
                 "--state-dir DIR (or K3SOPS_STATE_DIR); `check --no-history` skips it")
    if "locked" in text or "busy" in text:
        return HistoryError(
            f"the check history at {path} stayed locked for {BUSY_TIMEOUT_SECONDS:.0f}s "
            f"while trying to {what}", path=path,
            hint="another k3sops process is holding it; retry when it has finished")
    return HistoryError(f"could not {what} in the check history at {path}: {text}",
                        path=path, hint="`check --no-history` runs without it")
