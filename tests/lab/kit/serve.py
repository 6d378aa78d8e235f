"""`k3sops serve` started on the lab as a host process with its own least-privilege account.

Shared by the serve lab tests (each module passes its own namespace, so one module's
teardown never deletes what another module uses): the service's ServiceAccount with a
ClusterRole of exactly the reads the watch cache needs plus reviews and Leases, a reader and
a nobody account, the token kubeconfig and platform file, starting and stopping the process.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import yaml

from conftest import Lab, wait_for
from k3sops.domain.snapshot import CORE_PATHS, CUSTOM_PATHS
from k3sops.serve.runner import every_kind

PORT_OFFSET = 700
"""The service's port: the lab's base + 700 (lab components use base+0..500)."""


def label(ns: str) -> dict[str, str]:
    """The label of everything one test module creates (its namespace names it)."""
    return {"k3sops.io/test": ns}


def objects(ns: str) -> list[dict[str, Any]]:
    """The module's namespace and a Service selecting nothing (service-no-endpoints)."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": label(ns)}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "nobody-home", "namespace": ns},
         "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    ]


def cache_role(name: str, ns: str) -> dict[str, Any]:
    """Exactly what the service reads and does: list/watch every cached kind, reviews."""
    paths = {**CORE_PATHS, **CUSTOM_PATHS}
    by_group: dict[str, list[str]] = {}
    for kind in every_kind():
        group = "" if paths[kind].startswith("/api/") else paths[kind].split("/")[2]
        by_group.setdefault(group, []).append(kind.split(".")[0])
    rules: list[dict[str, Any]] = [{"apiGroups": [g], "resources": sorted(r),
                                    "verbs": ["list", "watch"]}
                                   for g, r in sorted(by_group.items())]
    rules += [# an alert's crash-looping container: its previous log, as `diagnose` shows it
              {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
              {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
               "verbs": ["create"]},
              {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
               "verbs": ["create"]},
              # the Lease of the leader election, in the service's namespace only would be
              # tighter; the lab test's namespace is the service's
              {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
               "verbs": ["get", "create", "update", "patch"]}]
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": label(ns)}, "rules": rules}


def binding(name: str, role: str, sa: str, ns: str) -> dict[str, Any]:
    """A ClusterRoleBinding of ServiceAccount ``ns/sa`` to ClusterRole ``role``."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": label(ns)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]}


def apply(lab: Lab, docs: list[dict[str, Any]]) -> None:
    """kubectl apply of ``docs``."""
    lab.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))


def sa_token(lab: Lab, sa: str, ns: str) -> str:
    """A one-hour token of ServiceAccount ``sa`` (TokenRequest)."""
    return lab.kubectl("create", "token", sa, "-n", ns, "--duration=1h").stdout.strip()


@dataclass
class Running:
    """The service process and what the test needs to talk to it."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    tokens: dict[str, str] = field(repr=False)


@dataclass
class Rbac:
    """The ServiceAccounts' tokens and the service's own kubeconfig and platform file."""

    tokens: dict[str, str] = field(repr=False)
    kubeconfig: Path
    platform: Path
    tmp: Path


@contextlib.contextmanager
def accounts(lab: Lab, ns: str, tmp: Path,
             serve: dict[str, Any] | None = None) -> Iterator[Rbac]:
    """The namespace, the three ServiceAccounts and their roles; removed on exit.

    ``serve``: more keys of platform.yaml's ``serve:`` section (receivers, Alertmanager's
    token file...).
    """
    reader_role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": f"{ns}-reader", "labels": label(ns)},
                   "rules": [{"apiGroups": ["k3sops.io"],
                              "resources": ["reports", "findings", "metrics", "diagnoses",
                                            "backups", "environments"],
                              "verbs": ["get"]}]}
    sas = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": n,
                                                                       "namespace": ns}}
           for n in ("k3sops-serve", "nobody", "reader")]
    apply(lab, objects(ns))
    apply(lab, [*sas, cache_role(f"{ns}-serve", ns), reader_role,
                 binding(f"{ns}-serve", f"{ns}-serve", "k3sops-serve", ns),
                 # the k3sops.io resources are not namespaced: a SubjectAccessReview without
                 # a namespace is answered by cluster-wide bindings only
                 binding(f"{ns}-reader", f"{ns}-reader", "reader", ns)])
    try:
        tokens = {n: sa_token(lab, n, ns) for n in ("k3sops-serve", "nobody", "reader")}
        kubeconfig = token_kubeconfig(lab, tokens["k3sops-serve"], tmp / "serve.kubeconfig")
        platform = yaml.safe_load(lab.layout.platform_file.read_text())
        platform.pop("kubeconfig", None)  # the admin's: the service must not use it
        platform["serve"] = {"lease": {"namespace": ns, "name": "k3sops-serve"},
                             "schedule": {"daily": None, "weekly": None, "monthly": None},
                             **(serve or {})}
        platform_file = tmp / "platform.yaml"
        platform_file.write_text(yaml.safe_dump(platform))
        yield Rbac(tokens=tokens, kubeconfig=kubeconfig, platform=platform_file, tmp=tmp)
    finally:
        lab.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        lab.kubectl("delete", "clusterrole,clusterrolebinding", "-l", f"k3sops.io/test={ns}",
                    check=False)


def start(lab: Lab, rbac: Rbac, offset: int, extra_env: dict[str, str] | None = None,
          ) -> Running:
    """Start `k3sops serve` on the lab's base port + ``offset``; return once /readyz is 200.

    ``extra_env``: more environment for the process (e.g. ``K3SOPS_STATE_DIR``).
    """
    port = int(lab.env["K3SOPS_LAB_PORT_BASE"]) + offset
    log = rbac.tmp / f"serve-{offset}.log"
    env = {k: v for k, v in lab.env.items() if k not in ("K3SOPS_CONFIG", "KUBECONFIG")}
    env.update(extra_env or {})
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "k3sops", "-c", str(rbac.platform), "--kubeconfig",
             str(rbac.kubeconfig), "serve", "--listen", f"127.0.0.1:{port}", "--state-dir",
             str(rbac.tmp / f"state-{offset}")], env=env, stdout=out, stderr=subprocess.STDOUT)
    running = Running(proc=proc, url=f"http://127.0.0.1:{port}", log=log, tokens=rbac.tokens)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {log.read_text()}")
        try:
            return httpx2.get(running.url + "/readyz", timeout=5).status_code == 200
        except httpx2.HTTPError:
            return False
    try:
        assert wait_for(ready, timeout=120, every=1), log.read_text()
    except BaseException:
        kill(running)
        raise
    return running


def kill(s: Running) -> None:
    """SIGKILL the service (tests that need SIGTERM send it themselves)."""
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait(10)


def get(s: Running, path: str, token: str | None = None) -> httpx2.Response:
    """GET ``path`` from the service, with ``token`` as bearer when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.get(s.url + path, headers=headers, timeout=60)


def token_kubeconfig(lab: Lab, token: str, path: Path) -> Path:
    """A kubeconfig at ``path`` for the lab's API server with ``token`` as its user."""
    server = f"https://127.0.0.1:{lab.layout.port('apiserver')}"
    path.write_text(
        f"apiVersion: v1\nkind: Config\nclusters:\n- name: l\n  cluster:\n"
        f"    server: {server}\n"
        f"    certificate-authority: {lab.layout.pki_dir / 'ca.crt'}\n"
        f"users:\n- name: u\n  user:\n    token: {token}\n"
        "contexts:\n- name: c\n  context: {cluster: l, user: u}\ncurrent-context: c\n")
    path.chmod(0o600)
    return path


@dataclass
class Account:
    """A ServiceAccount bound to exactly some rules: its token and its kubeconfig."""

    token: str = field(repr=False)
    kubeconfig: Path


@contextlib.contextmanager
def rule_accounts(lab: Lab, ns: str, tmp: Path,
                  rules: dict[str, list[dict[str, Any]]]) -> Iterator[dict[str, Account]]:
    """Namespace ``ns`` with one ServiceAccount per entry of ``rules``, each bound to a
    ClusterRole of exactly those rules (nothing else: not the watch cache's reads); removed
    on exit."""
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": label(ns)}}]
    for sa, sa_rules in rules.items():
        docs += [{"apiVersion": "v1", "kind": "ServiceAccount",
                  "metadata": {"name": sa, "namespace": ns}},
                 {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                  "metadata": {"name": f"{ns}-{sa}", "labels": label(ns)}, "rules": sa_rules},
                 binding(f"{ns}-{sa}", f"{ns}-{sa}", sa, ns)]
    try:
        apply(lab, docs)
        out = {}
        for sa in rules:
            token = sa_token(lab, sa, ns)
            out[sa] = Account(token=token, kubeconfig=token_kubeconfig(
                lab, token, tmp / f"{sa}.kubeconfig"))
        yield out
    finally:
        lab.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        lab.kubectl("delete", "clusterrole,clusterrolebinding", "-l", f"k3sops.io/test={ns}",
                    check=False)


def can(lab: Lab, ns: str, sa: str, verb: str, resource: str, namespace: str) -> bool:
    """Whether ServiceAccount ``ns/sa`` may ``verb`` ``resource`` in ``namespace`` (kubectl
    auth can-i: the API server's own SubjectAccessReview)."""
    return lab.kubectl("auth", "can-i", verb, resource, "-n", namespace,
                       f"--as=system:serviceaccount:{ns}:{sa}",
                       check=False).stdout.strip() == "yes"


def grant(lab: Lab, ns: str, sa: str, name: str, rules: list[dict[str, Any]]) -> None:
    """Bind ServiceAccount ``ns/sa`` to ClusterRole ``name`` of exactly ``rules`` (created, or
    replaced: applying other rules takes the rest away); labelled for ``accounts``' clean-up.

    Returns once the API server's authorizer answers by the rules' first verb and resource,
    so a test acting next is judged by them.
    """
    apply(lab, [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                 "metadata": {"name": name, "labels": label(ns)}, "rules": rules},
                binding(name, name, sa, ns)])
    first = rules[0]
    group = first["apiGroups"][0]
    resource = first["resources"][0] + (f".{group}" if group else "")
    assert wait_for(lambda: can(lab, ns, sa, first["verbs"][0], resource, "default"),
                    timeout=30), f"{ns}/{sa} did not get {first}"
