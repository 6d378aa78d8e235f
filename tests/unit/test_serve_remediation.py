"""serve/remediation: policies acting on a recorded Alertmanager alert and on new findings.

The alert is a recording of the lab's real Alertmanager (tests/data/alertmanager); it goes
through the real intake (parse, enrich from the recorded pod, store in a real SQLite file) and
its ``on_stored`` hook. The plan executor here builds the plan with the domain planners the
CLI uses but talks to no cluster: the lab test (tests/lab/test_serve_remediation_lab.py)
applies it to a real one. The reviews of the route's test are the lab API server's recorded
answers (tests/data/serve_reviews).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from servekit import NOBODY, NOBODY_USER, READER, asgi_get, review_client

from k3sops.adapters.store import HistoryStore, RemediationRecord, SqliteStore
from k3sops.adapters.webhook import WebhookSender
from k3sops.config.schema import Platform
from k3sops.config.schema.serve import Remediation
from k3sops.domain import remediate as plans
from k3sops.domain.findings import Finding, ResourceRef
from k3sops.domain.snapshot import ClusterSnapshot
from k3sops.errors import GuardRefused, PlanRejected
from k3sops.serve.alerts import AlertIntake, enricher
from k3sops.serve.metrics import ServiceMetrics
from k3sops.serve.remediation import (
    Remediator,
    Target,
    cordon_refusal,
    environment_of,
)
from k3sops.services.context import Settings
from k3sops.services.remediate import RemediationReport, StepResult

DATA = Path(__file__).parents[1] / "data" / "alertmanager"
FIRING = json.loads((DATA / "crashloop-firing.json").read_text())
POD = json.loads((DATA / "crashloop-pod.json").read_text())
POD_NAME = "checkout-7558c8f54c-v2pgz"


def _platform() -> Platform:
    return Platform.model_validate({
        "name": "t", "environments": {"development": {"namespaces": ["development"]},
                                      "production": {"namespaces": ["production"]}}})


def _cfg(enabled: bool = False, environments: list[str] | None = None,
         max_per_hour: int = 2) -> Remediation:
    return Remediation.model_validate({"enabled": enabled, "policies": [
        {"id": "crashloop-restart", "when": {"alert": "KubePodCrashLooping"}, "plan": "restart",
         "environments": environments or ["development"], "max_per_hour": max_per_hour}]})


class Executor:
    """Plans from the domain planners (as services.remediate builds them); calls recorded."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, Target, bool]] = []
        self.fail = fail

    def __call__(self, plan: str, target: Target, apply: bool) -> RemediationReport:
        self.calls.append((plan, target, apply))
        if self.fail:
            raise PlanRejected("deployment development/checkout not found", hint="")
        p = plans.plan_restart("deployments", target.namespace or "", "checkout",
                               "2026-12-05T17:30:00+00:00")
        return RemediationReport(title=p.title, applied=apply, steps=[
            StepResult(step=s, result="ok" if apply else "planned") for s in p.steps])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    with SqliteStore.open_file(tmp_path / "k3sops.db") as s:
        yield s


def _snapshot() -> ClusterSnapshot:
    return ClusterSnapshot(now=datetime(2026, 12, 5, 17, 27, tzinfo=UTC),
                           objects={"pods": [POD], "nodes": []})


def _deliver(intake: AlertIntake, starts: str = "2026-12-05T17:26:54.756Z") -> None:
    body = json.loads(json.dumps(FIRING))
    body["alerts"][0]["startsAt"] = starts
    assert intake.receive(json.dumps(body).encode()).stored == 1


def _wire(store: HistoryStore, cfg: Remediation, executor: Executor, *,
          leader: bool = True) -> tuple[AlertIntake, ServiceMetrics]:
    metrics = ServiceMetrics(dict, dict, lambda: leader)
    rem = Remediator(cfg, _platform(), store, lambda: leader, executor,
                     count=lambda p, m: metrics.remediations.labels(policy=p, mode=m).inc())
    enrich = enricher(_snapshot, Settings(None, None, None))
    return AlertIntake(store, enrich, [], sender=WebhookSender(timeout=2),
                       on_stored=rem.on_alert), metrics


def test_dry_run_by_default_records_the_plan_and_changes_nothing(
        store: HistoryStore) -> None:
    executor = Executor()
    intake, metrics = _wire(store, _cfg(), executor)
    _deliver(intake)
    assert executor.calls == [("restart", Target("pods", "development", POD_NAME), False)]
    [rec] = store.remediations()
    assert (rec.policy_id, rec.mode, rec.trigger, rec.plan) == (
        "crashloop-restart", "dry-run", "alert:KubePodCrashLooping", "restart")
    assert rec.target == f"pods/development/{POD_NAME}"
    assert rec.detail is not None and "restart deployments/checkout" in rec.detail
    assert ": planned" in rec.detail
    text = metrics.render().decode()
    assert 'k3sops_remediations_total{mode="dry-run",policy="crashloop-restart"} 1.0' in text


def test_rate_limit_refuses_the_third_within_an_hour(store: HistoryStore) -> None:
    executor = Executor()
    intake, metrics = _wire(store, _cfg(enabled=True, max_per_hour=2), executor)
    for minute in (26, 27, 28):  # three distinct firings (different startsAt)
        _deliver(intake, f"2026-12-05T17:{minute}:00Z")
    assert [c[2] for c in executor.calls] == [True, True]
    modes = [r.mode for r in reversed(store.remediations())]
    assert modes == ["applied", "applied", "refused"]
    assert "rate" in (store.remediations()[0].detail or "")
    text = metrics.render().decode()
    assert 'k3sops_remediations_total{mode="applied",policy="crashloop-restart"} 2.0' in text
    assert 'k3sops_remediations_total{mode="refused",policy="crashloop-restart"} 1.0' in text


def test_rate_window_is_one_hour(store: HistoryStore) -> None:
    now = [datetime(2026, 12, 5, 17, 0, tzinfo=UTC)]
    executor = Executor()
    rem = Remediator(_cfg(enabled=True, max_per_hour=1), _platform(), store, lambda: True,
                     executor, clock=lambda: now[0])
    policies = rem.cfg.policies
    target = Target("pods", "development", POD_NAME)
    assert [r.mode for r in rem.handle(policies, "alert:KubePodCrashLooping", target)] == [
        "applied"]
    now[0] += timedelta(minutes=59)
    assert [r.mode for r in rem.handle(policies, "alert:KubePodCrashLooping", target)] == [
        "refused"]
    now[0] += timedelta(minutes=2)
    assert [r.mode for r in rem.handle(policies, "alert:KubePodCrashLooping", target)] == [
        "applied"]


def test_environment_not_allowed_is_refused_without_a_plan(store: HistoryStore) -> None:
    executor = Executor()
    intake, metrics = _wire(store, _cfg(enabled=True, environments=["production"]), executor)
    _deliver(intake)
    assert executor.calls == []
    [rec] = store.remediations()
    assert rec.mode == "refused"
    assert rec.detail == (f"pods/development/{POD_NAME} is in environment development; the "
                          "policy acts in production only")
    assert 'k3sops_remediations_total{mode="refused",policy="crashloop-restart"} 1.0' in (
        metrics.render().decode())
    # a refusal takes no slot of the rate
    assert store.remediation_count("crashloop-restart", datetime(2026, 1, 1, tzinfo=UTC),
                                   ("applied", "reserved", "failed")) == 0


def test_follower_takes_no_action(store: HistoryStore) -> None:
    executor = Executor()
    intake, _ = _wire(store, _cfg(enabled=True), executor, leader=False)
    _deliver(intake)
    assert executor.calls == []
    assert store.remediations() == []


def test_a_plan_that_cannot_be_built_is_recorded_failed_in_its_reservation(
        store: HistoryStore) -> None:
    intake, metrics = _wire(store, _cfg(enabled=True, max_per_hour=1), Executor(fail=True))
    _deliver(intake)
    [rec] = store.remediations()
    assert rec.mode == "failed" and "not found" in (rec.detail or "")
    # the failed attempt kept its slot: the next firing within the hour is refused
    _deliver(intake, "2026-12-05T17:40:00Z")
    assert [r.mode for r in store.remediations()] == ["refused", "failed"]
    text = metrics.render().decode()
    assert 'k3sops_remediations_total{mode="failed",policy="crashloop-restart"} 1.0' in text
    assert 'mode="applied"' not in text


def test_a_guard_refusal_is_recorded_refused_applied_or_not(store: HistoryStore) -> None:
    def guarded(plan: str, target: Target, apply: bool) -> RemediationReport:
        raise GuardRefused("cordon n1 would leave 2 of 3 nodes cordoned", hint="nothing changed")

    target = Target("pods", "development", POD_NAME)
    for enabled in (False, True):
        rem = Remediator(_cfg(enabled=enabled), _platform(), store, lambda: True, guarded)
        [rec] = rem.handle(rem.cfg.policies, "alert:KubePodCrashLooping", target)
        assert (rec.mode, rec.detail) == ("refused",
                                          "cordon n1 would leave 2 of 3 nodes cordoned")
    assert [r.mode for r in store.remediations()] == ["refused", "refused"]


def test_an_unexpected_error_still_finishes_the_reservation(store: HistoryStore) -> None:
    def broken(plan: str, target: Target, apply: bool) -> RemediationReport:
        raise RuntimeError("bug")

    rem = Remediator(_cfg(enabled=True), _platform(), store, lambda: True, broken)
    with pytest.raises(RuntimeError):
        rem.handle(rem.cfg.policies, "alert:x", Target("pods", "development", POD_NAME))
    [rec] = store.remediations()
    assert rec.mode == "failed" and "unexpected error" in (rec.detail or "")


def _node(name: str, cordoned: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"unschedulable": True} if cordoned else {}}


def test_a_policy_cordons_at_most_half_of_the_nodes() -> None:
    assert cordon_refusal([_node("a")], "a") is not None  # the only node
    assert cordon_refusal([_node("a"), _node("b")], "a") is None
    assert "2 of 2" in (cordon_refusal([_node("a", True), _node("b")], "b") or "")
    three = [_node("a", True), _node("b"), _node("c")]
    assert "2 of 3" in (cordon_refusal(three, "b") or "")
    assert cordon_refusal(three, "a") is None  # already cordoned: no change to refuse
    assert cordon_refusal([_node("a", True), *(_node(n) for n in "bcd")], "b") is None


def test_new_findings_of_a_check_trigger_its_policy(store: HistoryStore) -> None:
    cfg = Remediation.model_validate({"policies": [
        {"id": "crashloop-by-check", "when": {"check": "pod-crashloop"}, "plan": "restart",
         "environments": ["development"]}]})
    executor = Executor()
    rem = Remediator(cfg, _platform(), store, lambda: True, executor)

    def finding(name: str, new: bool, check: str = "pod-crashloop") -> Finding:
        return Finding(check=check, severity="warning", message="m", runbook="r", new=new,
                       resource=ResourceRef(kind="Pod", namespace="development", name=name))

    rem.on_findings([finding("a", True), finding("b", False), finding("c", True, "other")])
    assert executor.calls == [("restart", Target("pods", "development", "a"), False)]
    assert [r.trigger for r in store.remediations()] == ["check:pod-crashloop"]


def test_environment_of_maps_namespaces() -> None:
    platform = _platform()
    assert environment_of(platform, "production") == "production"
    assert environment_of(platform, "kube-system") is None
    assert environment_of(None, "development") is None


def test_repeated_alert_triggers_once(store: HistoryStore) -> None:
    executor = Executor()
    intake, _ = _wire(store, _cfg(), executor)
    _deliver(intake)
    body: dict[str, Any] = json.loads(json.dumps(FIRING))
    assert intake.receive(json.dumps(body).encode()).duplicates == 1
    assert len(executor.calls) == 1


def test_remediations_route_lists_the_records_to_who_may_get_them(
        store: HistoryStore) -> None:
    # the real API server's review answers, recorded on the lab (tests/data/serve_reviews)
    from pydantic import SecretStr

    from k3sops.serve.api import ApiContext, Reports
    from k3sops.serve.app import create_app
    from k3sops.serve.auth import Authorizer, SharedToken

    intake, metrics = _wire(store, _cfg(), Executor())
    _deliver(intake)
    reports = Reports(Settings(None, None, None), None, None, store)  # type: ignore[arg-type]
    ctx = ApiContext(reports=reports, authorizer=Authorizer(review_client()),
                     alertmanager=SharedToken(SecretStr("am")), metrics=metrics,
                     is_leader=lambda: True)
    app = create_app(ctx, in_sync=lambda: True)

    refused = asgi_get(app, "/api/v1/remediations", NOBODY)
    assert refused.status_code == 403
    assert NOBODY_USER in refused.json()["error"]
    r = asgi_get(app, "/api/v1/remediations", READER)
    assert r.status_code == 200
    [rec] = r.json()["remediations"]
    assert (rec["policy_id"], rec["mode"], rec["target"]) == (
        "crashloop-restart", "dry-run", f"pods/development/{POD_NAME}")


def test_a_failing_hook_does_not_fail_the_webhook(store: HistoryStore,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    def boom(record: dict[str, Any]) -> None:
        raise RuntimeError("remediation broke")

    enrich = enricher(_snapshot, Settings(None, None, None))
    intake = AlertIntake(store, enrich, [], sender=WebhookSender(timeout=2), on_stored=boom)
    _deliver(intake)
    assert [a.alertname for a in store.alerts("firing")] == ["KubePodCrashLooping"]
    assert "on_stored hook failed" in caplog.text


def test_the_service_wires_no_remediator_without_policies(store: HistoryStore) -> None:
    from k3sops.config.schema import Serve
    from k3sops.serve.runner import _remediator

    metrics = ServiceMetrics(dict, dict, lambda: True)
    settings = Settings(None, None, _platform())
    assert _remediator(Serve(), settings, {}, Path("/nonexistent"), None, store,
                       lambda: True, metrics) == (None, None)
    cfg = Serve.model_validate({"remediation": _cfg().model_dump()})
    rem, workers = _remediator(cfg, settings, {}, Path("/nonexistent"), None, store,
                               lambda: True, metrics)
    try:
        assert isinstance(rem, Remediator) and rem.cfg.policies[0].id == "crashloop-restart"
    finally:
        workers.shutdown(wait=True)


def test_the_readme_lists_each_plan_s_rights_as_the_lab_test_grants_them() -> None:
    """README's table is what the lab test binds (PLAN_RIGHTS): no right more or less."""
    import re

    from k3sops.serve.remediation import PLAN_RIGHTS

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    documented: dict[str, set[tuple[str, str]]] = {}
    for plan, cell in re.findall(r"^\| `([a-z-]+)` \| (.+) \|$", readme, re.MULTILINE):
        if plan not in PLAN_RIGHTS:
            continue
        for part in cell.split(";"):
            verbs = re.findall(r"`(\w+)`", part)
            resources = re.sub(r"`\w+`,?|\(apps\)", "", part).replace(",", " ").split()
            documented.setdefault(plan, set()).update((v, r) for v in verbs for r in resources)
    granted = {plan: {(v, r) for rule in rules for v in rule["verbs"]
                      for r in rule["resources"]} for plan, rules in PLAN_RIGHTS.items()}
    assert documented == granted


def test_a_reservation_left_by_a_killed_replica_is_closed_by_the_next_leader(
        store: HistoryStore) -> None:
    # a replica killed mid-apply: its reservation stays "reserved" (nothing finished it)
    at = datetime(2026, 12, 5, 17, 0, tzinfo=UTC)
    old = RemediationRecord(policy_id="crashloop-restart", trigger="alert:x",
                            target=f"pods/development/{POD_NAME}", plan="restart",
                            mode="reserved", at=at)
    old_id = store.reserve_remediation(old, 5, at - timedelta(hours=1))
    recent = old.model_copy(update={"at": at + timedelta(minutes=15)})
    recent_id = store.reserve_remediation(recent, 5, at - timedelta(hours=1))
    assert old_id is not None and recent_id is not None
    counted: list[tuple[str, str]] = []
    rem = Remediator(_cfg(enabled=True), _platform(), store, lambda: True, Executor(),
                     count=lambda p, m: counted.append((p, m)),
                     clock=lambda: at + timedelta(minutes=20))
    [closed] = rem.close_interrupted()
    assert closed.id == old_id and closed.mode == "failed"
    by_id = {r.id: r for r in store.remediations()}
    assert by_id[old_id].mode == "failed"
    assert "interrupted" in (by_id[old_id].detail or "")
    assert "audit log" in (by_id[old_id].detail or "")
    # 5 minutes old: maybe still being applied by a replica that lost the Lease
    assert by_id[recent_id].mode == "reserved"
    assert counted == [("crashloop-restart", "failed")]
    # a second leader change closes nothing twice; the slots stay taken in the rate
    assert rem.close_interrupted() == []
    third = old.model_copy(update={"at": at + timedelta(minutes=20)})
    assert store.reserve_remediation(third, 2, at - timedelta(hours=1)) is None
