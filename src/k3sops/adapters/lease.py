"""Mutual exclusion for backups of one target: a Kubernetes Lease, or a lock file.

:class:`KubeLease` holds a ``coordination.k8s.io/v1`` Lease (what controllers use for leader
election): created if absent, taken over when it expired or when its holder is a process on
this host that no longer exists (a run killed with SIGKILL cannot release it), renewed in the
background while held, and deleted on release. Writes use the object's resourceVersion, so of
two runs racing for an expired Lease exactly one wins (the other gets 409 Conflict).

:class:`FileLock` is the fallback when no cluster is involved: an exclusive ``flock`` on a file
that the kernel releases when the process dies, whatever killed it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from k3sops.adapters.kube import KubeClient
from k3sops.errors import AdapterError, Conflict
from k3sops.timeparse import parse_time

LEASES = ("coordination.k8s.io/v1", "leases")

__all__ = ["FileLock", "KubeLease", "holder_identity"]


def holder_identity(tag: str) -> str:
    """``HOST/PID/TAG``: who holds a lease, so a dead holder on this host can be recognised."""
    return f"{socket.gethostname()}/{os.getpid()}/{tag}"


def _holder_dead(holder: str) -> bool:
    host, _, rest = holder.partition("/")
    pid_text = rest.partition("/")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _micro(t: dt.datetime) -> str:
    """A Lease's MicroTime: RFC 3339 with microseconds, in UTC."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubeLease:
    """A Lease held for the duration of a ``with`` block.

    Args:
        kube: the cluster.
        namespace: where the Lease lives.
        name: the Lease's name (one per backup target).
        identity: :func:`holder_identity` of this run.
        duration: seconds the Lease is valid without renewal.
    """

    def __init__(self, kube: KubeClient, namespace: str, name: str, identity: str,
                 duration: int = 60) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name[:63].rstrip("-.")
        self.identity = identity
        self.duration = duration
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def _spec(self, transitions: int = 0) -> dict[str, Any]:
        now = _micro(self._now())
        return {"holderIdentity": self.identity, "leaseDurationSeconds": self.duration,
                "acquireTime": now, "renewTime": now, "leaseTransitions": transitions}

    def _get(self) -> dict[str, Any] | None:
        return self.kube.find(*LEASES, self.name, self.namespace)

    def acquire(self) -> None:
        """Take the Lease.

        Raises:
            Conflict: another live run holds it (its identity and renew time are named).
        """
        current = self._get()
        if current is None:
            obj = {"apiVersion": LEASES[0], "kind": "Lease",
                   "metadata": {"name": self.name, "namespace": self.namespace,
                                "labels": {"app.kubernetes.io/managed-by": "k3sops"}},
                   "spec": self._spec()}
            try:
                self.kube.create(*LEASES, self.namespace, obj)
            except Conflict as e:
                raise Conflict(f"another backup of this target took lease "
                               f"{self.namespace}/{self.name} at the same moment",
                               hint="wait for it to finish") from e
        else:
            spec = current.get("spec") or {}
            holder = str(spec.get("holderIdentity") or "")
            renewed = parse_time(spec.get("renewTime") or spec.get("acquireTime"))
            expired = (renewed is None or not holder or
                       (self._now() - renewed).total_seconds()
                       > int(spec.get("leaseDurationSeconds") or 0))
            if holder and holder != self.identity and not expired and not _holder_dead(holder):
                raise Conflict(
                    f"another backup of this target is running: lease "
                    f"{self.namespace}/{self.name} is held by {holder} (renewed "
                    f"{renewed.isoformat(timespec='seconds') if renewed else 'never'})",
                    hint="wait for it to finish; two backups of one target never overlap")
            current["spec"] = self._spec(int(spec.get("leaseTransitions") or 0) + 1)
            # The PUT carries the read resourceVersion: of two racing runs, one wins.
            self.kube.replace(*LEASES, self.namespace, current)
        self._thread = threading.Thread(target=self._renew_loop, daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.duration / 3):
            with contextlib.suppress(AdapterError):
                cur = self._get()
                spec = (cur or {}).get("spec") or {}
                if cur is None or spec.get("holderIdentity") != self.identity:
                    return
                spec["renewTime"] = _micro(self._now())
                self.kube.replace(*LEASES, self.namespace, cur)

    def release(self) -> None:
        """Stop renewing and delete the Lease if this run still holds it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(AdapterError):
            cur = self._get()
            if cur is not None and (cur.get("spec") or {}).get("holderIdentity") == self.identity:
                self.kube.delete(*LEASES, self.name, self.namespace)

    def __enter__(self) -> KubeLease:
        self.acquire()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class FileLock:
    """An exclusive, non-blocking ``flock`` on ``path`` for the ``with`` block."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise AdapterError(f"cannot create lock file {self.path}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(fd)
            raise Conflict(f"another backup of {self.what} is running (lock {self.path})",
                           hint="wait for it to finish; two backups of one target never "
                                "overlap") from e
        self._fd = fd
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
