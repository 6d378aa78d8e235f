"""Append-only audit log of applied remediation steps (JSON lines, one fsync per line).

Default location: ``$K3SOPS_STATE_DIR/audit.jsonl``, else ``~/.local/state/k3sops/audit.jsonl``.
A record says who (the OS user), when (UTC, ISO 8601), what (action and target) and the result
(``ok``, ``skipped`` or ``failed`` with the error message). Records never carry secrets: only
names of objects and k3sops error messages, which are written never to contain any.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from k3sops.errors import AdapterError

AUDIT_FILE = "audit.jsonl"


def state_dir(explicit: Path | None, env: Mapping[str, str], home: Path) -> Path:
    """The state directory: ``--state-dir`` > ``K3SOPS_STATE_DIR`` > ~/.local/state/k3sops."""
    if explicit is not None:
        return explicit
    if env.get("K3SOPS_STATE_DIR"):
        return Path(env["K3SOPS_STATE_DIR"]).expanduser()
    return home / ".local" / "state" / "k3sops"


def current_user() -> str:
    """The OS user running k3sops (``unknown`` when it cannot be told)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class AuditLog:
    """An append-only JSON lines file; each record is flushed and fsynced before returning."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record, adding ``when`` (UTC now) if it is missing.

        Raises:
            AdapterError: the file cannot be written.
        """
        line = dict(record)
        line.setdefault("when", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND: concurrent k3sops runs interleave whole lines, never overwrite.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (json.dumps(line, sort_keys=True) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise AdapterError(f"cannot write audit log {self.path}: {e.strerror}",
                               hint="pass --state-dir DIR (or K3SOPS_STATE_DIR) pointing at a "
                                    "writable directory") from e

    def read(self) -> list[dict[str, Any]]:
        """All records, oldest first (empty when the file does not exist yet)."""
        if not self.path.is_file():
            return []
        return [json.loads(x) for x in self.path.read_text().splitlines() if x.strip()]
