"""A kind that could not be read is never evidence: real RBAC on the lab's API server.

Faults are created in namespace ``t-unread`` (each depends on a different kind: a Service
without endpoints, an Ingress to a missing Service, a claim on a missing StorageClass, a pod
that cannot be scheduled...). Then, for each kind k3sops lists, a user whose ClusterRole allows
listing everything but that kind runs `k3sops check` against the same, unchanged cluster:
whatever it finds must be something the full run found too, every rule reading that kind must
be listed as not evaluated, and — nothing having changed — the history records nothing new and
nothing resolved.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kit.users import user_kubeconfig

from conftest import Lab, wait_for
from k3sops.domain import checks as registry
from k3sops.domain.snapshot import CORE_PATHS, CUSTOM_PATHS

pytestmark = pytest.mark.lab
NS = "t-unread"
FAULTS: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nobody-home", "namespace": NS},
     "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
     "metadata": {"name": "shop", "namespace": NS},
     "spec": {"ingressClassName": "traefik", "rules": [{"host": "shop.example", "http": {
         "paths": [{"path": "/", "pathType": "Prefix", "backend": {
             "service": {"name": "missing", "port": {"number": 80}}}}]}}]}},
    {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
     "metadata": {"name": "data", "namespace": NS},
     "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "no-such-class",
              "resources": {"requests": {"storage": "1Gi"}}}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "huge", "namespace": NS},
     "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "huge"}},
              "template": {"metadata": {"labels": {"app": "huge"}}, "spec": {"containers": [
                  {"name": "c", "image": "example/huge:1.0",
                   "resources": {"requests": {"cpu": "500", "memory": "64Mi"}}}]}}}},
]


def _kinds() -> list[str]:
    """Every kind some registered rule reads."""
    wanted = {k for s in registry.REGISTRY.values() for k in (*s.reads, *s.uses)}
    return [k for k in (*CORE_PATHS, *CUSTOM_PATHS) if k in wanted]


def _role(name: str, allowed: list[str]) -> dict[str, Any]:
    paths = {**CORE_PATHS, **CUSTOM_PATHS}
    by_group: dict[str, list[str]] = {}
    for kind in allowed:
        group = "" if paths[kind].startswith("/api/") else paths[kind].split("/")[2]
        by_group.setdefault(group, []).append(kind.split(".")[0])
    rules = [{"apiGroups": [g], "resources": r, "verbs": ["list", "get"]}
             for g, r in by_group.items()]
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {"k3sops.io/test": "unread"}},
            "rules": rules}


def _binding(name: str, user: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": {"k3sops.io/test": "unread"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": name},
            "subjects": [user]}


def _apply(lab: Lab, docs: list[dict[str, Any]] | str) -> None:
    text = docs if isinstance(docs, str) else "\n---\n".join(json.dumps(d) for d in docs)
    lab.kubectl("apply", "-f", "-", input=text)


def _check(lab: Lab, kubeconfig: Path, state: Path) -> tuple[int, dict[str, Any], str]:
    r = lab.k3sops("--kubeconfig", str(kubeconfig), "-o", "json", "check", "--weekly",
                   "--state-dir", str(state), timeout=180)
    return r.returncode, json.loads(r.stdout), r.stderr


@pytest.fixture(scope="module")
def faults(lab: Lab) -> Iterator[Lab]:
    _apply(lab, FAULTS)

    def visible() -> bool:
        out = lab.kubectl("get", "pods", "-n", NS, "-o", "json").stdout
        pods = json.loads(out)["items"]
        return any(c.get("type") == "PodScheduled" and c.get("status") == "False"
                   for p in pods for c in p["status"].get("conditions", []))
    assert wait_for(visible, timeout=90), "the unschedulable pod never showed"
    yield lab
    lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)
    lab.kubectl("delete", "clusterrole,clusterrolebinding", "-l", "k3sops.io/test=unread",
                check=False)


# Rules judging live metrics or alerts (Prometheus, Alertmanager): their findings change with
# the host's load between two runs a second apart, whatever could be read; not this test's
# question, which is about kinds.
LIVE = {s.id for s in registry.REGISTRY.values()
        if {"prometheus", "alertmanager"} & set(s.needs)}


def _key(f: dict[str, Any]) -> str:
    return "|".join((f["check"], f["resource"]["kind"], f["resource"]["namespace"] or "",
                     f["resource"]["name"]))


def _keys(report: dict[str, Any], key: str = "findings") -> set[str]:
    return {_key(f) for f in report[key] if f["check"] not in LIVE}


def test_each_unreadable_kind_changes_no_finding_and_resolves_nothing(
        faults: Lab, tmp_path: Path) -> None:
    lab = faults
    state = tmp_path / "state"
    kinds = _kinds()
    users = []
    # the roles exist before the full run: they are objects some rules judge too
    for kind in kinds:
        name = f"k3sops-unread-{kind.replace('.', '-')}"[:63]
        users.append((kind, name))
        _apply(lab, [_role(name, [k for k in kinds if k != kind]),
                     _binding(name, {"kind": "User", "name": name,
                                     "apiGroup": "rbac.authorization.k8s.io"})])
    time.sleep(2)  # the RBAC authorizer's informers catch up
    code, full, err = _check(lab, lab.layout.kubeconfig, state)
    assert code in (0, 4), err
    full_keys = _keys(full)
    # the faults are seen with full access (each depends on a different kind)
    for check in ("service-no-endpoints", "ingress-backend-missing", "storageclass-missing",
                  "pod-pending"):
        assert any(k.startswith(check + "|") and f"|{NS}|" in k for k in full_keys), check
    readers = {k: {s.id for s in registry.selected("weekly") if k in s.reads} for k in kinds}
    failures = []
    runs: list[tuple[str, set[str], set[str], set[str]]] = []
    for kind, user in users:
        kc = user_kubeconfig(lab, user, tmp_path / f"{user}.kubeconfig")
        code, limited, err = _check(lab, kc, state)
        keys = _keys(limited)
        not_evaluated = {n["check"] for n in limited["not_evaluated"]}
        if code != 4:
            failures.append(f"{kind}: exit {code}, not 4")
        if kind not in " ".join(s.get("error") or "" for s in limited["sources"]):
            failures.append(f"{kind}: the kubernetes source does not name it")
        if not readers[kind] <= not_evaluated:
            failures.append(f"{kind}: rules reading it were evaluated: "
                            f"{sorted(readers[kind] - not_evaluated)}")
        # resolved/new: judged once the sweep is over, against a second full run
        runs.append((kind, keys, _keys(limited, "resolved"),
                     {_key(f) for f in limited["findings"]
                      if f["new"] and f["check"] not in LIVE}))
    # The lab is shared with the session's other tests: an object they deleted a moment
    # before may still go away during the sweep. What both full runs found was there all along:
    # a limited run must neither resolve it nor call it new.
    code, after, err = _check(lab, lab.layout.kubeconfig, state)
    assert code in (0, 4), err
    stable = full_keys & _keys(after)
    for kind, keys, resolved, new in runs:
        invented = keys - full_keys - _keys(after)
        if invented:
            failures.append(f"{kind}: findings no full run made: {sorted(invented)}")
        if resolved & stable:
            failures.append(f"{kind}: resolved {sorted(resolved & stable)}")
        if new & stable:
            failures.append(f"{kind}: new findings {sorted(new & stable)}")
    assert not failures, "\n".join(failures)


def test_the_issue_s_limited_service_account(faults: Lab, tmp_path: Path) -> None:
    """A ServiceAccount allowed pods, nodes, services, events and PVCs, but not
    EndpointSlices, StorageClasses or workloads (issue 12's report, with a real token)."""
    lab = faults
    sa_ns, sa = NS, "limited-reader"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "k3sops-limited-reader", "labels": {"k3sops.io/test": "unread"}},
            "rules": [{"apiGroups": [""], "verbs": ["list", "get"],
                       "resources": ["pods", "nodes", "services", "events",
                                     "persistentvolumeclaims"]}]}
    _apply(lab, [{"apiVersion": "v1", "kind": "ServiceAccount",
                  "metadata": {"name": sa, "namespace": sa_ns}},
                 role, _binding("k3sops-limited-reader", {"kind": "ServiceAccount",
                                                         "name": sa, "namespace": sa_ns})])
    token = lab.kubectl("create", "token", sa, "-n", sa_ns, "--duration=1h").stdout.strip()
    server = f"https://127.0.0.1:{lab.layout.port('apiserver')}"
    ca = lab.layout.pki_dir / "ca.crt"
    kc = tmp_path / "sa.kubeconfig"
    kc.write_text(f"apiVersion: v1\nkind: Config\nclusters:\n- name: l\n  cluster:\n"
                  f"    server: {server}\n    certificate-authority: {ca}\n"
                  f"users:\n- name: u\n  user:\n    token: {token}\n"
                  "contexts:\n- name: c\n  context: {cluster: l, user: u}\n"
                  "current-context: c\n")
    state = tmp_path / "state"
    _check(lab, lab.layout.kubeconfig, state)
    time.sleep(1)
    code, limited, err = _check(lab, kc, state)
    assert code == 4, err
    assert token not in err and token not in json.dumps(limited)
    kube = next(s for s in limited["sources"] if s["name"] == "kubernetes")
    for kind in ("deployments", "endpointslices", "ingresses", "storageclasses"):
        assert kind in (kube["error"] or "")
    checks = {f["check"] for f in limited["findings"]}
    assert not checks & {"dns-coredns-unavailable", "service-no-endpoints",
                         "storageclass-missing", "ingress-backend-missing"}
    # still judged: what only needs pods
    assert any(f["check"] == "pod-pending" and f["resource"]["namespace"] == NS
               for f in limited["findings"])
    assert not _keys(limited, "resolved")
    assert not {_key(f) for f in limited["findings"] if f["new"] and f["check"] not in LIVE}
    assert limited["summary"]["not_evaluated"] >= 4
    # the table says so too, in words
    r = lab.k3sops("--kubeconfig", str(kc), "check", "--no-history", timeout=120)
    assert r.returncode == 4 and "Not evaluated" in r.stdout
    assert "could not list" in r.stderr


def test_diagnose_names_the_link_it_could_not_read(faults: Lab, tmp_path: Path) -> None:
    lab = faults
    kinds = [k for k in _kinds() if k != "storageclasses"]
    name = "k3sops-unread-diag"
    _apply(lab, [_role(name, kinds), _binding(name, {
        "kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"})])
    time.sleep(2)
    kc = user_kubeconfig(lab, name, tmp_path / "diag.kubeconfig")
    r = lab.k3sops("--kubeconfig", str(kc), "-o", "json", "diagnose",
                   "persistentvolumeclaim/data", "-n", NS, timeout=120)
    assert r.returncode == 4, r.stderr
    report = json.loads(r.stdout)
    assert not any(f["check"] == "storageclass-missing" for f in report["findings"])
    steps = [s for s in report["chain"] if not s["ok"]]
    assert any("could not read storageclasses" in s["detail"] for s in steps), steps
    assert any(not rc["determined"] and "storageclasses" in (rc["missing"] or "")
               for rc in report["root_causes"]), report["root_causes"]
