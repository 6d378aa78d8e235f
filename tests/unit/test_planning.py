"""Remediation planners: idempotence, and what a drain leaves alone.

The pods are real ones captured from the lab (namespace monitoring on k3s-agent-2: a
StatefulSet pod, a ReplicaSet pod and a DaemonSet pod), trimmed to the fields planners read.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from k3sops.adapters.audit import AuditLog, state_dir
from k3sops.domain import remediate as planning
from k3sops.errors import PlanRejected, UsageError

pytestmark = pytest.mark.unit

NODE = "k3s-agent-2"
RAW: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "data" / "pods_k3s_agent_2.json").read_text())


def _pods(raw: list[dict[str, Any]] | None = None) -> list[planning.PodInfo]:
    return [planning.pod_info(p) for p in (RAW if raw is None else raw)]


def test_pod_info_reads_owner_node_and_phase() -> None:
    by_name = {p.name: p for p in _pods()}
    ds = by_name["node-exporter-p677t"]
    assert ds.owner_kinds == ["DaemonSet"] and ds.node == NODE and ds.phase == "Running"
    assert not ds.mirror and not ds.emptydir and not ds.deleting


def test_cordon_plans_one_step_and_nothing_once_cordoned() -> None:
    plan = planning.plan_cordon(NODE, unschedulable=False)
    assert [(s.action, s.target) for s in plan.steps] == [("cordon", f"nodes/{NODE}")]
    again = planning.plan_cordon(NODE, unschedulable=True)
    assert again.steps == [] and "already cordoned" in again.notes[0]


def test_uncordon_is_idempotent() -> None:
    assert [s.action for s in planning.plan_uncordon(NODE, True).steps] == ["uncordon"]
    assert planning.plan_uncordon(NODE, False).steps == []


def test_drain_evicts_workload_pods_and_skips_daemonset_pods() -> None:
    plan = planning.plan_drain(NODE, False, _pods())
    assert [(s.action, s.name) for s in plan.steps] == [
        ("cordon", NODE), ("evict", "alertmanager-0"),
        ("evict", "kube-state-metrics-6c766976d9-tjnr8")]
    assert all(s.uid for s in plan.steps if s.action == "evict")
    assert any("node-exporter-p677t" in n and "DaemonSet" in n for n in plan.notes)


def test_drain_skips_mirror_pods() -> None:
    raw = copy.deepcopy(RAW)
    raw[0]["metadata"].setdefault("annotations", {})[planning.MIRROR_ANNOTATION] = "abc"
    plan = planning.plan_drain(NODE, True, _pods(raw))
    assert [s.name for s in plan.steps] == ["kube-state-metrics-6c766976d9-tjnr8"]
    assert any("alertmanager-0" in n and "mirror" in n for n in plan.notes)


def test_drain_after_it_ran_plans_nothing() -> None:
    """State after a drain: node cordoned, only the DaemonSet pod left -> empty plan."""
    left = [p for p in RAW if p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"]
    plan = planning.plan_drain(NODE, True, _pods(left))
    assert plan.steps == []


def test_drain_refuses_daemonset_pods_when_not_ignoring_them() -> None:
    with pytest.raises(PlanRejected, match="DaemonSet"):
        planning.plan_drain(NODE, False, _pods(), ignore_daemonsets=False)


def test_drain_refuses_emptydir_unless_asked() -> None:
    raw = copy.deepcopy(RAW)
    raw[1]["spec"]["volumes"].append({"name": "scratch", "emptyDir": {}})
    with pytest.raises(PlanRejected, match="emptyDir"):
        planning.plan_drain(NODE, False, _pods(raw))
    plan = planning.plan_drain(NODE, False, _pods(raw), delete_emptydir_data=True)
    assert len([s for s in plan.steps if s.action == "evict"]) == 2


def test_drain_selector_limits_the_evictions() -> None:
    plan = planning.plan_drain(NODE, True, _pods(),
                               selector={"app.kubernetes.io/name": "nothing-has-this"})
    assert plan.steps == []


def test_scale_to_current_count_plans_nothing() -> None:
    assert planning.plan_scale("deployments", "ns", "web", 3, 3).steps == []
    step = planning.plan_scale("deployments", "ns", "web", 3, 5).steps[0]
    assert (step.action, step.value, step.detail) == ("scale", "5", "replicas 3 -> 5")
    with pytest.raises(UsageError):
        planning.plan_scale("deployments", "ns", "web", 3, -1)


def test_restart_always_plans_one_step() -> None:
    plan = planning.plan_restart("deployments", "ns", "web", "2026-01-01T00:00:00+00:00")
    assert [(s.action, s.value) for s in plan.steps] == [
        ("restart", "2026-01-01T00:00:00+00:00")]


def test_clean_deletes_failed_and_evicted_pods_only() -> None:
    raw = copy.deepcopy(RAW)
    raw[0]["status"] = {"phase": "Failed", "reason": "Evicted"}
    raw[1]["status"] = {"phase": "Failed"}
    plan = planning.plan_clean(_pods(raw), "namespace monitoring")
    assert [(s.name, s.detail) for s in plan.steps] == [
        ("alertmanager-0", "phase Failed, reason Evicted"),
        ("kube-state-metrics-6c766976d9-tjnr8", "phase Failed")]
    assert planning.plan_clean(_pods(raw[2:]), "x").steps == []


def test_parse_workload() -> None:
    assert planning.parse_workload("deployment/web") == ("deployments", "web")
    assert planning.parse_workload("sts/db") == ("statefulsets", "db")
    with pytest.raises(UsageError):
        planning.parse_workload("web")


def test_audit_log_appends_json_lines(tmp_path: Path) -> None:
    d = state_dir(None, {"K3SOPS_STATE_DIR": str(tmp_path / "s")}, tmp_path)
    log = AuditLog(d / "audit.jsonl")
    log.append({"who": "me", "what": {"action": "cordon"}, "result": "ok"})
    log.append({"who": "me", "what": {"action": "evict"}, "result": "failed", "error": "x"})
    records = log.read()
    assert [r["result"] for r in records] == ["ok", "failed"]
    assert all("when" in r for r in records)
    assert state_dir(None, {}, tmp_path) == tmp_path / ".local" / "state" / "k3sops"
