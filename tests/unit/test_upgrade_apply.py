"""`upgrade apply`'s pure parts (k3sops.domain.upgrade_apply) on the healthy lab capture.

The nodes, pods and budgets are tests/data/check-healthy-lab.json (the lab's six Nodes as the
API server returned them); where a run's state is needed (a node marked by a stopped upgrade, a
node already at the target) one field of a copied real Node is changed, as the test says. The
run itself (API, Ansible, hosts) is tests/lab/test_upgrade_apply_lab.py.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from k3sops.domain import upgrade as up
from k3sops.domain import upgrade_apply as ua
from k3sops.domain.checks.nodes import UPGRADE_ANNOTATION
from k3sops.domain.findings import Finding
from k3sops.output.render import render

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data"
HEALTHY = json.loads((DATA / "check-healthy-lab.json").read_text())["objects"]
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
NEXT = "v1.35.0+k3s1"
SERVERS = ["k3s-server-1", "k3s-server-2", "k3s-server-3"]
AGENTS = ["k3s-agent-1", "k3s-agent-2", "k3s-agent-3"]


def lab_nodes() -> list[dict[str, Any]]:
    return [copy.deepcopy(n) for n in HEALTHY["nodes"]
            if n["metadata"]["name"] in {*SERVERS, *AGENTS}]


def plan(nodes: list[dict[str, Any]], max_unavailable: int = 1) -> up.UpgradePlan:
    backups = up.BackupFacts(backups=[up.BackupFact(
        id="etcd-1", started=NOW - timedelta(hours=1), status="Completed", verified=True)])
    target = up.parse_version(NEXT)
    assert target is not None
    return up.plan(target, nodes, HEALTHY["pods"], [], backups, now=NOW,
                   max_unavailable=max_unavailable)


def by_name(nodes: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(n for n in nodes if n["metadata"]["name"] == name)


def test_work_is_the_plan_order_servers_first() -> None:
    batches = ua.work(plan(lab_nodes(), max_unavailable=2), None)
    assert [(b.step, b.role, b.nodes, b.start) for b in batches] == [
        (1, "server", ["k3s-server-1"], "cordon"), (2, "server", ["k3s-server-2"], "cordon"),
        (3, "server", ["k3s-server-3"], "cordon"),
        (4, "agent", ["k3s-agent-1", "k3s-agent-2"], "cordon"),
        (5, "agent", ["k3s-agent-3"], "cordon")]


def test_a_node_left_at_the_target_resumes_at_wait_and_done_nodes_are_skipped() -> None:
    nodes = lab_nodes()
    # k3s-server-1 finished; k3s-agent-1 stopped after its upgrade (new version, still marked).
    by_name(nodes, "k3s-server-1")["status"]["nodeInfo"]["kubeletVersion"] = NEXT
    a1 = by_name(nodes, "k3s-agent-1")
    a1["status"]["nodeInfo"]["kubeletVersion"] = NEXT
    a1["metadata"].setdefault("annotations", {})[UPGRADE_ANNOTATION] = NEXT
    a1["spec"]["unschedulable"] = True
    progress = ua.Progress(target=NEXT, status="stopped", nodes={
        "k3s-server-2": ua.NodeProgress(role="server", from_version="v1.34.4+k3s1",
                                        status="done", done=list(ua.STEPS))})
    batches = ua.work(plan(nodes), progress)
    assert [(b.nodes, b.start) for b in batches] == [
        (["k3s-server-3"], "cordon"), (["k3s-agent-1"], "wait"), (["k3s-agent-2"], "cordon"),
        (["k3s-agent-3"], "cordon")]
    assert ua.steps_from("wait") == ["wait", "uncordon", "checks"]


def test_planned_steps_describe_each_step() -> None:
    batches = ua.work(plan(lab_nodes()), None)
    lines = ua.planned(batches, NEXT, annotation=UPGRADE_ANNOTATION, drain_timeout=120,
                       ready_timeout=300)
    assert len(lines) == 36 and {x.result for x in lines} == {"planned"}
    first = {x.step: x.what for x in lines if x.node == "k3s-server-1"}
    assert first["cordon"] == f"cordon and mark {UPGRADE_ANNOTATION}={NEXT}"
    assert first["upgrade"] == ("ansible-playbook upgrade.yml --limit k3s-server-1 "
                                f"-e k3s_version={NEXT}")
    assert "120s" in first["drain"] and "300s" in first["wait"]


def test_node_at_reads_version_and_ready() -> None:
    n = by_name(lab_nodes(), "k3s-agent-2")
    assert ua.node_at(n, NEXT) == (False, True)
    n["status"]["nodeInfo"]["kubeletVersion"] = NEXT
    assert ua.node_at(n, NEXT) == (True, True)
    for c in n["status"]["conditions"]:
        if c["type"] == "Ready":
            c["status"] = "Unknown"
    assert ua.node_at(n, NEXT) == (True, False)
    assert ua.node_at(None, NEXT) == (False, False)


def test_blocking_budgets_match_namespace_and_selector() -> None:
    pdbs = [{"metadata": {"namespace": "shop", "name": "web"},
             "spec": {"selector": {"matchLabels": {"app": "web"}}}},
            {"metadata": {"namespace": "other", "name": "web"},
             "spec": {"selector": {"matchLabels": {"app": "web"}}}},
            {"metadata": {"namespace": "shop", "name": "null"}, "spec": {}}]
    assert ua.blocking_budgets([("shop", {"app": "web", "x": "1"})], pdbs) == ["shop/web"]
    assert ua.blocking_budgets([("shop", {"app": "db"})], pdbs) == []


def test_node_findings_keep_the_node_and_its_pods() -> None:
    pods = [{"metadata": {"namespace": "a", "name": "p1"}, "spec": {"nodeName": "n1"}},
            {"metadata": {"namespace": "a", "name": "p2"}, "spec": {"nodeName": "n2"}}]

    def finding(kind: str, name: str, ns: str | None = None) -> Finding:
        return Finding.model_validate({
            "check": "x", "severity": "critical", "message": "m", "runbook": "r",
            "resource": {"kind": kind, "name": name, "namespace": ns}})

    found = [finding("Node", "n1"), finding("Node", "n2"), finding("Pod", "p1", "a"),
             finding("Pod", "p2", "a")]
    kept = ua.node_findings(found, "n1", pods)
    assert [(f.resource.kind, f.resource.name) for f in kept] == [("Node", "n1"), ("Pod", "p1")]


def test_stop_names_resume_and_rollback() -> None:
    s = ua.stop("k3s-agent-1", "upgrade", "task failed", target=NEXT, cordoned=True,
                from_version="v1.34.4+k3s1", inventory="/inv/hosts.yaml",
                annotation=UPGRADE_ANNOTATION, max_unavailable=2)
    assert s.resume == f"k3sops upgrade apply --to {NEXT} --max-unavailable 2 --resume --yes"
    assert s.rollback == [
        "ansible-playbook -i /inv/hosts.yaml <k3sops>/ansible/upgrade.yml --limit k3s-agent-1 "
        "-e k3s_version=v1.34.4+k3s1 -e kube_steps=false",
        "k3sops node uncordon k3s-agent-1 --apply",
        f"kubectl annotate node k3s-agent-1 {UPGRADE_ANNOTATION}-"]
    # A drain that stopped changed nothing on the host: no binary to put back.
    s = ua.stop("k3s-server-1", "drain", "blocked", target=NEXT, cordoned=True,
                from_version="v1.34.4+k3s1", inventory="i", annotation=UPGRADE_ANNOTATION)
    assert not any("ansible-playbook" in c for c in s.rollback)


def test_the_dry_run_table_shows_plan_steps_and_stop(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(lab_nodes())
    batches = ua.work(p, None)
    report = ua.ApplyReport(target=NEXT, applied=False, plan=p, steps=ua.planned(
        batches, NEXT, annotation=UPGRADE_ANNOTATION, drain_timeout=120, ready_timeout=300))
    render(report, "table")
    out = capsys.readouterr().out
    for text in ("Upgrade to v1.35.0+k3s1", "Preflight", "dry-run: nothing changed",
                 "k3s-agent-3", "uncordon"):
        assert text in out
    report.applied = True
    report.stopped = ua.stop("k3s-agent-1", "wait", "timed out", target=NEXT, cordoned=True,
                             from_version="v1.34.4+k3s1", inventory="i",
                             annotation=UPGRADE_ANNOTATION)
    render(report, "table")
    out = capsys.readouterr().out
    assert "stopped at node k3s-agent-1, step wait" in out and "left cordoned" in out
    assert f"resume: k3sops upgrade apply --to {NEXT} --resume --yes" in out
