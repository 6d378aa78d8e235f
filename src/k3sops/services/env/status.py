"""``env list``, ``env status`` and ``env diff``: environments as configured, in git, running."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from k3sops.adapters import git
from k3sops.adapters.kube import KubeClient
from k3sops.domain import env as p
from k3sops.domain import gitops as g
from k3sops.domain.snapshot import ClusterSnapshot
from k3sops.errors import AdapterError, UsageError
from k3sops.services.gitops import (
    ArgoStatus,
    GitOpsContext,
    applications,
    argo_status,
    deployment,
    git_version,
    kube_for,
    read_file,
    values_of,
    workspace,
)


class EnvInfo(BaseModel):
    """One environment as platform.yaml defines it."""

    name: str
    namespaces: list[str]
    context: str | None
    policy: str
    approvers: list[str]
    required_approvals: int
    healthy_for: str
    values_file: str
    promotes_from: str | None


class EnvList(BaseModel):
    """``env list``."""

    environments: list[EnvInfo]
    repo: str
    branch: str
    push: str
    deploy: str


def env_list(ctx: GitOpsContext) -> EnvList:
    """The environments in promotion order with their policies."""
    out = []
    for name in ctx.order:
        e = ctx.environment(name)
        prev = p.previous_env(ctx.order, name)
        out.append(EnvInfo(name=name, namespaces=list(e.namespaces), context=e.context,
                           policy=e.promotion.policy, approvers=list(e.promotion.approvers),
                           required_approvals=e.promotion.required_approvals,
                           healthy_for=e.promotion.healthy_for,
                           values_file=ctx.gitops.values_file(name),
                           promotes_from=None if e.promotion.policy == "auto" else prev))
    return EnvList(environments=out, repo=git.redact(ctx.gitops.repo), branch=ctx.gitops.branch,
                   push=ctx.gitops.push, deploy=ctx.gitops.deploy)


class AppEnvStatus(BaseModel):
    """One app in one environment: git vs. what runs."""

    app: str
    env: str
    namespace: str
    git_version: str | None
    running_version: str | None
    in_sync: bool
    rollout: str
    argocd: ArgoStatus | None = None
    error: str | None = None


class EnvStatus(BaseModel):
    """``env status``."""

    apps: list[AppEnvStatus] = Field(default_factory=list)
    commit: str


def env_status(ctx: GitOpsContext, app: str | None = None, *,
               cluster: ClusterSnapshot | None = None) -> EnvStatus:
    """Per app and environment: version in git, version running, ArgoCD or rollout status.

    ``cluster``: the Deployments (and ArgoCD Applications) already at hand, such as
    `k3sops serve`'s watch cache; they are read instead of asking each environment's context,
    which names the operator's kubeconfig and need not exist in the service's.
    """
    rows: list[AppEnvStatus] = []
    with workspace(ctx) as repo:
        commit = repo.head()
        values = {e: values_of(ctx, repo, e) for e in ctx.order}
        versions = {e: {a: git_version(repo, values[e], a)
                        for a in (values[e].get("apps") or {})} for e in ctx.order}
    if app is not None and not any(app in v for v in versions.values()):
        raise UsageError(f"app {app!r} is in no environment's values file",
                         hint="see `k3sops env status` for the apps there are")
    cached = _Cached(cluster, ctx.gitops.argocd_namespace) if cluster is not None else None
    for env in ctx.order:
        ns = ctx.namespace(env)
        kube = kube_for(ctx, env) if cached is None else None
        try:
            apps_objs, find = _reader(ctx, kube, cached)
            for name, (_, ver) in sorted(versions[env].items()):
                if app is not None and name != app:
                    continue
                row = AppEnvStatus(app=name, env=env, namespace=ns, git_version=ver,
                                   running_version=None, in_sync=False, rollout="unknown")
                try:
                    d = find(ns, name)
                    if d is None:
                        row.rollout = "missing"
                    else:
                        st = p.rollout_state(d, name)
                        row.running_version = st.version
                        row.rollout = ("complete" if st.complete else "progressing") \
                            + f": {st.detail}"
                        row.in_sync = st.version == ver
                except AdapterError as e:
                    row.error = e.message
                argo = (apps_objs or {}).get(f"{name}-{env}")
                if argo is not None:
                    row.argocd = argo_status(argo)
                rows.append(row)
        finally:
            if kube is not None:
                kube.close()
    return EnvStatus(apps=rows, commit=commit)


Find = Callable[[str, str], dict[str, Any] | None]
"""A Deployment by namespace and name (None: there is none)."""


def _reader(ctx: GitOpsContext, kube: KubeClient | None, cached: _Cached | None,
            ) -> tuple[dict[str, dict[str, Any]] | None, Find]:
    """The ArgoCD Applications and the Deployment lookup: the cache's, else ``kube``'s."""
    if cached is not None:
        return cached.applications, cached.deployment
    assert kube is not None  # noqa: S101  # env_status makes one of the two
    try:
        apps = applications(kube, ctx.gitops.argocd_namespace)
    except AdapterError:
        apps = None
    return apps, functools.partial(deployment, kube)


class _Cached:
    """Deployments by (namespace, name) and the ArgoCD Applications of a snapshot."""

    def __init__(self, cluster: ClusterSnapshot, argocd_namespace: str) -> None:
        self._error = cluster.errors.get("deployments")
        self._deployments = {(str(m.get("namespace")), str(m.get("name"))): d
                             for d in cluster.objects.get("deployments") or ()
                             for m in [d.get("metadata") or {}]}
        self._listed = "deployments" in cluster.objects
        items = cluster.objects.get("applications.argoproj.io")
        self.applications = None if items is None else {
            str((a.get("metadata") or {}).get("name")): dict(a) for a in items
            if (a.get("metadata") or {}).get("namespace") == argocd_namespace}

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Deployment, None when there is none; AdapterError when none were read."""
        if not self._listed:
            raise AdapterError(f"deployments could not be read: {self._error or 'not watched'}")
        d = self._deployments.get((namespace, name))
        return None if d is None else dict(d)


class EnvDiff(BaseModel):
    """``env diff A B``."""

    left: str
    right: str
    differences: list[g.ValueDiff]
    undocumented: int


def _env_flat(ctx: GitOpsContext, repo: git.Repo, env: str) -> dict[tuple[str, ...], Any]:
    flat = g.flatten(values_of(ctx, repo, env))
    for comp in g.PLATFORM_STACK:
        text = read_file(repo, g.platform_values_file(comp, env), required=False)
        if text:
            flat.update(g.flatten(g.load(text) or {}, ("platform", comp)))
    return flat


def env_diff(ctx: GitOpsContext, left: str, right: str) -> EnvDiff:
    """Every value that differs between two environments, documented or not per DEVIATIONS."""
    ctx.environment(left)
    ctx.environment(right)
    with workspace(ctx) as repo:
        deviations = g.parse_deviations(read_file(repo, g.DEVIATIONS_FILE, required=False))
        diffs = g.diff_values(_env_flat(ctx, repo, left), _env_flat(ctx, repo, right),
                              deviations, left, right)
    return EnvDiff(left=left, right=right, differences=diffs,
                   undocumented=sum(1 for d in diffs if not d.documented))
