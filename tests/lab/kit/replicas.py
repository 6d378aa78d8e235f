"""The parent side of elector.py: replica processes, the Lease's revisions, a least-privilege
ServiceAccount for them. Shared by tests/lab/test_leader_lab.py and bench/serve_failover.py
(which runs on a lab of its own, so nothing here reads the test fixtures)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from k3sops.adapters.kube import KubeClient, api_path
from k3sops.errors import AdapterError, Conflict
from k3sops.serve.leader import LEASE_API
from k3sops.timeparse import parse_rfc3339

ELECTOR = Path(__file__).parent / "elector.py"
RBAC = "rbac.authorization.k8s.io/v1"


def lease_time(spec: Mapping[str, Any], key: str) -> datetime:
    """A Lease timestamp (renewTime, acquireTime) as an aware datetime."""
    return parse_rfc3339(str(spec[key]))


def elector_kubeconfig(admin: KubeClient, namespace: str, sa: str, ca_file: Path,
                       path: Path) -> Path:
    """A ServiceAccount token kubeconfig at ``path`` that may only get/create/update Leases
    in ``namespace`` (what `k3sops serve`'s election needs), valid one hour."""
    docs: list[tuple[str, str, dict[str, Any]]] = [
        ("v1", "serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                   "metadata": {"name": sa}}),
        (RBAC, "roles", {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": sa},
                         "rules": [{"apiGroups": ["coordination.k8s.io"],
                                    "resources": ["leases"],
                                    "verbs": ["get", "create", "update"]}]}),
        (RBAC, "rolebindings", {
            "apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": sa},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]})]
    for group_version, plural, obj in docs:
        # Conflict: made by an earlier run on a reused lab, the same object.
        with contextlib.suppress(Conflict):
            admin.create(group_version, plural, namespace, obj)
    token = admin.create("v1", "serviceaccounts", namespace, {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}}, sub="token", name=sa)["status"]["token"]
    path.write_text(f"apiVersion: v1\nkind: Config\nclusters:\n- name: l\n  cluster:\n"
                    f"    server: {admin.server}\n    certificate-authority: {ca_file}\n"
                    f"users:\n- name: u\n  user:\n    token: {token}\n"
                    "contexts:\n- name: c\n  context: {cluster: l, user: u}\n"
                    "current-context: c\n")
    return path


@dataclass
class Replica:
    """One elector.py process and the JSON events it printed."""

    identity: str
    proc: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, env: Mapping[str, str], kubeconfig: Path, namespace: str, lease: str,
              identity: str, log_dir: Path, *, lease_seconds: float, renew_seconds: float,
              database: str | None = None, every: int = 10) -> Replica:
        args = [sys.executable, str(ELECTOR), "--kubeconfig", str(kubeconfig), "--namespace",
                namespace, "--name", lease, "--identity", identity, "--lease",
                str(lease_seconds), "--renew", str(renew_seconds)]
        if database:
            args += ["--database", database, "--every", str(every)]
        stderr: IO[str] = (log_dir / f"{identity}.stderr").open("w")
        proc = subprocess.Popen(args, env=dict(env), stdout=subprocess.PIPE, stderr=stderr,
                                text=True)
        r = cls(identity, proc)
        threading.Thread(target=r._read, daemon=True).start()
        return r

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def saw(self, event: str) -> bool:
        return any(e["event"] == event for e in self.events)

    def leading(self) -> bool:
        """Its last leadership event says it leads."""
        states = [e["event"] for e in self.events if e["event"] in ("leading", "following")]
        return bool(states) and states[-1] == "leading"

    def ran(self) -> list[datetime]:
        """The due times its scheduler ran."""
        return [parse_rfc3339(e["due"]) for e in self.events if e["event"] == "ran"]

    def end(self, sig: int) -> int:
        """Send ``sig`` (if still running) and wait for the exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        return self.proc.wait(timeout=30)


class LeaseLog:
    """Every revision of one Lease's spec, as a WATCH on the API server delivers them."""

    def __init__(self, client: KubeClient, namespace: str, name: str) -> None:
        self.name = name
        self.revisions: list[dict[str, Any]] = []
        self._client = client
        path = api_path(LEASE_API, "leases", namespace)
        self._rv = client.listing(path, "leases").resource_version
        self._stop = threading.Event()
        threading.Thread(target=self._watch, args=(path,), daemon=True).start()

    def _watch(self, path: str) -> None:
        while not self._stop.is_set():
            try:
                for ev in self._client.watch(path, self._rv, timeout=30,
                                             field_selector=f"metadata.name={self.name}"):
                    if ev.resource_version:
                        self._rv = ev.resource_version
                    if ev.type.value in ("ADDED", "MODIFIED"):
                        self.revisions.append(ev.object.get("spec") or {})
            except AdapterError:
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()

    def holders(self) -> list[str]:
        """Holders in order, consecutive repeats folded ("" for released)."""
        out: list[str] = []
        for spec in self.revisions:
            h = spec.get("holderIdentity") or ""
            if not out or out[-1] != h:
                out.append(h)
        return out

    def first(self, holder: str, after: int = 0) -> dict[str, Any] | None:
        """The first revision from index ``after`` on held by ``holder`` ("" released)."""
        return next((s for s in self.revisions[after:]
                     if (s.get("holderIdentity") or "") == holder), None)
