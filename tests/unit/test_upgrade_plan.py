"""The upgrade planner and its preflight rules (k3sops.domain.upgrade), on lab captures.

Objects: tests/data/rules/autoscaling.json (a lab with 3 servers, 3 agents, fault nodes and
PodDisruptionBudgets, some allowing no disruption, as the real disruption controller computed
them) and tests/data/check-healthy-lab.json (the healthy lab). Where a rule needs a state the
lab cannot show by itself (older versions, a non-voting member), a copied real Node has the one
field in question changed; each test says which. Backups are BackupFacts as the service builds
them from `restic snapshots` (the service's reading of the repository is covered by the lab
test).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from k3sops.domain import upgrade as up
from k3sops.domain.checks import REGISTRY, CheckContext
from k3sops.domain.metrics import parse_result
from k3sops.domain.snapshot import ClusterSnapshot

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data"
SCALE = json.loads((DATA / "rules" / "autoscaling.json").read_text())["objects"]
HEALTHY = json.loads((DATA / "check-healthy-lab.json").read_text())["objects"]
DEVLAB = json.loads((DATA / "check-prom-devlab.json").read_text())["answers"]
FAULTS = json.loads((DATA / "check-prom-faults.json").read_text())["answers"]
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
LAB_VERSION = "v1.34.4+k3s1"
LAB_NODES = {"k3s-server-1", "k3s-server-2", "k3s-server-3", "k3s-agent-1", "k3s-agent-2",
             "k3s-agent-3"}


def fresh_backup(**change: Any) -> up.BackupFacts:
    fact = {"id": "etcd-etcd-20261205t100000z-ab12", "started": NOW - timedelta(hours=2),
            "status": "Completed", "verified": True, **change}
    return up.BackupFacts(backups=[up.BackupFact.model_validate(fact)])


def lab(source: dict[str, Any] = HEALTHY) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                   list[dict[str, Any]]]:
    """Copies of the capture's six lab nodes, its pods and budgets (safe to modify)."""
    nodes = [copy.deepcopy(n) for n in source["nodes"] if n["metadata"]["name"] in LAB_NODES]
    return (nodes, copy.deepcopy(source["pods"]),
            copy.deepcopy(source.get("poddisruptionbudgets", [])))


def node(nodes: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(n for n in nodes if n["metadata"]["name"] == name)


def set_version(nodes: list[dict[str, Any]], version: str, *names: str) -> None:
    for name in names:
        node(nodes, name)["status"]["nodeInfo"]["kubeletVersion"] = version


def etcd_answers(capture: dict[str, Any]) -> up.EtcdView:
    """etcd's view judged from a capture's answers to the etcd-health check's queries."""
    answers = {k: parse_result(v) for k, v in capture.items() if k.startswith("etcd-health:")}
    return up.etcd_view(answers, None, NOW)


def plan(to: str, nodes: list[dict[str, Any]], pods: list[dict[str, Any]] | None = None,
         pdbs: list[dict[str, Any]] | None = None, backups: up.BackupFacts | None = None,
         **kw: Any) -> up.UpgradePlan:
    target = up.parse_version(to)
    assert target is not None
    kw.setdefault("etcd_view", etcd_answers(DEVLAB))  # the dev lab's healthy etcd
    return up.plan(target, nodes, pods or [], pdbs or [], backups or fresh_backup(), now=NOW,
                   **kw)


def verdicts(p: up.UpgradePlan, rule: str) -> list[up.Preflight]:
    found = [c for c in p.preflight if c.rule == rule]
    assert found, f"rule {rule} produced no verdict"
    return found


def only_failure(p: up.UpgradePlan) -> up.Preflight:
    [failed] = p.refused
    assert failed.reason and failed.command, failed
    return failed


# --------------------------------------------------------------------------------------------
# Versions and order


@pytest.mark.parametrize(("text", "key"), [
    ("v1.34.4+k3s1", (1, 34, 4, 1)), ("v1.35.0+k3s12", (1, 35, 0, 12)),
    (" v1.9.10+k3s2 ", (1, 9, 10, 2))])
def test_k3s_versions_parse_and_sort_as_releases(text: str, key: tuple[int, ...]) -> None:
    parsed = up.parse_version(text)
    assert parsed is not None and parsed.key == key and str(parsed) == text.strip()


@pytest.mark.parametrize("text", ["1.34.4+k3s1", "v1.34.4", "v1.34+k3s1", "v1.34.4+k3s0",
                                  "v1.34.4-rc1+k3s1", "kwok-0.8.0", "v01.34.4+k3s1", ""])
def test_what_is_not_a_k3s_version(text: str) -> None:
    assert up.parse_version(text) is None


def test_healthy_lab_passes_every_check_and_orders_servers_first() -> None:
    nodes, pods, _ = lab()
    p = plan("v1.35.0+k3s1", nodes, pods, max_unavailable=2)
    assert p.refused == []
    assert all(c.status == "pass" for c in p.preflight), p.preflight
    assert [(b.step, b.role, b.nodes) for b in p.order] == [
        (1, "server", ["k3s-server-1"]), (2, "server", ["k3s-server-2"]),
        (3, "server", ["k3s-server-3"]), (4, "agent", ["k3s-agent-1", "k3s-agent-2"]),
        (5, "agent", ["k3s-agent-3"])]
    assert {n.version for n in p.nodes} == {LAB_VERSION}
    assert {r.rule for r in p.preflight} == {
        "version-format", "no-downgrade", "minor-skew", "agents-not-newer", "nodes-ready",
        "etcd-quorum", "etcd-health", "etcd-backup", "pdb-drain", "headroom"}
    # The JSON schema README documents.
    data = p.model_dump(mode="json")
    assert list(data) == ["target", "max_unavailable", "backup_max_age_seconds", "nodes",
                          "order", "preflight", "notes"]
    assert list(data["nodes"][0]) == ["name", "role", "version", "ready", "schedulable",
                                      "upgrade", "in_progress"]
    assert list(data["preflight"][0]) == ["rule", "status", "reason", "command", "node"]


def test_nodes_already_at_the_target_are_left_out() -> None:
    """Two servers and an agent already upgraded (kubeletVersion changed on copies)."""
    nodes, pods, _ = lab()
    set_version(nodes, "v1.34.5+k3s1", "k3s-server-1", "k3s-server-2", "k3s-agent-3")
    p = plan("v1.34.5+k3s1", nodes, pods)
    assert [b.nodes for b in p.order] == [["k3s-server-3"], ["k3s-agent-1"], ["k3s-agent-2"]]
    assert "k3s-agent-3 already runs v1.34.5+k3s1: left out" in p.notes
    set_version(nodes, "v1.34.5+k3s1", *LAB_NODES)
    p = plan("v1.34.5+k3s1", nodes, pods)
    assert p.order == [] and p.refused == []
    assert any("nothing to upgrade" in n for n in p.notes)


def test_a_newer_k3s_build_of_the_same_kubernetes_is_an_upgrade() -> None:
    nodes, pods, _ = lab()
    p = plan("v1.34.4+k3s2", nodes, pods)
    assert len(p.order) == 6 and p.refused == []


# --------------------------------------------------------------------------------------------
# Every refusal, with its reason and its fixing command


def test_downgrade_is_refused_naming_the_newer_nodes() -> None:
    nodes, pods, _ = lab()
    failed = only_failure(plan("v1.34.3+k3s1", nodes, pods))
    assert failed.rule == "no-downgrade"
    assert "v1.34.3+k3s1 is older than" in failed.reason and "a downgrade is refused" in (
        failed.reason)
    assert failed.command == f"k3sops upgrade plan --to {LAB_VERSION}"


def test_skipping_a_minor_version_is_refused_per_node() -> None:
    """Two agents left on v1.32 (copies); going to v1.34 would skip v1.33 on them."""
    nodes, pods, _ = lab()
    set_version(nodes, "v1.33.7+k3s1", "k3s-server-1", "k3s-server-2", "k3s-server-3")
    set_version(nodes, "v1.32.9+k3s1", "k3s-agent-1", "k3s-agent-2")
    set_version(nodes, "v1.33.7+k3s1", "k3s-agent-3")
    p = plan("v1.34.4+k3s1", nodes, pods, max_unavailable=3)
    failed = p.refused
    assert [(f.rule, f.node) for f in failed] == [("minor-skew", "k3s-agent-1"),
                                                 ("minor-skew", "k3s-agent-2")]
    assert "skips v1.33" in failed[0].reason and "v1.33 first" in failed[0].reason
    assert failed[0].command == ("k3sops upgrade plan --to v1.33.<patch>+k3s<N> "
                                 "--max-unavailable 3")


def test_a_major_version_change_is_refused() -> None:
    nodes, pods, _ = lab()
    failed = only_failure_or_first(plan("v2.0.0+k3s1", nodes, pods), "minor-skew")
    assert "changes the major version" in failed.reason


def only_failure_or_first(p: up.UpgradePlan, rule: str) -> up.Preflight:
    return next(f for f in p.refused if f.rule == rule)


def test_an_agent_newer_than_a_server_is_refused() -> None:
    """An agent already on v1.35 while the servers run v1.34 (copy)."""
    nodes, pods, _ = lab()
    set_version(nodes, "v1.35.1+k3s1", "k3s-agent-2")
    failed = only_failure(plan("v1.35.1+k3s1", nodes, pods))
    assert (failed.rule, failed.node) == ("agents-not-newer", "k3s-agent-2")
    assert failed.reason.startswith("now agent k3s-agent-2 (v1.35.1+k3s1) is newer than server")
    assert failed.command == "k3sops node drain k3s-agent-2 --apply"


def test_an_unreadable_node_version_is_refused() -> None:
    """The capture's fault node r1-netless-1 reports kwok's own version, not a K3s one."""
    nodes = [n for n in SCALE["nodes"] if n["metadata"]["name"] in LAB_NODES | {"r1-netless-1"}]
    p = plan("v1.35.0+k3s1", nodes)
    [bad] = [f for f in p.refused if f.rule == "version-format"]
    assert bad.node == "r1-netless-1" and "'kwok-0.8.0'" in bad.reason
    assert bad.command and "kubectl get node r1-netless-1" in bad.command
    assert "r1-netless-1" not in {n for b in p.order for n in b.nodes}


def test_a_node_not_ready_is_refused() -> None:
    """The capture's r1-lost-1 (kwok stopped heartbeating: NotReady) among the lab nodes."""
    nodes = [n for n in SCALE["nodes"] if n["metadata"]["name"] in LAB_NODES | {"r1-lost-1"}]
    set_version(nodes, LAB_VERSION, "r1-lost-1")
    p = plan("v1.35.0+k3s1", nodes)
    [down] = verdicts(p, "nodes-ready")
    assert (down.status, down.node) == ("fail", "r1-lost-1")
    assert down.command == "k3sops diagnose node r1-lost-1"


def test_etcd_without_quorum_to_spare_is_refused() -> None:
    """k3s-server-2's EtcdIsVoter condition turned False (a learner), as K3s would write it."""
    nodes, pods, _ = lab(SCALE)
    cond = next(c for c in node(nodes, "k3s-server-2")["status"]["conditions"]
                if c["type"] == "EtcdIsVoter")
    cond.update(status="False", reason="MemberIsLearner")
    p = plan("v1.35.0+k3s1", nodes, pods)
    [etcd] = verdicts(p, "etcd-quorum")
    assert (etcd.status, etcd.node) == ("fail", "k3s-server-2")
    assert "2 healthy voting member(s) of 3" in etcd.reason and "lose quorum" in etcd.reason
    assert etcd.command == "k3sops diagnose node k3s-server-2"


def test_three_voters_leave_quorum_to_spare() -> None:
    nodes, pods, _ = lab(SCALE)
    [etcd] = verdicts(plan("v1.35.0+k3s1", nodes, pods), "etcd-quorum")
    assert etcd.status == "pass" and "3 of 3" in etcd.reason


def test_single_server_is_a_warning_not_a_refusal() -> None:
    """One server kept: with its etcd member (cluster-init), then without any (kine)."""
    nodes, _, _ = lab(SCALE)
    single = [n for n in nodes if n["metadata"]["name"] in ("k3s-server-1", "k3s-agent-1")]
    [etcd] = verdicts(plan("v1.35.0+k3s1", single), "etcd-quorum")
    assert etcd.status == "warn" and "API server is down" in etcd.reason
    for n in single:
        n["metadata"]["annotations"].pop(up.ETCD_NODE_ANNOTATION, None)
        n["status"]["conditions"] = [c for c in n["status"]["conditions"]
                                     if c["type"] != up.VOTER_CONDITION]
    p = plan("v1.35.0+k3s1", single)
    [etcd] = verdicts(p, "etcd-quorum")
    assert etcd.status == "warn" and "kine/sqlite" in etcd.reason
    assert p.refused == []


def test_etcd_member_without_a_leader_is_refused_and_slow_disks_warn() -> None:
    """The fault capture: 10.0.0.11 without a leader, 10.0.0.12 with a slow WAL fsync and a
    database at 91% of its quota (the check's own findings, not a second judgement)."""
    nodes, pods, _ = lab()
    p = plan("v1.35.0+k3s1", nodes, pods, etcd_view=etcd_answers(FAULTS))
    health = verdicts(p, "etcd-health")
    [fail] = [h for h in health if h.status == "fail"]
    assert "etcd member 10.0.0.11:2381 has no leader" in fail.reason
    assert fail.command == "k3sops runbook show etcd-no-leader"
    warned = {h.command for h in health if h.status == "warn"}
    assert {"k3sops runbook show etcd-slow-disk"} <= warned
    assert p.refused == [fail]


def test_etcd_health_not_read_is_a_warning_that_says_why() -> None:
    nodes, pods, _ = lab()
    p = plan("v1.35.0+k3s1", nodes, pods,
             etcd_view=up.EtcdView(unread="prometheus: connection refused"))
    [h] = verdicts(p, "etcd-health")
    assert h.status == "warn" and "prometheus: connection refused" in h.reason
    assert "judged by K3s' node conditions only" in h.reason and p.refused == []
    [h] = verdicts(plan("v1.35.0+k3s1", nodes, pods, etcd_view=up.EtcdView()), "etcd-health")
    assert h.status == "warn" and "scrapes no etcd member" in h.reason


@pytest.mark.parametrize(("facts", "says", "command"), [
    (up.BackupFacts(error="platform.yaml has no backup section (backup.repository)"),
     "no etcd backup can be found: platform.yaml has no backup section",
     "k3sops backup etcd && k3sops backup verify --since 1h"),
    (up.BackupFacts(), "the repository holds no completed etcd backup",
     "k3sops backup etcd && k3sops backup verify --since 1h"),
    (fresh_backup(started=NOW - timedelta(hours=30)),
     "is 30h old, older than --backup-max-age 24h",
     "k3sops backup etcd && k3sops backup verify --since 1h"),
    (fresh_backup(verified=None), "was never verified",
     "k3sops backup verify etcd-etcd-20261205t100000z-ab12"),
    (fresh_backup(verified=False), "failed its verification",
     "k3sops backup etcd && k3sops backup verify --since 1h"),
    (fresh_backup(status="Failed"), "the repository holds no completed etcd backup",
     "k3sops backup etcd && k3sops backup verify --since 1h"),
], ids=["not-configured", "none", "stale", "unverified", "verify-failed", "failed-run"])
def test_backup_refusals(facts: up.BackupFacts, says: str, command: str) -> None:
    nodes, pods, _ = lab()
    failed = only_failure(plan("v1.35.0+k3s1", nodes, pods, backups=facts))
    assert failed.rule == "etcd-backup" and says in failed.reason
    assert failed.command == command


def test_backup_max_age_is_the_limit() -> None:
    nodes, pods, _ = lab()
    old = fresh_backup(started=NOW - timedelta(hours=30))
    assert plan("v1.35.0+k3s1", nodes, pods, backups=old,
                backup_max_age=48 * 3600.0).refused == []


def test_a_budget_that_allows_no_disruption_is_named_with_its_node() -> None:
    """The capture's budgets, as the lab's disruption controller computed them."""
    nodes, pods, pdbs = lab(SCALE)
    p = plan("v1.35.0+k3s1", nodes, pods, pdbs)
    blocking = [f for f in p.refused if f.rule == "pdb-drain"]
    assert {f.reason.split()[1] for f in blocking} == {
        "r1-scale/cache-b", "r1-scale/db-proxy", "r1-scale/flaky", "r1-scale/solo"}
    solo = next(f for f in blocking if "r1-scale/solo" in f.reason)
    solo_pod = next(x for x in pods if x["metadata"]["name"].startswith("solo-"))
    assert solo.node == solo_pod["spec"]["nodeName"]
    assert f"{solo.node}: {solo_pod['metadata']['name']}" in solo.reason
    assert "allows 0 disruption(s)" in solo.reason and "the drain would hang" in solo.reason
    assert solo.command == "k3sops diagnose poddisruptionbudget/solo -n r1-scale"
    # maxUnavailable 1 budgets with one pod per node never block a one-node step ...
    assert not any("r1-scale/calm" in f.reason or "r1-scale/cache-a" in f.reason
                   for f in blocking)


def test_a_step_evicting_more_than_the_budget_allows_is_refused() -> None:
    """``calm`` (maxUnavailable 1: allows 1) with its two pods on two agents.

    In the capture one runs on k3s-agent-1, the other on k3s-server-2; that one's copy is put
    on k3s-agent-2 (``spec.nodeName`` changed), so that a step of two agents evicts both.
    """
    nodes, pods, pdbs = lab(SCALE)
    calm = [x for x in pdbs if x["metadata"]["name"] == "calm"]
    moved = next(x for x in pods if x["metadata"]["name"] == "calm-7f48dbddc7-jrthw")
    moved["spec"]["nodeName"] = "k3s-agent-2"
    together = plan("v1.35.0+k3s1", nodes, pods, calm, max_unavailable=2)
    [f] = together.refused
    assert f.rule == "pdb-drain" and "allows 1 disruption(s)" in f.reason
    assert "evicts 2 of its pods" in f.reason and "(step 4)" in f.reason
    assert f.command == "k3sops diagnose poddisruptionbudget/calm -n r1-scale"
    assert plan("v1.35.0+k3s1", nodes, pods, calm, max_unavailable=1).refused == []


def add_pod(pods: list[dict[str, Any]], node_name: str, name: str, cpu: str) -> None:
    """A copy of a real Deployment pod of the capture, on ``node_name``, requesting ``cpu``."""
    pod = copy.deepcopy(next(x for x in pods if any(
        o["kind"] == "ReplicaSet" for o in x["metadata"].get("ownerReferences", []))))
    pod["metadata"]["name"] = name
    pod["spec"]["nodeName"] = node_name
    pod["spec"]["containers"] = [{"name": "app", "image": "example/app:1.0", "resources": {
        "requests": {"cpu": cpu, "memory": "64Mi"}}}]
    pods.append(pod)


def test_not_enough_room_for_a_drained_nodes_pods_is_refused() -> None:
    """Agents 2 and 3 cordoned (copies), servers 1 and 2 filled by 3-core pods, a 7-core pod on
    k3s-agent-1: draining it leaves 0.65 + 0.8 + 3.8 free cores for 7.2 (its other pods ask
    0.2 more; DaemonSet pods stay)."""
    nodes, pods, _ = lab()
    add_pod(pods, "k3s-agent-1", "big", "7")
    add_pod(pods, "k3s-server-1", "fill-1", "3")
    add_pod(pods, "k3s-server-2", "fill-2", "3")
    assert plan("v1.35.0+k3s1", nodes, pods).refused == []
    for name in ("k3s-agent-2", "k3s-agent-3"):
        node(nodes, name)["spec"]["unschedulable"] = True
    failed = only_failure(plan("v1.35.0+k3s1", nodes, pods))
    assert (failed.rule, failed.node) == ("headroom", "k3s-agent-1")
    assert ("the pods evicted from k3s-agent-1 (step 4) do not fit on the other schedulable "
            "nodes: cpu 7200m requested, 5250m free") in failed.reason
    assert failed.command == "k3sops scale nodes add NODE --agent --apply"


def test_two_agents_at_a_time_need_room_for_both() -> None:
    """6-core pods on agents 1 and 2, 3-core pods on the servers: one agent at a time fits,
    two do not; the fix offered is fewer at a time."""
    nodes, pods, _ = lab()
    for n, cpu in (("k3s-agent-1", "6"), ("k3s-agent-2", "6"), ("k3s-server-1", "3"),
                   ("k3s-server-2", "3"), ("k3s-server-3", "3")):
        add_pod(pods, n, f"fill-{n}", cpu)
    assert plan("v1.35.0+k3s1", nodes, pods).refused == []
    failed = only_failure(plan("v1.35.0+k3s1", nodes, pods, max_unavailable=2))
    assert failed.rule == "headroom" and "k3s-agent-1, k3s-agent-2 (step 4)" in failed.reason
    assert failed.command == "k3sops upgrade plan --to v1.35.0+k3s1"


def test_a_node_left_by_an_interrupted_upgrade_is_noted() -> None:
    nodes, pods, _ = lab()
    n = node(nodes, "k3s-agent-3")
    n["metadata"].setdefault("annotations", {})[up.UPGRADE_ANNOTATION] = "v1.35.0+k3s1"
    p = plan("v1.35.0+k3s1", nodes, pods)
    assert next(s for s in p.nodes if s.name == "k3s-agent-3").in_progress == "v1.35.0+k3s1"
    assert any("k3s-agent-3 carries k3sops.io/upgrade-in-progress" in x for x in p.notes)


# --------------------------------------------------------------------------------------------
# The check


def _run(check_id: str, nodes: list[dict[str, Any]]) -> list[Any]:
    snap = ClusterSnapshot(now=NOW, objects={"nodes": nodes}, server_version=LAB_VERSION)
    return REGISTRY[check_id].fn(CheckContext(snapshot=snap, platform=None, period="monthly"))


def test_check_reports_a_node_left_cordoned_by_an_upgrade() -> None:
    """k3s-agent-1 cordoned and marked, k3s-agent-2 only cordoned, k3s-agent-3 only marked."""
    nodes, _, _ = lab()
    for name, cordon, mark in (("k3s-agent-1", True, True), ("k3s-agent-2", True, False),
                               ("k3s-agent-3", False, True)):
        n = node(nodes, name)
        if cordon:
            n["spec"]["unschedulable"] = True
        if mark:
            n["metadata"].setdefault("annotations", {})[up.UPGRADE_ANNOTATION] = "v1.35.0+k3s1"
    [f] = _run("node-upgrade-interrupted", nodes)
    assert (f.resource.kind, f.resource.name, f.severity) == ("Node", "k3s-agent-1", "warning")
    assert "`k3sops upgrade apply --to v1.35.0+k3s1 --resume`" in f.message
    assert f.runbook == "node-upgrade-interrupted"
    assert _run("node-upgrade-interrupted", lab()[0]) == []


def test_version_drift_names_the_upgrade_to_the_newest_version() -> None:
    nodes, _, _ = lab()
    set_version(nodes, "v1.34.10+k3s1", "k3s-server-1")
    set_version(nodes, "v1.34.9+k3s2", "k3s-server-2")
    [f] = _run("version-drift", nodes)
    assert "`k3sops upgrade plan --to v1.34.10+k3s1`" in f.message
    assert f.evidence["command"] == "k3sops upgrade plan --to v1.34.10+k3s1"


# --------------------------------------------------------------------------------------------
# Bad input is refused before anything is read (exit 2)


@pytest.mark.parametrize(("kw", "says"), [
    ({"to": "1.35.0"}, "--to '1.35.0' is not a K3s version"),
    ({"to": "v1.35.0+k3s1", "max_unavailable": 0}, "--max-unavailable 0"),
    ({"to": "v1.35.0+k3s1", "backup_max_age": 0.0}, "--backup-max-age must be positive"),
])
def test_bad_input_is_a_usage_error_before_any_request(kw: dict[str, Any], says: str,
                                                       tmp_path: Path) -> None:
    from k3sops.errors import UsageError
    from k3sops.services import context
    from k3sops.services import upgrade as svc

    # A kubeconfig that does not exist: reaching for the cluster would fail differently.
    settings = context.Settings(kubeconfig=tmp_path / "missing", context=None, platform=None)
    with pytest.raises(UsageError) as e:
        svc.plan(settings, {}, tmp_path, **kw)
    assert says in e.value.message and e.value.exit_code == 2


def test_no_backup_section_is_reported_as_such(tmp_path: Path) -> None:
    from k3sops.services import context
    from k3sops.services import upgrade as svc

    settings = context.Settings(kubeconfig=None, context=None, platform=None)
    facts = svc.backup_facts(settings, {}, tmp_path)
    assert facts.backups == [] and facts.error is not None
    assert "no backup section" in facts.error
