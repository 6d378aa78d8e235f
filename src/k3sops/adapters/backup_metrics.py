"""Backup metrics as a node-exporter textfile-collector file.

node-exporter's textfile collector reads ``*.prom`` files from a directory and exports them
with its own metrics; Prometheus then scrapes them like any other series. The file is
rewritten atomically (a reader never sees half of it) and keeps every target's series: the
current file is read back, the one (kind, target) updated, and the whole written again.

Series (the names the alert rules, dashboards and checks expect)::

    k3sops_backup_last_success_timestamp_seconds{kind,target}   gauge, unix time
    k3sops_backup_last_run_timestamp_seconds{kind,target}       gauge, unix time
    k3sops_backup_duration_seconds{kind,target}                 gauge, last successful run
    k3sops_backup_size_bytes{kind,target}                       gauge, last successful run
    k3sops_backup_failures_total{kind,target}                   counter
    k3sops_restore_drill_last_success_timestamp_seconds{kind,target}  gauge, unix time
    k3sops_restore_drill_duration_seconds{kind,target}          gauge, measured RTO
    k3sops_restore_drill_failures_total{kind,target}            counter
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path

from k3sops.adapters.files import write_atomic
from k3sops.errors import AdapterError

__all__ = ["METRICS", "BackupMetrics"]

METRICS: dict[str, tuple[str, str]] = {
    "k3sops_backup_last_success_timestamp_seconds":
        ("gauge", "Unix time of the last successful backup."),
    "k3sops_backup_last_run_timestamp_seconds": ("gauge", "Unix time of the last backup run."),
    "k3sops_backup_duration_seconds": ("gauge", "Duration of the last successful backup."),
    "k3sops_backup_size_bytes": ("gauge", "Size of the last successful backup."),
    "k3sops_backup_failures_total": ("counter", "Failed backup runs."),
    "k3sops_restore_drill_last_success_timestamp_seconds":
        ("gauge", "Unix time of the last successful restore drill."),
    "k3sops_restore_drill_duration_seconds":
        ("gauge", "Duration (measured RTO) of the last restore drill."),
    "k3sops_restore_drill_failures_total": ("counter", "Failed restore drills."),
}
_LINE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{kind="((?:[^"\\]|\\.)*)",target="((?:[^"\\]|\\.)*)"\}\s+(\S+)$')

Key = tuple[str, str, str]


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], v)


class BackupMetrics:
    """The textfile-collector file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[Key, float]:
        """Current values by (metric, kind, target); an absent file is empty."""
        out: dict[Key, float] = {}
        with contextlib.suppress(FileNotFoundError):
            for line in self.path.read_text().splitlines():
                m = _LINE.match(line.strip())
                if m and m[1] in METRICS:
                    with contextlib.suppress(ValueError):
                        out[(m[1], _unescape(m[2]), _unescape(m[3]))] = float(m[4])
        return out

    def _update(self, kind: str, target: str, values: dict[str, float],
                increment: tuple[str, ...] = ()) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = os.open(self.path.with_name(f".{self.path.name}.lock"),
                           os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise AdapterError(f"cannot write backup metrics to {self.path}: {e.strerror}",
                               hint="check backup.metrics_file and the directory's "
                                    "permissions") from e
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent runs of different targets
            cur = self.read()
            for name, v in values.items():
                cur[(name, kind, target)] = v
            for name in increment:
                cur[(name, kind, target)] = cur.get((name, kind, target), 0.0) + 1
            write_atomic(self.path, self._render(cur))
        except OSError as e:
            raise AdapterError(f"cannot write backup metrics to {self.path}: {e.strerror}") from e
        finally:
            os.close(lock)

    @staticmethod
    def _render(values: dict[Key, float]) -> str:
        lines = []
        for name, (typ, help_text) in METRICS.items():
            rows = sorted((k, v) for k, v in values.items() if k[0] == name)
            if not rows:
                continue
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {typ}"]
            lines += [f'{name}{{kind="{_escape(k[1])}",target="{_escape(k[2])}"}} {v:.17g}'
                      for k, v in rows]
        return "\n".join(lines) + "\n"

    def backup(self, kind: str, target: str, ok: bool, finished: float, duration: float,
               size: int | None) -> None:
        """Record a backup run (success: time, duration and size; failure: the counter)."""
        values = {"k3sops_backup_last_run_timestamp_seconds": finished}
        if ok:
            values.update({"k3sops_backup_last_success_timestamp_seconds": finished,
                           "k3sops_backup_duration_seconds": duration,
                           "k3sops_backup_size_bytes": float(size or 0)})
            # Present from the first run, so rate() and alerts see a 0 before the first failure.
            self._update(kind, target, values)
            cur = self.read()
            if ("k3sops_backup_failures_total", kind, target) not in cur:
                self._update(kind, target, {"k3sops_backup_failures_total": 0.0})
        else:
            self._update(kind, target, values, increment=("k3sops_backup_failures_total",))

    def drill(self, kind: str, target: str, ok: bool, at: float, seconds: float | None) -> None:
        """Record a restore drill."""
        if ok:
            self._update(kind, target, {
                "k3sops_restore_drill_last_success_timestamp_seconds": at,
                "k3sops_restore_drill_duration_seconds": seconds or 0.0})
        else:
            self._update(kind, target, {},
                         increment=("k3sops_restore_drill_failures_total",))
