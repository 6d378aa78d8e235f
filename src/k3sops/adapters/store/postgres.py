"""The PostgreSQL history store: one database shared by every replica of `k3sops serve`.

Tables live in their own schema, ``k3sops``, so the database may hold other things too. The
schema is versioned in ``k3sops.schema_migrations`` (one row per applied version, with when
and by which k3sops) and migrated on open, in one transaction per open: PostgreSQL's DDL is
transactional, so a migration is applied whole or not at all. Openers take turns on an
advisory lock (``pg_advisory_xact_lock``): two replicas starting together migrate once. A
database migrated by a newer k3sops is refused, never downgraded or written.

    v1  runs (summary, findings, resolved, carried as jsonb; started_ts timestamptz),
        acks, restore_drills: what the CLI's SQLite history held at its version 2
    v2  runs.details (sources, manual items, not-evaluated rules); alerts (unique on
        Alertmanager's fingerprint + startsAt), remediations, schedule_claims (primary key
        period + due_at): what the service adds
    v3  remediations.reserved: the row took a slot of its policy's rate (a reservation,
        finished in place by finish_remediation, or a record stored ``applied``); v2's
        second ``failed`` row of a failed reservation is folded into the reservation's row

Concurrency between replicas: idempotent records are ``INSERT ... ON CONFLICT`` on their key
(one replica inserts, the other learns it was a repeat); a rate-limited remediation counts and
inserts under a per-policy advisory lock. One connection per store; calls from several threads
take turns. A connection the server dropped (restart, failover) is opened again and the call
retried once.

The password comes from the caller (``state.password_env`` / ``password_file``), is handed to
libpq as a separate parameter, and never appears in a location, a message or a log line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb
from pydantic import SecretStr, ValidationError

import k3sops
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
    iso_seconds,
    local_now,
    parse_time,
    stored_run,
    trend_point,
    utc,
)
from k3sops.domain.findings import CheckReport, Finding, Period, Summary
from k3sops.errors import HistoryError

T = TypeVar("T")

SCHEMA_VERSION = 4
SCHEMA = "k3sops"
CONNECT_TIMEOUT_SECONDS = 10
LOCK_TIMEOUT = "60s"
"""How long an opener waits for another one's migration before giving up."""
LOCK_CLASS = 0x6B33
"""First key of k3sops' advisory locks ("k3"); the second names what is locked."""
_MIGRATION_LOCK = 0
_REMEDIATION_LOCK_CLASS = LOCK_CLASS + 1

_SCHEMA_V1 = (
    """CREATE TABLE k3sops.runs (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        started_at text NOT NULL,
        started_ts timestamptz NOT NULL,
        period text NOT NULL,
        environment text,
        summary jsonb NOT NULL,
        findings jsonb NOT NULL,
        resolved jsonb NOT NULL DEFAULT '[]',
        carried jsonb NOT NULL DEFAULT '[]')""",
    "CREATE INDEX runs_by_period ON k3sops.runs (period, environment, started_ts)",
    "CREATE INDEX runs_by_time ON k3sops.runs (started_ts)",
    """CREATE TABLE k3sops.acks (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        item_id text NOT NULL,
        period text NOT NULL,
        acked_by text NOT NULL,
        at timestamptz NOT NULL,
        note text)""",
    "CREATE INDEX acks_by_item ON k3sops.acks (item_id, at)",
    """CREATE TABLE k3sops.restore_drills (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        kind text NOT NULL,
        target text NOT NULL,
        ok boolean NOT NULL,
        seconds double precision)""",
    "CREATE INDEX drills_by_time ON k3sops.restore_drills (at)",
)
_SCHEMA_V2 = (
    "ALTER TABLE k3sops.runs ADD COLUMN details jsonb NOT NULL DEFAULT '{}'",
    """CREATE TABLE k3sops.alerts (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        fingerprint text NOT NULL,
        starts_at timestamptz NOT NULL,
        alertname text NOT NULL,
        status text NOT NULL CHECK (status IN ('firing', 'resolved')),
        ends_at timestamptz,
        received_at timestamptz NOT NULL,
        labels jsonb NOT NULL,
        enriched jsonb NOT NULL,
        UNIQUE (fingerprint, starts_at))""",
    "CREATE INDEX alerts_by_status ON k3sops.alerts (status, starts_at)",
    "CREATE INDEX alerts_by_time ON k3sops.alerts (starts_at)",
    """CREATE TABLE k3sops.remediations (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        policy_id text NOT NULL,
        trigger text NOT NULL,
        target text NOT NULL,
        plan text NOT NULL,
        mode text NOT NULL,
        at timestamptz NOT NULL,
        detail text)""",
    "CREATE INDEX remediations_by_policy ON k3sops.remediations (policy_id, mode, at)",
    """CREATE TABLE k3sops.schedule_claims (
        period text NOT NULL,
        due_at timestamptz NOT NULL,
        owner text NOT NULL,
        claimed_at timestamptz NOT NULL,
        status text NOT NULL CHECK (status IN ('claimed', 'done', 'interrupted')),
        run_id bigint,
        finished_at timestamptz,
        PRIMARY KEY (period, due_at))""",
    "CREATE INDEX claims_by_due ON k3sops.schedule_claims (due_at)",
)
_SCHEMA_V3 = (
    "ALTER TABLE k3sops.remediations ADD COLUMN reserved boolean NOT NULL DEFAULT false",
    # Up to v2 the rate counted rows stored "applied", and every reservation was one.
    "UPDATE k3sops.remediations SET reserved = true WHERE mode = 'applied'",
    # v2 recorded a failed reservation as a second row "reservation #ID: why": fold it into
    # the reservation's own row, so each attempt is one row (as finish_remediation keeps it).
    """UPDATE k3sops.remediations r SET mode = 'failed',
        detail = substr(f.detail, length('reservation #' || r.id || ': ') + 1)
    FROM k3sops.remediations f WHERE r.reserved AND f.mode = 'failed' AND NOT f.reserved
        AND f.policy_id = r.policy_id AND f.detail LIKE 'reservation #' || r.id || ': %'""",
    """DELETE FROM k3sops.remediations f USING k3sops.remediations r
    WHERE f.mode = 'failed' AND NOT f.reserved AND r.reserved
        AND r.policy_id = f.policy_id AND f.detail LIKE 'reservation #' || r.id || ': %'""",
    "CREATE INDEX remediations_reserved ON k3sops.remediations (policy_id, reserved, at)",
)
_SCHEMA_V4 = (
    # The console's logged-in sessions, shared by every replica. The key is a SHA-256 of the
    # session id: a copy of the database gives no live cookie.
    """CREATE TABLE k3sops.console_sessions (
        key text PRIMARY KEY, username jsonb NOT NULL, created_at timestamptz NOT NULL,
        seen_at timestamptz NOT NULL)""",
    "CREATE INDEX console_sessions_seen ON k3sops.console_sessions (seen_at)",
)
MIGRATIONS: dict[int, tuple[str, ...]] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3,
                                          4: _SCHEMA_V4}
"""Statements that bring the schema from version ``n - 1`` to ``n``. Released versions are
never edited: a change is a new version."""

_RUN_COLUMNS = ("id, started_at, period, environment, summary, findings, resolved, carried, "
                "details")
_ALERT_COLUMNS = ("id, fingerprint, starts_at, alertname, status, ends_at, received_at, "
                  "labels, enriched")
_REMEDIATION_COLUMNS = "id, policy_id, trigger, target, plan, mode, at, detail"


def redacted_url(url: str) -> str:
    """``url`` without a password (shown in messages; config refuses one anyway)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}{'@' if parts.username else ''}{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class PostgresStore(HistoryStore):
    """The history in a PostgreSQL database; open it with :meth:`open`."""

    backend: Literal["sqlite", "postgresql"] = "postgresql"

    def __init__(self, url: str, password: SecretStr | None) -> None:
        super().__init__()
        self._url = url
        self._password = password
        self._conn: psycopg.Connection[Any] | None = None
        self.location = redacted_url(url)
        self.schema_version = SCHEMA_VERSION
        self.reconnects = 0
        """How many times a dropped connection was opened again."""

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, password: SecretStr | None = None,
             upto: int = SCHEMA_VERSION) -> PostgresStore:
        """Connect to ``url`` (``postgresql://user@host:port/db``) and migrate its schema.

        ``upto``: the version to migrate to (tests build older databases with it).

        Raises:
            HistoryError: the server cannot be reached or refuses the login, the role may not
                create the schema, or the database was migrated by a newer k3sops.
        """
        store = cls(url, password)
        try:
            with store._serial():
                store._migrate(store._connection(), upto)
        except BaseException:
            store.close()
            raise
        return store

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection, connecting (again) when there is none or it was dropped."""
        if self._conn is not None and not self._conn.closed:
            return self._conn
        kwargs: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS,
                                  "application_name": "k3sops"}
        if self._password is not None:
            # A separate parameter: libpq gets it, no URL or message ever holds it.
            kwargs["password"] = self._password.get_secret_value()
        try:
            self._conn = psycopg.connect(self._url, autocommit=True, **kwargs)
        except psycopg.Error as e:
            raise self._error("connect", e) from e
        return self._conn

    def _migrate(self, conn: psycopg.Connection[Any], upto: int) -> None:
        try:
            version = self._version(conn)
            self._refuse_newer(version)
            if version >= upto:
                return
            # A session lock taken before the migrating transaction starts: a transaction that
            # began before another opener committed its migration may still see the old
            # catalog (to_regclass said "no table" and CREATE TABLE failed with "already
            # exists" when two replicas started together).
            conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, _MIGRATION_LOCK))
            try:
                conn.execute("RESET lock_timeout")
                # Under the lock: another opener may have migrated meanwhile.
                version = self._version(conn)
                self._refuse_newer(version)
                with conn.transaction():
                    if not self._has_schema(conn):
                        conn.execute(f"CREATE SCHEMA {SCHEMA}")
                    conn.execute(f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
                        version integer PRIMARY KEY,
                        applied_at timestamptz NOT NULL DEFAULT now(),
                        k3sops_version text NOT NULL)""")
                    for target in range(version + 1, upto + 1):
                        for stmt in MIGRATIONS[target]:
                            conn.execute(stmt)
                        conn.execute(f"INSERT INTO {SCHEMA}.schema_migrations (version, "  # noqa: S608  # constant schema name
                                     "k3sops_version) VALUES (%s, %s)",
                                     (target, k3sops.__version__))
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, _MIGRATION_LOCK))
        except psycopg.Error as e:
            raise self._error("migrate the schema of", e) from e

    @staticmethod
    def _has_schema(conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (SCHEMA,)).fetchone()
        return bool(row and row[0])

    @staticmethod
    def _version(conn: psycopg.Connection[Any]) -> int:
        """The applied schema version (0: a database k3sops has not written yet)."""
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                           (f"{SCHEMA}.schema_migrations",)).fetchone()
        if not (row and row[0]):
            return 0
        row = conn.execute(f"SELECT coalesce(max(version), 0) FROM {SCHEMA}.schema_migrations"  # noqa: S608  # constant schema name
                           ).fetchone()
        return int(row[0]) if row else 0

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"the history database {self.location} has schema version {version}, newer "
                f"than this k3sops understands ({SCHEMA_VERSION})", location=self.location,
                hint="upgrade k3sops (every replica of the service, and the CLI using this "
                     "database); k3sops never downgrades a schema")

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._serial():
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _error(self, what: str, e: psycopg.Error) -> HistoryError:
        """The k3sops error for a psycopg one: what, where, what to do; no password."""
        text = " ".join(str(e).split())
        if self._password is not None:
            text = text.replace(self._password.get_secret_value(), "***")
        where = f"the history database {self.location}"
        if isinstance(e, pg_errors.InsufficientPrivilege):
            return HistoryError(
                f"could not {what} {where}: {text}", location=self.location,
                hint=f"the role needs to own the database or the schema {SCHEMA!r} (or CREATE "
                     "on the database for the first start): e.g. CREATE DATABASE k3sops "
                     "OWNER k3sops")
        if isinstance(e, pg_errors.LockNotAvailable):
            return HistoryError(
                f"could not {what} {where}: another k3sops held the migration lock for "
                f"{LOCK_TIMEOUT}", location=self.location,
                hint="retry; if it persists, look for a stuck k3sops session in "
                     "pg_stat_activity (application_name 'k3sops')")
        if isinstance(e, psycopg.OperationalError):
            auth = "password authentication failed" in text or "no password" in text
            return HistoryError(
                f"could not {what} {where}: {text}", location=self.location,
                hint="check the password in the variable or file named by state.password_env "
                     "/ state.password_file" if auth else
                     "check state.database_url and that the server is up and reachable")
        return HistoryError(f"could not {what} {where}: {text}", location=self.location,
                            hint="`check --no-history` runs without the history")

    def _tx(self, what: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``fn`` in one transaction; on a dropped connection connect again, retry once.

        A retried write can in theory be stored twice (the server committed, then the reply
        was lost); records with a natural key (alerts, claims) are idempotent anyway.
        """
        with self._serial():
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    with conn.transaction():
                        return fn(conn)
                except psycopg.OperationalError as e:
                    if attempt == 1 and conn.broken:
                        self.reconnects += 1
                        continue
                    raise self._error(what, e) from e
                except psycopg.Error as e:
                    raise self._error(what, e) from e
                except (ValidationError, ValueError) as e:
                    raise HistoryError(
                        f"the history database {self.location} holds a record k3sops cannot "
                        f"read ({what}): {e}", location=self.location,
                        hint="a newer k3sops may have written it; upgrade k3sops") from e
            raise AssertionError("unreachable")  # pragma: no cover

    # -- runs ------------------------------------------------------------------------------

    def record(self, report: CheckReport, carried: Iterable[Finding] = ()) -> int:
        """Store a run (summary, findings, resolved, carried, details); return its id."""
        s = report.summary
        row = (s.started_at, parse_time(s.started_at), s.period, s.environment,
               Jsonb(s.model_dump(mode="json")), _jsonb_findings(report.findings),
               _jsonb_findings(report.resolved), _jsonb_findings(carried),
               Jsonb({"sources": [x.model_dump(mode="json") for x in report.sources],
                      "manual": [m.model_dump(mode="json") for m in report.manual],
                      "not_evaluated": [n.model_dump(mode="json")
                                        for n in report.not_evaluated]}))

        def insert(conn: psycopg.Connection[Any]) -> int:
            got = conn.execute(
                "INSERT INTO k3sops.runs (started_at, started_ts, period, environment, "
                "summary, findings, resolved, carried, details) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id", row).fetchone()
            return int(got[0]) if got else 0

        return self._tx("record a run in", insert)

    def last_run(self, period: Period, environment: str | None) -> StoredRun | None:
        """The newest run of ``period`` for ``environment`` (None: the all-environments run)."""
        return self._tx("read the last run from", lambda conn: _first_run(conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM k3sops.runs WHERE period = %s "  # noqa: S608  # constant column list
            "AND environment IS NOT DISTINCT FROM %s::text "
            "ORDER BY started_ts DESC, id DESC LIMIT 1", (period, environment)).fetchall()))

    def runs(self, limit: int = 20, period: Period | None = None) -> list[StoredRun]:
        """The newest ``limit`` runs (of ``period`` if given), newest first."""
        return self._tx("list runs in", lambda conn: [stored_run(*r) for r in conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM k3sops.runs WHERE (%s::text IS NULL OR period = %s) "  # noqa: S608  # constant column list
            "ORDER BY started_ts DESC, id DESC LIMIT %s", (period, period, limit)).fetchall()])

    def run(self, run_id: int) -> StoredRun | None:
        """The run with this id."""
        return self._tx("read a run from", lambda conn: _first_run(conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM k3sops.runs WHERE id = %s", (run_id,)).fetchall()))  # noqa: S608  # constant column list

    def trend(self, limit: int = 90) -> list[TrendPoint]:
        """The newest ``limit`` runs as chart points, oldest first."""
        rows = self._tx("read the trend from", lambda conn: conn.execute(
            "SELECT summary FROM k3sops.runs ORDER BY started_ts DESC, id DESC LIMIT %s",
            (limit,)).fetchall())
        return [trend_point(Summary.model_validate(s)) for (s,) in reversed(rows)]

    # -- acknowledgements ------------------------------------------------------------------

    def ack(self, item_id: str, period: str, by: str, note: str | None,
            at: datetime) -> None:
        """Record that ``by`` did manual step ``item_id`` (of ``period``) at ``at``."""
        # Stored to the second, as the SQLite history does: what `check ack` shows.
        at = utc(at).replace(microsecond=0)
        self._tx("record an acknowledgement in", lambda conn: conn.execute(
            "INSERT INTO k3sops.acks (item_id, period, acked_by, at, note) "
            "VALUES (%s, %s, %s, %s, %s)", (item_id, period, by, at, note)))

    def acks(self, now: datetime | None = None) -> dict[str, dict[str, str]]:
        """The current acknowledgement of each manual item (see :class:`HistoryStore`)."""
        now = local_now(now)
        rows = self._tx("read acknowledgements from", lambda conn: conn.execute(
            "SELECT DISTINCT ON (item_id) item_id, period, acked_by, at, note FROM k3sops.acks "
            "ORDER BY item_id, at DESC, id DESC").fetchall())
        return current_acks(rows, now)

    # -- restore drills --------------------------------------------------------------------

    def record_restore_drill(self, kind: str, target: str, ok: bool, at: datetime,
                             seconds: float | None) -> None:
        """Record a restore drill (``kind`` e.g. etcd|volume|postgres, what was restored)."""
        at = utc(at).replace(microsecond=0)
        self._tx("record a restore drill in", lambda conn: conn.execute(
            "INSERT INTO k3sops.restore_drills (at, kind, target, ok, seconds) "
            "VALUES (%s, %s, %s, %s, %s)", (at, kind, target, ok, seconds)))

    def facts(self, now: datetime | None = None) -> dict[str, Any]:
        """Facts for the checks: ``{"restore_drills": [...]}`` of the last 90 days, oldest first."""
        since = utc(now or datetime.now(UTC)) - DRILL_WINDOW
        rows = self._tx("read restore drills from", lambda conn: conn.execute(
            "SELECT at, kind, target, ok, seconds FROM k3sops.restore_drills WHERE at >= %s "
            "ORDER BY at, id", (since,)).fetchall())
        return {"restore_drills": [
            {"at": iso_seconds(at), "kind": kind, "target": target, "ok": ok,
             "seconds": seconds} for at, kind, target, ok, seconds in rows]}

    # -- alerts ----------------------------------------------------------------------------

    def record_alert(self, alert: AlertRecord) -> bool:
        """Store an alert once per (fingerprint, starts_at); False: already stored."""
        return self._tx("record an alert in", lambda conn: conn.execute(
            "INSERT INTO k3sops.alerts (fingerprint, starts_at, alertname, status, ends_at, "
            "received_at, labels, enriched) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (fingerprint, starts_at) DO NOTHING",
            (alert.fingerprint, utc(alert.starts_at), alert.alertname, alert.status,
             utc(alert.ends_at) if alert.ends_at else None, utc(alert.received_at),
             Jsonb(alert.labels), Jsonb(alert.enriched))).rowcount == 1)

    def resolve_alert(self, fingerprint: str, starts_at: datetime, ended_at: datetime) -> bool:
        """Close a firing alert; False when it is unknown or already resolved."""
        return self._tx("resolve an alert in", lambda conn: conn.execute(
            "UPDATE k3sops.alerts SET status = 'resolved', ends_at = %s WHERE fingerprint = %s "
            "AND starts_at = %s AND status = 'firing'",
            (utc(ended_at), fingerprint, utc(starts_at))).rowcount == 1)

    def alert(self, fingerprint: str, starts_at: datetime) -> AlertRecord | None:
        """The alert stored for (fingerprint, starts_at)."""
        rows = self._tx("read an alert from", lambda conn: conn.execute(
            f"SELECT {_ALERT_COLUMNS} FROM k3sops.alerts WHERE fingerprint = %s "  # noqa: S608  # constant column list
            "AND starts_at = %s", (fingerprint, utc(starts_at))).fetchall())
        return _alert(rows[0]) if rows else None

    def alerts(self, state: AlertState | None = None, limit: int = 100) -> list[AlertRecord]:
        """The newest ``limit`` alerts (in ``state`` if given), newest ``starts_at`` first."""
        rows = self._tx("list alerts in", lambda conn: conn.execute(
            f"SELECT {_ALERT_COLUMNS} FROM k3sops.alerts WHERE (%s::text IS NULL "  # noqa: S608  # constant column list
            "OR status = %s) ORDER BY starts_at DESC, id DESC LIMIT %s",
            (state, state, limit)).fetchall())
        return [_alert(r) for r in rows]

    # -- remediations ----------------------------------------------------------------------

    @staticmethod
    def _insert_remediation(conn: psycopg.Connection[Any], rec: RemediationRecord,
                            reserved: bool) -> int:
        row = conn.execute(
            "INSERT INTO k3sops.remediations (policy_id, trigger, target, plan, mode, at, "
            "detail, reserved) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (rec.policy_id, rec.trigger, rec.target, rec.plan, rec.mode, utc(rec.at),
             rec.detail, reserved)).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _count(conn: psycopg.Connection[Any], policy_id: str, since: datetime,
               modes: Sequence[str]) -> int:
        row = conn.execute(
            "SELECT count(*) FROM k3sops.remediations WHERE policy_id = %s AND at >= %s "
            "AND mode = ANY(%s)", (policy_id, utc(since), list(modes))).fetchone()
        return int(row[0]) if row else 0

    def record_remediation(self, rec: RemediationRecord) -> int:
        """Store a remediation record; return its id."""
        return self._tx("record a remediation in", lambda conn: self._insert_remediation(
            conn, rec, reserved=rec.mode == "applied"))

    def remediation_count(self, policy_id: str, since: datetime,
                          modes: Sequence[RemediationMode] = ("applied",)) -> int:
        """How many remediations of ``policy_id`` in ``modes`` happened since ``since``."""
        return self._tx("count remediations in",
                        lambda conn: self._count(conn, policy_id, since, modes))

    def reserve_remediation(self, rec: RemediationRecord, limit: int,
                            since: datetime) -> int | None:
        """Store ``rec`` if the policy's rate allows it (see :class:`HistoryStore`)."""

        def reserve(conn: psycopg.Connection[Any]) -> int | None:
            # Held to the end of the transaction: the next reserver of this policy counts
            # after our insert is committed.
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                         (_REMEDIATION_LOCK_CLASS, rec.policy_id))
            row = conn.execute(
                "SELECT count(*) FROM k3sops.remediations WHERE policy_id = %s AND reserved "
                "AND at >= %s", (rec.policy_id, utc(since))).fetchone()
            if row is not None and int(row[0]) >= limit:
                return None
            return self._insert_remediation(conn, rec, reserved=True)

        return self._tx("reserve a remediation in", reserve)

    def finish_remediation(self, rid: int, mode: FinalMode, detail: str | None) -> bool:
        """Record how reservation ``rid`` ended (see :class:`HistoryStore`)."""
        return self._tx("finish a remediation in", lambda conn: conn.execute(
            "UPDATE k3sops.remediations SET mode = %s, detail = %s WHERE id = %s AND reserved "
            "AND mode = 'reserved'", (mode, detail, rid)).rowcount == 1)

    def remediations(self, limit: int = 100,
                     policy_id: str | None = None) -> list[RemediationRecord]:
        """The newest ``limit`` remediation records (of ``policy_id`` if given)."""
        rows = self._tx("list remediations in", lambda conn: conn.execute(
            f"SELECT {_REMEDIATION_COLUMNS} FROM k3sops.remediations "  # noqa: S608  # constant column list
            "WHERE (%s::text IS NULL OR policy_id = %s) ORDER BY at DESC, id DESC LIMIT %s",
            (policy_id, policy_id, limit)).fetchall())
        return [RemediationRecord(id=i, policy_id=p, trigger=tr, target=ta, plan=pl, mode=m,
                                  at=utc(at), detail=d) for i, p, tr, ta, pl, m, at, d in rows]

    # -- scheduled runs --------------------------------------------------------------------

    def schedule_claim(self, period: Period, due_at: datetime, owner: str = "",
                       now: datetime | None = None,
                       stale_after: timedelta | None = None) -> bool:
        """Claim the scheduled run of ``period`` at ``due_at`` (see :class:`HistoryStore`)."""
        now = utc(now or datetime.now(UTC))
        # A claim older than this (still "claimed") is taken over; None: never.
        stale = now - stale_after if stale_after is not None else None
        # One statement: the insert, or the takeover of a claim whose owner stopped, decided
        # on the row as it is once locked (a concurrent claimer sees our claim and loses).
        return self._tx("claim a scheduled run in", lambda conn: conn.execute(
            "INSERT INTO k3sops.schedule_claims (period, due_at, owner, claimed_at, status) "
            "VALUES (%s, %s, %s, %s, 'claimed') "
            "ON CONFLICT (period, due_at) DO UPDATE SET owner = excluded.owner, "
            "claimed_at = excluded.claimed_at, status = 'claimed', run_id = NULL, "
            "finished_at = NULL WHERE schedule_claims.status = 'interrupted' OR "
            "(schedule_claims.status = 'claimed' AND schedule_claims.claimed_at < "
            "%s::timestamptz)",
            (period, utc(due_at), owner, now, stale)).rowcount == 1)

    def schedule_finish(self, period: Period, due_at: datetime,
                        status: Literal["done", "interrupted"], run_id: int | None = None,
                        now: datetime | None = None) -> None:
        """Record how a claimed run ended (``run_id``: the run it stored)."""
        self._tx("finish a scheduled run in", lambda conn: conn.execute(
            "UPDATE k3sops.schedule_claims SET status = %s, run_id = %s, finished_at = %s "
            "WHERE period = %s AND due_at = %s",
            (status, run_id, utc(now or datetime.now(UTC)), period, utc(due_at))))

    def schedule_claims(self, limit: int = 100,
                        period: Period | None = None) -> list[ScheduleClaim]:
        """The newest ``limit`` claims (of ``period`` if given), newest ``due_at`` first."""
        rows = self._tx("list scheduled runs in", lambda conn: conn.execute(
            "SELECT period, due_at, owner, claimed_at, status, run_id, finished_at "
            "FROM k3sops.schedule_claims WHERE (%s::text IS NULL OR period = %s) "
            "ORDER BY due_at DESC LIMIT %s", (period, period, limit)).fetchall())
        return [ScheduleClaim(period=p, due_at=utc(d), owner=o, claimed_at=utc(c), status=s,
                              run_id=r, finished_at=utc(f) if f else None)
                for p, d, o, c, s, r, f in rows]


    # -- console sessions ------------------------------------------------------------------

    def session_put(self, key: str, user: str, at: datetime) -> None:
        """Store a logged-in session under ``key`` (a digest of its id)."""
        at = utc(at)
        self._tx("store a console session in", lambda conn: conn.execute(
            "INSERT INTO k3sops.console_sessions (key, username, created_at, seen_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET username = "
            "EXCLUDED.username, created_at = EXCLUDED.created_at, seen_at = EXCLUDED.seen_at",
            (key, Jsonb(json.loads(user)), at, at)))

    def session_get(self, key: str) -> StoredSession | None:
        """The session stored under ``key``, expired or not."""
        rows = self._tx("read a console session from", lambda conn: conn.execute(
            "SELECT username, created_at, seen_at FROM k3sops.console_sessions WHERE key = %s",
            (key,)).fetchall())
        if not rows:
            return None
        user, created, seen = rows[0]
        return StoredSession(user=json.dumps(user), created_at=utc(created), seen_at=utc(seen))

    def session_touch(self, key: str, at: datetime) -> None:
        """Record that the session under ``key`` was used at ``at``."""
        self._tx("record a console session's use in", lambda conn: conn.execute(
            "UPDATE k3sops.console_sessions SET seen_at = %s WHERE key = %s", (utc(at), key)))

    def session_drop(self, key: str) -> None:
        """Forget the session under ``key``."""
        self._tx("drop a console session from", lambda conn: conn.execute(
            "DELETE FROM k3sops.console_sessions WHERE key = %s", (key,)))

    def session_prune(self, seen_before: datetime, created_before: datetime) -> int:
        """Forget sessions unused since ``seen_before`` or created before ``created_before``."""
        return self._tx("prune console sessions in", lambda conn: conn.execute(
            "DELETE FROM k3sops.console_sessions WHERE seen_at < %s OR created_at < %s",
            (utc(seen_before), utc(created_before))).rowcount)

def _jsonb_findings(findings: Iterable[Finding]) -> Jsonb:
    return Jsonb([f.model_dump(mode="json") for f in findings])


def _first_run(rows: list[Any]) -> StoredRun | None:
    return stored_run(*rows[0]) if rows else None


def _alert(row: tuple[Any, ...]) -> AlertRecord:
    rid, fp, starts, name, status, ends, received, labels, enriched = row
    return AlertRecord(id=rid, fingerprint=fp, starts_at=utc(starts), alertname=name,
                       status=status, ends_at=utc(ends) if ends else None,
                       received_at=utc(received),
                       labels=json.loads(labels) if isinstance(labels, str) else labels,
                       enriched=json.loads(enriched) if isinstance(enriched, str) else enriched)
