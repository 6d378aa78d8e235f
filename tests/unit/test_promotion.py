"""Promotion policy (pure) on real objects captured from the lab.

tests/data/gitops-lab.json was captured from the lab after `k3sops env sync/promote --apply`:
``deployment_complete`` is the Deployment ``web`` of a development namespace after its second
rollout (nginx:1.27 -> nginx:1.28, written by the real Deployment controller, pods made Ready
by kwok), ``replicasets`` its two ReplicaSets, ``deployment_stuck`` a staging ``web`` 4 s after
its template got a nodeSelector no node has (new pods Pending: the rollout cannot finish), and
``alerts`` Alertmanager's /api/v2/alerts answer with two alerts posted to the real Alertmanager.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from k3sops.domain import env as p
from k3sops.errors import ExitCode

pytestmark = pytest.mark.unit

DATA = json.loads((Path(__file__).parent.parent / "data" / "gitops-lab.json").read_text())
ORDER = ["development", "staging", "production"]


def _at(text: str) -> dt.datetime:
    t = p.parse_time(text)
    assert t is not None
    return t


def test_rollout_complete_and_healthy_since() -> None:
    st = p.rollout_state(DATA["deployment_complete"], "web")
    assert st.complete
    assert (st.repository, st.version) == ("nginx", "1.28")
    # the later of "rollout finished" (Progressing/NewReplicaSetAvailable) and "available since"
    assert st.healthy_since == "2026-11-26T13:15:52Z"


def test_rollout_stuck_is_not_complete_and_fails_both_gates() -> None:
    st = p.rollout_state(DATA["deployment_stuck"], "web")
    assert not st.complete
    assert st.detail == "1 of 2 replicas updated"
    assert not p.gate_rollout(st).passed
    assert not p.gate_healthy_for(st, _at("2026-11-26T14:00:00Z"), "1m").passed


def test_healthy_for_counts_from_healthy_since() -> None:
    st = p.rollout_state(DATA["deployment_complete"], "web")
    early = p.gate_healthy_for(st, _at("2026-11-26T13:20:00Z"), "10m")
    assert (early.passed, early.status, early.value) == (False, "fail", 248.0)
    late = p.gate_healthy_for(st, _at("2026-11-26T13:26:00Z"), "10m")
    assert late.passed and late.status == "pass"


def test_versions_ran_from_replicasets() -> None:
    dep = DATA["deployment_complete"]
    assert p.versions_ran(DATA["replicasets"], dep["metadata"]["uid"], "web") == ["1.27", "1.28"]
    assert p.versions_ran(DATA["replicasets"], "another-uid", "web") == []


def test_alerts_for_the_app_only() -> None:
    firing = p.alerts_for(DATA["alerts"], "h8s-dev", "web")
    assert [a["alertname"] for a in firing] == ["KubeDeploymentReplicasMismatch"]
    assert p.alerts_for(DATA["alerts"], "h8s-stg", "web") == []
    gate = p.gate_alerts(firing)
    assert not gate.passed and "KubeDeploymentReplicasMismatch" in gate.detail
    assert p.gate_alerts([]).passed
    unreadable = p.gate_alerts(None, "connection refused")
    assert (unreadable.passed, unreadable.status) == (False, "error")


def test_silenced_alerts_do_not_count() -> None:
    silenced = [{**a, "status": {**a["status"], "state": "suppressed"}} for a in DATA["alerts"]]
    assert p.alerts_for(silenced, "h8s-dev", "web") == []


@pytest.mark.parametrize(("values", "missing", "status", "passed"), [
    ([1.0, 4.9], "pass", "pass", True),
    ([5.1], "pass", "fail", False),
    ([], "pass", "no-data", True),
    ([], "fail", "no-data", False),
    ([float("nan")], "fail", "no-data", False),
    (None, "pass", "error", False),
])
def test_metric_gate(values: list[float] | None, missing: Any, status: str,
                     passed: bool) -> None:
    g = p.gate_metric("error-rate", "q", values, 5.0, missing, "%", error="down")
    assert (g.status, g.passed) == (status, passed)


def test_metric_query_fills_placeholders() -> None:
    q = p.metric_query('rate(x{namespace="$namespace",job="$app"}[5m])', "staging", "web")
    assert q == 'rate(x{namespace="staging",job="web"}[5m])'


def test_path_refusals_name_the_command() -> None:
    assert p.path_refusals(ORDER, "staging", None, "manual", "web") == []
    assert p.path_refusals(ORDER, "production", "staging", "approval", "web") == []
    skip = p.path_refusals(ORDER, "production", "development", "approval", "web")
    assert skip[0].rule == "skip-environment" and "skips staging" in skip[0].reason
    assert skip[0].command == "k3sops env promote web --to staging"
    dev = p.path_refusals(ORDER, "development", None, "auto", "web")
    assert dev[0].command == "k3sops env sync --env development --apply"
    back = p.path_refusals(ORDER, "staging", "production", "manual", "web")
    assert "only move forward" in back[0].reason


def test_approvals_one_version_listed_approver_unexpired() -> None:
    now = _at("2026-11-26T12:00:00Z")
    good = p.new_approval("web", "production", "1.28", "ops-lead", now, "24h", None)
    assert good.expires == "2026-11-27T12:00:00Z"
    other_version = p.new_approval("web", "production", "1.27", "ops-lead", now, "24h", None)
    stranger = p.new_approval("web", "production", "1.28", "mallory", now, "24h", None)
    old = p.new_approval("web", "production", "1.28", "sre", now - dt.timedelta(days=2), "1h",
                         None)
    check = p.check_approvals([good, other_version, stranger, old], "web", "production", "1.28",
                              ["ops-lead", "sre"], 1, now)
    assert [a.by for a in check.valid] == ["ops-lead"] and check.enough
    assert len(check.ignored) == 3
    two = p.check_approvals([good], "web", "production", "1.28", ["ops-lead", "sre"], 2, now)
    assert not two.enough
    refusal = p.approval_refusal(two, "web", "production", "1.28")
    assert refusal.command == "k3sops env approve web --to production --version 1.28"
    expired = p.check_approvals([good], "web", "production", "1.28", ["ops-lead"], 1,
                                now + dt.timedelta(hours=25))
    assert not expired.enough and "expired" in expired.ignored[0]


def test_approvals_file_round_trip() -> None:
    text = ("approvals:\n- app: web\n  version: '1.28'\n  by: ops-lead\n"
            "  at: '2026-11-26T12:00:00Z'\n  expires: '2026-11-27T12:00:00Z'\n")
    (a,) = p.parse_approvals(text, "production")
    assert (a.app, a.env, a.version, a.by) == ("web", "production", "1.28", "ops-lead")


def test_commit_message_trailers() -> None:
    now = _at("2026-11-26T12:00:00Z")
    a = p.new_approval("web", "production", "1.28", "ops-lead", now, "24h", None)
    gate = p.gate_alerts([])
    msg = p.commit_message("promote", "web", "1.28", target="production", source="staging",
                           previous="1.27", approvals=[a], gates=[gate], by="alice")
    assert msg.splitlines()[0] == "promote web 1.28 to production (from staging)"
    t = p.trailers(msg)
    assert t["Promoted-From"] == ["staging"] and t["Promoted-To"] == ["production"]
    assert t["Version"] == ["1.28"] and t["Previous-Version"] == ["1.27"]
    assert t["Approved-By"] == ["ops-lead at 2026-11-26T12:00:00Z (expires "
                                "2026-11-27T12:00:00Z)"]
    assert t["Requested-By"] == ["alice"]


def test_previous_version_from_history() -> None:
    assert p.previous_version(["1.28", "1.28", None, "1.27", "1.26"]) == "1.27"
    assert p.previous_version(["1.28"]) is None
    assert p.previous_version([]) is None


def test_refusal_exit_code_is_3() -> None:
    e = p.PromotionRefused([p.Refusal(rule="x", reason="because", command="k3sops env list")])
    assert e.exit_code == ExitCode.FINDINGS == 3
    assert "because" in str(e) and "k3sops env list" in str(e)


def test_durations() -> None:
    assert p.seconds("1h30m") == 5400
    assert p.seconds("0") == 0
