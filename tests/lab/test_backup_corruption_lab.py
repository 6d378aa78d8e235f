"""Corruption is detected by `backup verify`, every kind of it, with no false alarm.

Two levels:

* in the repository (a bit flip, a truncation, a zero-byte pack file): restic's own
  authenticated encryption and ``restic check --read-data`` catch it; the backup is reported
  failed;
* in the content, behind a "Completed" manifest whose sha256 matches (what a producer that
  reports success on a broken file leaves, as Velero, Longhorn and k3s have done): a stripped
  etcd hash trailer, a bit flip, a truncation, a zero-byte file, a manifest whose sha256 does
  not match. Only the checks that read the data back and the restore drill catch these.

Clean backups in the same repository must verify ok (no false alarm).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kit import backup as kit
from kit.backup import PASSWORD, Setup, make_setup
from pydantic import SecretStr

from conftest import Lab
from k3sops.adapters.etcd import EtcdTools
from k3sops.adapters.restic import Restic
from k3sops.domain import backups as bk
from k3sops.domain.backups import BackupManifest

pytestmark = pytest.mark.lab
scratch_db = kit.scratch_db  # the shared fixtures: a scratch database, a repository
setup = kit.setup


def _restic(s: Setup) -> Restic:
    return Restic(str(s.repo), password=SecretStr(PASSWORD))


def _manifest(s: Setup, bid: str) -> dict[str, Any]:
    r = s.k3sops("backup", "show", bid)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout)["manifest"])


def _data(s: Setup, m: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    _restic(s).dump_to(m["snapshot_ids"][0], m["filename"], buf)
    return buf.getvalue()


def forge(s: Setup, like: dict[str, Any], data: bytes, label: str,
          sha256: str | None = None) -> str:
    """Store ``data`` as a Completed backup with ``like``'s facts (and its sha256 unless
    given): a producer that said "success" about a broken file."""
    r = _restic(s)
    now = dt.datetime.now(dt.UTC)
    target = f"{like['target']}-{label}"
    m = BackupManifest(id=bk.backup_id(like["kind"], target, now, uuid.uuid4().hex[:6]),
                       kind=like["kind"], cluster=like["cluster"], target=target,
                       source=f"forged ({label})", started=now,
                       filename=bk.data_filename(like["kind"], target))
    got = r.backup_stream(io.BytesIO(data), m.filename,
                          bk.part_tags("data", m.id, m.kind, m.cluster, None, target))
    done = bk.transition(m, "Completed", now, size=got.size, sha256=sha256 or got.sha256,
                         snapshot_ids=[got.snapshot_id], facts=like["facts"])
    r.backup_bytes(done.model_dump_json().encode(), "manifest.json", bk.manifest_tags(done))
    return done.id


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x10
    return bytes(b)


def test_content_corruption_behind_a_completed_manifest_is_detected(setup: Setup) -> None:
    etcd = _manifest(setup, setup.ok("backup", "etcd")["manifest"]["id"])
    pgm = _manifest(setup, setup.ok("backup", "app", "shop-db")["manifest"]["id"])
    e_data, p_data = _data(setup, etcd), _data(setup, pgm)
    assert len(e_data) == etcd["size"] and len(p_data) == pgm["size"]

    bad = {
        forge(setup, etcd, e_data[:-32], "stripped-hash"): "etcd-hash",
        forge(setup, etcd, _flip(e_data, len(e_data) // 2), "bitflip"): "etcd-hash",
        forge(setup, etcd, e_data[: len(e_data) // 2], "truncated"): "etcd-hash",
        forge(setup, etcd, b"\0" * 4096, "zeroed"): "etcd-hash",
        forge(setup, etcd, e_data, "wrong-sha", sha256="0" * 64): "sha256",
        forge(setup, pgm, p_data[: len(p_data) * 2 // 3], "truncated"): "drill",
        forge(setup, pgm, _flip(p_data, len(p_data) - 200), "bitflip"): "drill",
        forge(setup, pgm, b"\0" * 4096, "zeroed"): "drill",
    }
    r = setup.k3sops("-o", "json", "backup", "verify", "--all")
    assert r.returncode == 3, r.stderr  # failed verifications: exit 3, like findings
    v = json.loads(r.stdout)
    assert v["restic_check"]["ok"] is True  # the repository itself is sound
    records = {rec["backup_id"]: rec for rec in v["records"]}
    assert records[etcd["id"]]["ok"] is True, records[etcd["id"]]
    assert records[pgm["id"]]["ok"] is True, records[pgm["id"]]
    for bid, expected in bad.items():
        rec = records[bid]
        failed = {c["name"] for c in rec["checks"] if not c["ok"]}
        assert rec["ok"] is False, bid
        assert any(name.startswith(expected) for name in failed), (bid, failed)
    listed = setup.listed()
    assert all(listed[b]["verified"] is False for b in bad)
    assert listed[etcd["id"]]["verified"] is True and listed[pgm["id"]]["verified"] is True


def test_broken_snapshot_files_are_refused_at_backup_time(setup: Setup, tmp_path: Path) -> None:
    """A zero-byte file and a snapshot with its hash stripped never become a backup (restic
    itself also refuses an empty stdin)."""
    good = tmp_path / "good.db"
    b = yaml.safe_load(setup.config.read_text())["backup"]
    tools = EtcdTools(etcdctl=b["binaries"]["etcdctl"], etcdutl=b["binaries"]["etcdutl"],
                      endpoints=tuple(b["etcd"]["endpoints"]))
    tools.snapshot_save(good)
    empty, stripped = tmp_path / "empty.db", tmp_path / "stripped.db"
    empty.write_bytes(b"")
    stripped.write_bytes(good.read_bytes()[:-32])
    before = set(setup.listed())
    for f in (empty, stripped):
        r = setup.k3sops("backup", "etcd", "--snapshot-file", str(f))
        assert r.returncode == 1 and "no valid SHA-256 trailer" in r.stderr, r.stderr
    new = {k: v for k, v in setup.listed().items() if k not in before}
    assert [v["status"] for v in new.values()] == ["Failed", "Failed"]
    r = setup.ok("backup", "etcd", "--snapshot-file", str(good))
    assert r["manifest"]["status"] == "Completed" and "keys" not in r["manifest"]["facts"]


def _packs(repo: Path) -> list[Path]:
    return sorted((p for p in (repo / "data").rglob("*") if p.is_file()),
                  key=lambda p: p.stat().st_size, reverse=True)


@pytest.mark.parametrize("damage", ["bitflip", "truncate", "zero-bytes"])
def test_repository_corruption_is_detected(lab: Lab, tmp_path: Path, scratch_db: str,
                                           damage: str) -> None:
    s = make_setup(lab, tmp_path, scratch_db)
    bid = s.ok("backup", "etcd")["manifest"]["id"]
    assert s.ok("backup", "verify", bid)["records"][0]["ok"] is True  # clean: no alarm
    pack = _packs(s.repo)[0]  # the largest pack holds the snapshot's data
    raw = pack.read_bytes()
    pack.chmod(0o600)
    if damage == "bitflip":
        pack.write_bytes(_flip(raw, len(raw) // 3))
    elif damage == "truncate":
        pack.write_bytes(raw[: len(raw) // 2])
    else:
        pack.write_bytes(b"")
    r = s.k3sops("-o", "json", "backup", "verify", bid)
    assert r.returncode == 3, r.stderr
    (rec,) = json.loads(r.stdout)["records"]
    failed = {c["name"] for c in rec["checks"] if not c["ok"]}
    assert rec["ok"] is False and "restic-check" in failed
