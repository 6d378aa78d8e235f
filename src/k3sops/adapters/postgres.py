"""PostgreSQL: dumps, consistent content facts, restores and throwaway drill clusters.

Where the database is reached:

* **exec** (:class:`PodExec`): the command runs in the database pod through the exec
  subresource, as ``kubectl exec -n NS POD -- pg_dump -Fc`` would run it, over the
  :class:`~k3sops.adapters.kube.KubeClient`'s WebSocket (``v5.channel.k8s.io``): stdout
  streams binary and unchanged into the caller, stderr and the exit code come back on their
  channels, and a 403 on ``pods/exec`` is :class:`~k3sops.errors.Unauthorized`. No kubectl
  process is spawned.
* **direct** (:class:`Direct`): the local client tools with a libpq DSN; a password comes from
  an environment variable handed to the child as ``PGPASSWORD``, never argv.

Consistency: :class:`SqlSession` opens a ``REPEATABLE READ`` transaction, exports its
snapshot (``pg_export_snapshot()``) and computes per-table row counts and a content
fingerprint in it; ``pg_dump --snapshot`` then dumps exactly that state while the session
holds the transaction open. The fingerprint of a table is the count plus the sum of a 60-bit
hash of every row's text form: independent of row order, constant memory, and the same
after ``pg_restore``.

Drills: :class:`ScratchCluster` initdb's a throwaway cluster on a free 127.0.0.1 port (as the
``postgres`` user when run as root: PostgreSQL refuses to run as root) and removes it after.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from k3sops.adapters.etcd import free_port
from k3sops.adapters.restic import die_with_parent
from k3sops.errors import AdapterError, NotFound, Timeout, Unauthorized, Unreachable

if TYPE_CHECKING:
    from k3sops.adapters.kube import KubeClient

__all__ = ["Direct", "LocalProcess", "PgBinaries", "PodExec", "Process",
           "ScratchCluster", "SqlSession", "StreamProc", "classify", "fingerprint", "stream"]

_MARK = "__K3SOPS_END__"
TABLES_SQL = (
    "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' ORDER BY 1")
"""Ordinary tables outside the system schemas (partitions are counted as their own tables)."""


def table_sql(table: str) -> str:
    """Row count and order-independent hash sum of one table (``table`` already quoted)."""
    return (f"SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)"  # noqa: S608  # name from format('%I.%I')
            f"::bigint), 0) FROM {table} t")


def fingerprint(tables: Mapping[str, Sequence[int | str]]) -> str:
    """One sha256 over every table's (name, count, hash sum), in name order."""
    h = hashlib.sha256()
    for name in sorted(tables):
        h.update(f"{name}\t{tables[name][0]}\t{tables[name][1]}\n".encode())
    return h.hexdigest()


def classify(stderr: str, what: str, where: str) -> AdapterError:
    """The k3sops error for a failed client/exec, from its message (no secrets in it)."""
    low = stderr.lower()
    tail = stderr.strip()[-600:]
    if "forbidden" in low or "(403)" in low:
        return Unauthorized(f"{what} on {where}: refused (403 Forbidden): {tail}",
                            hint="the credentials need create on pods/exec in that namespace")
    if "unauthorized" in low or "(401)" in low:
        return Unauthorized(f"{what} on {where}: not authenticated (401)",
                            hint="check the kubeconfig's credentials")
    if ("connection refused" in low or "could not connect" in low or "no route" in low
            or "could not translate host name" in low or "timeout expired" in low
            or "is the server running" in low):
        return Unreachable(f"{what}: the database at {where} is unreachable: {tail}",
                           hint="check the DSN/pod, that PostgreSQL runs, and the network")
    if "password authentication failed" in low or "no password supplied" in low:
        return Unauthorized(f"{what} on {where}: the database refused the login",
                            hint="check the user and the variable named by password_env")
    if "notfound" in low or ("not found" in low and "pods" in low):
        return NotFound(f"{what}: {where} not found: {tail}", hint="check namespace and pod")
    return AdapterError(f"{what} on {where} failed: {tail or 'no message'}")


@dataclass(frozen=True)
class PgBinaries:
    """Where PostgreSQL's programs are (a bin directory, or PATH)."""

    bin_dir: Path | None = None

    @classmethod
    def find(cls, configured: Path | None) -> PgBinaries:
        """The configured directory, else PATH, else the newest /usr/lib/postgresql/*/bin."""
        if configured is not None:
            return cls(configured)
        if shutil.which("pg_dump") and shutil.which("initdb"):
            return cls(None)
        dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
        return cls(Path(dirs[-1]) if dirs else None)

    def path(self, name: str) -> str:
        """Full path (or bare name on PATH) of a PostgreSQL program."""
        if self.bin_dir is not None:
            return str(self.bin_dir / name)
        return shutil.which(name) or name


# --------------------------------------------------------------------------------------------
# Where commands run


class Process(Protocol):
    """A running command: a local child process, or a command in a pod."""

    @property
    def stdin(self) -> IO[bytes]:
        """Its input (only when started with ``stdin``)."""

    @property
    def stdout(self) -> IO[bytes]:
        """Its output."""

    def stderr_text(self) -> str:
        """The last few KB it wrote to stderr (and, in a pod, the server's failure message)."""

    def wait(self, timeout: float) -> int:
        """Its exit code; killed and :class:`~k3sops.errors.Timeout` after ``timeout``."""

    def kill(self) -> None:
        """Stop it now."""


class LocalProcess:
    """A child process of this host; stderr is drained in the background (the last 8 KB kept).

    Raises:
        NotFound: the program cannot be run.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], what: str, *,
                 stdin: bool = False, stdout: bool = True) -> None:
        self.what = what
        try:
            self.proc = subprocess.Popen(
                list(argv), env=dict(env), stderr=subprocess.PIPE,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                preexec_fn=die_with_parent)  # noqa: PLW1509
        except OSError as e:
            raise NotFound(f"cannot run {argv[0]} for {what}: {e.strerror}",
                           hint="install the tool or set backup.binaries in platform.yaml") from e
        self._err = b""
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None  # noqa: S101  # created with PIPE above
        for chunk in iter(lambda: self.proc.stderr.read(8192), b""):  # type: ignore[union-attr]
            self._err = (self._err + chunk)[-8000:]

    @property
    def stdin(self) -> IO[bytes]:
        """The child's stdin."""
        if self.proc.stdin is None:  # pragma: no cover
            raise AdapterError(f"{self.what} has no stdin")
        return self.proc.stdin

    @property
    def stdout(self) -> IO[bytes]:
        """The child's stdout."""
        if self.proc.stdout is None:  # pragma: no cover
            raise AdapterError(f"{self.what} has no stdout")
        return self.proc.stdout

    def stderr_text(self) -> str:
        """The last 8 KB of stderr (complete once the child has exited)."""
        self._t.join(timeout=5 if self.proc.poll() is not None else 0)
        return self._err.decode("utf-8", "replace")

    def wait(self, timeout: float) -> int:
        """The exit code (killed and Timeout after ``timeout`` seconds)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            self.kill()
            raise Timeout(f"{self.what} did not finish within {timeout:g}s") from e

    def kill(self) -> None:
        """Stop the process now."""
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()


@dataclass(frozen=True)
class PodExec:
    """Commands run in a pod through the exec subresource of its API server."""

    kube: KubeClient
    namespace: str
    pod: str
    container: str | None = None

    @property
    def where(self) -> str:
        """``pod NS/NAME``, for messages."""
        return f"pod {self.namespace}/{self.pod}"

    def start(self, command: Sequence[str], what: str, *, stdin: bool = False,
              stdout: bool = True, idle_timeout: float = 3600.0) -> Process:
        """Run ``command`` in the pod.

        Args:
            command: argv in the container.
            what: for messages.
            stdin: the caller writes the command's input.
            stdout: unused (a pod's stdout is always there to read).
            idle_timeout: seconds a read may wait for output.

        Raises:
            Unauthorized: no ``create`` on ``pods/exec`` (the message names the pod).
            NotFound: no such pod or container.
        """
        del stdout
        try:
            session = self.kube.exec(self.namespace, self.pod, list(command),
                                     container=self.container, stdin=stdin)
        except Unauthorized as e:
            raise Unauthorized(f"{what} on {self.where}: refused (403 Forbidden): {e.message}",
                               hint="the credentials need create on pods/exec in that "
                                    "namespace") from e
        except NotFound as e:
            raise NotFound(f"{what}: {self.where} not found: {e.message}",
                           hint="check namespace and pod") from e
        session.read_timeout = idle_timeout
        return session


@dataclass(frozen=True)
class Direct:
    """Commands run on this host against a DSN (the password only in the child's env)."""

    dsn: str
    bins: PgBinaries
    password: str | None = None

    @property
    def where(self) -> str:
        """The DSN, for messages (it holds no password: platform.yaml refuses one)."""
        return f"database {self.dsn!r}"

    def argv(self, command: Sequence[str]) -> list[str]:
        """The local program with its full path (first element is a PostgreSQL program)."""
        return [self.bins.path(command[0]), *command[1:]]

    def env(self) -> dict[str, str]:
        """This process's environment plus PGPASSWORD when a password is known."""
        env = dict(os.environ)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def start(self, command: Sequence[str], what: str, *, stdin: bool = False,
              stdout: bool = True, idle_timeout: float = 3600.0) -> Process:
        """Run ``command`` here (``idle_timeout`` is for pods; :meth:`Process.wait` limits)."""
        del idle_timeout
        return LocalProcess(self.argv(command), self.env(), what, stdin=stdin, stdout=stdout)


Runner = PodExec | Direct


def conninfo(runner: Runner, database: str, user: str | None, app: str) -> str:
    """Libpq conninfo: the DSN (direct) or database/user (exec), tagged with ``app``."""
    parts = [runner.dsn] if isinstance(runner, Direct) else [f"dbname={database}"]
    if user and isinstance(runner, PodExec):
        parts.append(f"user={user}")
    parts.append(f"application_name={app}")
    return " ".join(parts)


def run_command(runner: Runner, command: Sequence[str], timeout: float,
                what: str) -> str:
    """Run a short command (a hook) where the runner runs things; return its output.

    Raises:
        Timeout: it did not finish within ``timeout`` seconds (it is killed).
        AdapterError: it failed (classified from its stderr).
    """
    proc = runner.start(command, what, idle_timeout=timeout)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        proc.kill()
        raise Timeout(f"{what} did not finish within {timeout:g}s on {runner.where}")
    rc = proc.wait(timeout)
    if rc != 0:
        raise classify(proc.stderr_text() or (out[0] if out else b"").decode("utf-8", "replace"),
                       what, runner.where)
    return (out[0] if out else b"").decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------
# A psql session that holds a snapshot


class SqlSession:
    """An interactive ``psql`` (local or in a pod) answering one query at a time."""

    def __init__(self, runner: Runner, info: str, timeout: float = 600.0) -> None:
        self.runner = runner
        self.timeout = timeout
        self.proc = runner.start(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                                  "-d", info], "psql", stdin=True, idle_timeout=timeout)
        self._out = io.TextIOWrapper(self.proc.stdout, encoding="utf-8", errors="replace")

    def query(self, sql: str) -> list[list[str]]:
        """Run one statement; return its rows (``|``-separated columns).

        Raises:
            AdapterError: psql stopped (the statement failed, the connection broke).
        """
        try:
            self.proc.stdin.write(f"{sql};\n\\echo {_MARK}\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, AdapterError) as e:
            raise self._failed("query") from e
        rows: list[list[str]] = []
        deadline = time.monotonic() + self.timeout
        for raw in self._out:
            line = raw.rstrip("\n")
            if line == _MARK:
                return rows
            if line:
                rows.append(line.split("|"))
            if time.monotonic() > deadline:
                break
        raise self._failed("query")

    def _failed(self, what: str) -> AdapterError:
        with contextlib.suppress(AdapterError):
            self.proc.wait(timeout=5)
        return classify(self.proc.stderr_text(), f"psql {what}", self.runner.where)

    def close(self) -> None:
        """End the session (psql's quit command: kwok's exec does not pass on EOF)."""
        with contextlib.suppress(BrokenPipeError, OSError, ValueError, AdapterError):
            self.proc.stdin.write(b"\\q\n")
            self.proc.stdin.close()
        with contextlib.suppress(AdapterError):
            self.proc.wait(timeout=15)

    def tables(self) -> dict[str, list[int | str]]:
        """``{schema.table: [rows, hash sum]}`` of every ordinary table, as this session sees it."""
        out: dict[str, list[int | str]] = {}
        for (name,) in (r[:1] for r in self.query(TABLES_SQL)):
            rows = self.query(table_sql(name))
            count, hsum = rows[0] if rows else ("0", "0")
            out[name] = [int(count), str(hsum)]
        return out


# --------------------------------------------------------------------------------------------
# Streaming producers and consumers


class StreamProc:
    """A command whose stdout (producer) or stdin (consumer) the caller streams."""

    def __init__(self, proc: Process, what: str, where: str, consumer: bool = False) -> None:
        self.proc, self.what, self.where, self.consumer = proc, what, where, consumer

    @property
    def stdout(self) -> IO[bytes]:
        """The producer's output."""
        return self.proc.stdout

    @property
    def stdin(self) -> IO[bytes]:
        """The consumer's input."""
        return self.proc.stdin

    def finish(self, timeout: float = 3600) -> None:
        """Wait for the command; raise the classified error if it failed."""
        if self.consumer:
            with contextlib.suppress(BrokenPipeError, OSError, AdapterError):
                self.proc.stdin.close()
        try:
            rc = self.proc.wait(timeout)
        except Timeout as e:
            raise Timeout(f"{self.what} on {self.where} did not finish in time") from e
        if rc != 0:
            raise classify(self.proc.stderr_text() or f"exit {rc}", self.what, self.where)

    def kill(self) -> None:
        """Stop the command now."""
        self.proc.kill()


def stream(runner: Runner, command: Sequence[str], what: str,
           consumer: bool = False) -> StreamProc:
    """Start ``command`` where the runner runs things, its stdout or stdin for the caller."""
    return StreamProc(runner.start(command, what, stdin=consumer, stdout=not consumer),
                      what, runner.where, consumer)


def pg_dump(runner: Runner, info: str, snapshot: str | None) -> StreamProc:
    """Start ``pg_dump -Fc`` (at ``snapshot`` when given); its stdout is the archive."""
    cmd = ["pg_dump", "-Fc", "-d", info]
    if snapshot:
        cmd.append(f"--snapshot={snapshot}")
    return stream(runner, cmd, "pg_dump")


def tar_stream(runner: PodExec, path: str) -> StreamProc:
    """Start ``tar -C PATH -cf - .`` in the pod; its stdout is the archive."""
    return stream(runner, ["tar", "-C", path, "-cf", "-", "."], "tar")


def pg_restore(runner: Runner, info: str, clean: bool = False) -> StreamProc:
    """Start ``pg_restore`` reading the archive from stdin into ``info``'s database."""
    cmd = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "-d", info]
    if clean:
        cmd[1:1] = ["--clean", "--if-exists"]
    return stream(runner, cmd, "pg_restore", consumer=True)


# --------------------------------------------------------------------------------------------
# Throwaway cluster for drills


class ScratchCluster:
    """A PostgreSQL cluster for one restore drill: initdb, start on a free loopback port, remove.

    Args:
        bins: where initdb/pg_ctl/postgres are.
        work: parent directory for the cluster (it must be enterable by the ``postgres``
            user when run as root; the system temp dir is).
    """

    def __init__(self, bins: PgBinaries, work: Path) -> None:
        self.bins = bins
        self.work = work
        self.port = 0
        self.dir: Path | None = None
        self._user: str | None = None

    def _as_user(self) -> dict[str, Any]:
        return {"user": self._user} if self._user else {}

    @contextlib.contextmanager
    def running(self) -> Iterator[Direct]:
        """Start the cluster; yield a :class:`Direct` to its ``postgres`` database."""
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as e:
                raise AdapterError("running as root and no `postgres` user exists for the "
                                   "drill's PostgreSQL", hint="create the user, or configure "
                                   "backup.drill.postgres_dsn") from e
            self._user = "postgres"
        self.dir = Path(tempfile.mkdtemp(prefix="k3sops-pg-drill-", dir=self.work))
        data, sock = self.dir / "data", self.dir / "sock"
        sock.mkdir()
        if self._user:
            pw = pwd.getpwnam(self._user)
            for d in (self.dir, sock):
                os.chown(d, pw.pw_uid, pw.pw_gid)
        try:
            self._run([self.bins.path("initdb"), "-D", str(data), "-U", "postgres",
                       "--auth=trust", "-E", "UTF8", "--no-sync"], "initdb", 300)
            self.port = free_port()
            self._run([self.bins.path("pg_ctl"), "-D", str(data), "-w", "-t", "60",
                       "-l", str(self.dir / "log"), "-o",
                       f"-h 127.0.0.1 -p {self.port} -k {sock} -c fsync=off "
                       "-c full_page_writes=off -c synchronous_commit=off",
                       "start"], "pg_ctl start", 90)
            yield Direct(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                         self.bins)
        finally:
            with contextlib.suppress(AdapterError, Timeout):
                self._run([self.bins.path("pg_ctl"), "-D", str(data), "-m", "immediate",
                           "-w", "stop"], "pg_ctl stop", 60)
            shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, argv: list[str], what: str, timeout: float) -> None:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=timeout, cwd="/", **self._as_user())
        except subprocess.TimeoutExpired as e:
            raise Timeout(f"{what} of the drill cluster did not finish in {timeout:g}s") from e
        except OSError as e:
            raise NotFound(f"cannot run {argv[0]} ({what}) for the drill: {e.strerror}",
                           hint="install PostgreSQL's server package or set "
                                "backup.binaries.pg_bin_dir / backup.drill.postgres_dsn") from e
        if proc.returncode != 0:
            raise AdapterError(f"{what} of the drill cluster failed: "
                               f"{(proc.stderr or proc.stdout).strip()[-600:]}")
