"""Validation errors of a platform file as the user sees them: line, dotted path, problem.

Each pydantic error becomes a :class:`ConfigIssue` (``FILE:LINE: field.path: problem
(allowed: ...)``); values under keys that could hold a secret are never shown.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from k3sops.config.schema import Platform
from k3sops.errors import ConfigIssue, PlatformConfigError

_SENSITIVE = re.compile(r"password|token|secret|key", re.IGNORECASE)


_TYPE_NAMES: dict[str, str] = {
    "string": "string",
    "int": "whole number",
    "float": "number",
    "bool": "true or false",
    "dict": "mapping",
    "model": "mapping",
    "model_attributes": "mapping",
    "list": "list",
    "path": "path string",
}


def kind_of(value: object) -> str:
    """Name the YAML kind of a constructed value for messages."""
    if value is None:
        return "null (empty value)"
    for tp, name in ((bool, "boolean"), (int, "whole number"), (float, "number"),
                     (str, "string"), (list, "list"), (dict, "mapping")):
        if isinstance(value, tp):
            return name
    return type(value).__name__


def _shown(value: object, key: str | None) -> str:
    """Show a scalar input in a message, unless its key could hold a secret."""
    if key is not None and _SENSITIVE.search(key):
        return ""
    if value is None or isinstance(value, bool | int | float):
        return f" {value!r}"
    if isinstance(value, str):
        return f" {value[:40]!r}" + ("…" if len(value) > 40 else "")
    return ""


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional wrappers from a type annotation."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """Return the model class that validates the mapping at ``loc`` (None if not a model)."""
    tp: Any = Platform
    for seg in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next((f for n, f in tp.model_fields.items() if seg in (n, f.alias)), None)
            if field is None:
                return None
            tp = field.annotation
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


@dataclass
class Positions:
    """Where things are in the YAML document, keyed by path (keys as constructed, indices)."""

    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)
    """1-based line of each key (mapping entries) or item (sequence entries)."""
    mappings: set[tuple[Any, ...]] = field(default_factory=set)
    """Paths of mappings, so an integer key is not shown as a list index."""

    def line_for(self, loc: tuple[Any, ...]) -> int | None:
        """Line of ``loc`` in the file, else of its nearest ancestor present in the file."""
        for n in range(len(loc), -1, -1):
            try:
                line = self.lines.get(loc[:n])
            except TypeError:  # an unhashable segment cannot be in the map
                continue
            if line is not None:
                return line
        return None

    def format_path(self, loc: tuple[int | str, ...]) -> str:
        """Dotted path with ``[i]`` for list indices, e.g. ``environments.production.x[0]``."""
        out = ""
        for n, seg in enumerate(loc):
            is_index = isinstance(seg, int) and not isinstance(seg, bool)
            try:
                in_mapping = loc[:n] in self.mappings
            except TypeError:
                in_mapping = False
            if is_index and not in_mapping:
                out += f"[{seg}]"
            else:
                out += ("." if out else "") + str(seg)
        return out or "(top level)"


def _range_text(model: type[BaseModel] | None, name: str, ctx: Mapping[str, Any]) -> str:
    """Describe a numeric field's full allowed range, e.g. ``> 0, <= 100``."""
    ops = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    bounds: dict[str, Any] = dict(ctx)
    field_info = model.model_fields.get(name) if model is not None else None
    for meta in field_info.metadata if field_info is not None else ():
        for attr in ops:
            if getattr(meta, attr, None) is not None:
                bounds[attr] = getattr(meta, attr)
    return ", ".join(f"{op} {bounds[k]}" for k, op in ops.items() if k in bounds)


def _issue(err: ErrorDetails, source: str, pos: Positions) -> ConfigIssue:
    """Turn one pydantic error into a ConfigIssue with line, dotted path and "allowed"."""
    is_key = bool(err["loc"]) and err["loc"][-1] == "[key]"
    loc = tuple(err["loc"][:-1] if is_key else err["loc"])
    etype = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    value = err.get("input")
    key = None if is_key else next((str(s) for s in reversed(loc) if isinstance(s, str)), None)
    allowed: str | None = None
    hint: str | None = None
    line = pos.line_for(loc)

    if etype == "k3sops_invalid":
        problem = str(ctx["problem"])
        allowed = ctx.get("allowed")
        hint = ctx.get("hint")
    elif etype == "missing":
        problem = "required key is missing"
    elif etype == "extra_forbidden":
        problem = "unknown key"
        parent = _model_at(loc[:-1])
        if parent is not None:
            allowed = ", ".join(f.alias or n for n, f in parent.model_fields.items())
            hints: dict[str, str] = getattr(parent, "unknown_key_hints", {})
            hint = hints.get(str(loc[-1]))
    elif etype in ("literal_error", "enum"):
        problem = f"{'unknown key' if is_key else 'unexpected value'}{_shown(value, key)}"
        allowed = ", ".join(re.findall(r"'((?:[^'\\]|\\.)*)'", str(ctx.get("expected", ""))))
    elif etype.endswith(("_type", "_parsing")) or etype == "int_from_float":
        base = etype.removesuffix("_type").removesuffix("_parsing").removesuffix("_from_float")
        problem = f"wrong type: got {kind_of(value)}{_shown(value, key)}"
        allowed = _TYPE_NAMES.get(base, base.replace("_", " "))
    elif etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        problem = f"out of range: got{_shown(value, key)}"
        allowed = _range_text(_model_at(loc[:-1]), str(loc[-1]) if loc else "", ctx)
    else:
        msg = err["msg"].removeprefix("Value error, ")
        problem = (msg[:1].lower() + msg[1:]) if msg else etype
    if is_key and not problem.startswith("unknown key"):
        problem = f"key: {problem}"
    return ConfigIssue(source, line, pos.format_path(loc), problem, allowed or None, hint)


def validation_error(e: ValidationError, source: str,
                      pos: Positions) -> PlatformConfigError:
    """Turn pydantic's errors into one error listing each problem with its line, in line order."""
    issues = sorted((_issue(err, source, pos) for err in e.errors()),
                    key=lambda i: (i.line or 0, i.path))
    count = f"{len(issues)} problem{'s' if len(issues) != 1 else ''}"
    message = "\n".join([f"invalid platform file {source} ({count}):", *map(str, issues)])
    specific = list(dict.fromkeys(i.hint for i in issues if i.hint))
    hint = "; ".join(specific) if specific else (
        "fix the lines above; `k3sops init FILE` writes a commented example of every section"
    )
    return PlatformConfigError(message, tuple(issues), hint=hint)


