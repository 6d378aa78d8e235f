"""The chart's RBAC modes proven on the lab's real API server, from its audit log.

The chart is installed with `helm install` twice (``readonly`` and ``operator``, each release in
its own namespace; the RBAC objects are real, no pod runs). Each ServiceAccount's token runs what
its mode is for:

* readonly: `k3sops serve` (the watch cache, the leader Lease taken and released on SIGTERM, a
  request whose token is reviewed), `serve --once`, `check --monthly`, `diagnose pod`,
  `diagnose performance`, `logs`;
* operator: the remediation plans through the service's own executor (restart from a pod,
  clean-pods, cordon), `rollout restart` of a StatefulSet, `node drain --pod-selector`,
  `scale app` of a Deployment and a StatefulSet, and `backup volume`'s cluster calls (the
  Longhorn adapter and the backup Lease, in its order: PVC, PV, Volume, Snapshot, Backup,
  Backup read back; Longhorn's manager cannot run here and the restic half is not RBAC's).

The API server's audit log (Metadata level for ServiceAccounts, a lab flag) is then read back:
every request of each account must be authorized by a rule of its mode (no 403, but the
cluster-wide Secrets LIST that no mode grants, which leaves the rules that read Secrets not
evaluated), and every right the mode grants must have been used (the operator's union with the
readonly run: its rules include readonly's), but those ``rbac.LAB_UNREACHED`` lists with
why. Last, the operator's token is refused, with a clean error naming verb and resource and no
token in it, reading a Secret in another namespace, deleting a Node and patching a ClusterRole;
readonly's `node cordon --apply` is refused the same way.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kit.helm import helm_path
from kit.rbac import (
    CHART,
    Release,
    Request,
    audit_offset,
    helm,
    install,
    lines,
    requests_since,
    right_of,
    uninstall,
)
from kit.serve import Rbac, get, kill, start

from conftest import Lab, wait_for
from k3sops.adapters.kube import KubeActions
from k3sops.adapters.lease import KubeLease
from k3sops.adapters.longhorn import Longhorn
from k3sops.domain import volume_backup as vb
from k3sops.errors import Unauthorized
from k3sops.lab.configs import audit_log_path
from k3sops.serve import rbac
from k3sops.serve.remediation import Target, cluster_executor
from k3sops.services import context

pytestmark = pytest.mark.lab

TAG = uuid.uuid4().hex[:6]
WORK = f"t-rbac-{TAG}"
LH = "longhorn-system"
AGENT = "k3s-agent-1"
"""The node the cordon plan and the drain act on (uncordoned by the admin afterwards)."""
SERVE_OFFSET = 760
"""The service's port: the lab's base + 760 (kit.serve's own tests use +700)."""
SECRETS_LIST = ("list", "", "secrets", None)
"""The one refusal readonly and operator both expect: the cache's cluster-wide Secrets LIST."""


@dataclass
class Proof:
    """What the accounts ran, what the API server logged, and the refusals."""

    releases: dict[str, Release]
    results: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    requests: dict[str, list[Request]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    refused_requests: list[Request] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def _spawn(lab: Lab, release: Release, platform: Path, *args: str,
           ) -> subprocess.Popen[str]:
    """Start `k3sops` with the release's token (the commands run side by side: the audit log
    tells each account's requests apart, not their order)."""
    env = {k: v for k, v in lab.env.items() if k not in ("K3SOPS_CONFIG", "KUBECONFIG")}
    return subprocess.Popen([sys.executable, "-m", "k3sops", "-c", str(platform),
                             "--kubeconfig", str(release.kubeconfig), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _k3sops(lab: Lab, release: Release, platform: Path, *args: str,
            ) -> subprocess.CompletedProcess[str]:
    return _finish(_spawn(lab, release, platform, *args))


def _platform(lab: Lab, release: Release, path: Path) -> Path:
    platform = yaml.safe_load(lab.layout.platform_file.read_text())
    platform.pop("kubeconfig", None)  # the admin's: the commands must use the token
    platform["serve"] = {"lease": {"namespace": release.namespace, "name": "k3sops-serve",
                                   "duration": "3s"},
                         "schedule": {"daily": None, "weekly": None, "monthly": None}}
    path.write_text(yaml.safe_dump(platform))
    return path


def _workloads(lab: Lab) -> None:
    """The operator's targets in WORK (a Deployment and a StatefulSet on the agents, a Failed
    pod) and a PVC on a Longhorn PV with its Longhorn Volume."""
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [AGENT]}]}]}}}

    def workload(kind: str, name: str) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"affinity": affinity, "terminationGracePeriodSeconds": 0,
                                  "containers": [{"name": "c", "image": "example/app:1.0"}]}}}
        if kind == "StatefulSet":
            spec["serviceName"] = name
        return {"apiVersion": "apps/v1", "kind": kind,
                "metadata": {"name": name, "namespace": WORK}, "spec": spec}

    pv = f"pvc-{uuid.uuid4()}"
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": WORK}},
        workload("Deployment", "web"), workload("StatefulSet", "db"),
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv,
                                                                      "labels": {"t": WORK}},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "longhorn",
                  "claimRef": {"namespace": WORK, "name": "data"},
                  "csi": {"driver": "driver.longhorn.io", "volumeHandle": pv}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "data", "namespace": WORK},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "longhorn",
                  "volumeName": pv, "resources": {"requests": {"storage": "1Gi"}}}},
        {"apiVersion": "longhorn.io/v1beta2", "kind": "Volume",
         "metadata": {"name": pv, "namespace": LH, "labels": {"t": WORK}},
         "spec": {"size": str(1 << 30), "numberOfReplicas": 1, "frontend": "blockdev"}},
    ]
    lab.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))

    def ready() -> bool:
        pods = json.loads(lab.kubectl("get", "pods", "-n", WORK, "-l", "app in (web,db)",
                                      "-o", "json").stdout)["items"]
        bound = lab.kubectl("get", "pvc", "data", "-n", WORK, "-o",
                            "jsonpath={.status.phase}").stdout == "Bound"
        return bound and len([p for p in pods if p["status"].get("phase") == "Running"]) == 2
    assert wait_for(ready, timeout=90), "the scratch workloads or the PVC never got ready"


def _failed_pod(lab: Lab) -> None:
    """An Evicted pod for clean-pods, made just before it runs: bound to a node nobody serves,
    it keeps the status given here until the pod GC removes it (40 s later)."""
    lab.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "failed", "namespace": WORK},
         "spec": {"nodeName": "k3sops-no-such-node",
                  "containers": [{"name": "c", "image": "example/app:1.0"}]}}))
    lab.kubectl("patch", "pod", "failed", "-n", WORK, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"phase": "Failed", "reason": "Evicted"}}))


def _readonly_runs(lab: Lab, ro: Release, tmp: Path,
                   ) -> dict[str, subprocess.Popen[str]]:
    """Start readonly's commands; return them running."""
    platform = _platform(lab, ro, tmp / "ro-platform.yaml")
    runs = {
        "serve --once": ("serve", "--once", "--state-dir", str(tmp / "ro-once")),
        "check": ("-o", "json", "check", "--monthly", "--state-dir", str(tmp / "ro-check")),
        "diagnose pod": ("-o", "json", "diagnose", "pod", "postgres-0", "-n", "production"),
        "diagnose performance": ("-o", "json", "diagnose", "performance"),
        "logs": ("logs", "postgres-0", "-n", "production", "--tail", "1"),
    }
    return {what: _spawn(lab, ro, platform, *args) for what, args in runs.items()}


def _serve(lab: Lab, ro: Release, tmp: Path, proof: Proof) -> None:
    """`k3sops serve` with readonly's token: synced, a reviewed request, the Lease taken and
    released on SIGTERM."""
    service = start(lab, Rbac(tokens={"self": ro.token}, kubeconfig=ro.kubeconfig,
                              platform=tmp / "ro-platform.yaml", tmp=tmp), SERVE_OFFSET)
    try:
        # the service reviews the token (TokenReview) and asks whether it may get reports
        # (SubjectAccessReview): it may not, the reviews themselves are what is proven
        r = get(service, "/api/v1/report", ro.token)
        assert r.status_code == 403, r.text

        def held() -> str:
            return lab.kubectl("get", "lease", "k3sops-serve", "-n", ro.namespace, "-o",
                               "jsonpath={.spec.holderIdentity}", check=False).stdout.strip()
        assert wait_for(held, timeout=30), service.log.read_text()
        service.proc.send_signal(signal.SIGTERM)  # releases the Lease (an update)
        assert service.proc.wait(30) == 0, service.log.read_text()
    finally:
        kill(service)
    proof.outputs.append(service.log.read_text())


def _operator_runs(lab: Lab, op: Release, tmp: Path, proof: Proof,
                   ) -> dict[str, subprocess.Popen[str]]:
    """The remediation plans (in this process), then operator's commands started."""
    platform = _platform(lab, op, tmp / "op-platform.yaml")
    settings = context.Settings(kubeconfig=op.kubeconfig, context=None, platform=None)
    execute = cluster_executor(settings, {}, Path.home(), tmp / "op-audit")
    web_pod = json.loads(lab.kubectl("get", "pods", "-n", WORK, "-l", "app=web", "-o",
                                     "json").stdout)["items"][0]["metadata"]["name"]
    try:
        # the service's remediation plans, through its own executor
        for plan, target in (("restart", Target("pods", WORK, web_pod)),
                             ("clean-pods", Target("namespaces", None, WORK)),
                             ("cordon", Target("nodes", None, AGENT))):
            if plan == "clean-pods":
                _failed_pod(lab)
            report = execute(plan, target, True)
            assert [s.result for s in report.steps] == ["ok"], report
            proof.outputs.append(report.model_dump_json())
    finally:
        lab.kubectl("uncordon", AGENT, check=False)
    runs = {
        "rollout restart": ("-o", "json", "rollout", "restart", "statefulset/db", "-n", WORK,
                            "--apply", "--state-dir", str(tmp / "op-restart")),
        "drain": ("-o", "json", "node", "drain", AGENT, "--pod-selector", "app=web",
                  "--timeout", "90s", "--apply", "--state-dir", str(tmp / "op-drain")),
        "scale deployment": ("-o", "json", "scale", "app", "deployment/web", "--replicas", "2",
                             "-n", WORK, "--apply", "--no-wait", "--state-dir",
                             str(tmp / "op-scale-deploy")),
        "scale statefulset": ("-o", "json", "scale", "app", "statefulset/db", "--replicas",
                              "2", "-n", WORK, "--apply", "--no-wait", "--state-dir",
                              str(tmp / "op-scale-sts")),
    }
    return {what: _spawn(lab, op, platform, *args) for what, args in runs.items()}


def _backup_volume_calls(op: Release, proof: Proof) -> None:
    """`backup volume`'s requests, in its order, with the operator's token."""
    kube = context.kube(context.Settings(kubeconfig=op.kubeconfig, context=None, platform=None),
                        {}, Path.home())
    try:
        lh = Longhorn(kube)
        claim = lh.pvc(WORK, "data")
        pv_name = str(claim["spec"]["volumeName"])
        ref = vb.resolve_volume(claim, lh.pv(pv_name))
        assert lh.volume(ref.volume) is not None
        lease = KubeLease(kube, op.namespace, f"k3sops-backup-volume-{TAG}", f"rbac-{TAG}",
                          duration=3)
        with lease:
            name = vb.object_name("k3sops", f"rbac-{TAG}")
            lh.create_snapshot(vb.snapshot_object(ref, name, f"rbac-{TAG}"))
            lh.create_backup(vb.backup_object(ref, name, name, f"rbac-{TAG}"))
            assert lh.backup(name) is not None
            time.sleep(1.5)  # a renewal every second: an update
    finally:
        kube.close()


def _refusals(lab: Lab, ro: Release, op: Release, tmp: Path, proof: Proof) -> None:
    """The operator's token at what no mode allows; readonly's at a cordon (it reads a Node
    only by listing: the plan's first read is refused)."""
    proof.results["refused cordon"] = _k3sops(
        lab, ro, tmp / "ro-platform.yaml", "-o", "json", "node", "cordon", AGENT, "--apply",
        "--state-dir", str(tmp / "ro-cordon"))
    kube = context.kube(context.Settings(kubeconfig=op.kubeconfig, context=None, platform=None),
                        {}, Path.home())
    attempts = {
        "secret": lambda: kube.get("v1", "secrets", "k3sops-no-secret", "kube-system"),
        "node": lambda: KubeActions(kube).delete_node("k3s-agent-3"),
        "rbac": lambda: kube.patch("rbac.authorization.k8s.io/v1", "clusterroles",
                                   f"k3sops-op-{TAG}", None,
                                   {"metadata": {"labels": {"k3sops.io/x": "y"}}}),
    }
    try:
        for what, attempt in attempts.items():
            with pytest.raises(Unauthorized) as e:
                attempt()
            proof.refused[what] = f"{e.value.message} {e.value.hint or ''}"
    finally:
        kube.close()


@pytest.fixture(scope="module")
def proof(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proof]:
    binary = helm_path(lab.binaries)
    if not audit_log_path(lab.layout).exists():
        pytest.fail("the lab's API server writes no audit log: it was started before the lab "
                    "had --audit-log-path; restart it (k3sops lab down, then up)", pytrace=False)
    tmp = tmp_path_factory.mktemp("rbac")
    start_at = audit_offset(lab)
    releases: dict[str, Release] = {}
    try:
        for mode in rbac.MODES:
            releases[mode] = install(lab, binary, mode, f"k3sops-{mode[:2]}-{TAG}",
                                     f"t-rbac-{mode[:2]}-{TAG}", tmp / f"{mode}.kubeconfig")
        proof = Proof(releases=releases)
        running = _readonly_runs(lab, releases["readonly"], tmp)
        try:
            _workloads(lab)
            running.update(_operator_runs(lab, releases["operator"], tmp, proof))
            _serve(lab, releases["readonly"], tmp, proof)
            _backup_volume_calls(releases["operator"], proof)
        finally:
            proof.results.update({what: _finish(p) for what, p in running.items()})
            lab.kubectl("uncordon", AGENT, check=False)
        refusals_at = audit_offset(lab)
        for mode, release in releases.items():
            proof.requests[mode] = requests_since(lab, start_at, release.user)
        _refusals(lab, releases["readonly"], releases["operator"], tmp, proof)
        proof.refused_requests = [
            *requests_since(lab, refusals_at, releases["readonly"].user),
            *requests_since(lab, refusals_at, releases["operator"].user)]
        yield proof
    finally:
        for release in releases.values():
            uninstall(lab, binary, release)
        lab.kubectl("delete", "namespace", WORK, "--wait=false", check=False)
        lab.kubectl("delete", "pv,volumes.longhorn.io", "-A", "-l", f"t={WORK}",
                    "--wait=false", check=False)
        for kind in ("backups.longhorn.io", "snapshots.longhorn.io"):
            lab.kubectl("delete", kind, "-n", LH, "-l", "app.kubernetes.io/managed-by=k3sops",
                        "--ignore-not-found", check=False)


def _allowed(req: Request) -> bool:
    return req.allowed or (req.verb, req.group, req.resource, req.namespace) == SECRETS_LIST


def test_helm_installed_exactly_the_mode_s_rules(lab: Lab, proof: Proof) -> None:
    for mode, release in proof.releases.items():
        expected = rbac.rules(mode)
        cluster = json.loads(lab.kubectl("get", "clusterrole", release.name, "-o",
                                         "json").stdout)["rules"]
        assert cluster == expected[rbac.CLUSTER], mode
        own = json.loads(lab.kubectl("get", "role", release.name, "-n", release.namespace,
                                     "-o", "json").stdout)["rules"]
        assert own == expected[rbac.RELEASE], mode
        others = {ns: rules for ns, rules in expected.items()
                  if ns not in (rbac.CLUSTER, rbac.RELEASE)}
        for ns, rules in others.items():
            got = json.loads(lab.kubectl("get", "role", release.name, "-n", ns, "-o",
                                         "json").stdout)["rules"]
            assert got == rules, (mode, ns)
        assert (mode == "operator") == bool(others)


def test_the_commands_succeed_with_the_mode_s_token(proof: Proof) -> None:
    r = proof.results
    for what in ("serve --once", "logs", "rollout restart", "drain", "scale deployment",
                 "scale statefulset"):
        assert r[what].returncode == 0, (what, r[what].stderr[-2000:])
    # diagnose lists every kind: all but Secrets read (a partial result, exit 4)
    assert r["diagnose pod"].returncode == 4, r["diagnose pod"].stderr
    assert "could not list secrets (forbidden)\n" in r["diagnose pod"].stderr
    assert json.loads(r["diagnose pod"].stdout)["target"] == "pod/production/postgres-0"
    assert json.loads(r["serve --once"].stdout)["synced"] is True
    # diagnose performance: the lab serves no metrics.k8s.io (its sources named, exit 4)
    assert r["diagnose performance"].returncode in (0, 4), r["diagnose performance"].stderr
    for what in ("rollout restart", "drain", "scale deployment", "scale statefulset"):
        steps = json.loads(r[what].stdout)["steps"]
        # a drained pod the restart's rollout replaced meanwhile is skipped, not evicted
        results = [s["result"] for s in steps]
        assert "ok" in results and set(results) <= {"ok", "skipped"}, (what, steps)


def test_without_secrets_check_names_them_and_leaves_their_rules_not_evaluated(
        proof: Proof) -> None:
    check = proof.results["check"]
    assert check.returncode == 4, check.stderr[-2000:]
    report = json.loads(check.stdout)
    down = [s for s in report["sources"] if not s["ok"]]
    assert [(s["name"], s["error"]) for s in down] == [
        ("kubernetes", "could not list secrets (forbidden)")]
    skipped, _ = rbac.cost("secrets")
    not_evaluated = {n["check"]: n["missing"] for n in report["not_evaluated"]}
    assert set(not_evaluated) == set(skipped)
    assert all(m == ["secrets: forbidden"] for m in not_evaluated.values())


@pytest.mark.parametrize("mode", rbac.MODES)
def test_every_request_is_authorized_by_a_rule_of_the_mode(proof: Proof,
                                                           mode: rbac.Mode) -> None:
    reqs = proof.requests[mode]
    assert len(reqs) > 30, lines(reqs)
    refused = [q for q in reqs if not _allowed(q)]
    assert not refused, lines(refused)
    assert all(q.code != 403 for q in reqs if q.allowed), lines(reqs)
    granted = rbac.atoms(mode)
    release = proof.releases[mode]
    outside = [q for q in reqs if q.allowed and right_of(q, granted, release.namespace) is None]
    assert not outside, lines(outside)


def test_every_right_granted_is_used(proof: Proof) -> None:
    used: dict[str, set[rbac.Atom]] = {}
    for mode, reqs in proof.requests.items():
        release = proof.releases[mode]
        found = (right_of(q, rbac.atoms(mode), release.namespace) for q in reqs if q.allowed)
        used[mode] = {a for a in found if a is not None}
    # a right only a path the lab cannot reach uses is listed, with why, in the code
    assert rbac.atoms("readonly") - used["readonly"] == set(rbac.LAB_UNREACHED)
    # operator's rules include readonly's: those were used by the readonly run
    assert rbac.atoms("operator") - used["operator"] - used["readonly"] == set(
        rbac.LAB_UNREACHED)


def test_forbidden_actions_get_a_clean_403_naming_verb_and_resource(proof: Proof) -> None:
    expected = {"secret": "refused to get secrets/k3sops-no-secret in namespace kube-system "
                          "(HTTP 403)",
                "node": "refused to delete nodes/k3s-agent-3 (HTTP 403)",
                "rbac": f"refused to patch clusterroles/k3sops-op-{TAG} (HTTP 403)"}
    for what, text in expected.items():
        assert text in proof.refused[what], proof.refused[what]
        assert "Traceback" not in proof.refused[what]
    assert {(q.verb, q.resource, q.allowed) for q in proof.refused_requests} == {
        ("get", "nodes", False), ("get", "secrets", False), ("delete", "nodes", False),
        ("patch", "clusterroles", False)}
    cordon = proof.results["refused cordon"]
    assert cordon.returncode == 1, cordon.stdout + cordon.stderr
    assert f"refused to get nodes/{AGENT} (HTTP 403)" in cordon.stderr


def test_no_token_in_any_output(proof: Proof) -> None:
    texts = [*proof.outputs, *proof.refused.values(),
             *(r.stdout + r.stderr for r in proof.results.values())]
    for release in proof.releases.values():
        assert all(release.token not in t for t in texts)


def test_helm_template_refuses_an_unknown_mode_and_can_leave_other_namespaces_out(
        lab: Lab) -> None:
    binary = helm_path(lab.binaries)

    def template(*values: str) -> subprocess.CompletedProcess[str]:
        return helm(lab, binary, "template", "t", str(CHART), "-n", "ops",
                    *(a for v in values for a in ("--set", v)))

    bad = template("rbac.mode=admin")
    assert bad.returncode == 1
    assert 'rbac.mode must be readonly or operator, not "admin"' in bad.stderr
    for other, namespaces in ((True, {"ops", "longhorn-system"}), (False, {"ops"})):
        r = template("rbac.mode=operator", f"rbac.otherNamespaces={str(other).lower()}")
        assert r.returncode == 0, r.stderr
        docs = [d for d in yaml.safe_load_all(r.stdout) if d]
        roles = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "Role"}
        bindings = {d["metadata"]["namespace"] for d in docs if d["kind"] == "RoleBinding"}
        assert set(roles) == bindings == namespaces
        assert roles["ops"]["rules"] == rbac.rules("operator")[rbac.RELEASE]
    off = template("rbac.create=false")
    assert off.returncode == 0 and "kind: ClusterRole" not in off.stdout
