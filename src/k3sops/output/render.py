"""Render a pydantic model as table (via a per-model function), JSON or YAML."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import yaml
from pydantic import BaseModel
from rich.console import Console

from k3sops.errors import UsageError

M = TypeVar("M", bound=BaseModel)

Formatter = Callable[[BaseModel], str]

FORMATTERS: dict[str, Formatter] = {
    "json": lambda m: json.dumps(m.model_dump(mode="json"), indent=2) + "\n",
    "yaml": lambda m: yaml.safe_dump(m.model_dump(mode="json"), sort_keys=False),
}


def render(model: M, fmt: str, table: Callable[[M, Console], None],
           console: Console | None = None) -> None:
    """Print ``model`` in ``fmt``; ``table`` draws the human view with rich."""
    out = console or Console()
    if fmt == "table":
        table(model, out)
        return
    if fmt not in FORMATTERS:
        raise UsageError(f"-o {fmt} is not available for this command",
                         hint="use table, json or yaml (markdown, html and junit are for "
                              "reports such as `k3sops check`)")
    out.file.write(FORMATTERS[fmt](model))
