"""Fault injection: a backup killed (SIGKILL) at every named failpoint is never listed as
Completed and is marked Failed by the next run; a full disk, a wrong repository password, an
unreachable database and a 403 on exec fail clearly, non-zero, with nothing Completed.

Failpoints are enabled through ``K3SOPS_FAILPOINTS`` (read at call time, like etcd's gofail):
the k3sops process kills itself with SIGKILL at the named point, as `kill -9` would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from kit import backup as kit
from kit.backup import PASSWORD, Setup, make_setup

from conftest import Lab
from k3sops.services.backup.context import FAILPOINTS

pytestmark = pytest.mark.lab
scratch_db = kit.scratch_db  # the shared fixtures: a scratch database, a repository
setup = kit.setup

# The order matters only for the two mark-failed points: they fire when a leftover exists.
ETCD_POINTS = (
    "start", "after-config", "before-lock", "after-lock", "after-list",
    "after-forget-leftovers", "after-tool-versions", "before-running-manifest",
    "after-running-manifest", "before-mark-failed", "after-pre-hooks", "after-mark-failed",
    "after-source-snapshot", "after-source-checks", "before-stream", "stream-first-chunk",
    "stream-chunk", "after-stream", "after-data-snapshot", "after-post-hooks",
    "before-final-manifest",
)
PG_POINTS = ("after-export-snapshot", "after-facts", "after-dump-start", "stream-first-chunk",
             "before-final-manifest")


def _manifest_ids(s: Setup) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for snap in s.snapshots():
        tags = snap.get("tags") or []
        bid = next((t.split("=", 1)[1] for t in tags if t.startswith("k3sops-id=")), None)
        if bid and "k3sops-part=manifest" in tags:
            status = next(t.split("=", 1)[1] for t in tags if t.startswith("status="))
            out.setdefault(bid, set()).add(status)
    return out


def _kill_leftover_clients(marker: str) -> None:
    """psql/pg_dump that kwok started for a killed run keep waiting on their pipe: stop them,
    found by the unique database name in their command line (by pid, nothing else)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if marker in cmd and ("psql" in cmd or "pg_dump" in cmd):
                os.kill(int(pid), signal.SIGKILL)


def test_failpoints_are_at_least_twenty_and_all_named() -> None:
    assert len(set(ETCD_POINTS)) >= 20 and set(ETCD_POINTS) <= set(FAILPOINTS)
    assert set(PG_POINTS) <= set(FAILPOINTS)


def test_sigkill_at_every_failpoint_never_yields_completed(setup: Setup) -> None:
    interrupted: set[str] = set()
    for point in ETCD_POINTS:
        env = {**setup.env, "K3SOPS_FAILPOINTS": point}
        r = setup.k3sops("backup", "etcd", env=env)
        assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr[-500:])
        ids = _manifest_ids(setup)
        assert not any("Completed" in st for st in ids.values()), point
        listed = setup.listed()
        assert all(b["status"] != "Completed" for b in listed.values()), point
        interrupted |= {bid for bid, st in ids.items() if st == {"Running"}}
    assert len(interrupted) >= 10  # every point after the first manifest left one

    for point in PG_POINTS:
        env = {**setup.env, "K3SOPS_FAILPOINTS": point}
        r = setup.k3sops("backup", "app", "shop-db", env=env)
        _kill_leftover_clients(setup.db)
        assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr[-500:])
        assert all(b["status"] != "Completed" for b in setup.listed().values()), point
    # Each run marks its killed predecessor Failed as it starts; all of them were Running.
    pg_ids = {bid for bid, st in _manifest_ids(setup).items()
              if bid.startswith("postgres-") and "Running" in st}
    assert len(pg_ids) == len(PG_POINTS)

    # The next runs clean up: every interrupted run is Failed, its data is forgotten.
    done = setup.ok("backup", "etcd")["manifest"]
    pg_done = setup.ok("backup", "app", "shop-db")["manifest"]
    listed = setup.listed()
    assert {b["status"] for i, b in listed.items() if i not in (done["id"], pg_done["id"])} \
        == {"Failed"}
    assert interrupted | pg_ids <= set(listed)
    assert [i for i, b in listed.items() if b["status"] == "Completed"] == [done["id"],
                                                                              pg_done["id"]]
    data = [s for s in setup.snapshots() if "k3sops-part=data" in s["tags"]]
    assert sorted(s["short_id"] for s in data) == sorted(
        [done["snapshot_ids"][0][:8], pg_done["snapshot_ids"][0][:8]])
    # No Lease is left behind, no restic/etcdctl child outlived its killed parent.
    got = setup.lab.kubectl("get", "lease", "-n", "kube-system", "-o", "name")
    assert "k3sops-backup" not in got.stdout
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(setup.repo) not in ps


def _nothing_completed(s: Setup) -> None:
    listed = s.listed()
    assert all(b["status"] != "Completed" for b in listed.values()), listed


def test_wrong_repository_password_is_refused_clearly(setup: Setup) -> None:
    env = {**setup.env, "TEST_RESTIC_PASSWORD": "not-the-password-31337"}
    r = setup.k3sops("backup", "etcd", env=env)
    assert r.returncode == 1
    assert "wrong repository password" in r.stderr
    assert "not-the-password-31337" not in r.stdout + r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    assert setup.snapshots() == []
    r = setup.k3sops("backup", "list", env={**setup.env, "TEST_RESTIC_PASSWORD": ""})
    assert r.returncode == 2 and "TEST_RESTIC_PASSWORD" in r.stderr


def test_unreachable_database_fails_and_nothing_is_completed(lab: Lab, tmp_path: Path,
                                                             scratch_db: str) -> None:
    from k3sops.adapters.etcd import free_port

    port = free_port()
    s = make_setup(lab, tmp_path, scratch_db, extra_targets=[
        {"name": "gone", "kind": "postgres", "dsn": f"host=127.0.0.1 port={port} "
                                                   "user=postgres dbname=app"}])
    r = s.k3sops("backup", "app", "gone")
    assert r.returncode == 1, r.stderr
    assert "unreachable" in r.stderr and f"port={port}" in r.stderr
    _nothing_completed(s)
    assert [b["status"] for b in s.listed().values()] == ["Failed"]
    assert 'k3sops_backup_failures_total{kind="postgres",target="gone"} 1' in \
        s.metrics.read_text()


def test_full_repository_disk_fails_and_nothing_is_completed(lab: Lab, tmp_path: Path,
                                                             scratch_db: str) -> None:
    """The repository on a 1 MiB tmpfs: 3 MB of random data (tar through exec) cannot fit."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (data / "random.bin").write_bytes(os.urandom(3_000_000))
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        s = make_setup(lab, tmp_path / "s", scratch_db,
                       backup_overrides={"repository": str(mnt / "repo")},
                       extra_targets=[{"name": "files", "kind": "tar",
                                       "namespace": "production", "pod": "postgres-0",
                                       "path": str(data)}])
        s.repo = mnt / "repo"
        s.restic("init")
        r = s.k3sops("backup", "app", "files")
        assert r.returncode == 1
        assert "disk is full" in r.stderr, r.stderr
        assert not any("status=Completed" in t for snap in s.snapshots()
                       for t in snap["tags"])
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_exec_forbidden_403_fails_clearly(lab: Lab, tmp_path: Path, scratch_db: str) -> None:
    """A user the lab CA signs that may hold Leases and read pods but not create pods/exec."""
    from kit.users import user_kubeconfig

    user = f"k3sops-noexec-{uuid.uuid4().hex[:6]}"
    kc = user_kubeconfig(lab, user, tmp_path / "kc")
    lab.kubectl("create", "role", user, "-n", "kube-system", "--verb=get,create,update,delete",
                "--resource=leases.coordination.k8s.io")
    lab.kubectl("create", "rolebinding", user, "-n", "kube-system", f"--role={user}",
                f"--user={user}")
    lab.kubectl("create", "role", user, "-n", "production", "--verb=get,list",
                "--resource=pods")
    lab.kubectl("create", "rolebinding", user, "-n", "production", f"--role={user}",
                f"--user={user}")
    try:
        s = make_setup(lab, tmp_path / "s", scratch_db)
        r = s.k3sops("--kubeconfig", str(kc), "--context", "c", "backup", "app", "shop-db")
        assert r.returncode == 1, r.stderr
        assert "403" in r.stderr and "pod production/postgres-0" in r.stderr
        assert "BEGIN" not in r.stderr  # no key material in messages
        _nothing_completed(s)
        assert [b["status"] for b in s.listed().values()] == ["Failed"]
    finally:
        for ns in ("kube-system", "production"):
            lab.kubectl("delete", "rolebinding", user, "-n", ns, check=False)
            lab.kubectl("delete", "role", user, "-n", ns, check=False)
