"""Watch events as the API server streams them: one JSON object a line (pure)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    """The ``type`` of a watch event."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"
    """Only ``metadata.resourceVersion`` is meaningful: where to resume from."""
    ERROR = "ERROR"
    """``object`` is a Status (``code``, ``reason``, ``message``)."""


@dataclass(frozen=True)
class WatchEvent:
    """One event of a watch: its type and the object (or Status, for ERROR)."""

    type: EventType
    object: dict[str, Any]

    @property
    def resource_version(self) -> str | None:
        """The object's resourceVersion (for a BOOKMARK, the point to resume from)."""
        rv = (self.object.get("metadata") or {}).get("resourceVersion")
        return str(rv) if rv is not None else None

    @property
    def code(self) -> int | None:
        """The HTTP-like code of an ERROR event's Status (410: the resourceVersion is gone)."""
        if self.type is not EventType.ERROR:
            return None
        code = self.object.get("code")
        return int(code) if isinstance(code, int) else None


def decode_event(line: bytes | str) -> WatchEvent:
    """One line of a watch stream as an event.

    Raises:
        ValueError: the line is not a watch event (the caller maps it to an AdapterError).
    """
    data = json.loads(line)
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise ValueError("not a watch event: no object")
    return WatchEvent(type=EventType(str(data.get("type"))), object=data["object"])
