"""Where the lab keeps its binaries, state and logs, and which ports it binds (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT_BASE = 17000
"""Lab ports are PORT_BASE + offset: below the Linux ephemeral range (32768+), above well-known."""

PORT_OFFSETS: dict[str, int] = {
    "etcd": 379,            # etcd client URL
    "etcd-peer": 380,       # etcd peer URL (single member, but etcd always binds it)
    "etcd-metrics": 381,    # etcd /metrics and /health, like K3s' --etcd-expose-metrics 2381
    "apiserver": 443,
    "controller-manager": 257,
    "scheduler": 259,
    "kwok": 250,            # kwok's kubelet-like server: exec, logs, port-forward, metrics
    "kube-state-metrics": 80,
    "kube-state-metrics-telemetry": 81,
    "prometheus": 90,
    "alertmanager": 93,
    "node-exporter": 100,
    "postgres": 432,
}


@dataclass(frozen=True)
class LabLayout:
    """Directories and ports of one lab instance.

    Attributes:
        cache_dir: built binaries, by component and version (kept across labs; a warm `lab up`
            builds nothing).
        run_dir: PKI, kubeconfig, data, logs and pid files of the running lab; removed by
            `lab down --purge`.
        port_base: every port is port_base + PORT_OFFSETS[name], bound on 127.0.0.1 only.
    """

    cache_dir: Path
    run_dir: Path
    port_base: int = DEFAULT_PORT_BASE
    host: str = "127.0.0.1"
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str], home: Path) -> LabLayout:
        """From ``K3SOPS_LAB_CACHE``, ``K3SOPS_LAB_DIR``, ``K3SOPS_LAB_PORT_BASE`` or defaults."""
        cache = Path(env.get("K3SOPS_LAB_CACHE") or env.get("XDG_CACHE_HOME") or home / ".cache")
        if "K3SOPS_LAB_CACHE" not in env:
            cache = cache / "k3sops"
        run = Path(env.get("K3SOPS_LAB_DIR") or home / ".local" / "state" / "k3sops" / "lab")
        base = int(env.get("K3SOPS_LAB_PORT_BASE", DEFAULT_PORT_BASE))
        return cls(cache_dir=cache, run_dir=run, port_base=base)

    def port(self, name: str) -> int:
        """The port of a named endpoint."""
        return self.port_base + PORT_OFFSETS[name]

    def url(self, name: str, scheme: str = "http") -> str:
        """http(s)://127.0.0.1:PORT of a named endpoint."""
        return f"{scheme}://{self.host}:{self.port(name)}"

    @property
    def bin_dir(self) -> Path:
        """Root of the per-component binary directories."""
        return self.cache_dir / "bin"

    @property
    def pki_dir(self) -> Path:
        """CA, serving and client certificates, service-account keys."""
        return self.run_dir / "pki"

    @property
    def log_dir(self) -> Path:
        """One log file per process."""
        return self.run_dir / "logs"

    @property
    def pid_dir(self) -> Path:
        """One pid file per process."""
        return self.run_dir / "pids"

    @property
    def data_dir(self) -> Path:
        """etcd, Prometheus, Alertmanager and PostgreSQL data."""
        return self.run_dir / "data"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig `lab up` writes."""
        return self.run_dir / "kubeconfig"

    @property
    def platform_file(self) -> Path:
        """A platform.yaml describing the lab, written by `lab up`."""
        return self.run_dir / "platform.yaml"
