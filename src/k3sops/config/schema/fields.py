"""Shared pieces of the platform.yaml schema: names, patterns and field validators.

The model modules build on these; nothing here reads files or the environment.
"""

from __future__ import annotations

import contextlib
import re
import typing
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, ValidationInfo
from pydantic_core import PydanticCustomError

from k3sops.errors import UsageError
from k3sops.timeparse import cron_fields, parse_duration

EnvironmentName = Literal["development", "staging", "production"]
ENVIRONMENT_NAMES: tuple[str, ...] = typing.get_args(EnvironmentName)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_LABEL_ALLOWED = "a-z, 0-9 and '-', starting and ending alphanumeric, 1-63 chars"
SERVICE_RE = re.compile(
    r"^(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)/(?P<name>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
    r":(?P<port>[0-9]+|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"
)
ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Backends restic accepts as "backend:rest"; anything else is a local path.
RESTIC_BACKENDS = ("local", "sftp", "rest", "s3", "azure", "gs", "b2", "swift", "rclone")
URL_LIKE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")

# No use_attribute_docstrings: pydantic would read and parse each model module's source at
# import to turn the field docstrings into descriptions nothing reads, 60-90 ms of every
# command's start-up. The docstrings stay, for people.
MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def invalid(problem: str, allowed: str | None = None, hint: str | None = None) -> Exception:
    """Build a validation error that carries its own "allowed" text and hint."""
    ctx: dict[str, str] = {"problem": problem}
    if allowed is not None:
        ctx["allowed"] = allowed
    if hint is not None:
        ctx["hint"] = hint
    return PydanticCustomError("k3sops_invalid", "{problem}", ctx)


def _check_dns_label(value: str) -> str:
    if len(value) > 63 or not DNS_LABEL.match(value):
        raise invalid(f"{value[:70]!r} is not a DNS-1123 label", DNS_LABEL_ALLOWED)
    return value


DnsLabel = Annotated[str, AfterValidator(_check_dns_label)]


def _check_env_name(value: str) -> str:
    if not ENV_VAR.match(value):
        raise invalid("not an environment variable name", "letters, digits and _")
    return value


EnvVarName = Annotated[str, AfterValidator(_check_env_name)]
"""The name of an environment variable a secret is read from (``*_env`` settings)."""


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Resolve ``~`` and paths relative to the directory of the file being loaded."""
    with contextlib.suppress(RuntimeError):  # no home directory known: keep it as written
        value = value.expanduser()
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    if isinstance(base, Path) and not value.is_absolute():
        return base / value
    return value


FilePath = Annotated[Path, AfterValidator(resolve_path)]


def resolve_local(value: str, info: ValidationInfo) -> str:
    """Resolve a string that may be a local path (not a URL) against the file's directory."""
    return str(resolve_path(Path(value), info))


def none_as_empty(value: object) -> object:
    """Let an empty section (``monitoring:`` with everything commented out) mean defaults."""
    return {} if value is None else value


def check_cron(value: str | None) -> str | None:
    """Return a cron expression unchanged if it is valid (None passes)."""
    if value is None:
        return None
    try:
        cron_fields(value)
    except UsageError as e:
        raise invalid(e.message, "minute hour day-of-month month day-of-week, "
                       "e.g. '0 2 * * *', or @daily/@weekly") from e
    return value


def check_duration(value: str, allowed: str) -> str:
    """Return ``value`` unchanged if it is a duration (:mod:`k3sops.timeparse`'s grammar).

    Args:
        value: the text from the file.
        allowed: how to write one, for the message.
    """
    try:
        parse_duration(value)
    except ValueError as e:
        raise invalid(f"{value[:40]!r} is not a Prometheus duration", allowed) from e
    return value
