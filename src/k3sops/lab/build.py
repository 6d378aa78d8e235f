"""Build the lab's Go binaries from the tools modules under lab/go, cached by version.

Each component is a small Go module (lab/go/NAME) whose go.mod/go.sum pin the upstream
version. A binary is built once into ``<cache>/bin/NAME-VERSION-HASH/`` (HASH covers go.mod
and go.sum, so changing a pin rebuilds); the directory appears only when every binary of the
component built (written to a temporary directory, then renamed), so an interrupted build
leaves nothing that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from k3sops.errors import LabError
from k3sops.lab.layout import LabLayout

DEBIAN_ETCD = Path("/usr/bin/etcd")
"""Debian's etcd-server (3.4): the documented fallback when etcd 3.6 cannot be built."""


@dataclass(frozen=True)
class GoComponent:
    """One tools module and the binaries it builds (binary name -> Go package path).

    ``stamp_version`` sets Kubernetes' version variables (component-base, client-go);
    ``link_vars`` sets other Go string variables (``pkg.var`` -> value, ``{version}`` replaced
    by the module's version) the way the tool's release build does (helm prints "v4.3" as its
    version unless its Makefile's ``-X`` flags are given).
    """

    name: str
    module: str
    binaries: Mapping[str, str]
    stamp_version: bool = False
    link_vars: Mapping[str, str] = field(default_factory=dict)

    def module_dir(self, go_root: Path) -> Path:
        """Directory of this component's tools module."""
        return go_root / self.name


COMPONENTS: tuple[GoComponent, ...] = (
    GoComponent("etcd", "go.etcd.io/etcd/server/v3", {
        "etcd": "go.etcd.io/etcd/server/v3",
        "etcdctl": "go.etcd.io/etcd/etcdctl/v3",
        "etcdutl": "go.etcd.io/etcd/etcdutl/v3",
    }),
    GoComponent("kwok", "sigs.k8s.io/kwok", {"kwok": "sigs.k8s.io/kwok/cmd/kwok"}),
    GoComponent("kube-state-metrics", "k8s.io/kube-state-metrics/v2",
                {"kube-state-metrics": "k8s.io/kube-state-metrics/v2"}),
    GoComponent("kubernetes", "k8s.io/kubernetes", {
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
        "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    }, stamp_version=True),
    GoComponent("helm", "helm.sh/helm/v4", {"helm": "helm.sh/helm/v4/cmd/helm"},
                link_vars={"helm.sh/helm/v4/internal/version.version": "{version}",
                           "helm.sh/helm/v4/internal/version.gitTreeState": "clean"}),
)

DEBIAN_BINARIES: dict[str, tuple[str, ...]] = {
    "prometheus": ("/usr/bin/prometheus",),
    "promtool": ("/usr/bin/promtool",),
    "alertmanager": ("/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"),
    "amtool": ("/usr/bin/amtool",),
    "node-exporter": ("/usr/bin/prometheus-node-exporter", "/usr/bin/node_exporter"),
    "postgres": ("/usr/lib/postgresql/15/bin/postgres", "/usr/lib/postgresql/16/bin/postgres",
                 "/usr/lib/postgresql/17/bin/postgres"),
    "restic": ("/usr/bin/restic",),
}
INSTALL_HINT = "run scripts/install-deps.sh (apt-get install prometheus prometheus-alertmanager " \
    "prometheus-node-exporter postgresql restic etcd-server)"


def find_go_root(env: Mapping[str, str]) -> Path:
    """Locate lab/go: ``K3SOPS_LAB_GO_DIR``, else the source checkout this package runs from."""
    if env.get("K3SOPS_LAB_GO_DIR"):
        return Path(env["K3SOPS_LAB_GO_DIR"])
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "lab" / "go"
        if (candidate / "kubernetes" / "go.mod").is_file():
            return candidate
    raise LabError("cannot find the lab's Go tools modules (lab/go)",
                   hint="run from a k3sops source checkout, or set K3SOPS_LAB_GO_DIR")


def module_version(go_mod: Path, module: str) -> str:
    """The version go.mod requires for ``module``."""
    text = go_mod.read_text()
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v[^\s]+)", text, re.MULTILINE)
    if not m:
        raise LabError(f"{go_mod} does not require {module}")
    return m.group(1)


def _digest(mod_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        p = mod_dir / name
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


@dataclass
class BuiltComponent:
    """Where a component's binaries are, and how they came to be there."""

    name: str
    version: str
    directory: Path
    built: bool
    seconds: float = 0.0
    note: str = ""
    binaries: dict[str, Path] = field(default_factory=dict)


def component_dir(layout: LabLayout, comp: GoComponent, go_root: Path) -> tuple[str, Path]:
    """(version, cache directory) of a component."""
    mod_dir = comp.module_dir(go_root)
    version = module_version(mod_dir / "go.mod", comp.module)
    return version, layout.bin_dir / f"{comp.name}-{version}-{_digest(mod_dir)}"


def _ldflags(comp: GoComponent, version: str) -> str:
    flags = ["-s", "-w"]
    if comp.stamp_version:
        # Without these /version reports v0.0.0-master and clients treat the version as unknown.
        m = re.match(r"v(\d+)\.(\d+)", version)
        major, minor = (m.group(1), m.group(2)) if m else ("0", "0")
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [f"-X {pkg}.gitVersion={version}", f"-X {pkg}.gitMajor={major}",
                      f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean",
                      f"-X {pkg}.gitCommit=0000000000000000000000000000000000000000",
                      f"-X {pkg}.buildDate=1970-01-01T00:00:00Z"]
    flags += [f"-X {var}={value.replace('{version}', version)}"
              for var, value in comp.link_vars.items()]
    return " ".join(flags)


def build_component(layout: LabLayout, comp: GoComponent, go_root: Path,
                    env: Mapping[str, str], on_binary: Callable[[str], None] | None = None,
                    force: bool = False) -> BuiltComponent:
    """Build one component unless its cache directory is already complete."""
    version, target = component_dir(layout, comp, go_root)
    if target.is_dir() and not force and all((target / b).is_file() for b in comp.binaries):
        return BuiltComponent(comp.name, version, target, built=False,
                              binaries={b: target / b for b in comp.binaries})
    go = shutil.which("go", path=env.get("PATH"))
    if go is None:
        raise LabError("Go is not installed (no `go` on PATH): the lab builds Kubernetes, etcd, "
                       "kwok and kube-state-metrics from source",
                       hint="install Go 1.24 or newer and retry `k3sops lab build`")
    layout.bin_dir.mkdir(parents=True, exist_ok=True)
    tmp = layout.bin_dir / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log_dir = layout.cache_dir / "build-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    build_env = {**env, "CGO_ENABLED": "0", "GOTOOLCHAIN": env.get("GOTOOLCHAIN", "local"),
                 "GOFLAGS": "-mod=readonly -buildvcs=false"}
    started = time.monotonic()
    try:
        for binary, pkg in comp.binaries.items():
            if on_binary:
                on_binary(binary)
            log = log_dir / f"{comp.name}-{binary}.log"
            with log.open("w") as fh:
                proc = subprocess.run(
                    [go, "build", "-trimpath", "-ldflags", _ldflags(comp, version),
                     "-o", str(tmp / binary), pkg],
                    cwd=comp.module_dir(go_root), env=build_env, stdout=fh,
                    stderr=subprocess.STDOUT, check=False)
            if proc.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                raise LabError(f"building {binary} ({comp.module} {version}) failed "
                               f"(go exit {proc.returncode}); log: {log}\n{tail}",
                               hint="check network access to the Go module proxy and disk space")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return BuiltComponent(comp.name, version, target, built=True,
                          seconds=time.monotonic() - started,
                          binaries={b: target / b for b in comp.binaries})


def installed_binaries(layout: LabLayout, env: Mapping[str, str]) -> dict[str, Path]:
    """Every lab binary, built or from Debian; raises LabError naming what is missing."""
    go_root = find_go_root(env)
    found: dict[str, Path] = {}
    missing: list[str] = []
    for comp in COMPONENTS:
        _, target = component_dir(layout, comp, go_root)
        for b in comp.binaries:
            if (target / b).is_file():
                found[b] = target / b
            elif comp.name == "etcd" and b == "etcd" and DEBIAN_ETCD.is_file():
                found[b] = DEBIAN_ETCD
            else:
                missing.append(f"{b} ({comp.name})")
    for name, candidates in DEBIAN_BINARIES.items():
        path = next((Path(c) for c in candidates if Path(c).is_file()), None)
        if path is None:
            missing.append(f"{name} (Debian package)")
        else:
            found[name] = path
    if missing:
        raise LabError("lab binaries missing: " + ", ".join(missing),
                       hint="run `k3sops lab build` (Go builds) and " + INSTALL_HINT)
    if "postgres" in found:
        found["initdb"] = found["postgres"].parent / "initdb"
        found["pg_ctl"] = found["postgres"].parent / "pg_ctl"
    return found
