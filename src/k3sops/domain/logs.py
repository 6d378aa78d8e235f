"""Log lines from the Kubernetes API or Loki, as pure models: parsing, LogQL, merging.

No I/O and no clock: the service passes ``now`` and the raw answers in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from k3sops.errors import AdapterError, UsageError
from k3sops.timeparse import parse_time

_RFC3339_PREFIX = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})) ")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Direction(StrEnum):
    """Which end of the time range Loki fills ``limit`` from."""

    backward = "backward"
    forward = "forward"


class LogLine(_Model):
    """One log line; ``labels`` are the Loki stream's (empty for Kubernetes logs)."""

    timestamp: datetime | None
    line: str
    labels: dict[str, str] = {}


class LogsResult(_Model):
    """What `k3sops logs` prints."""

    source: str
    """``kubernetes`` or ``loki``."""
    endpoint: str
    target: str
    """The pod (``namespace/pod[/container]``) or the LogQL query."""
    lines: list[LogLine]


class LokiQuery(_Model):
    """The parameters of one ``/loki/api/v1/query_range`` call."""

    query: str
    start_ns: int
    end_ns: int
    limit: int
    direction: Direction

    def params(self) -> dict[str, str]:
        """URL parameters, as Loki's HTTP API documents them (times in ns since the epoch)."""
        return {"query": self.query, "start": str(self.start_ns), "end": str(self.end_ns),
                "limit": str(self.limit), "direction": self.direction.value}


def _ns(t: datetime) -> int:
    # Integer arithmetic: a float timestamp loses the nanoseconds Loki keeps.
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def loki_query(query: str, now: datetime, since: timedelta, limit: int,
               direction: Direction = Direction.backward) -> LokiQuery:
    """A query over ``[now - since, now]``.

    Raises:
        UsageError: empty query or a limit below 1.
    """
    if not query.strip():
        raise UsageError("the LogQL query is empty",
                         hint='give a stream selector, e.g. --query \'{namespace="production"}\'')
    if limit < 1:
        raise UsageError(f"--tail/--limit must be at least 1 (got {limit})")
    return LokiQuery(query=query, start_ns=_ns(now - since), end_ns=_ns(now), limit=limit,
                     direction=direction)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pod_selector(namespace: str, pod: str, container: str | None = None) -> str:
    """The LogQL stream selector of a pod's logs, with the labels Promtail and Alloy set."""
    parts = [f"namespace={_quote(namespace)}", f"pod={_quote(pod)}"]
    if container:
        parts.append(f"container={_quote(container)}")
    return "{" + ", ".join(parts) + "}"


def _from_ns(value: Any) -> datetime | None:
    try:
        ns = int(str(value))
    except ValueError:
        return None
    secs, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC) + timedelta(microseconds=rest // 1000)


def loki_lines(body: Any, where: str) -> list[LogLine]:
    """Log lines of a Loki ``query_range`` answer, oldest first, whatever the direction.

    Values may carry a third element (structured metadata, with ``categorize-labels``); it
    is ignored. Lines with the same timestamp keep Loki's order.

    Raises:
        UsageError: the query is a metric query (a matrix or vector, not log lines).
        AdapterError: the answer is not a Loki query answer.
    """
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(body, Mapping) or body.get("status") != "success" or not isinstance(
            data, Mapping):
        raise AdapterError(f"Loki at {where} returned an unexpected answer: {str(body)[:200]}")
    kind = data.get("resultType")
    if kind in ("matrix", "vector"):
        raise UsageError(f"the query is a metric query (Loki returned a {kind}), not log lines",
                         hint="k3sops logs prints log lines: drop rate()/count_over_time() …, "
                              "or use Grafana for log metrics")
    if kind != "streams":
        raise AdapterError(f"Loki at {where} returned result type {kind!r}, not streams")
    out: list[tuple[float, int, LogLine]] = []
    for stream in data.get("result") or []:
        if not isinstance(stream, Mapping):
            continue
        labels = {str(k): str(v) for k, v in (stream.get("stream") or {}).items()}
        for value in stream.get("values") or []:
            if not isinstance(value, list) or len(value) < 2:
                continue
            ts = _from_ns(value[0])
            key = int(str(value[0])) if ts is not None else math.inf
            out.append((key, len(out), LogLine(timestamp=ts, line=str(value[1]),
                                                labels=labels)))
    return [line for _, _, line in sorted(out, key=lambda x: (x[0], x[1]))]


def kube_lines(text: Iterable[str]) -> list[LogLine]:
    """Log lines as the API server serves them with ``timestamps=true`` (RFC 3339 prefix)."""
    out = []
    for raw in text:
        line = raw.rstrip("\n")
        m = _RFC3339_PREFIX.match(line)
        ts = parse_time(m.group(1)) if m else None
        out.append(LogLine(timestamp=ts, line=line[m.end():] if m and ts else line))
    return out


def short_labels(labels: Mapping[str, str]) -> str:
    """A compact name for a stream in a mixed listing: pod/container when present."""
    pod, container = labels.get("pod"), labels.get("container")
    if pod:
        return f"{pod}/{container}" if container else pod
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
