"""``/api/v1/backups``, ``/api/v1/environments`` and the backup gauges of ``/metrics``.

Through the ASGI app (as test_serve_auth). The backup answer is read from a real restic
repository (``restic`` on PATH): manifests and verifications are stored with the tags a backup
run and `backup verify` write, and a restore drill is recorded in a real SQLite history store.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from servekit import NOBODY, READER, asgi_get, review_client, synced_cache

from k3sops.serve.auth import Authorizer, SharedToken

pytestmark = pytest.mark.unit

NOW = dt.datetime.now(dt.UTC)

PLATFORM = """name: shop
environments:
  production: {namespaces: [shop]}
backup:
  repository: REPO
  password_env: RESTIC_PW
  targets:
    - {name: orders, kind: postgres, namespace: shop, pod: db-0}
    - {name: files, kind: tar, namespace: shop, pod: web-0, path: /data}
"""


def _row(kind: str, target: str, status: str, hours: float, verified: bool | None = None,
         size: int = 100) -> Any:
    from k3sops.services.backup.repository import ListRow

    started = NOW - dt.timedelta(hours=hours)
    return ListRow(id=f"{kind}-{target}-{hours}", kind=kind, target=target, status=status,
                   started=started, age_seconds=hours * 3600, size=size, verified=verified,
                   verified_at=started if verified is not None else None)


def test_one_row_per_target_flagged_when_stale_failed_or_unverified() -> None:
    from k3sops.services.backup.status import summarize

    rows = [_row("etcd", "etcd", "Completed", 50, True), _row("etcd", "etcd", "Completed", 2,
                                                              True, size=7),
            _row("postgres", "orders", "Completed", 30, True),
            _row("tar", "files", "Completed", 3, None), _row("tar", "files", "Failed", 1),
            _row("volume", "shop/data", "Completed", 4, False)]
    drills = [{"at": "2026-01-01T00:00:00+00:00", "kind": "etcd", "target": "etcd", "ok": False,
               "seconds": 9.0},
              {"at": "2026-01-02T00:00:00+00:00", "kind": "etcd", "target": "etcd", "ok": True,
               "seconds": 4.5}]
    out = summarize("/r", rows, [("etcd", "etcd", None), ("postgres", "orders", "production"),
                                 ("tar", "files", None), ("postgres", "never", None)], drills)
    by = {(t.kind, t.target): t for t in out.targets}
    etcd = by["etcd", "etcd"]
    assert not etcd.flagged and etcd.reasons == []
    assert (etcd.size, etcd.last_success_size, etcd.verified) == (7, 7, True)
    assert (etcd.drill_ok, etcd.drill_seconds) == (True, 4.5)  # the newest drill wins
    assert etcd.drill_last_ok_at == "2026-01-02T00:00:00+00:00"
    orders = by["postgres", "orders"]
    assert orders.flagged and "h old" in orders.reasons[0] and orders.environment == "production"
    files = by["tar", "files"]
    assert files.newest_status == "Failed" and files.last_success_at is not None
    assert any("never verified" in r for r in files.reasons)
    assert any("failed" in r for r in files.reasons)
    vol = by["volume", "shop/data"]  # found in the repository, not configured
    assert not vol.configured and any("failed its verification" in r for r in vol.reasons)
    assert by["postgres", "never"].reasons == ["no backup of this target in the repository"]
    assert [(t.kind, t.target) for t in out.targets][:4] == [
        ("etcd", "etcd"), ("postgres", "orders"), ("tar", "files"), ("postgres", "never")]


def _app(settings: Any, store: Any, tmp_path: Path, env: dict[str, str]) -> Any:
    from k3sops.serve.api import ApiContext, Reports
    from k3sops.serve.app import create_app
    from k3sops.serve.metrics import ServiceMetrics
    from k3sops.serve.views import PlatformViews

    cache = synced_cache()
    r = Reports(settings, cache, None, store)  # type: ignore[arg-type]
    ctx = ApiContext(reports=r, authorizer=Authorizer(review_client()),
                     alertmanager=SharedToken(SecretStr("am-token")),
                     metrics=ServiceMetrics(r.reports, cache.status, lambda: True),
                     is_leader=lambda: True)
    return create_app(ctx, views=PlatformViews.of(settings, store, env=env, home=tmp_path))


def test_absent_sections_answer_200_empty_with_the_reason(tmp_path: Path) -> None:
    from k3sops.services.context import Settings

    app = _app(Settings(None, None, None), None, tmp_path, {})
    b = asgi_get(app, "/api/v1/backups", READER)
    assert b.status_code == 200
    assert b.json() == {"targets": [], "reason": "platform.yaml has no backup: section"}
    e = asgi_get(app, "/api/v1/environments", READER)
    assert e.status_code == 200 and e.json()["apps"] == [] and "gitops" in e.json()["reason"]
    assert asgi_get(app, "/api/v1/backups", NOBODY).status_code == 403
    assert asgi_get(app, "/api/v1/environments").status_code == 401


@pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")
def test_backups_from_a_real_repository_and_the_history_store(tmp_path: Path) -> None:
    from k3sops.adapters.store import SqliteStore
    from k3sops.config import parse_platform
    from k3sops.domain import backups as bk
    from k3sops.services.backup.context import MANIFEST_FILE, VERIFICATION_FILE, BackupContext
    from k3sops.services.backup.repository import entries
    from k3sops.services.context import Settings

    env = {"RESTIC_PW": "pw-for-the-test-repository"}
    platform = parse_platform(PLATFORM.replace("REPO", str(tmp_path / "repo")), "platform.yaml")
    settings = Settings(kubeconfig=None, context=None, platform=platform)
    bctx = BackupContext(settings, env, tmp_path, state=tmp_path / "state")
    bctx.restic.init_if_missing()

    def manifest(kind: Any, target: str, status: Any, hours: float) -> bk.BackupManifest:
        started = NOW - dt.timedelta(hours=hours)
        m = bk.BackupManifest(id=bk.backup_id(kind, target, started, "abcd"), kind=kind,
                              cluster="shop", target=target, source="test", started=started,
                              status=status, size=1234, filename=bk.data_filename(kind, target))
        bctx.restic.backup_bytes(m.model_dump_json().encode(), MANIFEST_FILE,
                                 bk.manifest_tags(m))
        return m

    good = manifest("etcd", "etcd", "Completed", 2)
    manifest("postgres", "orders", "Failed", 1)
    entry = next(e for e in entries(bctx) if e.id == good.id)
    rec = bk.VerificationRecord(backup_id=good.id, at=NOW, ok=True, drill_seconds=3.25)
    bctx.restic.backup_bytes(rec.model_dump_json().encode(), VERIFICATION_FILE,
                             bk.verification_tags(rec, entry))
    store = SqliteStore.open(tmp_path / "history")
    store.record_restore_drill("etcd", "etcd", True, NOW, 3.25)

    app = _app(settings, store, tmp_path, env)
    resp = asgi_get(app, "/api/v1/backups", READER)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert env["RESTIC_PW"] not in resp.text
    by = {(t["kind"], t["target"]): t for t in body["targets"]}
    assert set(by) == {("etcd", "etcd"), ("postgres", "orders"), ("tar", "files")}
    etcd = by["etcd", "etcd"]
    assert etcd["newest_id"] == good.id and etcd["verified"] is True and not etcd["flagged"]
    assert etcd["drill_ok"] is True and etcd["drill_seconds"] == 3.25 and etcd["size"] == 1234
    assert by["postgres", "orders"]["flagged"] and by["postgres", "orders"]["newest_status"] \
        == "Failed"
    assert by["tar", "files"]["reasons"] == ["no backup of this target in the repository"]

    metrics = asgi_get(app, "/metrics", READER).text
    labels = '{kind="etcd",target="etcd"}'
    line = next(x for x in metrics.splitlines()
                if x.startswith(f"k3sops_backup_last_success_timestamp_seconds{labels} "))
    assert float(line.split()[1]) == int(good.started.timestamp())  # tags keep whole seconds
    assert f"k3sops_restore_drill_duration_seconds{labels} 3.25" in metrics
    assert f"k3sops_restore_drill_last_success_timestamp_seconds{labels} " in metrics
    assert f"k3sops_backup_size_bytes{labels} 1234.0" in metrics
    assert 'k3sops_backup_last_success_timestamp_seconds{kind="postgres"' not in metrics
    store.close()


def test_next_promotions_read_the_approvals_in_git(tmp_path: Path) -> None:
    from k3sops.adapters import git
    from k3sops.config import parse_platform
    from k3sops.services import gitops as svc
    from k3sops.services.context import Settings
    from k3sops.services.env import promote
    from k3sops.services.env.overview import next_promotions
    from k3sops.services.env.status import AppEnvStatus

    bare = tmp_path / "remote.git"
    git.init_remote(bare, "main")
    text = f"""
name: t
environments:
  development: {{namespaces: [dev], promotion: {{policy: auto}}}}
  staging: {{namespaces: [stg], promotion: {{policy: manual}}}}
  production: {{namespaces: [prod], promotion: {{policy: approval,
                approvers: [ops-lead, cto], required_approvals: 2}}}}
gitops: {{repo: {bare}, branch: main, push: direct, deploy: none}}
"""
    settings = Settings(kubeconfig=None, context=None, platform=parse_platform(text))
    svc.init_repo(settings, tmp_path / "tree", ["web=example/web:1.0"], push=str(bare))
    ctx = svc.open_context(settings, {}, tmp_path, tmp_path / "s", user="ops-lead")
    now = dt.datetime.now(dt.UTC)
    promote.approve(ctx, "web", "production", version="1.2", now=lambda: now)
    promote.approve(ctx, "web", "production", version="0.9", now=lambda: now)

    def row(env: str, version: str) -> AppEnvStatus:
        return AppEnvStatus(app="web", env=env, namespace=env, git_version=version,
                            running_version=None, in_sync=False, rollout="unknown")

    rows = [row("development", "1.2"), row("staging", "1.2"), row("production", "1.0")]
    pending = next_promotions(ctx, rows, now)
    assert [(n.source, n.target, n.version, n.target_version) for n in pending] == [
        ("staging", "production", "1.2", "1.0")]  # dev -> staging: same version, nothing
    prod = pending[0]
    assert (prod.policy, prod.required_approvals, prod.approved_by, prod.missing_approvals) \
        == ("approval", 2, ["ops-lead"], 1)
    assert any("0.9" in why for why in prod.ignored)  # an approval of another version
    rows[1] = row("staging", "1.3")
    pending = next_promotions(ctx, rows, now)
    assert [(n.target, n.version, n.missing_approvals) for n in pending] == [
        ("staging", "1.2", 0), ("production", "1.3", 2)]
    assert pending[0].policy == "manual" and pending[0].approved_by == []


def test_environments_read_the_watch_cache_and_say_when_it_lacks_deployments(
        tmp_path: Path) -> None:
    """The service's answer takes running versions from its cache, not the environments'
    contexts (which name the operator's kubeconfig); a cache without Deployments says so per
    row instead of losing the answer. Its GitOps clone goes to the given state directory."""
    from k3sops.adapters import git
    from k3sops.config import parse_platform
    from k3sops.serve.views import environments_body
    from k3sops.services import gitops as svc
    from k3sops.services.context import Settings

    bare = tmp_path / "remote.git"
    git.init_remote(bare, "main")
    text = f"""
name: t
environments:
  development: {{namespaces: [dev], context: not-in-the-service-kubeconfig,
                promotion: {{policy: auto}}}}
  staging: {{namespaces: [stg], context: not-in-the-service-kubeconfig,
            promotion: {{policy: manual}}}}
gitops: {{repo: {bare}, branch: main, push: direct, deploy: none}}
"""
    settings = Settings(kubeconfig=None, context=None, platform=parse_platform(text))
    svc.init_repo(settings, tmp_path / "tree", ["web=example/web:1.0"], push=str(bare))
    state = tmp_path / "service-state"
    body = environments_body(settings, {}, tmp_path, state, synced_cache())  # nodes only
    assert body["reason"] is None, body
    assert [(a["env"], a["git_version"], a["running_version"], a["error"])
            for a in body["apps"]] == [
        (env, "1.0", None, "deployments could not be read: not watched")
        for env in ("development", "staging")]
    assert (state / "gitops").is_dir() and not (tmp_path / ".local").exists()
