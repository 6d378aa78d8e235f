"""Backups against the lab: etcd through its snapshot API, PostgreSQL through the exec API
(kwok runs the command against the lab's real PostgreSQL), verify with real restore drills
(a scratch etcd, a throwaway PostgreSQL cluster), list, prune, restore, hooks, Leases.

Every test uses its own restic repository under tmp_path and its own scratch database in the
lab's PostgreSQL (dropped afterwards); Leases it creates are deleted. The lab's etcd is only
read (snapshots).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from kit import backup as kit
from kit.backup import Setup, make_setup, psql

from conftest import Lab

pytestmark = pytest.mark.lab
scratch_db = kit.scratch_db  # the shared fixtures: a scratch database, a repository
setup = kit.setup


def test_etcd_backup_is_checked_verified_by_a_drill_and_recorded(setup: Setup) -> None:
    """etcdctl snapshot save -> hash trailer + etcdutl status -> restic; verify restores it
    into a scratch etcd whose key count and revision match the manifest."""
    r = setup.ok("backup", "etcd")
    m = r["manifest"]
    assert m["status"] == "Completed" and m["kind"] == "etcd"
    assert m["facts"]["hash_trailer"] is True
    assert m["facts"]["keys"] > 100 and m["facts"]["revision"] > 0
    assert len(m["sha256"]) == 64 and m["size"] > 100_000
    assert set(m["tools"]) >= {"k3sops", "restic", "etcdctl", "etcdutl"}

    listed = setup.listed()
    assert listed[m["id"]]["status"] == "Completed" and listed[m["id"]]["verified"] is None
    before = {s["id"]: s["tags"] for s in setup.snapshots()}

    v = setup.ok("backup", "verify", m["id"])
    (rec,) = v["records"]
    assert rec["ok"] is True, rec
    names = {c["name"] for c in rec["checks"]}
    assert {"restic-check", "sha256", "etcd-hash", "drill-keys", "drill-revision",
            "drill-restore"} <= names
    assert rec["drill_seconds"] > 0

    # Verification never modifies the backup: its snapshots are all still there, unchanged,
    # and the record is a snapshot of its own.
    after = {s["id"]: s["tags"] for s in setup.snapshots()}
    assert all(after[sid] == tags for sid, tags in before.items())
    added = [tags for sid, tags in after.items() if sid not in before]
    assert len(added) == 1 and "k3sops-part=verification" in added[0]
    assert setup.listed()[m["id"]]["verified"] is True

    # The history store has the drill (the restore-drill checks read it) and the metrics
    # file carries the names the alert rules and dashboards use.
    import sqlite3

    con = sqlite3.connect(setup.state / "k3sops.db")
    rows = con.execute("SELECT kind, target, ok, seconds FROM restore_drills").fetchall()
    con.close()
    assert rows and rows[-1][:3] == ("etcd", "etcd", 1) and rows[-1][3] > 0
    text = setup.metrics.read_text()
    for name in ("k3sops_backup_last_success_timestamp_seconds", "k3sops_backup_duration_seconds",
                 "k3sops_backup_size_bytes", "k3sops_backup_failures_total",
                 "k3sops_restore_drill_last_success_timestamp_seconds"):
        assert f'{name}{{kind="etcd",target="etcd"}}' in text, name


def test_postgres_through_exec_with_concurrent_writes_restores_identically(
        setup: Setup) -> None:
    """pg_dump -Fc through the exec API while a writer inserts: the row counts and the
    fingerprint recorded at backup time are those of the dump (one exported snapshot), so
    the drill's restored database matches them exactly."""
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            setup.psql("INSERT INTO orders (item, qty, price) VALUES ('live', 1, 1)")

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        m = setup.ok("backup", "app", "shop-db")["manifest"]
    finally:
        stop.set()
        t.join()
    assert m["status"] == "Completed" and m["kind"] == "postgres"
    assert m["source"] == f"pod production/postgres-0 database {setup.db}"
    tables = m["facts"]["tables"]
    assert set(tables) == {"public.orders", "shop.customers"}
    assert tables["shop.customers"][0] == 1200 and tables["public.orders"][0] >= 5000
    now = int(setup.psql("SELECT count(*) FROM orders"))
    assert now >= tables["public.orders"][0]

    (rec,) = setup.ok("backup", "verify", m["id"])["records"]
    assert rec["ok"] is True, [c for c in rec["checks"] if not c["ok"]]
    assert {"drill-tables", "drill-fingerprint", "sha256"} <= {c["name"] for c in rec["checks"]}

    # Restore into another database: the plan first (nothing changes), then --yes.
    other = f"{setup.db}_restored"
    try:
        plan = setup.ok("backup", "restore", m["id"], "--database", other, "--create-database")
        assert plan["applied"] is False and [s["result"] for s in plan["steps"]] == [
            "planned"] * 3
        assert psql(setup.lab, "SELECT count(*) FROM pg_database WHERE datname = "  # noqa: S608
                    f"'{other}'") \
            == "0"
        done = setup.ok("backup", "restore", m["id"], "--database", other,
                        "--create-database", "--yes")
        assert [s["result"] for s in done["steps"]] == ["ok"] * 3 and done["sha256_ok"]
        assert psql(setup.lab, "SELECT count(*) FROM shop.customers", other) == "1200"
        audit = [json.loads(x) for x in (setup.state / "audit.jsonl").read_text().splitlines()]
        assert audit[-1]["what"]["action"] == "backup-restore" and audit[-1]["result"] == "ok"
    finally:
        psql(setup.lab, f"DROP DATABASE IF EXISTS {other} WITH (FORCE)")


def test_postgres_from_a_dsn_and_a_tar_through_exec(lab: Lab, tmp_path: Path,
                                                    scratch_db: str) -> None:
    """The direct form (local pg_dump, DSN) and a directory as a tar stream through exec."""
    data = tmp_path / "uploads"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("hello\n")
    (data / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    s = make_setup(lab, tmp_path / "s", scratch_db, extra_targets=[
        {"name": "uploads", "kind": "tar", "namespace": "production", "pod": "postgres-0",
         "path": str(data)}])
    m = s.ok("backup", "app", "shop-dsn")["manifest"]
    assert m["status"] == "Completed" and m["source"].startswith("database 'host=127.0.0.1")
    assert m["facts"]["tables"]["shop.customers"][0] == 1200
    t = s.ok("backup", "app", "uploads")["manifest"]
    assert t["status"] == "Completed" and t["kind"] == "tar" and t["size"] > 300_000
    v = s.ok("backup", "verify", "--all")
    assert [r["ok"] for r in v["records"]] == [True, True], v
    tar_checks = {c["name"]: c for c in v["records"][1]["checks"]}
    assert tar_checks["drill-tar"]["ok"] and "entries read" in tar_checks["drill-tar"]["detail"]


def test_hooks_run_in_order_and_a_failing_hook_fails_the_backup(lab: Lab, tmp_path: Path,
                                                                 scratch_db: str) -> None:
    marker = tmp_path / "hook-ran"
    s = make_setup(lab, tmp_path / "s", scratch_db, extra_targets=[
        {"name": "hooked", "kind": "postgres", "namespace": "production", "pod": "postgres-0",
         "database": scratch_db, "hooks": {
             "pre": [{"command": ["touch", str(marker)], "where": "local"},
                     {"command": ["false"], "where": "pod", "on_error": "continue"}],
             "post": [{"command": ["true"], "where": "pod"}]}},
        {"name": "broken", "kind": "postgres", "namespace": "production", "pod": "postgres-0",
         "database": scratch_db, "hooks": {
             "pre": [{"command": ["sh", "-c", "exit 7"], "where": "local"}]}}])
    m = s.ok("backup", "app", "hooked")["manifest"]
    assert marker.exists() and m["status"] == "Completed"
    assert [(h["phase"], h["ok"]) for h in m["hooks"]] == [("pre", True), ("pre", False),
                                                           ("post", True)]
    r = s.k3sops("backup", "app", "broken")
    assert r.returncode == 1 and "pre hook 1" in r.stderr
    broken = [b for b in s.listed().values() if b["target"] == "broken"]
    assert [b["status"] for b in broken] == ["Failed"]
    assert 'k3sops_backup_failures_total{kind="postgres",target="broken"} 1' in \
        s.metrics.read_text()


def test_two_backups_of_one_target_never_overlap(setup: Setup) -> None:
    """A live Lease held by another host makes a second run refuse before it writes anything."""
    name = "k3sops-backup-etcd-etcd"
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": name, "namespace": "kube-system"},
             "spec": {"holderIdentity": "other-host/1/etcd-x", "leaseDurationSeconds": 600,
                      "acquireTime": _now_micro(), "renewTime": _now_micro()}}
    setup.lab.kubectl("apply", "-f", "-", input=json.dumps(lease))
    try:
        r = setup.k3sops("backup", "etcd")
        assert r.returncode == 1
        assert "held by other-host/1/etcd-x" in r.stderr
        assert setup.snapshots() == []
    finally:
        setup.lab.kubectl("delete", "lease", "-n", "kube-system", name, "--ignore-not-found")
    assert setup.ok("backup", "etcd")["manifest"]["status"] == "Completed"
    # The run deletes its Lease when done.
    got = setup.lab.kubectl("get", "lease", "-n", "kube-system", name, "--ignore-not-found",
                            "-o", "name")
    assert got.stdout.strip() == ""


def _now_micro() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_prune_keeps_the_newest_verified_backup_and_dry_run_deletes_nothing(
        setup: Setup) -> None:
    ids = [setup.ok("backup", "etcd")["manifest"]["id"] for _ in range(3)]
    setup.ok("backup", "verify", ids[0])  # only the oldest is verified
    for bad in ((), (ids[0], "--all"), ("--since", "a week")):
        r = setup.k3sops("backup", "verify", *bad)
        assert r.returncode == 2, (bad, r.stderr)
    r = setup.k3sops("backup", "prune")
    assert r.returncode == 2 and "keeps nothing" in r.stderr

    n = len(setup.snapshots())
    dry = setup.ok("backup", "prune", "--keep-last", "1", "--dry-run")
    assert set(dry["keep"]) == {ids[0], ids[2]} and set(dry["remove"]) == {ids[1]}
    assert len(setup.snapshots()) == n
    applied = setup.ok("backup", "prune", "--keep-last", "1")
    assert applied["forgotten_snapshots"] >= 3
    assert set(setup.listed()) == {ids[0], ids[2]}
    # Pruned data is really gone, the rest still restores.
    recent = setup.ok("backup", "verify", "--since", "1d")["records"]
    assert sorted(r["backup_id"] for r in recent) == sorted([ids[0], ids[2]])
    assert all(r["ok"] for r in recent)
