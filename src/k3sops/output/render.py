"""Render a pydantic model as table (via a per-model function), JSON or YAML."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from k3sops.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

M = TypeVar("M", bound=BaseModel)

Formatter = Callable[[BaseModel], str]


def _yaml(m: BaseModel) -> str:
    import yaml  # only for -o yaml: a start-up cost the other formats need not pay

    return yaml.safe_dump(m.model_dump(mode="json"), sort_keys=False)


FORMATTERS: dict[str, Formatter] = {
    "json": lambda m: json.dumps(m.model_dump(mode="json"), indent=2) + "\n",
    "yaml": _yaml,
}


def render(model: M, fmt: str, table: Callable[[M, Console], None],
           console: Console | None = None) -> None:
    """Print ``model`` in ``fmt``; ``table`` draws the human view with rich."""
    if fmt == "table":
        if console is None:
            from rich.console import Console

            console = Console()
        table(model, console)
        return
    if fmt not in FORMATTERS:
        raise UsageError(f"-o {fmt} is not available for this command",
                         hint="use table, json or yaml (markdown, html and junit are for "
                              "reports such as `k3sops check`)")
    # JSON and YAML go straight to stdout (rich is not imported for them).
    (console.file if console is not None else sys.stdout).write(FORMATTERS[fmt](model))
