"""The service's backup answer on the lab: a real etcd backup and a real restore drill.

`k3sops backup etcd` snapshots the lab's etcd into the test's own restic repository and
`backup verify` restores it into a scratch etcd (the drill recorded in the history store);
then the service's ``/api/v1/backups`` body and its backup gauges are computed from that
repository and that store, as `k3sops serve` computes them (the HTTP path and RBAC of the same
body: tests/unit/test_serve_views.py and tests/lab/test_serve_lab.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kit import backup as kit
from kit.backup import PASSWORD, Setup

pytestmark = pytest.mark.lab
scratch_db = kit.scratch_db
setup = kit.setup


def test_the_service_reports_the_newest_etcd_backup_its_drill_and_the_rest_flagged(
        setup: Setup, tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from k3sops.adapters.store import SqliteStore
    from k3sops.serve.views import BackupCollector, PlatformViews, backups_body
    from k3sops.services import context

    bid = setup.ok("backup", "etcd")["manifest"]["id"]
    rec = setup.ok("backup", "verify", bid)["records"][0]
    assert rec["ok"] is True, rec

    env = setup.env
    settings = context.resolve(None, None, setup.config, env, tmp_path)
    store = SqliteStore.open(setup.state)
    try:
        body = backups_body(settings, store, env, tmp_path)
        views = PlatformViews(lambda: backups_body(settings, store, env, tmp_path), dict)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(BackupCollector(views))
        metrics = generate_latest(registry).decode()
    finally:
        store.close()
    assert PASSWORD not in str(body)
    by = {(t["kind"], t["target"]): t for t in body["targets"]}
    etcd = by["etcd", "etcd"]
    assert etcd["newest_id"] == bid and etcd["newest_status"] == "Completed"
    assert etcd["verified"] is True and etcd["size"] > 100_000
    assert etcd["drill_ok"] is True and etcd["drill_seconds"] == pytest.approx(
        rec["drill_seconds"])
    assert not etcd["flagged"], etcd["reasons"]
    # the two PostgreSQL targets of the platform file were never backed up: flagged
    for name in ("shop-db", "shop-dsn"):
        row = by["postgres", name]
        assert row["configured"] and row["flagged"] and row["newest_id"] is None
    labels = '{kind="etcd",target="etcd"}'
    for name in ("k3sops_backup_last_success_timestamp_seconds", "k3sops_backup_size_bytes",
                 "k3sops_restore_drill_last_success_timestamp_seconds",
                 "k3sops_restore_drill_duration_seconds"):
        assert f"{name}{labels} " in metrics, name
    # the textfile `backup etcd` wrote carries the same series
    text = setup.metrics.read_text()
    assert f"k3sops_backup_last_success_timestamp_seconds{labels}" in text
