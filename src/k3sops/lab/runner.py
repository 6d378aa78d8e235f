"""`lab up | down | status`: start the lab's real components on 127.0.0.1 and stop them again."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from k3sops.errors import LabError
from k3sops.lab import configs, pki, procs, stages
from k3sops.lab.build import find_go_root, installed_binaries
from k3sops.lab.layout import PORT_OFFSETS, LabLayout
from k3sops.lab.procs import ProcSpec

SERVICE_CIDR = "10.43.0.0/16"  # K3s defaults: services 10.43.0.0/16, DNS 10.43.0.10
POD_CIDR = "10.42.0.0/16"  # K3s' default cluster CIDR; kwok hands pod IPs out of it
Progress = Callable[[str], None]


@dataclass
class UpResult:
    """What `lab up` did and how long each part took (seconds)."""

    already_running: bool
    timings: dict[str, float] = field(default_factory=dict)
    kubeconfig: Path | None = None
    platform_file: Path | None = None


def _state_file(layout: LabLayout) -> Path:
    return layout.run_dir / "state.json"


def _pg_user(env: Mapping[str, str]) -> str | None:
    """PostgreSQL refuses to run as root: run it as the `postgres` user Debian creates."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as e:
        raise LabError("running as root and no `postgres` user exists to run PostgreSQL",
                       hint="install Debian's postgresql package (it creates the user)") from e
    return "postgres"


def _specs(layout: LabLayout, b: Mapping[str, Path], p: pki.Pki,
           kwok_config: Path) -> dict[str, ProcSpec]:
    h = layout.host
    kc = str(layout.run_dir / "admin.kubeconfig")
    data = layout.data_dir
    port = layout.port
    tls_pair = ["--tls-cert-file", str(p.crt("apiserver")),
                "--tls-private-key-file", str(p.key("apiserver"))]
    common_ctl = ["--kubeconfig", kc, "--authentication-kubeconfig", kc,
                  "--authorization-kubeconfig", kc, "--bind-address", h, "--leader-elect=false",
                  "--kube-api-qps=200", "--kube-api-burst=400", *tls_pair]
    return {
        "etcd": ProcSpec("etcd", [
            str(b["etcd"]), "--name", "lab", "--data-dir", str(data / "etcd"),
            "--listen-client-urls", layout.url("etcd"),
            "--advertise-client-urls", layout.url("etcd"),
            "--listen-peer-urls", layout.url("etcd-peer"),
            "--initial-advertise-peer-urls", layout.url("etcd-peer"),
            "--initial-cluster", f"lab={layout.url('etcd-peer')}",
            "--listen-metrics-urls", layout.url("etcd-metrics"),
            "--quota-backend-bytes", str(2 * 1024**3),
            "--snapshot-count", "10000", "--log-level", "warn"],
            ready_url=layout.url("etcd-metrics") + "/health"),
        "apiserver": ProcSpec("apiserver", [
            str(b["kube-apiserver"]), "--etcd-servers", layout.url("etcd"),
            "--bind-address", h, "--advertise-address", h,
            "--secure-port", str(port("apiserver")), "--endpoint-reconciler-type=none",
            *tls_pair, "--client-ca-file", str(p.crt("ca")),
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(p.sa_pub),
            "--service-account-signing-key-file", str(p.key("sa")),
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            "--kubelet-client-certificate", str(p.crt("apiserver-kubelet-client")),
            "--kubelet-client-key", str(p.key("apiserver-kubelet-client")),
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false", "--max-requests-inflight=800",
            "--max-mutating-requests-inflight=400",
            # ServiceAccounts' requests (who, verb, resource, code): the RBAC proof reads them
            "--audit-policy-file", str(layout.run_dir / "audit-policy.yaml"),
            "--audit-log-path", str(configs.audit_log_path(layout)),
            "--audit-log-maxsize=50", "--audit-log-maxbackup=1"],
            ready_url=f"https://{h}:{port('apiserver')}/readyz", timeout=120),
        "controller-manager": ProcSpec("controller-manager", [
            str(b["kube-controller-manager"]), *common_ctl,
            "--secure-port", str(port("controller-manager")),
            "--service-account-private-key-file", str(p.key("sa")),
            "--root-ca-file", str(p.crt("ca")),
            "--cluster-signing-cert-file", str(p.crt("ca")),
            "--cluster-signing-key-file", str(p.key("ca")),
            "--use-service-account-credentials=false",
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--node-monitor-grace-period=40s", "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10"],
            ready_url=f"https://{h}:{port('controller-manager')}/healthz"),
        "scheduler": ProcSpec("scheduler", [
            str(b["kube-scheduler"]), *common_ctl, "--secure-port", str(port("scheduler"))],
            ready_url=f"https://{h}:{port('scheduler')}/healthz"),
        "kwok": ProcSpec("kwok", [
            str(b["kwok"]), "--kubeconfig", kc,
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds=40", "--cidr", POD_CIDR,
            "--node-ip", h, "--node-port", str(port("kwok")),
            "--server-address", f"{h}:{port('kwok')}",
            "--tls-cert-file", str(p.crt("kwok")), "--tls-private-key-file", str(p.key("kwok")),
            "--config", str(kwok_config)],
            ready_url=f"https://{h}:{port('kwok')}/healthz"),
        "kube-state-metrics": ProcSpec("kube-state-metrics", [
            str(b["kube-state-metrics"]), "--kubeconfig", kc,
            "--host", h, "--port", str(port("kube-state-metrics")),
            "--telemetry-host", h, "--telemetry-port", str(port("kube-state-metrics-telemetry"))],
            ready_url=layout.url("kube-state-metrics") + "/healthz"),
        "prometheus": ProcSpec("prometheus", [
            str(b["prometheus"]), "--config.file", str(layout.run_dir / "prometheus.yml"),
            "--storage.tsdb.path", str(data / "prometheus"),
            "--web.listen-address", f"{h}:{port('prometheus')}",
            "--web.enable-lifecycle", "--web.enable-admin-api",
            "--storage.tsdb.retention.time=15d"],
            ready_url=layout.url("prometheus") + "/-/ready"),
        "alertmanager": ProcSpec("alertmanager", [
            str(b["alertmanager"]), "--config.file", str(layout.run_dir / "alertmanager.yml"),
            "--storage.path", str(data / "alertmanager"),
            "--web.listen-address", f"{h}:{port('alertmanager')}",
            "--cluster.listen-address="],
            ready_url=layout.url("alertmanager") + "/-/ready"),
        "node-exporter": ProcSpec("node-exporter", [
            str(b["node-exporter"]), "--web.listen-address", f"{h}:{port('node-exporter')}"],
            ready_url=layout.url("node-exporter") + "/metrics"),
    }


def _pg_dirs(layout: LabLayout, user: str | None) -> tuple[Path, Path]:
    """(data dir, socket dir) of the lab's PostgreSQL.

    Run as root, PostgreSQL runs as `postgres`, which cannot enter root's home (mode 0700):
    its directories then live under /tmp, named after the run dir, and `lab down --purge`
    removes them with the run dir.
    """
    if user is None:
        return layout.data_dir / "postgres", layout.run_dir / "pgsock"
    tag = hashlib.sha256(str(layout.run_dir).encode()).hexdigest()[:10]
    base = Path(tempfile.gettempdir()) / f"k3sops-lab-pg-{tag}"
    return base / "data", base / "sock"


def _postgres_spec(layout: LabLayout, b: Mapping[str, Path], user: str | None) -> ProcSpec:
    pgdata, sock = _pg_dirs(layout, user)
    return ProcSpec("postgres", [
        str(b["postgres"]), "-D", str(pgdata), "-h", layout.host,
        "-p", str(layout.port("postgres")), "-k", str(sock),
        "-c", "fsync=off", "-c", "shared_buffers=32MB"],
        ready_port=layout.port("postgres"), user=user)


def _init_postgres(layout: LabLayout, b: Mapping[str, Path], user: str | None) -> None:
    pgdata, sock = _pg_dirs(layout, user)
    for d in (pgdata.parent, pgdata, sock):
        d.mkdir(parents=True, exist_ok=True)
    if user:
        pw = pwd.getpwnam(user)
        for d in (pgdata.parent, pgdata, sock):
            os.chown(d, pw.pw_uid, pw.pw_gid)
        pgdata.parent.chmod(0o700)
        pgdata.chmod(0o700)
    if (pgdata / "PG_VERSION").is_file():
        return
    out = subprocess.run([str(b["initdb"]), "-D", str(pgdata), "-U", "postgres",
                          "--auth=trust", "-E", "UTF8", "--no-sync"],
                         capture_output=True, text=True, user=user, check=False,
                         cwd="/", timeout=180)
    if out.returncode != 0:
        raise LabError(f"initdb failed: {out.stderr.strip()[-800:]}")


EPHEMERAL_LOW = 32768
"""Linux hands out outgoing connections' source ports from 32768 up: lab ports stay below."""


def check_ports(layout: LabLayout) -> None:
    """Refuse to start when a lab port is taken, naming the port and what wanted it."""
    highest = layout.port_base + max(PORT_OFFSETS.values())
    if layout.port_base < 1024 or highest >= EPHEMERAL_LOW:
        raise LabError(f"lab port base {layout.port_base} puts ports in {layout.port_base}-"
                       f"{highest}, outside 1024-{EPHEMERAL_LOW - 1}",
                       hint="ports at 32768 and above are the kernel's ephemeral range and get "
                            "taken by outgoing connections; choose K3SOPS_LAB_PORT_BASE between "
                            f"1024 and {EPHEMERAL_LOW - 1 - max(PORT_OFFSETS.values())}")
    busy = [f"{layout.host}:{layout.port(n)} ({n})" for n in PORT_OFFSETS
            if not procs.port_free(layout.host, layout.port(n))]
    if busy:
        raise LabError("lab ports already in use: " + ", ".join(busy),
                       hint="stop what holds them (`k3sops lab down` if it is an old lab), or "
                            "choose other ports with K3SOPS_LAB_PORT_BASE=<port>")


def is_up(layout: LabLayout) -> bool:
    """True when every process of a recorded lab is alive."""
    rs = procs.running(layout)
    return bool(rs) and all(r.alive for r in rs) and _state_file(layout).is_file()


def up(layout: LabLayout, env: Mapping[str, str], servers: int = 3, agents: int = 3,  # noqa: PLR0915
       progress: Progress | None = None) -> UpResult:
    """Start the lab (or find it running), shape the cluster, write kubeconfig and platform.yaml.

    On any failure every process this call started is stopped again before the error is raised.
    """
    say = progress or (lambda _m: None)
    rs = procs.running(layout)
    if rs and all(r.alive for r in rs) and _state_file(layout).is_file():
        return UpResult(already_running=True, kubeconfig=layout.kubeconfig,
                        platform_file=layout.platform_file)
    if rs:
        alive = [f"{r.name} (pid {r.pid})" for r in rs if r.alive]
        dead = [r.name for r in rs if not r.alive]
        raise LabError(
            f"a previous lab in {layout.run_dir} is half-started: alive: "
            f"{', '.join(alive) or 'none'}; gone: {', '.join(dead) or 'none'}",
            hint="run `k3sops lab down` to clean it up, then `k3sops lab up`")
    binaries = installed_binaries(layout, env)
    check_ports(layout)
    result = UpResult(already_running=False)
    t0 = time.monotonic()
    for d in (layout.run_dir, layout.log_dir, layout.pid_dir, layout.data_dir):
        d.mkdir(parents=True, exist_ok=True)
    started: list[tuple[str, int]] = []
    try:
        p = pki.generate(layout.pki_dir)
        server = f"https://{layout.host}:{layout.port('apiserver')}"
        pki.write_private(layout.run_dir / "admin.kubeconfig", pki.kubeconfig_text(p, server))
        pki.write_private(layout.kubeconfig, pki.kubeconfig_text(p, server))
        configs.write(layout.run_dir / "prometheus.yml", configs.prometheus_yaml(layout, p))
        (layout.run_dir / "rules").mkdir(exist_ok=True)
        configs.write(layout.run_dir / "alertmanager.yml", configs.alertmanager_yaml())
        configs.write(layout.run_dir / "audit-policy.yaml", configs.audit_policy_yaml())
        go_root = find_go_root(env)
        kwok_dir = stages.kwok_module_dir(go_root / "kwok", env)
        from k3sops.lab import shape

        kwok_cfg = configs.write(layout.run_dir / "kwok.yaml", stages.kwok_config(
            kwok_dir, shape.kwok_rules(layout)))
        shape.write_pod_logs(layout)
        specs = _specs(layout, binaries, p, kwok_cfg)
        pg_user = _pg_user(env)
        _init_postgres(layout, binaries, pg_user)
        specs["postgres"] = _postgres_spec(layout, binaries, pg_user)
        ca = p.crt("ca")
        cert = (p.crt("admin"), p.key("admin"))

        def launch(names: list[str]) -> None:
            running_now = []
            for n in names:
                say(f"starting {n}")
                proc = procs.start(layout, specs[n])
                started.append((n, proc.pid))
                running_now.append((n, proc))
            for n, proc in running_now:
                say(f"waiting for {n}")
                result.timings[n] = procs.wait_ready(layout, specs[n], proc, ca=ca, cert=cert)

        launch(["etcd", "prometheus", "alertmanager", "node-exporter", "postgres"])
        launch(["apiserver"])
        launch(["controller-manager", "scheduler", "kwok", "kube-state-metrics"])
        result.timings["processes"] = time.monotonic() - t0
        say("shaping the cluster")
        t1 = time.monotonic()
        shape.shape(layout, binaries, servers=servers, agents=agents, progress=say)
        result.timings["shape"] = time.monotonic() - t1
        _state_file(layout).write_text(json.dumps({
            "port_base": layout.port_base, "servers": servers, "agents": agents,
            "started": time.time()}))
        shape.write_platform_file(layout, binaries)
    except BaseException:
        for n, pid in reversed(started):
            procs.stop(layout, n, pid)
        _state_file(layout).unlink(missing_ok=True)
        raise
    result.timings["total"] = time.monotonic() - t0
    result.kubeconfig = layout.kubeconfig
    result.platform_file = layout.platform_file
    return result


STOP_ORDER = ("kube-state-metrics", "kwok", "scheduler", "controller-manager", "apiserver",
              "prometheus", "alertmanager", "node-exporter", "postgres", "etcd")


def down(layout: LabLayout, purge: bool = False) -> list[str]:
    """Stop every lab process (leaving none behind); with purge, delete the run directory."""
    rs = {r.name: r for r in procs.running(layout)}
    stopped: list[str] = []
    for name in sorted(rs, key=lambda n: STOP_ORDER.index(n) if n in STOP_ORDER else -1):
        procs.stop(layout, name, rs[name].pid)
        stopped.append(name)
    # Lost pid files must not leave processes behind: find the rest by their directories.
    pg_dir = _pg_dirs(layout, "postgres" if os.geteuid() == 0 else None)[0]
    markers = [str(layout.run_dir) + "/", str(pg_dir),
               f"{layout.host}:{layout.port('node-exporter')}"]
    for pid in procs.strays(markers):
        procs.stop(layout, f"stray-{pid}", pid)
        stopped.append(f"stray pid {pid}")
    _state_file(layout).unlink(missing_ok=True)
    if purge:
        pg_user = None if os.geteuid() != 0 else "postgres"
        pgdata, _ = _pg_dirs(layout, pg_user)
        if pg_user is not None:
            shutil.rmtree(pgdata.parent, ignore_errors=True)
        if layout.run_dir.exists():
            shutil.rmtree(layout.run_dir, ignore_errors=True)
    return stopped


def status(layout: LabLayout) -> dict[str, object]:
    """Processes, pids, liveness and endpoints of the lab."""
    rs = procs.running(layout)
    state: dict[str, object] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(_state_file(layout).read_text())
    return {
        "run_dir": str(layout.run_dir),
        "up": is_up(layout),
        "state": state,
        "processes": [{"name": r.name, "pid": r.pid, "alive": r.alive,
                       "rss_mib": round(r.rss_kib / 1024, 1)} for r in rs],
        "rss_mib_total": round(sum(r.rss_kib for r in rs) / 1024, 1),
        "endpoints": {
            "apiserver": f"https://{layout.host}:{layout.port('apiserver')}",
            "prometheus": layout.url("prometheus"),
            "alertmanager": layout.url("alertmanager"),
            "etcd": layout.url("etcd"),
            "postgres": f"postgresql://postgres@{layout.host}:{layout.port('postgres')}/postgres",
        },
        "kubeconfig": str(layout.kubeconfig),
    }
