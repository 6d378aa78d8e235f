"""The ``state`` section: where the history of runs, acknowledgements, alerts and claims lives."""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, field_validator, model_validator

from k3sops.config.schema.fields import MODEL_CONFIG, EnvVarName, FilePath, invalid

POSTGRES_SCHEMES = ("postgresql", "postgres")
DATABASE_URL_ALLOWED = "postgresql://USER@HOST:PORT/DB or sqlite:///ABSOLUTE/PATH.db"


def database_url_problem(url: str) -> str | None:
    """Why ``url`` cannot name the history database (None: it can).

    A password is refused in the URL: platform.yaml never holds secrets (the message names
    the problem, never the value).
    """
    parts = urlsplit(url)
    if parts.scheme in POSTGRES_SCHEMES:
        if parts.password is not None or "password=" in parts.query.lower():
            return "the URL carries a password"
        if not parts.hostname and "host=" not in parts.query.lower():
            return "the URL names no host"
        return None
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path.startswith("/"):
            return "a SQLite URL is sqlite:/// followed by an absolute path"
        return None
    return f"unknown scheme {parts.scheme!r}" if parts.scheme else "not a URL"


class State(BaseModel):
    """The history store (unset: SQLite in the state directory, the CLI's default).

    `k3sops serve` with two replicas needs a database both reach: PostgreSQL.
    """

    model_config = MODEL_CONFIG
    unknown_key_hints: ClassVar[dict[str, str]] = {
        "password": "platform.yaml never holds secrets: name an environment variable with "
        "state.password_env or a file with state.password_file",
    }

    database_url: str | None = None
    """``postgresql://USER@HOST:PORT/DB[?sslmode=...]`` (no password) or
    ``sqlite:///ABSOLUTE/PATH.db``; unset: SQLite in the state directory."""
    password_env: EnvVarName | None = None
    """Environment variable holding the PostgreSQL password."""
    password_file: FilePath | None = None
    """File holding the PostgreSQL password (one line; e.g. a mounted Secret)."""

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None:
            problem = database_url_problem(value)
            if problem is not None:
                raise invalid(problem, DATABASE_URL_ALLOWED,
                              hint="name the password with state.password_env or "
                                   "state.password_file" if "password" in problem else None)
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> State:
        if self.password_env is not None and self.password_file is not None:
            raise invalid("both password_env and password_file given; at most one is used",
                          "password_env: VARIABLE or password_file: PATH")
        return self
