"""Remediation by policy against the lab, with least-privilege ServiceAccounts.

Each plan runs as `k3sops serve` runs it: the remediator with the executor the service uses
(:mod:`k3sops.services.remediate` against the lab, audited), here under a ServiceAccount
bound to exactly the plan's rights as the README lists them (``PLAN_RIGHTS``) and nothing else.

* ``restart``: the crashloop scenario's pod fires Alertmanager's recorded webhook body
  (tests/data/alertmanager/crashloop-firing.json, given that pod's name) into the real intake
  (SQLite store). With the rights: the Deployment's template is stamped, a new pod appears,
  one audit entry, one ``applied`` row, a second firing within the hour refused. Without
  ``patch`` on deployments: one ``failed`` row naming the 403, the verb and the resource,
  the template unchanged, the failure audited and counted, no token anywhere.
* ``clean-pods``: the failed-pod scenario's pod is found by a real `k3sops check` (check
  ``pod-failed``) whose finding triggers the policy: a dry run plans its deletion and leaves
  it; enabled, it is deleted, audited, ``applied``.
* ``cordon``: the node of development's web pod: a dry run leaves it schedulable; enabled, it
  is cordoned and audited; a policy for production only refuses the same alert; with half
  the nodes cordoned the policy refuses to cordon one more.
* the `k3sops serve` process itself, its ServiceAccount bound to the watch cache's role plus
  ``restart``'s rights, the body POSTed to its own webhook: applied; with ``patch`` taken
  away, the next firing is recorded ``failed`` with the 403; /metrics counts both; no token
  in its log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from kit.serve import (
    PORT_OFFSET,
    Account,
    accounts,
    can,
    get,
    grant,
    kill,
    rule_accounts,
    start,
)

from conftest import Lab, wait_for
from k3sops.adapters.store import HistoryStore, RemediationRecord, SqliteStore
from k3sops.adapters.webhook import WebhookSender
from k3sops.config import load_platform
from k3sops.config.schema import Platform
from k3sops.config.schema.serve import Remediation
from k3sops.domain.findings import CheckReport
from k3sops.domain.remediate import RESTARTED_AT
from k3sops.serve.alerts import AlertIntake, object_of
from k3sops.serve.metrics import ServiceMetrics
from k3sops.serve.remediation import PLAN_RIGHTS, Remediator, cluster_executor
from k3sops.services.context import Settings

pytestmark = pytest.mark.lab
NS = "development"
ACCOUNTS_NS = "remed-lab"
DATA = Path(__file__).parents[1] / "data" / "alertmanager"
SERVICE_OFFSET = PORT_OFFSET + 30
"""The service's own port (other serve modules use +0..+10)."""


def _without_patch_on_deployments() -> list[dict[str, Any]]:
    rules = json.loads(json.dumps(PLAN_RIGHTS["restart"]))
    for rule in rules:
        if "deployments" in rule["resources"]:
            rule["verbs"].remove("patch")
    return rules


@pytest.fixture(scope="module")
def plan_accounts(lab: Lab,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Account]]:
    with rule_accounts(lab, ACCOUNTS_NS, tmp_path_factory.mktemp("accounts"), {
            "restart": PLAN_RIGHTS["restart"], "restart-no-patch": _without_patch_on_deployments(),
            "clean-pods": PLAN_RIGHTS["clean-pods"], "cordon": PLAN_RIGHTS["cordon"]}) as out:
        yield out


def _pods(lab: Lab, selector: str) -> list[dict[str, Any]]:
    out = lab.kubectl("-n", NS, "get", "pods", "-l", selector, "-o", "json").stdout
    return list(json.loads(out)["items"])


def _crashloop_pods(lab: Lab) -> list[dict[str, Any]]:
    return _pods(lab, "k3sops.io/scenario=crashloop")


@pytest.fixture
def crashloop(lab: Lab) -> Iterator[str]:
    r = lab.k3sops("lab", "scenario", "apply", "crashloop", timeout=300)
    assert r.returncode == 0, r.stderr
    pods = wait_for(lambda: [p["metadata"]["name"] for p in _crashloop_pods(lab)
                             if p["metadata"]["name"].startswith("checkout-")], timeout=90)
    assert pods, "the crashloop scenario made no checkout pod"
    yield pods[0]
    r = lab.k3sops("lab", "scenario", "reset", timeout=300)
    assert r.returncode == 0, r.stderr


class Service:
    """The remediator as `k3sops serve` wires it, under one ServiceAccount."""

    def __init__(self, lab: Lab, account: Account, tmp: Path, policies: list[dict[str, Any]],
                 enabled: bool) -> None:
        self.platform: Platform = load_platform(lab.layout.platform_file)
        assert NS in self.platform.environments["development"].namespaces
        settings = Settings(kubeconfig=account.kubeconfig, context=None, platform=self.platform)
        # The admin's kubeconfig must not be found: only the account's.
        env = {k: v for k, v in lab.env.items() if k not in ("KUBECONFIG", "K3SOPS_CONFIG")}
        self.state = tmp / "state"
        self.metrics = ServiceMetrics(dict, dict, lambda: True)
        self.store: HistoryStore = SqliteStore.open_file(tmp / "k3sops.db")
        self.remediator = Remediator(
            Remediation.model_validate({"enabled": enabled, "policies": policies}),
            self.platform, self.store, lambda: True,
            cluster_executor(settings, env, Path.home(), self.state),
            count=lambda p, m: self.metrics.remediations.labels(policy=p, mode=m).inc())
        # The enrichment is not what is tested here: only the object the alert names.
        self.intake = AlertIntake(self.store, lambda labels, _a: {"object": object_of(labels)},
                                  [], sender=WebhookSender(timeout=2),
                                  on_stored=self.remediator.on_alert)

    def fire(self, pod: str, starts: str = "2026-12-05T17:26:54.756Z") -> None:
        body = json.loads((DATA / "crashloop-firing.json").read_text())
        body["alerts"][0]["labels"]["pod"] = pod
        body["alerts"][0]["startsAt"] = starts
        assert self.intake.receive(json.dumps(body).encode()).stored == 1

    def audit(self) -> list[tuple[str, str, str]]:
        path = self.state / "audit.jsonl"
        if not path.exists():
            return []
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        return [(a["what"]["action"], a["what"]["target"], a["result"]) for a in entries]

    def counted(self, policy: str, mode: str) -> bool:
        return (f'k3sops_remediations_total{{mode="{mode}",policy="{policy}"}} 1.0'
                in self.metrics.render().decode())

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def service(lab: Lab, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Makes Services (account, directory under tmp_path, policies, enabled); closes them."""
    made: list[Service] = []

    def make(account: Account, where: Path, policies: list[dict[str, Any]],
             enabled: bool) -> Service:
        made.append(Service(lab, account, where, policies, enabled))
        return made[-1]

    yield make
    for svc in made:
        svc.close()


def _policy(pid: str, plan: str, environments: tuple[str, ...] = ("development",),
            max_per_hour: int = 1, **when: str) -> dict[str, Any]:
    return {"id": pid, "when": when or {"alert": "KubePodCrashLooping"}, "plan": plan,
            "environments": list(environments), "max_per_hour": max_per_hour}


def _template_stamp(lab: Lab) -> str | None:
    template = json.loads(lab.kubectl("-n", NS, "get", "deployment", "checkout", "-o",
                                      "json").stdout)["spec"]["template"]
    return (template["metadata"].get("annotations") or {}).get(RESTARTED_AT)


def test_restart_with_the_documented_rights_restarts_the_crashing_pod_s_deployment(
        lab: Lab, crashloop: str, plan_accounts: dict[str, Account], tmp_path: Path,
        service: Callable[..., Service]) -> None:
    svc = service(plan_accounts["restart"], tmp_path, [_policy("crashloop-restart", "restart")],
                  enabled=True)
    before = {p["metadata"]["name"] for p in _crashloop_pods(lab)}
    svc.fire(crashloop)
    [rec] = svc.store.remediations()
    # a second firing (another startsAt) inside the hour: refused by max_per_hour 1
    svc.fire(crashloop, "2026-12-05T17:40:00Z")
    after = svc.store.remediations()
    assert (rec.mode, rec.target, rec.plan) == ("applied", f"pods/{NS}/{crashloop}", "restart")
    assert [r.mode for r in after] == ["refused", "applied"]
    assert svc.counted("crashloop-restart", "applied")

    stamped = _template_stamp(lab)
    assert stamped, "the Deployment's pod template was not stamped"
    new = wait_for(lambda: [p for p in _crashloop_pods(lab) if p["metadata"]["name"] not in before
                            and (p["metadata"].get("annotations") or {}).get(RESTARTED_AT)
                            == stamped], timeout=60)
    assert new, "no pod of the restarted template appeared"
    assert svc.audit() == [("restart", f"{NS}/deployments/checkout", "ok")]


def test_restart_without_the_write_right_is_one_failed_row_naming_the_refusal(
        lab: Lab, crashloop: str, plan_accounts: dict[str, Account], tmp_path: Path,
        service: Callable[..., Service], caplog: pytest.LogCaptureFixture) -> None:
    account = plan_accounts["restart-no-patch"]
    svc = service(account, tmp_path, [_policy("crashloop-restart", "restart")],
                  enabled=True)
    stamp = _template_stamp(lab)
    with caplog.at_level("DEBUG"):
        svc.fire(crashloop)
    [rec] = svc.store.remediations()
    assert rec.mode == "failed"
    detail = rec.detail or ""
    assert "HTTP 403" in detail and "patch" in detail and "deployments" in detail, detail
    assert "checkout" in detail, detail
    # Nothing half done: the template is as it was; the refused step is audited as failed.
    assert _template_stamp(lab) == stamp
    assert svc.audit() == [("restart", f"{NS}/deployments/checkout", "failed")]
    assert svc.counted("crashloop-restart", "failed")
    assert 'mode="applied"' not in svc.metrics.render().decode()
    audit_text = (svc.state / "audit.jsonl").read_text()
    for text in (detail, caplog.text, audit_text, svc.metrics.render().decode()):
        assert account.token not in text


@pytest.fixture
def failed_pod(lab: Lab) -> Iterator[str]:
    r = lab.k3sops("lab", "scenario", "apply", "failed-pod", timeout=300)
    assert r.returncode == 0, r.stderr
    failed = wait_for(lambda: [p for p in _pods(lab, "k3sops.io/scenario=failed-pod")
                               if (p.get("status") or {}).get("phase") == "Failed"], timeout=90)
    assert failed, "the failed-pod scenario's pod did not fail"
    yield failed[0]["metadata"]["name"]
    r = lab.k3sops("lab", "scenario", "reset", timeout=300)
    assert r.returncode == 0, r.stderr


def test_clean_pods_from_a_check_finding_plans_then_deletes_the_failed_pod(
        lab: Lab, failed_pod: str, plan_accounts: dict[str, Account], tmp_path: Path,
        service: Callable[..., Service]) -> None:
    r = lab.k3sops("-o", "json", "check", "--no-history", timeout=300)
    assert r.stdout, r.stderr
    findings = [f for f in CheckReport.model_validate_json(r.stdout).findings
                if f.check == "pod-failed" and f.resource.name == failed_pod]
    assert findings, "k3sops check did not report the failed pod"
    # A scheduled run's new finding (this run has no history to compare with).
    new = [f.model_copy(update={"new": True}) for f in findings]
    policy = _policy("failed-pods", "clean-pods", check="pod-failed")

    dry = service(plan_accounts["clean-pods"], tmp_path / "dry", [policy], enabled=False)
    dry.remediator.on_findings(new)
    [planned] = dry.store.remediations()
    assert (planned.mode, planned.trigger) == ("dry-run", "check:pod-failed")
    assert f"delete {NS}/pods/{failed_pod}: planned" in (planned.detail or "")
    assert _pods(lab, "k3sops.io/scenario=failed-pod"), "a dry run deleted the pod"
    assert dry.audit() == []

    svc = service(plan_accounts["clean-pods"], tmp_path / "apply", [policy], enabled=True)
    svc.remediator.on_findings(new)
    [rec] = svc.store.remediations()
    assert rec.mode == "applied", rec.detail
    assert wait_for(lambda: not _pods(lab, "k3sops.io/scenario=failed-pod"), timeout=60)
    assert svc.audit() == [("delete", f"{NS}/pods/{failed_pod}", "ok")]
    assert svc.counted("failed-pods", "applied")


def _nodes(lab: Lab) -> dict[str, bool]:
    items = json.loads(lab.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return {n["metadata"]["name"]: bool((n.get("spec") or {}).get("unschedulable"))
            for n in items}


@pytest.fixture
def web(lab: Lab) -> Iterator[tuple[str, str]]:
    """Development's web pod and its node; every node schedulable again afterwards."""
    assert not any(_nodes(lab).values()), "a node is cordoned before the test"
    [pod] = [p for p in _pods(lab, "app.kubernetes.io/name=web")
             if (p.get("spec") or {}).get("nodeName")][:1]
    yield pod["metadata"]["name"], pod["spec"]["nodeName"]
    for node, cordoned in _nodes(lab).items():
        if cordoned:
            lab.kubectl("uncordon", node)


def test_cordon_cordons_the_pod_s_node_in_its_environment_and_at_most_half_the_nodes(
        lab: Lab, web: tuple[str, str], plan_accounts: dict[str, Account], tmp_path: Path,
        service: Callable[..., Service]) -> None:
    pod, node = web
    policies = [_policy("cordon-dev", "cordon", max_per_hour=2),
                _policy("cordon-prod", "cordon", ("production",))]

    dry = service(plan_accounts["cordon"], tmp_path / "dry", policies[:1], enabled=False)
    dry.fire(pod)
    [planned] = dry.store.remediations()
    assert planned.mode == "dry-run" and f"cordon nodes/{node}: planned" in (planned.detail or "")
    assert not _nodes(lab)[node]

    svc = service(plan_accounts["cordon"], tmp_path / "apply", policies, enabled=True)
    svc.fire(pod)
    by_policy = {r.policy_id: r for r in svc.store.remediations()}
    assert by_policy["cordon-dev"].mode == "applied", by_policy["cordon-dev"].detail
    assert _nodes(lab)[node]
    assert svc.audit() == [("cordon", f"nodes/{node}", "ok")]
    # the same alert, for a policy of production only: refused, nothing planned
    refused = by_policy["cordon-prod"]
    assert refused.mode == "refused"
    assert "environment development" in (refused.detail or "")

    # Half the nodes cordoned by hand (the pod's node uncordoned): one more is refused.
    lab.kubectl("uncordon", node)
    nodes = _nodes(lab)
    for other in [n for n in nodes if n != node][:len(nodes) // 2]:
        lab.kubectl("cordon", other)
    assert sum(_nodes(lab).values()) == len(nodes) // 2
    svc.fire(pod, "2026-12-05T17:40:00Z")
    latest = svc.store.remediations(policy_id="cordon-dev")[0]
    assert latest.mode == "refused", latest.detail
    assert "at most half" in (latest.detail or "")
    assert not _nodes(lab)[node], "the refused cordon changed the node"
    assert svc.audit() == [("cordon", f"nodes/{node}", "ok")]
    assert svc.counted("cordon-dev", "refused")


def test_the_service_process_remediates_with_the_documented_rights_and_records_a_403(
        lab: Lab, crashloop: str, tmp_path: Path) -> None:
    """`k3sops serve` itself: its ServiceAccount has the watch cache's ClusterRole plus the
    README's rights for ``restart``; Alertmanager's body is POSTed to its own webhook. Applied;
    then, with ``patch`` on deployments taken away, the next firing is one ``failed`` row with
    the 403, both counted in /metrics, and no token in the service's log."""
    ns = f"t-remed-{uuid.uuid4().hex[:6]}"
    am_token = f"am-{uuid.uuid4().hex}"
    with accounts(lab, ns, tmp_path) as rbac:
        grant(lab, ns, "k3sops-serve", f"{ns}-restart", PLAN_RIGHTS["restart"])
        (tmp_path / "am-token").write_text(am_token)
        platform = yaml.safe_load(rbac.platform.read_text())
        platform["serve"] |= {"alertmanager_token_file": str(tmp_path / "am-token"),
                              "remediation": {"enabled": True, "policies": [
                                  _policy("crashloop-restart", "restart", max_per_hour=2)]}}
        rbac.platform.write_text(yaml.safe_dump(platform))
        s = start(lab, rbac, SERVICE_OFFSET)
        try:
            assert wait_for(lambda: "k3sops_leader 1.0" in get(
                s, "/metrics", rbac.tokens["reader"]).text, timeout=60), "never led"
            body = json.loads((DATA / "crashloop-firing.json").read_text())
            body["alerts"][0]["labels"]["pod"] = crashloop

            def fire(starts: str) -> None:
                body["alerts"][0]["startsAt"] = starts
                r = httpx2.post(s.url + "/api/v1/alerts", json=body, timeout=60,
                                headers={"Authorization": f"Bearer {am_token}"})
                assert r.status_code == 200, r.text

            def records() -> list[RemediationRecord]:
                with SqliteStore.open(rbac.tmp / f"state-{SERVICE_OFFSET}") as store:
                    return [r for r in store.remediations() if r.mode != "reserved"]

            stamp = _template_stamp(lab)
            fire("2026-12-05T17:26:54.756Z")
            [applied] = wait_for(records, timeout=90)
            assert applied.mode == "applied", applied.detail
            assert _template_stamp(lab) != stamp

            grant(lab, ns, "k3sops-serve", f"{ns}-restart", _without_patch_on_deployments())
            assert wait_for(lambda: not can(lab, ns, "k3sops-serve", "patch",
                                            "deployments.apps", NS), timeout=30)
            stamp = _template_stamp(lab)
            fire("2026-12-05T17:40:00Z")
            failed, again = wait_for(lambda: records()[:2] if len(records()) > 1 else [],
                                     timeout=90)
            assert again.id == applied.id and again.mode == "applied"
            assert failed.mode == "failed"
            assert "refused to patch deployments/checkout" in (failed.detail or "")
            assert "HTTP 403" in (failed.detail or "")
            assert _template_stamp(lab) == stamp, "the refused remediation changed the template"
            metrics = get(s, "/metrics", rbac.tokens["reader"]).text
            for mode in ("applied", "failed"):
                assert (f'k3sops_remediations_total{{mode="{mode}",policy="crashloop-restart"}}'
                        " 1.0") in metrics, metrics
        finally:
            kill(s)
        log = s.log.read_text()
        assert "remediation crashloop-restart failed" in log
        for secret in (am_token, *rbac.tokens.values()):
            assert secret not in log
