"""Global options shared by every command (kept on the typer context, never global)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import typer


class OutputFormat(StrEnum):
    """Output formats accepted by ``-o/--output``."""

    table = "table"
    json = "json"
    yaml = "yaml"
    markdown = "markdown"
    html = "html"
    junit = "junit"


@dataclass(frozen=True)
class GlobalOptions:
    """What the root command parsed; passed down explicitly to services."""

    kubeconfig: Path | None
    context: str | None
    config: Path | None
    output: OutputFormat
    verbosity: int


def get_options(ctx: typer.Context) -> GlobalOptions:
    """Return the root command's options from any (sub)command context."""
    root = ctx.find_root()
    obj = root.obj
    if not isinstance(obj, GlobalOptions):  # pragma: no cover - only when called outside the app
        raise RuntimeError("global options missing: the root callback did not run")
    return obj
