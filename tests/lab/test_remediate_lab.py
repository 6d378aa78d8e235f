"""Remediations against the lab: drain through the Eviction API, PDBs, 403s, restart, scale.

Everything happens in a scratch namespace; drains use --pod-selector so that only the scratch
Deployment's pods are evicted (other namespaces are never touched) and the node is always
uncordoned afterwards. k3s-agent-3 is never drained.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Lab, wait_for

pytestmark = pytest.mark.lab

AGENTS = ("k3s-agent-1", "k3s-agent-2")

def _k3sops(lab: Lab, *args: str, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "k3sops", *args], env=env or lab.env,
                          capture_output=True, text=True, timeout=180)


def _deployment(ns: str, app: str, replicas: int) -> str:
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": list(AGENTS)}]}}]}}
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                 "template": {"metadata": {"labels": {"app": app}},
                              "spec": {"affinity": affinity,
                                       "containers": [{"name": "c", "image": "busybox"}]}}}})


def _pods(lab: Lab, ns: str, app: str) -> list[dict[str, Any]]:
    r = lab.kubectl("get", "pods", "-n", ns, "-l", f"app={app}", "-o", "json")
    return list(json.loads(r.stdout)["items"])


def _running(lab: Lab, ns: str, app: str, n: int) -> list[dict[str, Any]]:
    pods = [p for p in _pods(lab, ns, app) if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]
    return pods if len(pods) == n else []


def _unschedulable(lab: Lab, node: str) -> bool:
    r = lab.kubectl("get", "node", node, "-o", "jsonpath={.spec.unschedulable}")
    return r.stdout.strip() == "true"


@pytest.fixture
def scratch(lab: Lab) -> Iterator[str]:
    """A throwaway namespace, deleted afterwards."""
    ns = f"k3sops-remediate-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", ns)
    try:
        yield ns
    finally:
        lab.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _deploy_on_agent(lab: Lab, ns: str, app: str, replicas: int) -> tuple[str, list[Any]]:
    lab.kubectl("apply", "-f", "-", input=_deployment(ns, app, replicas))
    pods = wait_for(lambda: _running(lab, ns, app, replicas), timeout=90)
    assert pods, f"{app} never got {replicas} Running pods"
    on_agents = [p for p in pods if p["spec"]["nodeName"] in AGENTS]
    assert on_agents, "no pod landed on a kwok agent node"
    return on_agents[0]["spec"]["nodeName"], pods


def test_drain_dry_run_then_apply_evicts_and_reschedules(lab: Lab, scratch: str,
                                                         tmp_path: Path) -> None:
    app = "web"
    node, pods = _deploy_on_agent(lab, scratch, app, 3)
    assert node != "k3s-agent-3"
    victims = {p["metadata"]["uid"] for p in pods if p["spec"]["nodeName"] == node}
    args = ("node", "drain", node, "--pod-selector", f"app={app}", "--timeout", "90s",
            "--state-dir", str(tmp_path))
    try:
        dry = _k3sops(lab, "-o", "json", *args)
        assert dry.returncode == 0, dry.stderr
        plan = json.loads(dry.stdout)
        assert plan["applied"] is False
        assert plan["steps"][0]["step"]["action"] == "cordon"
        assert {s["step"]["uid"] for s in plan["steps"] if s["step"]["action"] == "evict"} \
            == victims
        assert not _unschedulable(lab, node)
        assert {p["metadata"]["uid"] for p in _pods(lab, scratch, app)} >= victims
        assert not (tmp_path / "audit.jsonl").exists()

        done = _k3sops(lab, "-o", "json", *args, "--apply")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert {s["result"] for s in report["steps"]} == {"ok"}
        assert _unschedulable(lab, node)

        def replaced() -> list[Any]:
            now = _running(lab, scratch, app, 3)
            return now if now and not victims & {p["metadata"]["uid"] for p in now} else []
        now = wait_for(replaced, timeout=90)
        assert now, "evicted pods were not replaced by 3 Running pods"
        assert all(p["spec"]["nodeName"] != node for p in now)

        audit = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
        assert [a["what"]["action"] for a in audit] == ["cordon"] + ["evict"] * len(victims)
        assert all(a["result"] == "ok" and a["who"] and a["when"] for a in audit)

        again = _k3sops(lab, "-o", "json", *args, "--apply")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["steps"] == []
    finally:
        lab.kubectl("uncordon", node, check=False)


def test_pdb_blocks_eviction_and_drain_times_out_cleanly(lab: Lab, scratch: str,
                                                         tmp_path: Path) -> None:
    app = "guarded"
    node, pods = _deploy_on_agent(lab, scratch, app, 2)
    lab.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": app, "namespace": scratch},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": app}}}}))
    victims = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == node}
    # The disruption controller must have computed the budget before evictions are judged.
    wait_for(lambda: "disruptionsAllowed" in lab.kubectl(
        "get", "pdb", app, "-n", scratch, "-o", "json").stdout, timeout=30)
    try:
        r = _k3sops(lab, "-o", "json", "node", "drain", node, "--pod-selector", f"app={app}",
                    "--timeout", "6s", "--apply", "--state-dir", str(tmp_path))
        assert r.returncode == 1, r.stderr
        assert "disruption budget" in r.stderr.lower() and "Traceback" not in r.stderr
        report = json.loads(r.stdout)
        failed = {s["step"]["name"] for s in report["steps"] if s["result"] == "failed"}
        assert failed == victims
        assert {p["metadata"]["name"] for p in _pods(lab, scratch, app)} >= victims
        audit = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
        assert [a["result"] for a in audit if a["what"]["action"] == "evict"] \
            == ["failed"] * len(victims)
    finally:
        lab.kubectl("uncordon", node, check=False)


def test_refused_cordon_exits_1_naming_verb_and_resource(lab: Lab, tmp_path: Path) -> None:
    """A user the lab CA signs, allowed to read nodes but not change them: the patch is 403."""
    from kit.users import user_kubeconfig

    user = f"k3sops-readonly-{uuid.uuid4().hex[:6]}"
    kc = user_kubeconfig(lab, user, tmp_path / "kc")
    lab.kubectl("create", "clusterrole", user, "--verb=get,list", "--resource=nodes")
    lab.kubectl("create", "clusterrolebinding", user, f"--clusterrole={user}", f"--user={user}")
    env = {k: v for k, v in lab.env.items() if k != "K3SOPS_CONFIG"}
    try:
        r = _k3sops(lab, "--kubeconfig", str(kc), "-o", "json", "node", "cordon", "k3s-agent-1",
                    "--apply", "--state-dir", str(tmp_path / "state"), env=env)
        assert r.returncode == 1, r.stderr
        assert "refused to patch nodes/k3s-agent-1" in r.stderr and "403" in r.stderr
        assert "BEGIN" not in r.stderr + r.stdout
        assert [s["result"] for s in json.loads(r.stdout)["steps"]] == ["failed"]
        audit = [json.loads(x) for x in
                 (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
        assert [(a["what"]["action"], a["result"]) for a in audit] == [("cordon", "failed")]
        assert "403" in audit[0]["error"] and "BEGIN" not in audit[0]["error"]
        assert not _unschedulable(lab, "k3s-agent-1")
    finally:
        lab.kubectl("delete", "clusterrolebinding", user, check=False)
        lab.kubectl("delete", "clusterrole", user, check=False)


def test_rollout_restart_sets_the_annotation_and_scale_is_idempotent(
        lab: Lab, scratch: str, tmp_path: Path) -> None:
    """Rollout restart always restarts (like kubectl); scale to the current count is a no-op."""
    app = "api"
    lab.kubectl("apply", "-f", "-", input=_deployment(scratch, app, 2))
    common = ("-n", scratch, "--state-dir", str(tmp_path))
    r = _k3sops(lab, "-o", "json", "rollout", "restart", f"deployment/{app}", *common, "--apply")
    assert r.returncode == 0, r.stderr
    stamp = json.loads(r.stdout)["steps"][0]["step"]["value"]
    got = lab.kubectl("get", "deployment", app, "-n", scratch, "-o",
                      "jsonpath={.spec.template.metadata.annotations}").stdout
    assert json.loads(got)["kubectl.kubernetes.io/restartedAt"] == stamp

    same = _k3sops(lab, "-o", "json", "scale", f"deployment/{app}", "--replicas", "2", *common,
                   "--apply")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["steps"] == []
    up = _k3sops(lab, "-o", "json", "scale", f"deployment/{app}", "--replicas", "3", *common,
                 "--apply")
    assert up.returncode == 0, up.stderr
    assert [s["result"] for s in json.loads(up.stdout)["steps"]] == ["ok"]
    assert lab.kubectl("get", "deployment", app, "-n", scratch, "-o",
                       "jsonpath={.spec.replicas}").stdout == "3"


def test_pods_clean_deletes_failed_and_evicted_pods_only(lab: Lab, scratch: str,
                                                         tmp_path: Path) -> None:
    """Pods bound to a node no kubelet/kwok serves keep the status we give them."""
    for name in ("evicted", "healthy"):
        lab.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": scratch},
            "spec": {"nodeName": "k3sops-no-such-node",
                     "containers": [{"name": "c", "image": "busybox"}]}}))
    lab.kubectl("patch", "pod", "evicted", "-n", scratch, "--subresource=status",
                "--type=merge", "-p", json.dumps({"status": {"phase": "Failed",
                                                             "reason": "Evicted"}}))
    common = ("-o", "json", "pods", "clean", "-n", scratch, "--state-dir", str(tmp_path))
    dry = _k3sops(lab, *common)
    assert dry.returncode == 0, dry.stderr
    assert [s["step"]["name"] for s in json.loads(dry.stdout)["steps"]] == ["evicted"]
    r = _k3sops(lab, *common, "--apply")
    assert r.returncode == 0, r.stderr
    assert [s["result"] for s in json.loads(r.stdout)["steps"]] == ["ok"]
    names = lab.kubectl("get", "pods", "-n", scratch, "-o",
                        "jsonpath={.items[*].metadata.name}").stdout.split()
    assert "healthy" in names
    assert "evicted" not in names
    again = _k3sops(lab, *common, "--apply")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["steps"] == []
    # No kubelet will ever confirm this pod's termination: remove it outright.
    lab.kubectl("delete", "pod", "healthy", "-n", scratch, "--force", "--grace-period=0",
                check=False)
