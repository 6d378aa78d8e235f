"""The reports of `env` and `gitops` find their table view by type (their views moved out of
the CLI modules into k3sops.output.tables) and draw what an operator needs to see."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from rich.console import Console

from k3sops.domain.env import Approval, GateResult, Refusal
from k3sops.domain.gitops import ValueDiff
from k3sops.output.render import table_of
from k3sops.services.env.deploy import DeployResult
from k3sops.services.env.promote import ApprovalReport, ChangeReport
from k3sops.services.env.status import AppEnvStatus, EnvDiff, EnvInfo, EnvList, EnvStatus
from k3sops.services.gitops import InitReport, ValuesChange

pytestmark = pytest.mark.unit


def _draw(report: BaseModel) -> str:
    out = Console(record=True, width=200)
    table_of(report)(report, out)
    return out.export_text()


_ENV = EnvInfo(name="production", namespaces=["prod"], context=None, policy="approval",
               approvers=["alice", "bob"], required_approvals=2, healthy_for="1h",
               values_file="environments/production/values.yaml", promotes_from="staging")
_GATE = GateResult(name="error-rate", status="fail", passed=False, detail="2.1% > 1%")
_APPROVAL = Approval(app="shop", env="production", version="1.4.0", by="alice",
                     at="2026-12-01T10:00:00Z", expires="2026-12-02T10:00:00Z")


@pytest.mark.parametrize(("report", "expected"), [
    (EnvList(environments=[_ENV], repo="git@example:ops/gitops.git", branch="main",
             push="direct", deploy="argocd"),
     ["GitOps git@example:ops/gitops.git (main; push direct, deploy argocd)",
      "alice, bob (2 needed)", "staging"]),
    (EnvStatus(commit="0123456789abcdef", apps=[
        AppEnvStatus(app="shop", env="staging", namespace="stg", git_version="1.4.0",
                     running_version="1.3.0", in_sync=False, rollout="complete")]),
     ["environments at 0123456789ab", "1.4.0", "1.3.0", "no"]),
    (EnvDiff(left="staging", right="production", undocumented=1, differences=[
        ValueDiff(path="apps.shop.replicas", left=2, right=None, documented=False)]),
     ["staging vs production: 1 difference(s), 1 undocumented", "(absent)", "NO"]),
    (ChangeReport(action="promote", target="production", app="shop", source="staging",
                  version="1.4.0", gates=[_GATE], approvals=[_APPROVAL],
                  refusals=[Refusal(rule="gate:error-rate", reason="staging is not healthy",
                                    command="k3sops metrics apps --env staging")],
                  deploy=DeployResult(mode="argocd", state="timeout", detail="still syncing")),
     ["promote shop 1.4.0: staging -> production (plan, dry run)", "gates on staging",
      "2.1% > 1%", "approved by alice", "refused (gate:error-rate): staging is not healthy",
      "to satisfy it: k3sops metrics apps --env staging", "deploy (argocd): timeout"]),
    (ApprovalReport(approval=_APPROVAL, file="approvals/production.yaml", commit="fedcba987654321",
                    pushed_to="main", audit_log="/state/audit.jsonl"),
     ["approved shop 1.4.0 for production by alice", "commit fedcba987654 pushed to main",
      "audit log: /state/audit.jsonl"]),
    (InitReport(path="/tmp/gitops", files=["apps/shop/Chart.yaml"], pushed_to="origin",
                commit="abcdef0123456789"),
     ["wrote 1 files to /tmp/gitops:", "apps/shop/Chart.yaml", "commit abcdef012345 pushed"]),
    (ValuesChange(file="environments/staging/values.yaml", changes={"replicas": 3},
                  diff=["-  replicas: 2", "+  replicas: 3"], commit="0011223344556677",
                  pushed_to="review/x", review=True),
     ["+  replicas: 3", "commit 001122334455 pushed to review/x (review branch)"]),
    (ValuesChange(file="environments/staging/values.yaml", changes={}, diff=[], commit=None,
                  pushed_to=None),
     ["environments/staging/values.yaml: nothing changed"]),
])
def test_env_and_gitops_reports_draw_their_registered_view(report: BaseModel,
                                                           expected: list[str]) -> None:
    text = _draw(report)
    for line in expected:
        assert line in text
