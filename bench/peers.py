"""Peers of `k3sops check`, run on the same cluster: Popeye (derailed/popeye).

Importable by the benchmarks and the tests; not part of the k3sops package (nothing in
``src/`` depends on a peer). Popeye's binary is never committed: build it as bench/README.md
says ("Building Popeye") into ``~/.cache/k3sops/peers/bin/popeye``.

Popeye's JSON report (``popeye -A -o json``, v0.22)::

    {"popeye": {"score": 89, "grade": "B", "sections": [
        {"linter": "pods", "gvr": "v1/pods", "tally": {...},
         "issues": {"NS/NAME": [{"group": "__root__" | "<container>",
                                 "gvr": "v1/pods" | "containers",
                                 "level": 0-3, "message": "[POP-204] ..."}]}}],
     "errors": [...]}}

``parse_popeye`` flattens it into one issue per (object, container, message) with the
Kubernetes kind of the section (``apps/v1/deployments`` -> ``Deployment``), the level as
``info | warning | error`` (level 0, "ok", is not an issue and is dropped) and the code without
its prefix (``POP-204``). A container-level issue stays on the object that holds the container
(the Pod, or the workload whose template it is) with ``container`` set.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

TOOL = "popeye"
DEFAULT_PEERS_BIN = Path.home() / ".cache" / "k3sops" / "peers" / "bin"

LEVELS = {1: "info", 2: "warning", 3: "error"}
"""Popeye's levels (internal/rules: 0 ok, 1 info, 2 warn, 3 error) as words; 0 is dropped."""

KINDS = {
    "cluster": "Cluster",
    "v1/configmaps": "ConfigMap",
    "v1/namespaces": "Namespace",
    "v1/nodes": "Node",
    "v1/persistentvolumeclaims": "PersistentVolumeClaim",
    "v1/persistentvolumes": "PersistentVolume",
    "v1/pods": "Pod",
    "v1/secrets": "Secret",
    "v1/serviceaccounts": "ServiceAccount",
    "v1/services": "Service",
    "apps/v1/daemonsets": "DaemonSet",
    "apps/v1/deployments": "Deployment",
    "apps/v1/replicasets": "ReplicaSet",
    "apps/v1/statefulsets": "StatefulSet",
    "autoscaling/v1/horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "autoscaling/v2/horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "batch/v1/cronjobs": "CronJob",
    "batch/v1/jobs": "Job",
    "networking.k8s.io/v1/ingresses": "Ingress",
    "networking.k8s.io/v1/networkpolicies": "NetworkPolicy",
    "policy/v1/poddisruptionbudgets": "PodDisruptionBudget",
    "rbac.authorization.k8s.io/v1/clusterrolebindings": "ClusterRoleBinding",
    "rbac.authorization.k8s.io/v1/clusterroles": "ClusterRole",
    "rbac.authorization.k8s.io/v1/rolebindings": "RoleBinding",
    "rbac.authorization.k8s.io/v1/roles": "Role",
    "gateway.networking.k8s.io/v1/gatewayclasses": "GatewayClass",
    "gateway.networking.k8s.io/v1/gateways": "Gateway",
    "gateway.networking.k8s.io/v1/httproutes": "HTTPRoute",
    "cilium.io/v2/ciliumendpoints": "CiliumEndpoint",
    "cilium.io/v2/ciliumidentities": "CiliumIdentity",
}
"""Section GVR -> Kubernetes kind, for every linter of Popeye v0.22 (internal/lint)."""

CLUSTER_SCOPED = frozenset({
    "Cluster", "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding",
    "GatewayClass", "CiliumIdentity",
})
"""Kinds whose issue keys are ``NAME`` rather than ``NAMESPACE/NAME``."""

ROOT_GROUP = "__root__"
"""Popeye's group of an issue about the object itself (else: a container name)."""

_CODE = re.compile(r"\A\[(POP-\d+)\]\s*")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Issue(TypedDict):
    """One finding of a peer, in the shape the fault-matrix scorer compares."""

    tool: str
    kind: str
    namespace: str | None
    name: str
    level: str
    code: str | None
    message: str
    container: str | None


class PeerError(Exception):
    """A peer could not be run, or its output is not what this module understands."""


def _kind_of(gvr: str, linter: str) -> str:
    if gvr in KINDS:
        return KINDS[gvr]
    # A linter added after v0.22: "group/version/things" -> "Thing", said so in the kind.
    resource = (gvr.rsplit("/", 1)[-1] or linter).removesuffix("s")
    return resource[:1].upper() + resource[1:]


def _split_key(key: str, kind: str) -> tuple[str | None, str]:
    if kind in CLUSTER_SCOPED or "/" not in key:
        return None, key
    namespace, name = key.split("/", 1)
    return namespace, name


def parse_popeye(report: Mapping[str, Any] | str | bytes) -> list[Issue]:
    """Flatten a Popeye JSON report into issues (level >= info), in report order.

    Args:
        report: the decoded report, or its JSON text as Popeye printed it.

    Returns:
        One issue per (object, container, message); exact repeats are dropped.

    Raises:
        PeerError: the text is not JSON, or not a Popeye report (no ``popeye.sections``),
            or an issue has no integer level.
    """
    doc: Any = report
    if isinstance(report, str | bytes):
        try:
            doc = json.loads(report)
        except ValueError as e:
            raise PeerError(f"Popeye output is not JSON ({e}); run it with -o json") from e
    body = doc.get("popeye") if isinstance(doc, Mapping) else None
    if not isinstance(body, Mapping) or not isinstance(body.get("sections", []), list):
        raise PeerError("not a Popeye JSON report: expected {'popeye': {'sections': [...]}}")
    out: list[Issue] = []
    seen: set[tuple[Any, ...]] = set()
    for section in body.get("sections") or []:
        gvr = str(section.get("gvr") or "")
        kind = _kind_of(gvr, str(section.get("linter") or ""))
        for key, items in (section.get("issues") or {}).items():
            namespace, name = _split_key(str(key), kind)
            for item in items or []:
                level = item.get("level")
                if not isinstance(level, int):
                    raise PeerError(f"Popeye issue on {gvr} {key} has no integer level: {item}")
                if level not in LEVELS:  # 0 = ok: Popeye lists what passed, too
                    continue
                message = str(item.get("message") or "")
                m = _CODE.match(message)
                group = item.get("group")
                container = None if group in (None, "", ROOT_GROUP) else str(group)
                issue = Issue(tool=TOOL, kind=kind, namespace=namespace, name=name,
                              level=LEVELS[level], code=m.group(1) if m else None,
                              message=message[m.end():] if m else message,
                              container=container)
                ident = tuple(issue.values())
                if ident not in seen:
                    seen.add(ident)
                    out.append(issue)
    return out


def popeye_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """Score, grade, section count and Popeye's own errors (scan failures) of a report."""
    body = report.get("popeye") or {}
    return {"score": body.get("score"), "grade": body.get("grade"),
            "sections": len(body.get("sections") or []),
            "errors": list(body.get("errors") or [])}


def find_popeye(peers_bin: Path | None = None) -> Path | None:
    """The Popeye binary in ``peers_bin`` (default ~/.cache/k3sops/peers/bin), if executable."""
    exe = (peers_bin or DEFAULT_PEERS_BIN) / "popeye"
    return exe if exe.is_file() and os.access(exe, os.X_OK) else None


def popeye_argv(binary: Path, kubeconfig: Path, log_file: Path | None = None) -> list[str]:
    """The command that scans every namespace and prints JSON, exit 0 whatever it finds.

    ``--force-exit-zero``: Popeye otherwise exits non-zero when it reports errors (or the
    score is under --min-score), which would hide a real failure to run among them.
    """
    argv = [str(binary), "--kubeconfig", str(kubeconfig), "-A", "-o", "json",
            "--force-exit-zero"]
    if log_file is not None:
        argv += ["--logs", str(log_file)]
    return argv


def popeye_version(binary: Path) -> str:
    """``popeye version``'s Version line (the build's -X cmd.version; "dev" when not set)."""
    try:
        r = subprocess.run([str(binary), "version"], capture_output=True, text=True,
                           timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    for line in _ANSI.sub("", r.stdout).splitlines():
        if line.strip().startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _failure(stdout: bytes, stderr: bytes) -> str:
    """Popeye's reason for failing: its "Boom!" line (printed on stdout, after its banner)."""
    lines = [ln.strip() for ln in _ANSI.sub("", (stderr + b"\n" + stdout).decode(
        errors="replace")).splitlines() if ln.strip()]
    boom = [ln for ln in lines if ln.startswith("Boom!")]
    return (boom[0] if boom else " | ".join(lines[-3:]) or "(no output)")[:400]


@dataclass
class PopeyeRun:
    """One Popeye scan: its issues, summary, wall time and the raw report."""

    issues: list[Issue]
    summary: dict[str, Any]
    wall_seconds: float
    argv: list[str]
    raw: dict[str, Any] = field(repr=False)


def run_popeye(kubeconfig: Path, binary: Path | None = None, timeout: float = 600,
               sections: Sequence[str] = ()) -> PopeyeRun:
    """Scan the cluster of ``kubeconfig`` with Popeye and parse its report.

    Raises:
        PeerError: no binary, the scan failed or timed out, or its output is not a report.
    """
    exe = binary or find_popeye()
    if exe is None:
        raise PeerError(f"no popeye binary in {DEFAULT_PEERS_BIN}; build it as "
                        "bench/README.md says (Building Popeye)")
    with tempfile.TemporaryDirectory(prefix="k3sops-popeye-") as tmp:
        argv = popeye_argv(exe, kubeconfig, Path(tmp) / "popeye.log")
        if sections:
            argv += ["-s", ",".join(sections)]
        t0 = time.monotonic()
        try:
            r = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise PeerError(f"popeye did not finish within {timeout:g}s") from e
        except OSError as e:
            raise PeerError(f"cannot run {exe}: {e.strerror}") from e
        wall = time.monotonic() - t0
    if r.returncode != 0:
        raise PeerError(f"popeye exited {r.returncode}: {_failure(r.stdout, r.stderr)}")
    raw = json.loads(r.stdout) if r.stdout.strip().startswith(b"{") else None
    if raw is None:
        raise PeerError("popeye printed no JSON report (the cluster unreachable?): "
                        + _ANSI.sub("", r.stdout.decode(errors="replace"))[-300:])
    return PopeyeRun(issues=parse_popeye(raw), summary=popeye_summary(raw),
                     wall_seconds=wall, argv=argv, raw=raw)
