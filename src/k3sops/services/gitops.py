"""The GitOps repository: scaffold it, read environments from it, change values in it.

k3sops works in its own clone of ``gitops.repo`` under the state directory
(``<state>/gitops/<hash>/``), reset to the remote branch before every command and locked while
in use, so two runs on one machine take turns and a user's own clone is never touched. Changes
are committed there and pushed: to ``gitops.branch`` (rebased onto a concurrent change; a
change to the same lines fails cleanly) or, with ``gitops.push: branch``, to a review branch.

:func:`set_app_values` is the entry point for other features that change an app's values
through GitOps (e.g. right-sizing): see its docstring.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from k3sops.adapters import git
from k3sops.adapters.audit import AuditLog, current_user, state_dir
from k3sops.adapters.files import write_atomic
from k3sops.adapters.kube import KubeClient
from k3sops.config import ENVIRONMENT_NAMES, Environment, GitOps, Platform
from k3sops.domain import env as p
from k3sops.domain import gitops as g
from k3sops.errors import AdapterError, ConfigError, K3sopsError, NotFound, UsageError
from k3sops.services import context


def utcnow() -> dt.datetime:
    """The current time, UTC."""
    return dt.datetime.now(dt.UTC)


@dataclass
class GitOpsContext:
    """What GitOps commands need: the platform, its gitops section, state dir, audit log."""

    settings: context.Settings
    platform: Platform
    gitops: GitOps
    env: Mapping[str, str]
    home: Path
    state: Path
    audit: AuditLog
    user: str

    @property
    def order(self) -> list[str]:
        """Configured environments in promotion order."""
        return [e for e in ENVIRONMENT_NAMES if e in self.platform.environments]

    def environment(self, name: str) -> Environment:
        """An environment's settings.

        Raises:
            UsageError: it is not configured.
        """
        if name not in self.platform.environments:
            raise UsageError(f"environment {name!r} is not in platform.yaml",
                             hint=f"configured: {', '.join(self.order)} (k3sops env list)")
        return self.platform.environments[name]

    def namespace(self, name: str) -> str:
        """The namespace an environment's apps run in (its first namespace).

        Raises:
            ConfigError: the environment lists no namespace.
        """
        env = self.environment(name)
        if not env.namespaces:
            raise ConfigError(f"environments.{name}.namespaces is empty: promotion needs the "
                              "namespace the apps run in", hint="list it first, e.g. [apps]")
        return env.namespaces[0]

    def record(self, action: str, target: str, result: str, **detail: Any) -> None:
        """Append an audit record (who, what, result, details)."""
        self.audit.append({"who": self.user, "what": {"action": action, "target": target,
                                                      "detail": detail},
                           "result": result})


def open_context(settings: context.Settings, env: Mapping[str, str], home: Path,
                 state: Path | None = None, user: str | None = None) -> GitOpsContext:
    """The GitOps context of the loaded platform.yaml.

    Raises:
        ConfigError: there is no platform.yaml or it has no ``gitops:`` section.
    """
    if settings.platform is None:
        raise ConfigError("no platform.yaml: environments and promotion need one",
                          hint="pass --config FILE (or K3SOPS_CONFIG); `k3sops init` writes one")
    if settings.platform.gitops is None:
        raise ConfigError("platform.yaml has no gitops: section, so promotion is refused",
                          hint="add gitops: {repo: URL-or-path, branch: main}")
    sd = state_dir(state, env, home)
    return GitOpsContext(settings=settings, platform=settings.platform,
                         gitops=settings.platform.gitops, env=env, home=home, state=sd,
                         audit=AuditLog(sd / "audit.jsonl"), user=user or current_user())


@contextlib.contextmanager
def workspace(ctx: GitOpsContext) -> Iterator[git.Repo]:
    """k3sops' clone of the GitOps repository, fresh from the remote and locked for the block."""
    key = hashlib.sha256(f"{ctx.gitops.repo}\0{ctx.gitops.branch}".encode()).hexdigest()[:16]
    root = ctx.state / "gitops" / key
    with git.locked(root / "lock"):
        yield git.Repo.open(root / "repo", ctx.gitops.repo, ctx.gitops.branch)


def read_file(repo: git.Repo, path: str, required: bool = True) -> str:
    """A file of the clone (empty when optional and missing).

    Raises:
        ConfigError: a required file is missing.
    """
    f = repo.path / path
    if not f.is_file():
        if required:
            raise ConfigError(f"{path} is missing from the GitOps repository "
                              f"{git.redact(repo.remote)}",
                              hint="scaffold one with `k3sops gitops init PATH`, or fix "
                                   "gitops.values_path in platform.yaml")
        return ""
    return f.read_text()


def values_of(ctx: GitOpsContext, repo: git.Repo, env: str) -> Any:
    """An environment's values document.

    Raises:
        ConfigError: the file is missing, not YAML, or not a mapping.
    """
    path = ctx.gitops.values_file(env)
    data = g.load(read_file(repo, path)) or {}
    if not isinstance(data, dict) or not isinstance(data.get("apps") or {}, dict):
        raise ConfigError(f"{path} in the GitOps repository is not a mapping with apps: "
                          "{app: {image: {tag: ...}}}",
                          hint="fix the file (k3sops gitops init shows the expected layout)")
    return data


def effective(repo: git.Repo, env_values: Any, app: str) -> dict[str, Any]:
    """An app's effective values in an environment (base merged with the env's values)."""
    base = g.load(read_file(repo, g.app_base_file(app), required=False)) or {}
    return g.app_values(base, env_values, app)


def git_version(repo: git.Repo, env_values: Any, app: str) -> tuple[str | None, str | None]:
    """(repository, version) git says ``app`` runs with these values."""
    image = effective(repo, env_values, app).get("image") or {}
    repo_, tag = image.get("repository"), image.get("tag")
    return (None if repo_ is None else str(repo_)), (None if tag is None else str(tag))


class ValuesChange(BaseModel):
    """A change of values committed to the GitOps repository."""

    file: str
    changes: dict[str, Any]
    diff: list[str]
    commit: str | None
    pushed_to: str | None
    """The branch pushed to (``gitops.branch``, or a review branch)."""
    review: bool = False


def commit_and_push(ctx: GitOpsContext, repo: git.Repo, paths: Sequence[str], message: str,
                    review_branch: str | None) -> tuple[str | None, str | None]:
    """Commit ``paths`` and push as configured; (commit, branch pushed to).

    ``review_branch`` is used when ``gitops.push`` is ``branch``.
    """
    sha = repo.commit(paths, message)
    if sha is None:
        return None, None
    if ctx.gitops.push == "branch" and review_branch:
        repo.push_branch(review_branch)
        return sha, review_branch
    repo.push()
    return repo.head(), ctx.gitops.branch


def write_values(repo: git.Repo, path: str, updates: Mapping[tuple[str, ...], Any],
                 ) -> tuple[str, str]:
    """Round-trip edit a values file in the clone; (old text, new text)."""
    old = read_file(repo, path)
    new = g.set_values(old, updates, where=path)
    try:
        write_atomic(repo.path / path, new)
    except OSError as e:
        raise AdapterError(f"cannot write {repo.path / path}: {e.strerror}") from e
    return old, new


def set_app_values(ctx: GitOpsContext, environment: str, app: str,
                   values: Mapping[str, Any], *, reason: str) -> ValuesChange:
    """Set values of one app in one environment's values file, commit and push them.

    Stable entry point for other features (right-sizing, ...). Round trip: comments and layout
    of the file are kept and only the given keys change (verified before writing).

    Args:
        ctx: from :func:`open_context`.
        environment: the environment whose values file is changed.
        app: the app, i.e. the key under ``apps:``.
        values: dotted key paths relative to ``apps.<app>`` -> new value, e.g.
            ``{"resources.requests.cpu": "250m", "resources.limits.memory": "512Mi"}``.
            Missing mappings are created.
        reason: first line of the commit message's body (why the values change).

    Returns:
        What changed: the file, the diff lines, the commit (None when nothing changed) and the
        branch pushed to (a review branch ``k3sops/<env>/<app>-values`` with ``push: branch``).

    Raises:
        UsageError: the environment is not configured, or ``values`` is empty.
        ConfigError: the values file is missing or the edit would touch anything else.
        Conflict: the remote changed the same lines meanwhile (nothing was pushed).
        AdapterError: git failed.
    """
    ctx.environment(environment)
    if not values:
        raise UsageError("no values given to set")
    updates = {("apps", app, *k.split(".")): v for k, v in values.items()}
    path = ctx.gitops.values_file(environment)
    with workspace(ctx) as repo:
        old, new = write_values(repo, path, updates)
        message = (f"set {', '.join(values)} of {app} in {environment}\n\n{reason}\n\n"
                   f"K3sops-Action: set-values\nPromoted-To: {environment}\n"
                   f"Requested-By: {ctx.user}\n")
        try:
            sha, pushed = commit_and_push(ctx, repo, [path], message,
                                          f"k3sops/{environment}/{app}-values")
        except K3sopsError as e:
            ctx.record("set-values", f"{environment}/{app}", "failed", error=e.message,
                       changes=dict(values))
            raise
    ctx.record("set-values", f"{environment}/{app}", "ok" if sha else "skipped",
               changes=dict(values), commit=sha, pushed_to=pushed)
    return ValuesChange(file=path, changes=dict(values), diff=g.changed_lines(old, new),
                        commit=sha, pushed_to=pushed, review=ctx.gitops.push == "branch")


# --------------------------------------------------------------------------------------------
# gitops init / record-build


class InitReport(BaseModel):
    """What ``gitops init`` wrote (and pushed)."""

    path: str
    files: list[str]
    pushed_to: str | None = None
    commit: str | None = None


def init_repo(settings: context.Settings, path: Path, apps: Sequence[str], *,
              force: bool = False, push: str | None = None) -> InitReport:
    """Scaffold a GitOps repository in ``path`` from platform.yaml's environments.

    Args:
        settings: platform.yaml (its environments, namespaces and gitops section).
        path: the directory to write (created; must be empty unless ``force``).
        apps: ``NAME=IMAGE:TAG`` per application.
        force: overwrite files in a non-empty directory.
        push: a remote (URL or path of a bare repository) to commit and push the tree to.

    Raises:
        ConfigError: no platform.yaml, or a bad ``--app``.
        UsageError: ``path`` is not empty and ``force`` is not given.
    """
    if settings.platform is None:
        raise ConfigError("gitops init needs platform.yaml (environments and namespaces)",
                          hint="pass --config FILE; `k3sops init` writes one")
    plat = settings.platform
    gcfg = plat.gitops or GitOps(repo=push or str(path))
    specs = [g.parse_app_spec(a) for a in apps]
    if len({s[0] for s in specs}) != len(specs):
        raise ConfigError("an --app name is given twice", hint="one --app per application")
    order = [e for e in ENVIRONMENT_NAMES if e in plat.environments]
    envs: dict[str, tuple[str, bool]] = {
        e: ((env.namespaces or [e])[0], env.promotion.policy == "auto")
        for e, env in plat.environments.items() if e in order}
    envs = {e: envs[e] for e in order}
    if path.exists() and any(x.name != ".git" for x in path.iterdir()) and not force:
        raise UsageError(f"{path} is not empty; nothing written",
                         hint="choose an empty directory, or pass --force to overwrite")
    files = g.scaffold(plat.name, push or gcfg.repo, gcfg.branch, gcfg.values_path, envs,
                       specs, gcfg.argocd_namespace)
    try:
        for rel, text in files.items():
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, text)
    except OSError as e:
        raise AdapterError(f"cannot write the repository at {path}: {e.strerror}") from e
    report = InitReport(path=str(path), files=sorted(files))
    if push:
        report.commit = git.publish_tree(path, push, gcfg.branch,
                                         "scaffold the GitOps repository (k3sops gitops init)")
        report.pushed_to = f"{git.redact(push)} {gcfg.branch}"
    return report


def record_build(ctx: GitOpsContext, app: str, version: str, repository: str | None,
                 source: str | None, now: dt.datetime) -> ValuesChange:
    """The CI hook: append a build of ``app`` to builds.yaml, commit and push (to the branch).

    ``k3sops env sync --env development`` then deploys the newest build of every app.
    """
    if not version.strip():
        raise UsageError("the version is empty", hint="e.g. k3sops gitops record-build web 1.28")
    item: dict[str, Any] = {"version": version, "at": p.iso(now)}
    if repository:
        item["repository"] = repository
    if source:
        item["source"] = source
    with workspace(ctx) as repo:
        old = read_file(repo, g.BUILDS_FILE, required=False) or "builds: {}\n"
        new = g.append_to_list(old, ("builds", app), item, keep=g.MAX_BUILDS,
                               where=g.BUILDS_FILE)
        write_atomic(repo.path / g.BUILDS_FILE, new)
        sha = repo.commit([g.BUILDS_FILE], f"build {app} {version}\n\nK3sops-Action: build\n"
                                           f"Version: {version}\nRequested-By: {ctx.user}\n")
        repo.push()
    ctx.record("record-build", app, "ok", version=version, commit=sha)
    return ValuesChange(file=g.BUILDS_FILE, changes={"app": app, "version": version},
                        diff=g.changed_lines(old, new), commit=sha, pushed_to=ctx.gitops.branch)


# --------------------------------------------------------------------------------------------
# The clusters of the environments: Deployments and ArgoCD Applications


def kube_for(ctx: GitOpsContext, env: str) -> KubeClient:
    """A client for the cluster of ``env`` (its context, unless --context was given)."""
    s = ctx.settings
    if s.context is None and ctx.environment(env).context is not None:
        s = dataclasses.replace(s, context=ctx.environment(env).context)
    return context.kube(s, ctx.env, ctx.home)


class ArgoStatus(BaseModel):
    """An ArgoCD Application's sync and health, as the application controller writes them."""

    name: str
    sync: str | None
    health: str | None
    revision: str | None
    operation: str | None = None


def argo_status(app_obj: Mapping[str, Any]) -> ArgoStatus:
    """Read sync/health/revision from an Application object."""
    st = app_obj.get("status") or {}
    return ArgoStatus(name=str((app_obj.get("metadata") or {}).get("name")),
                      sync=(st.get("sync") or {}).get("status"),
                      health=(st.get("health") or {}).get("status"),
                      revision=(st.get("sync") or {}).get("revision"),
                      operation=(st.get("operationState") or {}).get("phase"))


def applications(kube: KubeClient, namespace: str) -> dict[str, dict[str, Any]] | None:
    """ArgoCD Applications by name in ``namespace``; None when the CRD is not installed."""
    try:
        items = kube.list("argoproj.io/v1alpha1", "applications", namespace)
    except NotFound:
        return None
    return {str((a.get("metadata") or {}).get("name")): a for a in items}


def deployment(kube: KubeClient, namespace: str, app: str) -> dict[str, Any] | None:
    """The app's Deployment, or None."""
    return kube.find("apps/v1", "deployments", app, namespace)
