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


Table = Callable[[M, "Console"], None]

TABLES: dict[str, str] = {}
"""Report type (``module.QualName``) -> ``module:function`` drawing it as a rich table.

Filled by :func:`table_for` in the modules of :mod:`k3sops.output.tables` and looked up by
:func:`table_of`; the strings keep start-up lazy: a renderer's module is imported only when
its report is printed as a table.
"""

def _type_key(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def table_for(*types: str) -> Callable[[Table[M]], Table[M]]:
    """Register the decorated function as the table view of ``types``.

    Args:
        types: the report types as ``module.QualName`` strings: a view module imports report
            types only for type checking, so the output layer never imports a service.
    """

    def register(fn: Table[M]) -> Table[M]:
        for t in types:
            TABLES[t] = f"{fn.__module__}:{fn.__qualname__}"
        return fn

    return register


def table_of(model: BaseModel) -> Table[BaseModel]:
    """The registered table view of ``model``'s type (its module imported on demand)."""
    import pkgutil
    from importlib import import_module

    key = _type_key(type(model))
    if key not in TABLES:  # the views register themselves on import: load them all once
        import k3sops.output.tables as views

        for info in pkgutil.iter_modules(views.__path__):
            import_module(f"{views.__name__}.{info.name}")
    if key not in TABLES:
        raise LookupError(f"no table view is registered for {key}")
    module, name = TABLES[key].split(":")
    fn: Table[BaseModel] = getattr(import_module(module), name)
    return fn


def render(model: M, fmt: str, table: Callable[[M, Console], None] | None = None,
           console: Console | None = None) -> None:
    """Print ``model`` in ``fmt``; the table view is ``table`` or the one registered for it."""
    if fmt == "table":
        if console is None:
            from rich.console import Console

            console = Console()
        (table or table_of(model))(model, console)
        return
    if fmt not in FORMATTERS:
        raise UsageError(f"-o {fmt} is not available for this command",
                         hint="use table, json or yaml (markdown, html and junit are for "
                              "reports such as `k3sops check`)")
    # JSON and YAML go straight to stdout (rich is not imported for them).
    (console.file if console is not None else sys.stdout).write(FORMATTERS[fmt](model))
