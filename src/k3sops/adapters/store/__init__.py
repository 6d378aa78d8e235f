"""The history store: one interface (:class:`HistoryStore`), two backends.

* SQLite (:class:`~k3sops.adapters.store.sqlite.SqliteStore`): one file in the state
  directory, the CLI's embedded default.
* PostgreSQL (:class:`~k3sops.adapters.store.postgres.PostgresStore`): a database shared by
  the replicas of `k3sops serve` (and the CLI, when ``state.database_url`` names it).

:func:`open_store` picks one from a URL; psycopg is imported only when PostgreSQL is used.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from k3sops.adapters.store.base import (
    AlertRecord,
    AlertState,
    ClaimStatus,
    FinalMode,
    HistoryStore,
    RemediationMode,
    RemediationRecord,
    ScheduleClaim,
    StoredRun,
    StoredSession,
    TrendPoint,
)
from k3sops.adapters.store.sqlite import DB_NAME, SqliteStore, default_dir
from k3sops.config.schema.state import (
    DATABASE_URL_ALLOWED,
    POSTGRES_SCHEMES,
    database_url_problem,
)
from k3sops.errors import ConfigError, HistoryError

__all__ = ["DB_NAME", "AlertRecord", "AlertState", "ClaimStatus", "FinalMode", "HistoryError",
           "HistoryStore", "RemediationMode", "RemediationRecord", "ScheduleClaim",
           "SqliteStore", "StoredRun", "StoredSession", "TrendPoint", "default_dir", "open_store"]


def open_store(database_url: str | None, password: SecretStr | None,
               directory: Path) -> HistoryStore:
    """Open the history named by ``database_url``, or SQLite in ``directory`` when it is None.

    ``database_url``: ``postgresql://USER@HOST:PORT/DB[?sslmode=...]`` (no password: it is
    ``password``) or ``sqlite:///ABSOLUTE/PATH.db`` (the grammar of
    :func:`k3sops.config.schema.state.database_url_problem`, which platform.yaml's loader
    already applied).

    Raises:
        ConfigError: the URL is not one of those (named, never echoed: it may hold a secret).
        HistoryError: the database cannot be opened or migrated.
    """
    if database_url is None:
        return SqliteStore.open(directory)
    problem = database_url_problem(database_url)
    if problem is not None:
        raise ConfigError(f"state.database_url: {problem}",
                          hint=DATABASE_URL_ALLOWED + "; the password goes in "
                               "state.password_env or state.password_file")
    parts = urlsplit(database_url)
    if parts.scheme in POSTGRES_SCHEMES:
        from k3sops.adapters.store.postgres import PostgresStore

        return PostgresStore.open(database_url, password)
    return SqliteStore.open_file(Path(unquote(parts.path)))
