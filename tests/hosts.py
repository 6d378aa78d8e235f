"""Test hosts: small real machines, each with its own network address, filesystem and sshd.

What a host is: a network namespace made by the test (``ip netns``), joined by a veth pair
to a bridge on the machine that carries a private /24 (192.168.X.0/24, X chosen free among
200-249 so that parallel test runs do not collide); inside it, in a private mount and UTS
namespace, an overlayfs root whose lower layer is a debootstrapped minimal Debian bookworm
(``--variant=minbase`` plus openssh-server, python3 and sudo, built once and cached in
``~/.cache/k3sops/hosts/bookworm``) and whose upper layer is the host's own directory; sshd
(Debian's, from that root) runs chrooted there and listens on the host's address, port 22,
accepting a generated ed25519 key for ``root`` and for ``ops`` (a sudoer, for ``become``).

Why this design: debootstrap builds the root in under a minute here, so every host runs a real
Debian userland rather than the test machine's; overlayfs makes each host's filesystem private
and writable at the cost of a directory, not a 300 MB copy; the mounts live in the host's own
mount namespace, so they disappear with its processes and nothing can leak into the machine's
mount table. There is no systemd and no kernel of their own: no service can be started and
``journalctl``/``systemctl`` are absent (tests of playbooks that would start K3s say so).

Use (session-scoped fixture ``test_hosts`` in conftest, or :class:`HostPool` directly)::

    def test_x(test_hosts):
        h1, h2 = test_hosts.hosts(2)               # fresh filesystems, sshd up
        inv = test_hosts.inventory(tmp_path / "hosts.yaml", servers=[h1], agents=[h2])
        h1.run("cat /etc/rancher/k3s/config.yaml")  # ssh, returns CompletedProcess
        test_hosts.stop(h2)                         # now unreachable (for error tests)

Cleanup (``close``, run by the fixture finalizer): kills every process in each namespace,
deletes the namespaces, the veths and the bridge, and removes the hosts' directories.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

CACHE = Path.home() / ".cache" / "k3sops" / "hosts"
BASE_ROOT = CACHE / "bookworm"
_READY = ".k3sops-ready"
_LOCK = Path("/run/lock/k3sops-test-hosts.lock")
_PREFIX = "k3st"  # netns, bridge and veth names start with this (15-char interface limit)


def _sh(*args: str, check: bool = True, timeout: float = 60,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check,
                          timeout=timeout, input=input)


@contextlib.contextmanager
def file_lock(path: Path = _LOCK) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (another xdist worker or run waits for it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_base_root() -> Path:
    """Build the cached bookworm root once (debootstrap, then an ``ops`` sudoer); return it."""
    if (BASE_ROOT / _READY).exists():
        return BASE_ROOT
    if shutil.which("debootstrap") is None or not Path("/usr/sbin/sshd").exists():
        pytest.fail("test hosts need debootstrap and openssh-server: run scripts/install-deps.sh")
    CACHE.mkdir(parents=True, exist_ok=True)
    with file_lock():
        if (BASE_ROOT / _READY).exists():
            return BASE_ROOT
        tmp = CACHE / "bookworm.tmp"
        if not (tmp / ".debootstrap-done").exists():
            shutil.rmtree(tmp, ignore_errors=True)
            _sh("debootstrap", "--variant=minbase", "--include=openssh-server,python3,sudo",
                "bookworm", str(tmp), timeout=1200)
            (tmp / ".debootstrap-done").touch()
        _sh("chroot", str(tmp), "sh", "-c",
            "id ops >/dev/null 2>&1 || useradd -m -s /bin/bash ops; usermod -p '*' ops; "
            "echo 'ops ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/ops; "
            "chmod 0440 /etc/sudoers.d/ops; rm -f /etc/ssh/ssh_host_*")
        (tmp / _READY).touch()
        tmp.rename(BASE_ROOT)
    return BASE_ROOT


def _used_octets() -> set[int]:
    out = _sh("ip", "-o", "-4", "addr", "show").stdout
    used = set()
    for line in out.splitlines():
        parts = line.split()
        addr = parts[3] if len(parts) > 3 else ""
        if addr.startswith("192.168."):
            used.add(int(addr.split(".")[2]))
    return used


def _pool_lock(octet: int) -> Path:
    return _LOCK.with_name(f"k3sops-test-hosts-{octet}.lock")


def _pool_alive(octet: str) -> bool:
    """Whether a running pool holds the lock of this subnet (it keeps it for its lifetime)."""
    try:
        with open(_pool_lock(int(octet)), "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except (OSError, ValueError):
        return True  # when in doubt, leave it alone


def _reap_stale() -> None:
    """Remove namespaces and bridges of crashed runs: their pool's lock is free, no process
    is left in them (a namespace being set up has the lock held)."""
    names = [line.split()[0] for line in _sh("ip", "netns", "list").stdout.splitlines() if line]
    live: set[str] = set()
    for ns in names:
        parts = ns.split("-")
        if not ns.startswith(f"{_PREFIX}-") or len(parts) != 3:
            continue
        if _pool_alive(parts[1]) or _sh("ip", "netns", "pids", ns, check=False).stdout.strip():
            live.add(parts[1])
        else:
            _sh("ip", "netns", "del", ns, check=False)
    for line in _sh("ip", "-o", "link", "show", "type", "bridge").stdout.splitlines():
        br = line.split(":")[1].strip().split("@")[0]
        octet = br[len(_PREFIX):-2]
        if (br.startswith(_PREFIX) and br.endswith("br") and octet not in live
                and not _pool_alive(octet)):
            _sh("ip", "link", "del", br, check=False)


@dataclass
class TestHost:
    """One test host: a name, an address reachable over SSH, its own filesystem."""

    __test__ = False  # not a test class, despite the name

    name: str
    address: str
    index: int
    netns: str
    dir: Path
    pool: HostPool = field(repr=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def upper(self) -> Path:
        """The host's own layer: every file it created or changed is under here."""
        return self.dir / "upper"

    def run(self, command: str, *, user: str = "root", check: bool = False,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the host over SSH (as a user would)."""
        return _sh("ssh", *self.pool.ssh_options(), "-p", "22", f"{user}@{self.address}",
                   command, check=check, timeout=timeout)

    def read(self, path: str) -> str | None:
        """A file's contents on the host, or None when it does not exist."""
        r = self.run(f"cat {path}")
        return r.stdout if r.returncode == 0 else None

    def stat(self, path: str) -> tuple[str, str] | None:
        """``(octal mode, owner:group)`` of a path on the host, or None when it is missing."""
        r = self.run(f"stat -c '%a %U:%G' {path}")
        if r.returncode != 0:
            return None
        mode, owner = r.stdout.split()
        return mode, owner

    @property
    def up(self) -> bool:
        """True while its sshd runs."""
        return self.proc is not None and self.proc.poll() is None


class HostPool:
    """Creates, resets, stops and removes test hosts on one private subnet."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.base = ensure_base_root()
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="k3sops-hosts-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.key = self.workdir / "id_ed25519"
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "k3sops-test", "-f",
            str(self.key))
        self.known_hosts = self.workdir / "known_hosts"
        self.known_hosts.write_text("")
        self._hosts: dict[int, TestHost] = {}
        with file_lock():
            _reap_stale()
            free = sorted(set(range(200, 250)) - _used_octets())
            if not free:
                pytest.fail("no free 192.168.X.0/24 (X 200-249) for test hosts")
            self.octet = free[0]
            # Held until close(): tells other runs' reapers this subnet is in use.
            self._alive = open(_pool_lock(self.octet), "a")  # noqa: SIM115
            fcntl.flock(self._alive, fcntl.LOCK_EX)
            self.bridge = f"{_PREFIX}{self.octet}br"
            _sh("ip", "link", "add", self.bridge, "type", "bridge")
            _sh("ip", "addr", "add", f"192.168.{self.octet}.1/24", "dev", self.bridge)
            _sh("ip", "link", "set", self.bridge, "up")

    @property
    def subnet(self) -> str:
        """The pool's private subnet."""
        return f"192.168.{self.octet}.0/24"

    def ssh_options(self) -> list[str]:
        """ssh(1) options that authenticate with the pool key and check host keys."""
        return ["-i", str(self.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5"]

    # -- lifecycle -------------------------------------------------------------------------

    def hosts(self, n: int, *, fresh: bool = True) -> list[TestHost]:
        """The first ``n`` hosts, running; ``fresh``: with their filesystem as new."""
        out = []
        for i in range(1, n + 1):
            host = self._hosts.get(i) or self._create(i)
            if fresh or not host.up:
                self._restart(host, wipe=fresh)
            out.append(host)
        return out

    def _create(self, i: int) -> TestHost:
        ns = f"{_PREFIX}-{self.octet}-{i}"
        host = TestHost(name=f"host{i}", address=f"192.168.{self.octet}.{10 + i}", index=i,
                        netns=ns, dir=self.workdir / f"host{i}", pool=self)
        outside, inside = f"{_PREFIX}{self.octet}h{i}", f"{_PREFIX}{self.octet}i{i}"
        _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        _sh("ip", "link", "set", outside, "master", self.bridge)
        _sh("ip", "link", "set", outside, "up")
        _sh("ip", "link", "set", inside, "netns", ns)
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
        _sh("ip", "-n", ns, "addr", "add", f"{host.address}/24", "dev", inside)
        _sh("ip", "-n", ns, "link", "set", inside, "up")
        _sh("ip", "-n", ns, "route", "add", "default", "via", f"192.168.{self.octet}.1")
        self._hosts[i] = host
        return host

    def _prepare_upper(self, host: TestHost) -> None:
        """Seed the host's own layer: host key, authorized keys, sshd config, hostname."""
        upper = host.upper
        shutil.rmtree(host.dir, ignore_errors=True)
        for d in ("upper", "work", "root"):
            (host.dir / d).mkdir(parents=True)
        ssh_dir = upper / "etc" / "ssh"
        ssh_dir.mkdir(parents=True)
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f",
            str(ssh_dir / "ssh_host_ed25519_key"))
        pub = self.key.with_suffix(".pub").read_text()
        for home, uid in (("root", 0), ("home/ops", 1000)):
            d = upper / home / ".ssh"
            d.mkdir(parents=True)
            (d / "authorized_keys").write_text(pub)
            os.chmod(d, 0o700)
            os.chmod(d / "authorized_keys", 0o600)
            for p in (d, d / "authorized_keys"):
                os.chown(p, uid, uid)
        if (upper / "home").exists():
            os.chown(upper / "home" / "ops", 1000, 1000)
            os.chmod(upper / "home" / "ops", 0o755)  # noqa: S103 (as useradd made it)
        (ssh_dir / "sshd_config_k3sops").write_text(
            f"ListenAddress {host.address}\nPort 22\nHostKey /etc/ssh/ssh_host_ed25519_key\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nPidFile none\n"
            "AuthorizedKeysFile .ssh/authorized_keys\nSubsystem sftp internal-sftp\n")
        (upper / "etc" / "hostname").write_text(f"{host.name}\n")
        (upper / "etc" / "hosts").write_text(f"127.0.0.1 localhost\n{host.address} {host.name}\n")
        hostkey = (ssh_dir / "ssh_host_ed25519_key.pub").read_text().split()
        lines = [x for x in self.known_hosts.read_text().splitlines()
                 if not x.startswith(f"{host.address} ")]
        lines.append(f"{host.address} {hostkey[0]} {hostkey[1]}")
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def _restart(self, host: TestHost, *, wipe: bool) -> None:
        self._kill(host)
        if wipe or not host.upper.exists():
            self._prepare_upper(host)
        root = host.dir / "root"
        script = (
            f"mount -t overlay overlay -o lowerdir={self.base},upperdir={host.upper},"
            f"workdir={host.dir / 'work'} {root} && "
            f"mount --rbind /dev {root}/dev && mount -t proc proc {root}/proc && "
            f"mount -t tmpfs -o mode=0755 tmpfs {root}/run && mkdir -p {root}/run/sshd && "
            f"mount -t tmpfs tmpfs {root}/tmp && chmod 1777 {root}/tmp && "
            f"hostname {host.name} && "
            f"exec chroot {root} /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config_k3sops")
        log = open(host.dir / "sshd.log", "wb")  # noqa: SIM115 (handed to the process)
        host.proc = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts",
             "--propagation", "private", "sh", "-c", script],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 90  # generous: the machine may be heavily loaded
        while time.monotonic() < deadline:
            if host.proc.poll() is not None:
                raise RuntimeError(f"sshd of {host.name} exited: "
                                   f"{(host.dir / 'sshd.log').read_text()[-2000:]}")
            if host.run("true", timeout=10).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"sshd of {host.name} did not answer on {host.address}:22")

    def stop(self, host: TestHost) -> None:
        """Stop the host (kill its sshd and everything in it): it becomes unreachable."""
        self._kill(host)

    def start(self, host: TestHost) -> None:
        """Start a stopped host again, keeping its filesystem."""
        if not host.up:
            self._restart(host, wipe=False)

    def _kill(self, host: TestHost) -> None:
        pids = _sh("ip", "netns", "pids", host.netns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        if host.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                host.proc.wait(timeout=10)
            host.proc = None
        deadline = time.monotonic() + 10
        while _sh("ip", "netns", "pids", host.netns, check=False).stdout.strip():
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)

    def close(self) -> None:
        """Kill every host's processes; delete namespaces, veths, bridge and directories."""
        for host in self._hosts.values():
            self._kill(host)
            _sh("ip", "link", "del", f"{_PREFIX}{self.octet}h{host.index}", check=False)
            _sh("ip", "netns", "del", host.netns, check=False)
        self._hosts.clear()
        _sh("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
        self._alive.close()  # releases the subnet's lock

    # -- inventories -----------------------------------------------------------------------

    def host_vars(self, host: TestHost, user: str = "root") -> dict[str, Any]:
        """Inventory variables that reach ``host`` with the pool key and known_hosts."""
        return {"ansible_host": host.address, "ansible_user": user,
                "ansible_ssh_private_key_file": str(self.key),
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.known_hosts} "
                                           "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"}

    def inventory(self, path: Path, *, servers: Sequence[TestHost] = (),
                  agents: Sequence[TestHost] = (), names: dict[str, str] | None = None,
                  cluster_vars: dict[str, Any] | None = None, user: str = "root") -> Path:
        """Write a k3s-ansible style inventory (k3s_cluster → server, agent) for the hosts.

        ``names`` maps a host's name to the inventory name to use (e.g. ``node4``).
        """
        names = names or {}

        def group(hosts: Sequence[TestHost]) -> dict[str, Any]:
            return {"hosts": {names.get(h.name, h.name): self.host_vars(h, user)
                              for h in hosts}}

        doc = {"k3s_cluster": {"children": {"server": group(servers), "agent": group(agents)},
                               "vars": dict(cluster_vars or {})}}
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path


@pytest.fixture(scope="session")
def test_hosts() -> Iterator[HostPool]:
    """A pool of test hosts for the whole run; always torn down at the end."""
    pool = HostPool()
    try:
        yield pool
    finally:
        pool.close()
