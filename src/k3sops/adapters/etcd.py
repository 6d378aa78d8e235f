"""etcd through its own tools: snapshots (etcdctl), their status and restore (etcdutl).

* :meth:`EtcdTools.snapshot_save` takes a snapshot through the etcd snapshot API (etcdctl
  writes ``PATH.part`` and renames it when complete);
* :func:`hash_trailer_ok` checks the SHA-256 etcd appends to every snapshot (the same check
  ``etcdutl snapshot restore`` makes; a stripped or damaged trailer fails it);
* :meth:`EtcdTools.snapshot_status` reads revision, total keys and size (``etcdutl``);
* :meth:`EtcdTools.count_keys` counts live keys at a revision of a running etcd;
* :meth:`EtcdTools.scratch` restores a snapshot into a throwaway etcd started on free
  127.0.0.1 ports, for restore drills, and always stops and removes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from k3sops.adapters.restic import die_with_parent
from k3sops.errors import AdapterError, NotFound, Timeout, Unauthorized, Unreachable

__all__ = ["EtcdTools", "SnapshotStatus", "free_port", "hash_trailer_ok"]

_HASH_LEN = 32
_INSTALL = ("install etcd's tools (etcdctl, etcdutl) or set backup.binaries.etcdctl / "
            "etcdutl / etcd in platform.yaml")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free on ``host`` now (the caller binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def hash_trailer_ok(path: Path) -> bool:
    """Whether the file ends in the SHA-256 of everything before it (etcd's snapshot hash)."""
    try:
        size = path.stat().st_size
        if size <= _HASH_LEN:
            return False
        digest = hashlib.sha256()
        remaining = size - _HASH_LEN
        with path.open("rb") as f:
            while remaining:
                chunk = f.read(min(1 << 20, remaining))
                if not chunk:
                    return False
                digest.update(chunk)
                remaining -= len(chunk)
            return f.read() == digest.digest()
    except OSError:
        return False


@dataclass(frozen=True)
class SnapshotStatus:
    """``etcdutl snapshot status``: etcd's own hash of the data, revision, keys, size."""

    hash: int
    revision: int
    total_keys: int
    total_size: int
    version: str = ""


@dataclass
class EtcdTools:
    """etcdctl/etcdutl/etcd binaries and how to reach the cluster."""

    etcdctl: str = "etcdctl"
    etcdutl: str = "etcdutl"
    etcd: str = "etcd"
    endpoints: Sequence[str] = ("https://127.0.0.1:2379",)
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    timeout: float = 300.0
    _versions: dict[str, str] = field(default_factory=dict)

    def _tls(self) -> list[str]:
        out = []
        for flag, value in (("--cacert", self.cacert), ("--cert", self.cert),
                            ("--key", self.key)):
            if value is not None:
                out += [flag, str(value)]
        return out

    def _run(self, argv: Sequence[str], what: str, timeout: float | None = None) -> str:
        try:
            proc = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                                  timeout=timeout or self.timeout,
                                  preexec_fn=die_with_parent)
        except subprocess.TimeoutExpired as e:
            raise Timeout(f"{what} did not finish within {timeout or self.timeout:g}s",
                          hint="is etcd overloaded or unreachable?") from e
        except OSError as e:
            raise NotFound(f"cannot run {argv[0]} for {what}: {e.strerror or type(e).__name__}",
                           hint=_INSTALL) from e
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).strip()
            low = err.lower()
            if "connection refused" in low or "deadline exceeded" in low or "no such host" in low:
                raise Unreachable(f"{what}: etcd at {', '.join(self.endpoints)} is unreachable",
                                  hint="check backup.etcd.endpoints and that etcd runs")
            if "permission denied" in low or "certificate" in low or "authentication" in low:
                raise Unauthorized(f"{what}: etcd refused the client credentials",
                                   hint="check backup.etcd.cacert/cert/key")
            raise AdapterError(f"{what} failed (exit {proc.returncode}): {_tail(err)}")
        return proc.stdout

    def version(self, tool: str = "etcdctl") -> str:
        """Version of etcdctl/etcdutl, e.g. ``3.6.16``."""
        if tool not in self._versions:
            binary = self.etcdctl if tool == "etcdctl" else self.etcdutl
            out = self._run([binary, "version"], f"{tool} version", timeout=30)
            m = re.search(r"version:\s*([0-9][^\s]*)", out)
            self._versions[tool] = m[1] if m else out.strip()[:40]
        return self._versions[tool]

    def snapshot_save(self, path: Path) -> Path:
        """Take a snapshot through the snapshot API into ``path`` (complete or absent)."""
        self._run([self.etcdctl, "--endpoints", ",".join(self.endpoints[:1]), *self._tls(),
                   "snapshot", "save", str(path)], "etcdctl snapshot save")
        if not path.is_file():
            raise AdapterError(f"etcdctl snapshot save reported success but wrote no {path}")
        return path

    def snapshot_status(self, path: Path) -> SnapshotStatus:
        """Etcdutl's view of a snapshot file.

        Raises:
            AdapterError: the file is not a readable etcd snapshot.
        """
        out = self._run([self.etcdutl, "snapshot", "status", str(path), "-w", "json"],
                        f"etcdutl snapshot status {path.name}", timeout=600)
        try:
            d: Any = json.loads(out)
            return SnapshotStatus(int(d["hash"]), int(d["revision"]), int(d["totalKey"]),
                                  int(d["totalSize"]), str(d.get("version", "")))
        except (ValueError, KeyError, TypeError) as e:
            raise AdapterError(f"etcdutl snapshot status {path.name}: unreadable output") from e

    def count_keys(self, revision: int | None = None,
                   endpoints: Sequence[str] | None = None) -> tuple[int, int]:
        """(live keys, revision answered at) of a running etcd, at ``revision`` if given."""
        eps = list(endpoints) if endpoints is not None else list(self.endpoints[:1])
        tls = self._tls() if endpoints is None else []
        argv = [self.etcdctl, "--endpoints", ",".join(eps), *tls, "get", "", "--prefix",
                "--count-only", "-w", "fields"]
        if revision is not None:
            argv.append(f"--rev={revision}")
        out = self._run(argv, "etcdctl get --count-only", timeout=120)
        count = re.search(r'"Count"\s*:\s*([0-9]+)', out)
        rev = re.search(r'"Revision"\s*:\s*([0-9]+)', out)
        if count is None or rev is None:
            raise AdapterError("etcdctl get --count-only: unreadable output")
        return int(count[1]), int(rev[1])

    @contextlib.contextmanager
    def scratch(self, snapshot: Path, work: Path) -> Iterator[str]:
        """Restore ``snapshot`` into a new etcd on free loopback ports; yield its client URL.

        The snapshot's hash is checked by the restore itself (no ``--skip-hash-check``). The
        etcd process is always stopped and its directory removed on leaving the block.

        Raises:
            AdapterError: the restore was refused or the scratch etcd did not become healthy.
        """
        base = Path(tempfile.mkdtemp(prefix="k3sops-etcd-drill-", dir=work))
        client, peer, metrics = free_port(), free_port(), free_port()
        curl, purl = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        data = base / "data"
        proc: subprocess.Popen[bytes] | None = None
        try:
            self._run([self.etcdutl, "snapshot", "restore", str(snapshot), "--data-dir",
                       str(data), "--name", "drill", "--initial-cluster", f"drill={purl}",
                       "--initial-advertise-peer-urls", purl],
                      f"etcdutl snapshot restore {snapshot.name}", timeout=600)
            log = (base / "etcd.log").open("wb")
            try:
                proc = subprocess.Popen(  # loopback only, on ports the OS just handed out
                    [self.etcd, "--name", "drill", "--data-dir", str(data),
                     "--listen-client-urls", curl, "--advertise-client-urls", curl,
                     "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
                     "--initial-cluster", f"drill={purl}",
                     "--listen-metrics-urls", f"http://127.0.0.1:{metrics}"],
                    stdout=log, stderr=log, preexec_fn=die_with_parent)  # noqa: PLW1509
            except OSError as e:
                raise NotFound(f"cannot start etcd ({self.etcd}) for the restore drill",
                               hint=_INSTALL) from e
            finally:
                log.close()
            self._wait_healthy(proc, f"http://127.0.0.1:{metrics}/health", base / "etcd.log")
            yield curl
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            shutil.rmtree(base, ignore_errors=True)

    def _wait_healthy(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AdapterError(f"the scratch etcd exited ({proc.returncode}) during the "
                                   f"restore drill: {_tail(_read(log))}")
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise Timeout("the scratch etcd of the restore drill was not healthy within 60s",
                      hint=_tail(_read(log)))


def _read(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")
    return ""


def _tail(text: str, n: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]
