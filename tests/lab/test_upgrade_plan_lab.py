"""`k3sops upgrade plan` against the lab: the real API server's Nodes (kwok, 3 servers and 3
agents), pods, a PodDisruptionBudget computed by the real disruption controller, and etcd
backups taken from the lab's etcd into a real restic repository and verified by a drill.

Versions the lab cannot show by itself (an older agent, a learner etcd member) are written to
a Node's status through the status subresource, as the kubelet and K3s' etcd controller write
them, and put back afterwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kit.backup import Setup, make_setup

from conftest import Lab, wait_for

pytestmark = pytest.mark.lab

VERSION = "v1.34.4+k3s1"
NEXT = "v1.35.0+k3s1"
PDB_NS = "k3sops-upgrade-test"


@pytest.fixture(scope="module")
def backed_up(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """A platform file with its own repository holding one verified etcd backup of the lab."""
    s = make_setup(lab, tmp_path_factory.mktemp("upgrade"), "unused")
    bid = s.ok("backup", "etcd")["manifest"]["id"]
    (rec,) = s.ok("backup", "verify", bid)["records"]
    assert rec["ok"] is True, rec
    return s


def plan(s: Setup | Lab, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run `upgrade plan -o json ARGS`: exit code, the printed plan, stderr."""
    r = s.k3sops("-o", "json", "upgrade", "plan", *args)
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else {}, r.stderr


def failed(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["rule"]: c for c in p["preflight"] if c["status"] == "fail"}


def patch_status(lab: Lab, node: str, patch: dict[str, Any]) -> None:
    lab.kubectl("patch", "node", node, "--subresource=status", "--type=strategic",
                "-p", json.dumps({"status": patch}))


def kubelet_version(lab: Lab, node: str) -> str:
    return lab.kubectl("get", "node", node, "-o",
                       "jsonpath={.status.nodeInfo.kubeletVersion}").stdout


@pytest.fixture
def older_agent(lab: Lab) -> Iterator[str]:
    """k3s-agent-3 reporting v1.32.9+k3s1 (a node two minors behind); put back afterwards."""
    node = "k3s-agent-3"
    patch_status(lab, node, {"nodeInfo": {"kubeletVersion": "v1.32.9+k3s1"}})
    yield node
    patch_status(lab, node, {"nodeInfo": {"kubeletVersion": VERSION}})
    wait_for(lambda: kubelet_version(lab, node) == VERSION, timeout=30)


def test_healthy_lab_with_a_fresh_verified_backup_passes(backed_up: Setup) -> None:
    code, p, err = plan(backed_up, "--to", NEXT, "--max-unavailable", "2")
    assert code == 0, (err, failed(p))
    assert {n["name"]: n["version"] for n in p["nodes"]} == {
        f"k3s-{r}-{i}": VERSION for r in ("server", "agent") for i in (1, 2, 3)}
    assert [(b["role"], b["nodes"]) for b in p["order"]] == [
        ("server", ["k3s-server-1"]), ("server", ["k3s-server-2"]), ("server", ["k3s-server-3"]),
        ("agent", ["k3s-agent-1", "k3s-agent-2"]), ("agent", ["k3s-agent-3"])]
    checks = {c["rule"]: c for c in p["preflight"]}
    assert checks["etcd-quorum"]["status"] == "pass" and "3 of 3" in checks["etcd-quorum"]["reason"]
    # etcd's own view: the lab's real etcd, scraped by the lab's Prometheus.
    assert checks["etcd-health"]["status"] == "pass", checks["etcd-health"]
    assert checks["etcd-backup"]["status"] == "pass" and "verified" in (
        checks["etcd-backup"]["reason"])
    assert all(c["status"] == "pass" for c in p["preflight"]), p["preflight"]


def test_no_backup_section_and_a_stale_backup_are_refused(lab: Lab, backed_up: Setup) -> None:
    # The lab's own platform file has no backup section: no backup can be found.
    code, p, err = plan(lab, "--to", NEXT)
    assert code == 3, err
    assert set(failed(p)) == {"etcd-backup"}
    assert "platform.yaml has no backup section" in failed(p)["etcd-backup"]["reason"]
    assert "refused by preflight etcd-backup" in err
    assert "run: k3sops backup etcd && k3sops backup verify --since 1h" in err
    # The verified backup is older than a 1-second limit: stale.
    time.sleep(1.5)
    code, p, err = plan(backed_up, "--to", NEXT, "--backup-max-age", "1s")
    assert code == 3, err
    assert set(failed(p)) == {"etcd-backup"}
    assert "older than --backup-max-age" in failed(p)["etcd-backup"]["reason"]


def test_an_empty_repository_is_refused(lab: Lab, tmp_path: Path) -> None:
    s = make_setup(lab, tmp_path, "unused")
    code, p, err = plan(s, "--to", NEXT)
    assert code == 3
    assert "the repository holds no completed etcd backup" in failed(p)["etcd-backup"]["reason"]
    assert "run: k3sops backup etcd" in err


def test_skipped_minor_and_downgrade_are_refused(lab: Lab, backed_up: Setup,
                                                older_agent: str) -> None:
    wait_for(lambda: kubelet_version(lab, older_agent) == "v1.32.9+k3s1", timeout=30)
    code, p, err = plan(backed_up, "--to", "v1.34.5+k3s1")
    assert code == 3, err
    skew = failed(p)["minor-skew"]
    assert skew["node"] == older_agent and "skips v1.33" in skew["reason"]
    assert skew["command"] == "k3sops upgrade plan --to v1.33.<patch>+k3s<N>"
    assert set(failed(p)) == {"minor-skew"}
    assert f"refused by preflight minor-skew: node {older_agent} runs v1.32.9+k3s1" in err
    # Older than the servers' version: a downgrade.
    code, p, err = plan(backed_up, "--to", "v1.34.3+k3s1")
    assert code == 3 and "no-downgrade" in failed(p), err
    assert failed(p)["no-downgrade"]["command"] == f"k3sops upgrade plan --to {VERSION}"


def test_a_learner_etcd_member_leaves_no_quorum_to_spare(lab: Lab, backed_up: Setup) -> None:
    node = "k3s-server-2"
    patch_status(lab, node, {"conditions": [{"type": "EtcdIsVoter", "status": "False",
                                              "reason": "MemberIsLearner",
                                              "message": "Node is a learner"}]})
    try:
        code, p, err = plan(backed_up, "--to", NEXT)
        assert code == 3, err
        etcd = failed(p)["etcd-quorum"]
        assert etcd["node"] == node and "2 healthy voting member(s) of 3" in etcd["reason"]
        assert etcd["command"] == f"k3sops diagnose node {node}"
    finally:
        patch_status(lab, node, {"conditions": [{
            "type": "EtcdIsVoter", "status": "True", "reason": "MemberNotLearner",
            "message": "Node is a voting member of the etcd cluster"}]})


def test_a_budget_that_blocks_a_drain_is_named(lab: Lab, backed_up: Setup) -> None:
    """One replica under minAvailable 1: the disruption controller allows 0 disruptions."""
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PDB_NS}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "solo", "namespace": PDB_NS},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "solo"}},
                  "template": {"metadata": {"labels": {"app": "solo"}}, "spec": {
                      "containers": [{"name": "app", "image": "example/app:1.0",
                                      "resources": {"requests": {"cpu": "10m"}}}],
                      "terminationGracePeriodSeconds": 0}}}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": {"name": "solo", "namespace": PDB_NS},
         "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "solo"}}}},
    ]
    lab.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
    try:
        def settled() -> str | None:
            out = lab.kubectl("-n", PDB_NS, "get", "pdb", "solo", "-o", "json").stdout
            st = json.loads(out).get("status", {})
            pods = json.loads(lab.kubectl("-n", PDB_NS, "get", "pods", "-o", "json").stdout)
            running = [x for x in pods["items"] if x["status"].get("phase") == "Running"]
            if st.get("expectedPods") == 1 and st.get("disruptionsAllowed") == 0 and running:
                return str(running[0]["spec"]["nodeName"])
            return None

        node = wait_for(settled, timeout=120)
        code, p, err = plan(backed_up, "--to", NEXT)
        assert code == 3, err
        assert set(failed(p)) == {"pdb-drain"}
        blocked = failed(p)["pdb-drain"]
        assert blocked["node"] == node
        assert f"poddisruptionbudget {PDB_NS}/solo allows 0 disruption(s)" in blocked["reason"]
        assert f"draining {node}" in blocked["reason"]
        assert blocked["command"] == f"k3sops diagnose poddisruptionbudget/solo -n {PDB_NS}"
        assert f"refused by preflight pdb-drain: poddisruptionbudget {PDB_NS}/solo" in err
    finally:
        lab.kubectl("delete", "namespace", PDB_NS, "--timeout=90s", check=False, timeout=120)


def test_a_malformed_version_is_bad_usage(lab: Lab) -> None:
    r = lab.k3sops("upgrade", "plan", "--to", "1.35")
    assert r.returncode == 2
    assert "--to '1.35' is not a K3s version" in r.stderr and "v1.34.4+k3s1" in r.stderr


def test_table_output_shows_the_order_and_the_fix(backed_up: Setup) -> None:
    r = backed_up.k3sops("upgrade", "plan", "--to", NEXT, "--backup-max-age", "1s",
                         env={**backed_up.env, "COLUMNS": "250"})
    assert r.returncode == 3
    for text in ("Upgrade to v1.35.0+k3s1", "k3s-server-1", "Preflight", "etcd-backup",
                 "FAIL", "k3sops backup etcd"):
        assert text in r.stdout, text


def test_check_reports_a_node_left_cordoned_by_an_upgrade(lab: Lab) -> None:
    """A node cordoned and marked as `upgrade apply` marks it, as an interrupted run leaves it."""
    node = "k3s-agent-2"
    lab.kubectl("cordon", node)
    lab.kubectl("annotate", "node", node, f"k3sops.io/upgrade-in-progress={NEXT}", "--overwrite")
    try:
        r = lab.k3sops("-o", "json", "check", "--state-dir", str(lab.layout.run_dir / "up-state"),
                       timeout=180)
        assert r.returncode in (0, 3), r.stderr
        found = [f for f in json.loads(r.stdout)["findings"]
                 if f["check"] == "node-upgrade-interrupted"]
        assert [(f["resource"]["name"], f["severity"]) for f in found] == [(node, "warning")]
        assert f"`k3sops upgrade apply --to {NEXT} --resume`" in found[0]["message"]
        _, p, _ = plan(lab, "--to", NEXT)
        assert any(f"{node} carries k3sops.io/upgrade-in-progress={NEXT}" in n
                   for n in p["notes"])
        assert next(n for n in p["nodes"] if n["name"] == node)["in_progress"] == NEXT
    finally:
        lab.kubectl("annotate", "node", node, "k3sops.io/upgrade-in-progress-", check=False)
        lab.kubectl("uncordon", node, check=False)
