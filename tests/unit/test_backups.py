"""The backup model (pure) on snapshots captured from the lab, retention, metrics file, and
the restic adapter's handling of the password.

``tests/data/backup_snapshots.json`` is ``restic snapshots --json`` of a lab repository holding: an
etcd backup (Completed, verified), one killed after its Running manifest, a PostgreSQL backup
(Completed, verified) and one killed in the middle of its data stream.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from k3sops.adapters.backup_metrics import BackupMetrics
from k3sops.adapters.restic import Restic, redact
from k3sops.domain import backups as bk
from k3sops.domain.backups import BackupEntry, BackupManifest, Retention, SnapshotInfo
from k3sops.errors import Unauthorized, UsageError

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data" / "backup_snapshots.json"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _snaps() -> list[SnapshotInfo]:
    return [SnapshotInfo.model_validate(s) for s in json.loads(DATA.read_text())]


def test_entries_from_captured_snapshots() -> None:
    entries = bk.entries_from_snapshots(_snaps())
    assert [(e.kind, e.status, e.verified) for e in entries] == [
        ("etcd", "Completed", True), ("etcd", "Running", None),
        ("postgres", "Completed", True), ("postgres", "Running", None)]
    done = entries[0]
    assert len(done.data_snapshot_ids) == 1 and done.size and done.size > 100_000
    assert done.manifest_snapshot in done.snapshot_ids
    assert entries[3].target == "shop-db" and entries[3].environment == "production"


def test_leftovers_of_a_killed_run_are_found_for_its_target_only() -> None:
    snaps = _snaps()
    running, forget = bk.leftovers(snaps, "postgres", "shop-db")
    assert [e.status for e in running] == ["Running"]
    assert set(running[0].snapshot_ids) <= set(forget)
    running_etcd, _ = bk.leftovers(snaps, "etcd", "etcd")
    assert [e.id for e in running_etcd] != [e.id for e in running]
    # The caller's own run is never a leftover.
    none, _ = bk.leftovers(snaps, "postgres", "shop-db", active=[running[0].id])
    assert none == []


def test_data_without_a_manifest_is_forgotten_as_a_leftover() -> None:
    orphan = SnapshotInfo(id="f" * 64, time=T0, tags=bk.part_tags(
        "data", "etcd-etcd-x", "etcd", "lab", None, "etcd"))
    _, forget = bk.leftovers([*_snaps(), orphan], "etcd", "etcd")
    assert orphan.id in forget


def _manifest(**kw: object) -> BackupManifest:
    base = {"id": "etcd-etcd-1", "kind": "etcd", "cluster": "lab", "target": "etcd",
            "source": "etcd http://x", "started": T0, "filename": "etcd-etcd.db"}
    return BackupManifest.model_validate({**base, **kw})


def test_transitions_are_one_way_and_completed_needs_a_hash() -> None:
    m = _manifest()
    with pytest.raises(bk.IllegalTransition):
        bk.transition(m, "Completed", T0)
    done = bk.transition(m, "Completed", T0 + timedelta(seconds=5), sha256="ab", size=3)
    assert done.status == "Completed" and done.duration_seconds == 5 and m.status == "Running"
    for to in ("Running", "Failed", "Completed"):
        with pytest.raises(bk.IllegalTransition):
            bk.transition(done, to, T0, sha256="ab")  # type: ignore[arg-type]
    failed = bk.transition(m, "Failed", T0, error="boom")
    with pytest.raises(bk.IllegalTransition):
        bk.transition(failed, "Completed", T0, sha256="ab")


def test_names_and_tags_survive_restic() -> None:
    bid = bk.backup_id("postgres", "Shop DB/Main", T0, "a1b2c3")
    assert bid == "postgres-shop-db-main-20260301T120000Z-a1b2c3"
    tags = bk.manifest_tags(_manifest(target="a,b", size=10))
    assert all("," not in t for t in tags)  # restic splits --tag on commas
    assert bk.tag_value(tags, "target-name") == "a_b" and bk.tag_value(tags, "size") == "10"


def _entry(i: int, day: int, status: str = "Completed", verified: bool | None = None,
           target: str = "etcd") -> BackupEntry:
    v = [] if verified is None else [(T0, verified, "v")]
    return BackupEntry(id=f"b{i}", kind="etcd", target=target, status=status,  # type: ignore[arg-type]
                       started=T0 + timedelta(days=day, hours=i % 3), manifest_snapshot="m",
                       verifications=v)


def test_prune_keeps_the_newest_verified_and_never_running() -> None:
    entries = [_entry(0, 0, verified=True), _entry(1, 1), _entry(2, 2), _entry(3, 2),
               _entry(4, 3, "Running"), _entry(5, 3, "Failed"), _entry(6, 0, target="pg")]
    d = bk.select_prune(entries, Retention(keep_daily=1))
    assert set(d.keep) == {"b0", "b2", "b4", "b6"}  # b2 is the newest of day 2
    assert d.keep["b0"].startswith("newest verified") and d.keep["b4"].startswith("running")
    assert d.remove == {"b1": "outside the retention policy", "b3": "outside the retention "
                        "policy", "b5": "failed backup"}
    d = bk.select_prune(entries, Retention(keep_daily=3))
    assert set(d.remove) == {"b3", "b5"}  # newest of days 2, 1, 0 kept


def test_prune_on_nothing_removes_nothing_and_an_empty_policy_is_refused() -> None:
    assert bk.select_prune([], Retention(keep_last=1)).remove == {}
    with pytest.raises(UsageError, match="keeps nothing"):
        bk.select_prune([_entry(0, 0)], Retention())


def test_weekly_and_monthly_buckets() -> None:
    entries = [_entry(i, i * 7) for i in range(10)]  # one per week for ten weeks
    d = bk.select_prune(entries, Retention(keep_weekly=2, keep_monthly=3))
    # the last two weeks (May 3, Apr 26); the newest of May, April (the same) and March
    assert set(d.keep) == {"b9", "b8", "b4"}


def test_parse_since() -> None:
    assert bk.parse_since("7d", T0) == T0 - timedelta(days=7)
    assert bk.parse_since("12h", T0) == T0 - timedelta(hours=12)
    with pytest.raises(UsageError):
        bk.parse_since("a week", T0)


def test_metrics_file_keeps_every_target_and_counts_failures(tmp_path: Path) -> None:
    m = BackupMetrics(tmp_path / "tf" / "k3sops_backup.prom")
    m.backup("etcd", "etcd", True, 1000.0, 2.5, 4096)
    m.backup("postgres", 'shop"db', False, 1001.0, 1.0, None)
    m.backup("postgres", 'shop"db', False, 1002.0, 1.0, None)
    m.drill("etcd", "etcd", True, 1003.0, 1.25)
    text = m.path.read_text()
    assert 'k3sops_backup_last_success_timestamp_seconds{kind="etcd",target="etcd"} 1000' in text
    assert 'k3sops_backup_failures_total{kind="postgres",target="shop\\"db"} 2' in text
    assert 'k3sops_backup_failures_total{kind="etcd",target="etcd"} 0' in text
    assert 'k3sops_restore_drill_last_success_timestamp_seconds{kind="etcd",target="etcd"} 1003' \
        in text
    assert "# TYPE k3sops_backup_failures_total counter" in text
    assert not any(p.name.endswith(".tmp") for p in m.path.parent.iterdir())


def test_restic_password_goes_to_the_child_env_never_argv(tmp_path: Path) -> None:
    """A stand-in restic that records its argv and environment (the real one is used by the
    lab tests); the password must appear only in the environment."""
    record = tmp_path / "record.json"
    fake = tmp_path / "restic"
    fake.write_text("#!/usr/bin/env python3\nimport json, os, sys\n"
                    f"json.dump({{'argv': sys.argv, 'env': dict(os.environ)}}, "
                    f"open({str(record)!r}, 'w'))\n"
                    "sys.stderr.write('Fatal: wrong password or no key found\\n'); sys.exit(1)\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    secret = "s3cr3t-Pa55"
    r = Restic("rest:https://user:pw@backup.example/repo", password=SecretStr(secret),
               binary=str(fake), env={"PATH": os.environ["PATH"], "RESTIC_PASSWORD": "old"})
    with pytest.raises(Unauthorized) as e:
        r.snapshots()
    seen = json.loads(record.read_text())
    assert secret not in " ".join(seen["argv"])
    assert seen["env"]["RESTIC_PASSWORD"] == secret
    assert secret not in str(e.value) and "pw@" not in str(e.value) and "***@" in str(e.value)
    assert "pw@" not in r.where and redact("s3:https://a:b@h/x") == "s3:https://***@h/x"


def test_restic_round_trip_on_a_real_local_repository(tmp_path: Path) -> None:
    """Real restic: init, stream in, list by tag, dump back with the same sha256."""
    import io

    if subprocess.run(["which", "restic"], capture_output=True).returncode != 0:
        pytest.skip("restic is not installed")
    pwfile = tmp_path / "pw"
    pwfile.write_text("pw\n")
    r = Restic(str(tmp_path / "repo"), password_file=pwfile)
    assert r.init_if_missing() is True and r.init_if_missing() is False
    data = os.urandom(3 * 1024 * 1024 + 17)
    res = r.backup_stream(io.BytesIO(data), "x.bin", ["k3sops", "k3sops-id=a,b"])
    (snap,) = r.snapshots(["k3sops"])
    assert snap.id.startswith(res.snapshot_id) and "k3sops-id=a,b" not in snap.tags
    out = io.BytesIO()
    assert r.dump_to(res.snapshot_id, "x.bin", out).sha256 == res.sha256
    assert out.getvalue() == data and r.check("100%").ok


def test_platform_backup_targets_refuse_secrets_and_ambiguous_sources() -> None:
    from k3sops.config import parse_platform
    from k3sops.errors import ConfigError

    base = ("name: p\nenvironments: {production: {}}\nbackup:\n  repository: /srv/r\n"
            "  password_env: PW\n  targets:\n")
    ok = parse_platform(base + "  - {name: db, namespace: prod, pod: pg-0, hooks: {pre: "
                               "[{command: [sync], where: local, on_error: continue}]}}\n")
    assert ok.backup is not None and ok.backup.target("db") is not None
    assert ok.backup.target("db").hooks.pre[0].timeout_seconds == 60  # type: ignore[union-attr]
    for bad, why in (
            ("  - {name: db, dsn: 'host=h password=hunter2 dbname=x'}\n", "carries a password"),
            ("  - {name: db, dsn: 'postgresql://u:hunter2@h/x'}\n", "carries a password"),
            ("  - {name: db, dsn: 'host=h', namespace: a, pod: b}\n", "exactly one"),
            ("  - {name: db, kind: tar, namespace: a, pod: b}\n", "needs namespace, pod and path"),
            ("  - {name: db, dsn: 'host=h'}\n  - {name: db, dsn: 'host=i'}\n", "more than once")):
        with pytest.raises(ConfigError) as e:
            parse_platform(base + bad)
        assert why in str(e.value) and "hunter2" not in str(e.value)
