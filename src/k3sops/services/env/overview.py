"""The next promotion of each app into each environment: its gates and pending approvals.

For `k3sops serve`'s ``/api/v1/environments`` beside :func:`env_status`: where an app's version
in git differs between an environment and the one it promotes from, a promotion is pending; an
``approval`` environment's approvals file is read and judged by the same
:func:`domain.env.check_approvals` `env promote` applies, so the console shows who approved
and how many are still missing. Gates that need the cluster (``healthy_for``) are named, not
evaluated: `env promote` evaluates them when it runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pydantic import BaseModel, Field

from k3sops.domain import env as p
from k3sops.domain import gitops as g
from k3sops.services.env.status import AppEnvStatus
from k3sops.services.gitops import GitOpsContext, read_file, utcnow, workspace


class NextPromotion(BaseModel):
    """One app's pending promotion from ``source`` into ``target``."""

    app: str
    source: str
    target: str
    version: str = Field(description="the version in git in the source environment")
    target_version: str | None = Field(description="the version in git in the target now")
    policy: str
    healthy_for: str = Field(description="how long the source must be healthy (a gate)")
    approvers: list[str] = Field(default_factory=list)
    required_approvals: int = 0
    approved_by: list[str] = Field(default_factory=list)
    missing_approvals: int = 0
    ignored: list[str] = Field(default_factory=list, description="approvals that do not count")


def next_promotions(ctx: GitOpsContext, rows: Sequence[AppEnvStatus],
                    now: dt.datetime | None = None) -> list[NextPromotion]:
    """Pending promotions from ``rows`` (:func:`env_status`'s apps), in promotion order."""
    when = now or utcnow()
    git_versions = {(r.app, r.env): r.git_version for r in rows}
    apps = sorted({r.app for r in rows})
    out: list[NextPromotion] = []
    with workspace(ctx) as repo:
        for target in ctx.order:
            source = p.previous_env(ctx.order, target)
            if source is None:
                continue
            policy = ctx.environment(target).promotion
            approvals = (p.parse_approvals(read_file(repo, g.approvals_file(target),
                                                     required=False), target)
                         if policy.policy == "approval" else [])
            for app in apps:
                version = git_versions.get((app, source))
                current = git_versions.get((app, target))
                if version is None or version == current:
                    continue
                item = NextPromotion(app=app, source=source, target=target, version=version,
                                     target_version=current, policy=policy.policy,
                                     healthy_for=policy.healthy_for)
                if policy.policy == "approval":
                    check = p.check_approvals(approvals, app, target, version,
                                              policy.approvers, policy.required_approvals, when)
                    item.approvers = list(policy.approvers)
                    item.required_approvals = policy.required_approvals
                    item.approved_by = sorted({a.by for a in check.valid})
                    item.missing_approvals = max(0, policy.required_approvals
                                                 - len(item.approved_by))
                    item.ignored = list(check.ignored)
                out.append(item)
    return out
