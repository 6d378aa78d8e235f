"""Start, probe and stop the lab's processes; each has a log file and a pid file in the run dir."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from k3sops.errors import LabError
from k3sops.lab.layout import LabLayout


@dataclass(frozen=True)
class ProcSpec:
    """How to run one lab process and how to tell that it is ready."""

    name: str
    argv: Sequence[str]
    ready_url: str | None = None
    ready_port: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    timeout: float = 90.0


@dataclass(frozen=True)
class Running:
    """A process the lab started (from its pid file), with its process group's memory."""

    name: str
    pid: int
    alive: bool
    rss_kib: int = 0


def group_rss_kib(pgid: int) -> int:
    """Resident memory (KiB) of every process in a process group (PostgreSQL forks workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            for line in (stat.parent / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port (we try to bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Field 3 is the state; Z (zombie) and X (dead) count as gone.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _pid_file(layout: LabLayout, name: str) -> Path:
    return layout.pid_dir / f"{name}.pid"


def running(layout: LabLayout) -> list[Running]:
    """Every process with a pid file, and whether it is still alive."""
    out: list[Running] = []
    if not layout.pid_dir.is_dir():
        return out
    for f in sorted(layout.pid_dir.glob("*.pid")):
        try:
            pid = int(f.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        alive = _alive(pid)
        out.append(Running(f.stem, pid, alive, group_rss_kib(pid) if alive else 0))
    return out


LAB_EXECUTABLES = frozenset({
    "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
    "kube-state-metrics", "prometheus", "prometheus-alertmanager", "alertmanager",
    "prometheus-node-exporter", "node_exporter", "postgres"})


def strays(markers: Sequence[str]) -> list[int]:
    """Lab processes (by executable name) whose command line names one of ``markers``.

    Every lab process is started with its run directory, data directory or listen address on
    its command line, so this finds lab processes even when their pid files were lost.
    """
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            pid = int(cmdline.parent.name)
            args = [a.decode(errors="replace") for a in cmdline.read_bytes().split(b"\0") if a]
        except (OSError, ValueError):
            continue
        if not args or Path(args[0]).name not in LAB_EXECUTABLES:
            continue
        text = " ".join(args)
        if any(m in text for m in markers):
            found.append(pid)
    return found


def start(layout: LabLayout, spec: ProcSpec) -> subprocess.Popen[bytes]:
    """Start a process in its own session, output to its log file; write its pid file."""
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    layout.pid_dir.mkdir(parents=True, exist_ok=True)
    log = layout.log_dir / f"{spec.name}.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(layout.run_dir),
           "LANG": "C.UTF-8", **spec.env}
    with log.open("ab") as fh:
        try:
            proc = subprocess.Popen(list(spec.argv), stdin=subprocess.DEVNULL, stdout=fh,
                                    stderr=subprocess.STDOUT, env=env, cwd=layout.run_dir,
                                    start_new_session=True, user=spec.user)
        except OSError as e:
            raise LabError(f"cannot start {spec.name} ({spec.argv[0]}): {e}") from e
    _pid_file(layout, spec.name).write_text(f"{proc.pid}\n")
    return proc


def _probe(url: str, ca: Path | None, cert: tuple[Path, Path] | None) -> bool:
    ctx: ssl.SSLContext | bool = False
    if url.startswith("https"):
        ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl.create_default_context()
        if ca is None:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cert:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    try:
        r = httpx2.get(url, verify=ctx, timeout=2.0)
    except httpx2.HTTPError:
        return False
    return r.status_code == 200


def _tcp_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def wait_ready(layout: LabLayout, spec: ProcSpec, proc: subprocess.Popen[bytes],
               ca: Path | None = None, cert: tuple[Path, Path] | None = None,
               tick: Callable[[], None] | None = None) -> float:
    """Wait until the process answers its readiness probe; return the seconds it took."""
    started = time.monotonic()
    deadline = started + spec.timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"{spec.name} exited with code {proc.returncode} while starting",
                           hint=f"its log: {layout.log_dir / (spec.name + '.log')}\n"
                                + log_tail(layout, spec.name))
        ok = True
        if spec.ready_url:
            ok = _probe(spec.ready_url, ca, cert)
        elif spec.ready_port:
            ok = _tcp_open(layout.host, spec.ready_port)
        if ok:
            return time.monotonic() - started
        if tick:
            tick()
        time.sleep(0.25)
    raise LabError(f"{spec.name} was not ready within {spec.timeout:g}s "
                   f"({spec.ready_url or spec.ready_port})",
                   hint=f"its log: {layout.log_dir / (spec.name + '.log')}\n"
                        + log_tail(layout, spec.name))


def log_tail(layout: LabLayout, name: str, lines: int = 12) -> str:
    """The last lines of a process' log (for error messages)."""
    try:
        text = (layout.log_dir / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def stop(layout: LabLayout, name: str, pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL; remove the pid file."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    _pid_file(layout, name).unlink(missing_ok=True)
