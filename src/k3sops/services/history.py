"""`k3sops check history` and `k3sops check ack`: read past runs, acknowledge manual steps."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from k3sops.adapters.store import HistoryStore, SqliteStore, TrendPoint, default_dir, open_store
from k3sops.config import Platform
from k3sops.domain import checks as registry
from k3sops.domain.findings import Period
from k3sops.errors import UsageError
from k3sops.services.secrets import env_secret, file_secret


class RunRow(BaseModel):
    """One stored check run, as `check history` lists it."""

    id: int
    started_at: str
    period: Period
    environment: str | None
    total: int
    critical: int
    warning: int
    info: int
    health_score: int
    new: int
    resolved: int
    checks_run: int
    usage: dict[str, float]


class CheckHistory(BaseModel):
    """What `k3sops check history -o json` prints: the newest runs first."""

    database: str
    runs: list[RunRow]


class Acknowledgement(BaseModel):
    """What `k3sops check ack -o json` prints: the recorded acknowledgement."""

    item: str
    period: Period
    title: str
    by: str
    at: str
    note: str | None


def open_history(platform: Platform | None, state_dir: Path | None, env: Mapping[str, str],
                 home: Path) -> HistoryStore:
    """The history store platform.yaml's ``state`` names, else SQLite in the state directory.

    ``state.database_url`` (PostgreSQL for `k3sops serve`'s replicas, or a SQLite file) wins
    over ``--state-dir``/``$K3SOPS_STATE_DIR``, which then only place the audit log.

    Raises:
        ConfigError: the password variable or file named in ``state`` is unset or empty.
        HistoryError: the database cannot be opened or migrated.
    """
    directory = state_dir or default_dir(env, home)
    state = platform.state if platform is not None else None
    if state is None or state.database_url is None:
        return SqliteStore.open(directory)
    password = (file_secret(state.password_file, "state.password_file")
                if state.password_file is not None else
                env_secret(env, state.password_env, "state.password_env",
                           required=state.password_env is not None))
    return open_store(state.database_url, password, directory)


def trend(platform: Platform | None, state_dir: Path | None, env: Mapping[str, str],
          home: Path, limit: int = 90) -> list[TrendPoint]:
    """Stored runs, oldest first, for the HTML report's charts."""
    with open_history(platform, state_dir, env, home) as store:
        return store.trend(limit)


def history(platform: Platform | None, state_dir: Path | None, env: Mapping[str, str],
            home: Path, limit: int = 20,
            period: Period | None = None) -> CheckHistory:
    """The newest ``limit`` stored runs (of ``period`` if given), newest first."""
    if limit < 1:
        raise UsageError(f"--limit {limit} must be at least 1")
    store = open_history(platform, state_dir, env, home)
    try:
        runs = store.runs(limit, period)
        path = store.location
    finally:
        store.close()
    rows = []
    for r in runs:
        s = r.summary
        rows.append(RunRow(id=r.id, started_at=r.started_at, period=r.period,
                           environment=r.environment, total=s.total, critical=s.critical,
                           warning=s.warning, info=s.info, health_score=s.health_score,
                           new=s.new, resolved=s.resolved, checks_run=s.checks_run,
                           usage=s.usage))
    return CheckHistory(database=path, runs=rows)


def acknowledge(platform: Platform | None, state_dir: Path | None, env: Mapping[str, str],
                home: Path, item_id: str,
                by: str, note: str | None, now: datetime | None = None) -> Acknowledgement:
    """Record that ``by`` did the manual step ``item_id`` now.

    Raises:
        UsageError: ``item_id`` is not a registered manual step (the message lists them).
    """
    item = registry.MANUAL.get(item_id)
    if item is None:
        known = ", ".join(sorted(registry.MANUAL)) or "(none registered)"
        raise UsageError(f"{item_id!r} is not a manual checklist step",
                         hint=f"known steps: {known}")
    if not by.strip():
        raise UsageError("--by must name who did the step")
    at = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    store = open_history(platform, state_dir, env, home)
    try:
        store.ack(item.id, item.period, by, note, at)
    finally:
        store.close()
    return Acknowledgement(item=item.id, period=item.period, title=item.title, by=by,
                           at=at.isoformat(timespec="seconds"), note=note)
