"""restic, the backup repository: encrypted, deduplicated, content-addressed, verifiable.

Every call runs the ``restic`` CLI. The password reaches the child only through its
environment (``RESTIC_PASSWORD`` or ``RESTIC_PASSWORD_FILE``), never through argv, and is never
printed or put into an error. Data is streamed: :meth:`Restic.backup_stream` copies a readable
binary stream into ``restic backup --stdin`` in fixed-size chunks, computing the sha256 and size
on the way, so memory stays flat whatever the size; :meth:`Restic.open_dump` streams a file of a
snapshot back out the same way.

Children are started with a parent-death signal (SIGKILL), so a k3sops run killed mid-backup
never leaves a restic process behind that would turn a half-read stream into a snapshot.

Errors: a lock held by someone else (exit 11) -> :class:`~k3sops.errors.Conflict`; a wrong
password -> :class:`~k3sops.errors.Unauthorized`; no repository -> :class:`~k3sops.errors.NotFound`;
anything else (disk full included, named as such) -> :class:`~k3sops.errors.AdapterError`.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import SecretStr, ValidationError

from k3sops.domain.backups import SnapshotInfo
from k3sops.errors import AdapterError, Conflict, NotFound, Timeout, Unauthorized

__all__ = ["CHUNK", "CheckResult", "Restic", "StreamResult", "die_with_parent", "redact"]

CHUNK = 1 << 20
"""Bytes copied per read/write when streaming (1 MiB: flat memory, few syscalls)."""
_TAIL = 4000
_PASSWORD_VARS = ("RESTIC_PASSWORD", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_PR_SET_PDEATHSIG = 1


def redact(text: str) -> str:
    """Remove ``user:password@`` from URLs (a rest:/s3: repository string may carry one)."""
    return _USERINFO.sub("***@", text)


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when k3sops dies, whatever killed k3sops."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class StreamResult:
    """What went through a stream: bytes, their sha256, and the snapshot written (backup)."""

    size: int
    sha256: str
    snapshot_id: str = ""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of ``restic check``."""

    ok: bool
    output: str


class _Drain(threading.Thread):
    """Read a child's pipe to the end in the background (a full pipe would stall the child)."""

    def __init__(self, pipe: IO[bytes], keep_all: bool = False) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.keep_all = keep_all
        self.data = b""

    def run(self) -> None:
        buf = bytearray()
        for chunk in iter(lambda: self.pipe.read(65536), b""):
            buf += chunk
            if not self.keep_all and len(buf) > 4 * _TAIL:
                del buf[: len(buf) - _TAIL]
        self.data = bytes(buf)

    def text(self) -> str:
        """What was read, decoded."""
        self.join(timeout=30)
        return self.data.decode("utf-8", "replace")


class Restic:
    """One restic repository.

    Args:
        repository: the repository string (path, ``sftp:``, ``rest:``, ``s3:`` ...).
        password: the repository password (from an environment variable), or
        password_file: a file holding it. Exactly one of the two.
        binary: the restic executable.
        cache_dir: restic's cache directory (None: restic's default).
        timeout: seconds a short command (list, forget, check) may take.
        env: the environment the child inherits (credentials of S3 and the like); the
            password variables in it are replaced by ours. None: this process's environment.
    """

    def __init__(self, repository: str, *, password: SecretStr | None = None,
                 password_file: Path | None = None, binary: str = "restic",
                 cache_dir: Path | None = None, timeout: float = 600.0,
                 env: Mapping[str, str] | None = None) -> None:
        if (password is None) == (password_file is None):
            raise ValueError("give exactly one of password and password_file")
        self.repository = repository
        self._password = password
        self._password_file = password_file
        self.binary = binary
        self.cache_dir = cache_dir
        self.timeout = timeout
        self._base_env = env

    @property
    def where(self) -> str:
        """The repository, safe to print."""
        return redact(self.repository)

    # -- process plumbing --------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ if self._base_env is None else self._base_env)
        for k in _PASSWORD_VARS:
            env.pop(k, None)
        env["RESTIC_REPOSITORY"] = self.repository
        if self._password is not None:
            env["RESTIC_PASSWORD"] = self._password.get_secret_value()
        else:
            env["RESTIC_PASSWORD_FILE"] = str(self._password_file)
        if self.cache_dir is not None:
            env["RESTIC_CACHE_DIR"] = str(self.cache_dir)
        return env

    def _popen(self, args: Sequence[str], stdin: int | None = None) -> subprocess.Popen[bytes]:
        try:
            # preexec_fn only calls prctl (async-signal-safe), so threads do not matter here.
            return subprocess.Popen(
                [self.binary, *args], stdin=stdin, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=self._env(),
                preexec_fn=die_with_parent)  # noqa: PLW1509
        except OSError as e:
            raise NotFound(f"cannot run restic ({self.binary}): {e.strerror or type(e).__name__}",
                           hint="install restic (Debian: apt-get install restic) or set "
                                "backup.binaries.restic in platform.yaml") from e

    def _run(self, args: Sequence[str], what: str, timeout: float | None = None,
             stdin_data: bytes | None = None) -> str:
        proc = self._popen(args, stdin=subprocess.PIPE if stdin_data is not None else None)
        try:
            out, err = proc.communicate(stdin_data, timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired as e:
            proc.kill()
            proc.wait()
            raise Timeout(f"restic {what} on {self.where} did not finish within "
                          f"{timeout or self.timeout:g}s",
                          hint="is the repository reachable and not too slow?") from e
        if proc.returncode != 0:
            raise self._error(proc.returncode, err.decode("utf-8", "replace"), what)
        return out.decode("utf-8", "replace")

    def _error(self, rc: int, stderr: str, what: str) -> AdapterError:
        """Turn a failed restic run into the matching k3sops error (never with secrets)."""
        tail = redact(stderr.strip())[-800:]
        low = stderr.lower()
        where = f"restic {what} on repository {self.where}"
        if rc == 11 or "unable to create lock" in low or "already locked" in low:
            return Conflict(f"{where}: the repository is locked by another restic process",
                            hint="wait for the other backup/prune/check to finish; if it died, "
                                 "`restic unlock` removes stale locks")
        if "wrong password" in low or "no key found" in low:
            return Unauthorized(f"{where}: wrong repository password",
                                hint="check the variable named by backup.password_env or the "
                                     "file named by backup.password_file")
        if ("is there a repository" in low or "repository does not exist" in low
                or "unable to open config file" in low):
            return NotFound(f"{where}: no restic repository there",
                            hint="check backup.repository, or create it: `k3sops backup init`")
        if "no space left on device" in low or "disk quota exceeded" in low:
            return AdapterError(f"{where}: the repository's disk is full",
                                hint="free space there or prune old backups "
                                     "(`k3sops backup prune`)")
        return AdapterError(f"{where} failed (exit {rc}): {tail or 'no message'}",
                            hint="run the same restic command by hand for details")

    # -- repository ----------------------------------------------------------------------------

    def version(self) -> str:
        """``restic version``'s version number, e.g. ``0.14.0``."""
        out = self._run(["version"], "version", timeout=30)
        m = re.search(r"restic\s+([0-9][^\s]*)", out)
        return m[1] if m else out.strip()[:40]

    def exists(self) -> bool:
        """Whether the repository exists and the password opens it.

        Raises:
            Unauthorized: it exists but the password is wrong.
        """
        try:
            self._run(["cat", "config"], "open", timeout=120)
        except NotFound:
            return False
        return True

    def init_if_missing(self) -> bool:
        """Create the repository unless it exists; True when it was created."""
        if self.exists():
            return False
        self._run(["init"], "init", timeout=120)
        return True

    def snapshots(self, tags: Sequence[str] = ()) -> list[SnapshotInfo]:
        """Snapshots carrying every tag in ``tags`` (all snapshots when empty), oldest first."""
        args = ["snapshots", "--json", "--no-lock"]
        if tags:
            args += ["--tag", ",".join(tags)]  # one --tag with commas: AND of the tags
        out = self._run(args, "snapshots")
        try:
            raw = json.loads(out or "[]") or []
            snaps = [SnapshotInfo.model_validate(s) for s in raw]
        except (ValueError, ValidationError) as e:
            raise AdapterError(f"restic snapshots on {self.where} returned unreadable JSON",
                               hint="is the restic version supported (0.14 or later)?") from e
        return sorted(snaps, key=lambda s: s.time)

    def forget(self, snapshot_ids: Sequence[str], prune: bool = False) -> None:
        """Remove snapshots by id (and with ``prune`` the data no snapshot uses any more)."""
        if not snapshot_ids:
            return
        args = ["forget", *snapshot_ids]
        if prune:
            args.append("--prune")
        self._exclusive(args, "forget", max(self.timeout, 1800))

    def _exclusive(self, args: list[str], what: str, timeout: float) -> str:
        """Run a command that needs the exclusive lock, clearing stale locks once.

        On a lock conflict, stale locks are removed (``restic unlock`` keeps those of live
        processes) and the command is tried once more: a run killed with SIGKILL leaves its
        lock behind.
        """
        try:
            return self._run(args, what, timeout=timeout)
        except Conflict:
            self.unlock()
            return self._run(args, what, timeout=timeout)

    def prune(self) -> None:
        """Delete data no snapshot refers to."""
        self._exclusive(["prune"], "prune", max(self.timeout, 3600))

    def check(self, read_data_subset: str | None = None) -> CheckResult:
        """``restic check`` (structure), plus ``--read-data-subset`` (e.g. ``10%``, ``1/5``).

        Returns:
            ok False with restic's report when it finds a problem (exit 1); other failures
            (lock, password, no repository) raise.
        """
        args = ["check"]
        if read_data_subset:
            args.append(f"--read-data-subset={read_data_subset}")
        try:
            return self._check(args)
        except Conflict:
            self.unlock()
            return self._check(args)

    def _check(self, args: list[str]) -> CheckResult:
        proc = self._popen(args)
        try:
            out, err = proc.communicate(timeout=max(self.timeout, 3600))
        except subprocess.TimeoutExpired as e:
            proc.kill()
            proc.wait()
            raise Timeout(f"restic check on {self.where} did not finish in time") from e
        text = redact((out + err).decode("utf-8", "replace"))
        if proc.returncode == 0:
            return CheckResult(True, text[-_TAIL:])
        low = text.lower()
        if proc.returncode == 11 or "wrong password" in low or "is there a repository" in low:
            raise self._error(proc.returncode, text, "check")
        return CheckResult(False, text[-_TAIL:])

    def unlock(self) -> None:
        """Remove stale locks (restic removes only locks of dead processes)."""
        self._run(["unlock"], "unlock", timeout=120)

    # -- streaming -----------------------------------------------------------------------------

    def backup_stream(self, source: IO[bytes], filename: str, tags: Sequence[str], *,
                      host: str | None = None,
                      on_chunk: Callable[[int], None] | None = None) -> StreamResult:
        """Stream ``source`` to its end into a new snapshot holding one file ``filename``.

        Args:
            source: a readable binary stream (a pipe from pg_dump, an open file).
            filename: the file name inside the snapshot (``--stdin-filename``).
            tags: tags of the snapshot, each passed as its own ``--tag``.
            host: hostname recorded in the snapshot (None: this host's).
            on_chunk: called after each chunk with the running byte count (progress, and the
                service's failpoints).

        Returns:
            bytes streamed, their sha256 and the new snapshot's id.

        Raises:
            AdapterError: restic failed or stopped reading (its error is named).
        """
        args = ["backup", "--stdin", "--stdin-filename", filename, "--json", "--quiet"]
        for t in tags:
            args += ["--tag", t]
        if host:
            args += ["--host", host]
        proc = self._popen(args, stdin=subprocess.PIPE)
        if proc.stdin is None or proc.stdout is None or proc.stderr is None:  # pragma: no cover
            raise AdapterError("restic started without pipes")
        out, err = _Drain(proc.stdout, keep_all=True), _Drain(proc.stderr)
        out.start()
        err.start()
        digest = hashlib.sha256()
        size = 0
        broken = False
        try:
            for chunk in iter(lambda: source.read(CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
                try:
                    proc.stdin.write(chunk)
                except BrokenPipeError:
                    broken = True
                    break
                if on_chunk is not None:
                    on_chunk(size)
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        rc = proc.wait()
        if rc != 0 or broken:
            raise self._error(rc or 1, err.text(), "backup")
        snapshot_id = ""
        for line in out.text().splitlines():
            with contextlib.suppress(ValueError):
                msg: Any = json.loads(line)
                if isinstance(msg, dict) and msg.get("message_type") == "summary":
                    snapshot_id = str(msg.get("snapshot_id", ""))
        if not snapshot_id:
            raise AdapterError(f"restic backup on {self.where} reported no snapshot id",
                               hint="is the restic version supported (0.14 or later)?")
        return StreamResult(size, digest.hexdigest(), snapshot_id)

    def backup_bytes(self, data: bytes, filename: str, tags: Sequence[str]) -> str:
        """Write a small document (a manifest) as a snapshot; returns the snapshot id."""
        return self.backup_stream(io.BytesIO(data), filename, tags).snapshot_id

    @contextlib.contextmanager
    def open_dump(self, snapshot_id: str, filename: str) -> Iterator[IO[bytes]]:
        """Stream ``filename`` of a snapshot (``restic dump``) as a readable pipe.

        Raises (on leaving the block):
            AdapterError: restic failed (missing snapshot, damaged data, wrong password).
        """
        proc = self._popen(["dump", "--no-lock", snapshot_id, "/" + filename.lstrip("/")])
        if proc.stdout is None or proc.stderr is None:  # pragma: no cover
            raise AdapterError("restic started without pipes")
        stdout = proc.stdout
        err = _Drain(proc.stderr)
        err.start()
        try:
            yield stdout
            # Read what the caller left, so restic finishes and reports a late error.
            for _ in iter(lambda: stdout.read(CHUNK), b""):
                pass
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        rc = proc.wait()
        if rc != 0:
            raise self._error(rc, err.text(), f"dump {snapshot_id[:8]}")

    def dump_to(self, snapshot_id: str, filename: str, sink: IO[bytes]) -> StreamResult:
        """Copy a file of a snapshot into ``sink``, with its size and sha256."""
        digest = hashlib.sha256()
        size = 0
        with self.open_dump(snapshot_id, filename) as src:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
                sink.write(chunk)
        return StreamResult(size, digest.hexdigest(), snapshot_id)

    def dump_bytes(self, snapshot_id: str, filename: str, limit: int = 16 << 20) -> bytes:
        """A small file of a snapshot (a manifest), at most ``limit`` bytes."""
        buf = bytearray()
        with self.open_dump(snapshot_id, filename) as src:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                buf += chunk
                if len(buf) > limit:
                    raise AdapterError(f"{filename} in snapshot {snapshot_id[:8]} is larger "
                                       f"than {limit} bytes; not a k3sops manifest")
        return bytes(buf)
