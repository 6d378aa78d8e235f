"""Prometheus' query answers as samples, and a caret under a parse error's position."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    """Base of the metrics models: unknown fields refused, instances immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Sample(FrozenModel):
    """One point of an instant query answer (a vector element, a scalar or a matrix point)."""

    labels: dict[str, str]
    """The series' labels (empty for a scalar)."""
    timestamp: float
    """Evaluation time, Unix seconds."""
    value: str
    """The value as Prometheus wrote it (``"0.25"``, ``"NaN"``, ``"+Inf"``)."""

    @property
    def number(self) -> float | None:
        """The value as a finite float, or None for NaN/±Inf (no meaningful number)."""
        try:
            v = float(self.value)
        except ValueError:
            return None
        return v if math.isfinite(v) else None


class InstantResult(FrozenModel):
    """The ``data`` of a /api/v1/query answer, flattened into samples."""

    result_type: Literal["vector", "scalar", "matrix", "string"]
    samples: list[Sample]


def _point(labels: dict[str, str], point: Any) -> Sample:
    if not (isinstance(point, list | tuple) and len(point) == 2):
        raise ValueError(f"a sample must be [timestamp, value], got {str(point)[:80]}")
    ts, val = point
    return Sample(labels=labels, timestamp=float(ts), value=str(val))


def parse_result(data: Any) -> InstantResult:
    """Turn the ``data`` member of a Prometheus query answer into an InstantResult.

    Args:
        data: ``{"resultType": ..., "result": ...}`` as decoded from JSON.

    Returns:
        The samples; a matrix becomes one sample per point.

    Raises:
        ValueError: the answer does not have the documented shape.
    """
    if not isinstance(data, Mapping):
        raise ValueError("the answer has no data object")
    kind = data.get("resultType")
    result = data.get("result")
    if kind in ("scalar", "string"):
        return InstantResult(result_type=kind, samples=[_point({}, result)])
    if kind not in ("vector", "matrix") or not isinstance(result, list):
        raise ValueError(f"unexpected resultType {str(kind)[:40]!r}")
    samples: list[Sample] = []
    for series in result:
        if not isinstance(series, Mapping):
            raise ValueError("a series is not an object")
        labels = {str(k): str(v) for k, v in (series.get("metric") or {}).items()}
        if kind == "vector":
            samples.append(_point(labels, series.get("value")))
        else:
            samples.extend(_point(labels, p) for p in series.get("values") or [])
    return InstantResult(result_type=kind, samples=samples)


_POSITION = re.compile(r"\b(\d+):(\d+): parse error")


def point_at(expr: str, error: str) -> str | None:
    """Draw a caret under the position a Prometheus parse error names, for one-line queries.

    Args:
        expr: the query as sent.
        error: Prometheus' error text, e.g. ``1:17: parse error: unclosed left parenthesis``.

    Returns:
        Two lines, the query and a caret, or None when the error names no usable position.
    """
    m = _POSITION.search(error)
    lines = expr.splitlines() or [""]
    if m is None or not 1 <= int(m[1]) <= len(lines):
        return None
    line = lines[int(m[1]) - 1]
    col = min(max(int(m[2]), 1), len(line) + 1)
    return f"{line}\n{' ' * (col - 1)}^"
