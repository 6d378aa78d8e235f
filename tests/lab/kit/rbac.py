"""The chart's RBAC on the lab: `helm install` of a release per mode with its ServiceAccount's
token, and the API server's audit log read back as (where, group, resource, verb) per request."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conftest import Lab
from k3sops.lab.configs import audit_log_path
from k3sops.serve import rbac
from kit.serve import sa_token, token_kubeconfig

CHART = Path(__file__).parents[3] / "deploy" / "helm" / "k3sops"


@dataclass
class Release:
    """One `helm install` of the chart: its mode, namespace, ServiceAccount and token."""

    mode: rbac.Mode
    name: str
    namespace: str
    account: str
    kubeconfig: Path
    token: str = field(repr=False)

    @property
    def user(self) -> str:
        """The API server's name for the ServiceAccount (the audit log's ``user.username``)."""
        return f"system:serviceaccount:{self.namespace}:{self.account}"


def helm(lab: Lab, binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run helm (kit.helm.helm_path: the lab's build) against the lab (admin kubeconfig)."""
    return subprocess.run([str(binary), "--kubeconfig", str(lab.layout.kubeconfig), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def install(lab: Lab, binary: Path, mode: rbac.Mode, name: str, namespace: str,
            kubeconfig: Path) -> Release:
    """`helm install` the chart in ``mode``; the ServiceAccount (the chart's, or created here
    while the chart has no ServiceAccount template) and a one-hour token kubeconfig for it."""
    r = helm(lab, binary, "install", name, str(CHART), "-n", namespace, "--create-namespace",
             "--set", f"rbac.mode={mode}")
    assert r.returncode == 0, r.stderr
    account = _service_account(lab, binary, name, namespace)
    lab.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": account, "namespace": namespace}}))
    token = sa_token(lab, account, namespace)
    return Release(mode=mode, name=name, namespace=namespace, account=account,
                   kubeconfig=token_kubeconfig(lab, token, kubeconfig), token=token)


def _service_account(lab: Lab, binary: Path, name: str, namespace: str) -> str:
    """The subject the release's bindings name (what `k3sops.serviceAccountName` rendered)."""
    r = helm(lab, binary, "get", "manifest", name, "-n", namespace)
    for doc in yaml.safe_load_all(r.stdout):
        if doc and doc.get("kind") in ("ClusterRoleBinding", "RoleBinding"):
            return str(doc["subjects"][0]["name"])
    raise AssertionError(f"release {name} has no binding: {r.stdout[:500]}")


def uninstall(lab: Lab, binary: Path, release: Release) -> None:
    """Remove the release and its namespace."""
    helm(lab, binary, "uninstall", release.name, "-n", release.namespace)
    lab.kubectl("delete", "namespace", release.namespace, "--wait=false", check=False)


def audit_offset(lab: Lab) -> int:
    """The audit log's size now: requests after it are read by :func:`requests_since`."""
    path = audit_log_path(lab.layout)
    return path.stat().st_size if path.exists() else 0


@dataclass(frozen=True)
class Request:
    """One request of the audit log."""

    verb: str
    group: str
    resource: str
    namespace: str | None
    name: str | None
    allowed: bool
    code: int


def requests_since(lab: Lab, offset: int, user: str) -> list[Request]:
    """Every resource request ``user`` made after ``offset`` (non-resource URLs such as
    /version are left out: every authenticated user may read them)."""
    out: list[Request] = []
    with audit_log_path(lab.layout).open("rb") as f:
        f.seek(offset)
        for line in f:
            event: dict[str, Any] = json.loads(line)
            ref = event.get("objectRef")
            if (event.get("user") or {}).get("username") != user or not ref:
                continue
            resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource")
                                          else "")
            decision = (event.get("annotations") or {}).get("authorization.k8s.io/decision")
            out.append(Request(verb=event["verb"], group=ref.get("apiGroup") or "",
                               resource=resource, namespace=ref.get("namespace"),
                               name=ref.get("name"), allowed=decision == "allow",
                               code=int((event.get("responseStatus") or {}).get("code") or 0)))
    return out


def right_of(req: Request, granted: set[rbac.Atom], release_ns: str) -> rbac.Atom | None:
    """The granted right that authorizes ``req`` (None: no rule of the mode does)."""
    for where in (rbac.CLUSTER, rbac.RELEASE if req.namespace == release_ns else None,
                  req.namespace):
        if where is None:
            continue
        atom = (where, req.group, req.resource, req.verb)
        if atom in granted:
            return atom
    return None


def lines(reqs: Iterator[Request] | list[Request]) -> str:
    """Requests one a line, for assertion messages."""
    return "\n".join(f"{r.verb} {r.group}/{r.resource} ns={r.namespace} name={r.name} "
                     f"allowed={r.allowed} code={r.code}" for r in reqs)
