"""The GitOps repository through real git: a bare remote and several clones (no cluster).

Covers scaffolding and pushing a new repository, the values setter other features use
(set_app_values), builds, approvals, racing pushes (rebased, or failing cleanly on the same
line), review branches, and that credentials in a remote URL never reach a message.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from k3sops.adapters import git
from k3sops.config import parse_platform
from k3sops.domain import env as p
from k3sops.domain import gitops as g
from k3sops.errors import ConfigError, Conflict, K3sopsError, UsageError
from k3sops.services import gitops as svc
from k3sops.services.context import Settings
from k3sops.services.env import promote
from k3sops.services.env import status as env_svc

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout


def _platform(remote: Path | str, push: str = "direct") -> Settings:
    text = f"""
name: t
environments:
  development: {{namespaces: [dev], promotion: {{policy: auto}}}}
  staging: {{namespaces: [stg], promotion: {{policy: manual}}}}
  production: {{namespaces: [prod], promotion: {{policy: approval, approvers: [ops-lead]}}}}
gitops: {{repo: {remote}, branch: main, push: {push}, deploy: none}}
"""
    return Settings(kubeconfig=None, context=None, platform=parse_platform(text))


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare remote holding a freshly scaffolded GitOps repository (web and api)."""
    bare = tmp_path / "remote.git"
    git.init_remote(bare, "main")
    svc.init_repo(_platform(bare), tmp_path / "tree", ["web=nginx:1.27", "api=acme/api:2.0.1"],
                  push=str(bare))
    return bare


def _ctx(remote: Path | str, state: Path, user: str = "tester", push: str = "direct",
         ) -> svc.GitOpsContext:
    return svc.open_context(_platform(remote, push), {}, state.parent, state, user=user)


def _remote_file(remote: Path, path: str) -> str:
    return _git(remote, "show", f"main:{path}")


def test_init_pushes_the_scaffold(remote: Path, tmp_path: Path) -> None:
    files = _git(remote, "ls-tree", "-r", "--name-only", "main").split()
    assert "environments/production/values.yaml" in files
    assert "argocd/staging/applications.yaml" in files
    assert "DEVIATIONS.yaml" in files
    with pytest.raises(UsageError, match="not empty"):
        svc.init_repo(_platform(remote), tmp_path / "tree", ["web=nginx:1"])


def test_set_app_values_changes_only_those_keys(remote: Path, tmp_path: Path) -> None:
    before = _remote_file(remote, "environments/staging/values.yaml")
    change = svc.set_app_values(_ctx(remote, tmp_path / "s1"), "staging", "web",
                                {"resources.requests.cpu": "250m", "replicas": 4},
                                reason="right-sizing from 14 days of usage")
    after = _remote_file(remote, "environments/staging/values.yaml")
    assert change.commit == _git(remote, "rev-parse", "main").strip()
    assert g.load(after)["apps"]["web"]["resources"]["requests"]["cpu"] == "250m"
    assert g.load(after)["apps"]["web"]["replicas"] == 4
    assert g.flatten(g.load(after))[("apps", "api", "image", "tag")] == "2.0.1"
    removed = [line for line in g.changed_lines(before, after) if line.startswith("-")]
    assert removed == ["-    replicas: 2"]
    assert all(c in after for c in ("# Values of the staging environment", "# the version"))
    msg = _git(remote, "log", "-1", "--format=%B", "main")
    assert "right-sizing from 14 days of usage" in msg
    assert p.trailers(msg)["Requested-By"] == ["tester"]
    audit = _ctx(remote, tmp_path / "s1").audit.read()
    assert audit[-1]["what"]["action"] == "set-values" and audit[-1]["result"] == "ok"


def test_racing_pushes_on_different_lines_are_both_kept(remote: Path, tmp_path: Path) -> None:
    a = git.Repo.open(tmp_path / "a", str(remote), "main")
    b = git.Repo.open(tmp_path / "b", str(remote), "main")
    path = "environments/staging/values.yaml"
    for repo, app, version in ((a, "web", "1.28"), (b, "api", "2.1.0")):
        f = repo.path / path
        f.write_text(g.set_values(f.read_text(), {g.tag_path(app): version}))
        assert repo.commit([path], f"promote {app} {version}\n")
    a.push()
    b.push()  # rejected as non-fast-forward, rebased onto a's commit, pushed
    values = g.load(_remote_file(remote, path))
    assert values["apps"]["web"]["image"]["tag"] == "1.28"
    assert values["apps"]["api"]["image"]["tag"] == "2.1.0"
    subjects = _git(remote, "log", "--format=%s", "-2", "main").splitlines()
    assert subjects == ["promote api 2.1.0", "promote web 1.28"]


def test_racing_pushes_on_the_same_line_fail_cleanly(remote: Path, tmp_path: Path) -> None:
    a = git.Repo.open(tmp_path / "a", str(remote), "main")
    b = git.Repo.open(tmp_path / "b", str(remote), "main")
    path = "environments/staging/values.yaml"
    for repo, version in ((a, "1.28"), (b, "1.29")):
        f = repo.path / path
        f.write_text(g.set_values(f.read_text(), {g.tag_path("web"): version}))
        repo.commit([path], f"promote web {version}\n")
    a.push()
    with pytest.raises(Conflict, match="changed the same lines"):
        b.push()
    assert g.load(_remote_file(remote, path))["apps"]["web"]["image"]["tag"] == "1.28"
    # b is left exactly at the remote: no half-done rebase, nothing unpushed
    assert b.head() == _git(remote, "rev-parse", "main").strip()
    assert _git(b.path, "status", "--porcelain") == ""


def test_concurrent_set_app_values_lose_nothing(remote: Path, tmp_path: Path) -> None:
    """Two k3sops runs (own clones) change different apps at the same moment."""
    errors: list[BaseException] = []

    def run(app: str, state: str) -> Callable[[], None]:
        def go() -> None:
            try:
                svc.set_app_values(_ctx(remote, tmp_path / state), "production", app,
                                   {"replicas": 5}, reason="race")
            except K3sopsError as e:  # pragma: no cover - reported below
                errors.append(e)
        return go

    threads = [threading.Thread(target=run(a, f"s-{a}")) for a in ("web", "api")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    values = g.load(_remote_file(remote, "environments/production/values.yaml"))
    assert values["apps"]["web"]["replicas"] == values["apps"]["api"]["replicas"] == 5


def test_review_branch_mode_leaves_the_tracked_branch(remote: Path, tmp_path: Path) -> None:
    main_before = _git(remote, "rev-parse", "main").strip()
    change = svc.set_app_values(_ctx(remote, tmp_path / "s", push="branch"), "staging", "web",
                                {"replicas": 3}, reason="review me")
    assert change.review and change.pushed_to == "k3sops/staging/web-values"
    assert _git(remote, "rev-parse", "main").strip() == main_before
    on_branch = _git(remote, "show", "k3sops/staging/web-values:environments/staging/values.yaml")
    assert g.load(on_branch)["apps"]["web"]["replicas"] == 3


def test_builds_and_sync_plan(remote: Path, tmp_path: Path) -> None:
    ctx = _ctx(remote, tmp_path / "s")
    svc.record_build(ctx, "web", "1.28", "nginx", "ci-run-7", NOW)
    builds = g.parse_builds(_remote_file(remote, g.BUILDS_FILE))
    assert builds["web"][-1].version == "1.28" and builds["web"][-1].source == "ci-run-7"
    plan = promote.sync(ctx, "development")
    assert plan.changes == {"web": "1.28"} and not plan.applied
    assert plan.diff[1:] == ['-      tag: "1.27"  # the version running here',
                             '+      tag: "1.28"  # the version running here']
    # a plan changes nothing
    assert "1.27" in _remote_file(remote, "environments/development/values.yaml")


def test_approvals_in_git_and_audit(remote: Path, tmp_path: Path) -> None:
    ctx = _ctx(remote, tmp_path / "s", user="ops-lead")
    report = promote.approve(ctx, "web", "production", version="1.28", note="CAB-42",
                             now=lambda: NOW)
    stored = p.parse_approvals(_remote_file(remote, "approvals/production.yaml"), "production")
    assert [(a.app, a.version, a.by, a.expires) for a in stored] == [
        ("web", "1.28", "ops-lead", "2026-11-27T12:00:00Z")]
    assert report.commit == _git(remote, "rev-parse", "main").strip()
    assert ctx.audit.read()[-1]["what"]["detail"]["by"] == "ops-lead"
    with pytest.raises(p.PromotionRefused, match="mallory may not approve"):
        promote.approve(_ctx(remote, tmp_path / "s", user="mallory"), "web", "production",
                        version="1.28")
    with pytest.raises(UsageError, match="needs no approval"):
        promote.approve(ctx, "web", "staging", version="1.28")


def test_rollback_plan_from_history(remote: Path, tmp_path: Path) -> None:
    ctx = _ctx(remote, tmp_path / "s")
    svc.set_app_values(ctx, "staging", "web", {"image.tag": "1.28"}, reason="r")
    svc.set_app_values(ctx, "staging", "api", {"replicas": 3}, reason="other app")
    plan = promote.rollback(ctx, "web", "staging")
    assert (plan.previous_version, plan.version) == ("1.28", "1.27")
    assert plan.refusals == [] and not plan.applied
    bad = promote.rollback(ctx, "web", "staging", to_version="0.9")
    assert bad.refusals[0].rule == "no-previous-version"
    none = promote.rollback(ctx, "api", "staging")
    assert none.refusals[0].rule == "no-previous-version"


def test_credentials_never_in_messages(tmp_path: Path) -> None:
    url = "https://deploy:s3cr3t-t0ken@127.0.0.1:1/platform/deploy.git"
    with pytest.raises(K3sopsError) as e:
        git.Repo.open(tmp_path / "c", url, "main")
    assert "s3cr3t-t0ken" not in str(e.value)
    assert git.redact(url) == "https://***@127.0.0.1:1/platform/deploy.git"


def test_env_list_never_shows_repository_credentials(tmp_path: Path) -> None:
    url = "https://deploy:s3cr3t-t0ken@git.example/platform/deploy.git"
    report = env_svc.env_list(_ctx(url, tmp_path / "s"))
    assert "s3cr3t-t0ken" not in report.model_dump_json()
    assert [e.promotes_from for e in report.environments] == [None, "development", "staging"]


def test_a_malformed_values_file_is_a_clear_error(remote: Path, tmp_path: Path) -> None:
    clone = git.Repo.open(tmp_path / "c", str(remote), "main")
    (clone.path / "environments/staging/values.yaml").write_text("apps:\n- web\n")
    clone.commit(["environments/staging/values.yaml"], "break it\n")
    clone.push()
    with pytest.raises(ConfigError, match=r"environments/staging/values\.yaml in the GitOps"):
        promote.sync(_ctx(remote, tmp_path / "s"), "staging")
