"""Longhorn volume backups against the lab's real API server and a real restic repository.

Longhorn's manager cannot run here. The lab has Longhorn's structural CRDs (the Backup and
Snapshot CRDs have a status subresource, as upstream's do), so the objects k3sops creates are
validated and stored by the real API server. The test plays Longhorn's controller: it watches
for the Backup k3sops creates and writes, through the status subresource, the status Longhorn
writes, in the shapes of real Longhorn payloads (an InProgress status as in longhorn/longhorn
issue 3298, a Completed one with url, size and backupTargetName, an Error with its message).

The lab has no Longhorn volume behind a PVC either: each test creates a PV of driver
driver.longhorn.io, a PVC bound to it (the real PV controller binds them) and the Longhorn
Volume object, in a scratch namespace, and deletes all of it afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kit.backup import backup_context

from conftest import Lab, wait_for
from k3sops.adapters.audit import AuditLog
from k3sops.adapters.kube import KubeClient
from k3sops.adapters.longhorn import Longhorn
from k3sops.domain import backups
from k3sops.errors import AdapterError, PlanRejected, Timeout
from k3sops.services import context
from k3sops.services.backup import volume as svc
from k3sops.services.backup.context import BackupContext

pytestmark = pytest.mark.lab

LH = "longhorn-system"
Ctx = BackupContext


@dataclass
class Volume:
    ns: str
    pvc: str
    pv: str
    volume: str


@pytest.fixture
def objects(lab: Lab) -> Iterator[KubeClient]:
    settings = context.Settings(kubeconfig=lab.layout.kubeconfig, context=None, platform=None)
    objs = context.kube(settings, {}, Path.home())
    yield objs
    objs.close()


@pytest.fixture
def bctx(lab: Lab, tmp_path: Path) -> BackupContext:
    return backup_context(lab, tmp_path)


@pytest.fixture
def volume(lab: Lab) -> Iterator[Volume]:
    """A scratch namespace with a PVC bound to a Longhorn CSI PV and its Longhorn Volume."""
    tag = uuid.uuid4().hex[:6]
    v = Volume(ns=f"k3sops-volbk-{tag}", pvc="data", pv=f"pvc-{uuid.uuid4()}", volume="")
    v.volume = v.pv  # Longhorn names the volume after the PV (the CSI volumeHandle)
    lab.kubectl("create", "namespace", v.ns)
    docs = [
        {"apiVersion": "v1", "kind": "PersistentVolume",
         "metadata": {"name": v.pv},
         "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"],
                  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "longhorn",
                  "claimRef": {"namespace": v.ns, "name": v.pvc},
                  "csi": {"driver": "driver.longhorn.io", "volumeHandle": v.volume,
                          "fsType": "ext4"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": v.pvc, "namespace": v.ns},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "longhorn",
                  "volumeName": v.pv, "resources": {"requests": {"storage": "2Gi"}}}},
        {"apiVersion": "longhorn.io/v1beta2", "kind": "Volume",
         "metadata": {"name": v.volume, "namespace": LH},
         "spec": {"size": str(2 << 30), "numberOfReplicas": 3, "frontend": "blockdev",
                  "accessMode": "rwo"}},
    ]
    lab.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
    try:
        phase = wait_for(lambda: lab.kubectl(
            "get", "pvc", v.pvc, "-n", v.ns, "-o", "jsonpath={.status.phase}",
        ).stdout == "Bound", timeout=60)
        assert phase, "the PV controller did not bind the scratch PVC"
        yield v
    finally:
        for kind in ("backups.longhorn.io", "snapshots.longhorn.io"):
            lab.kubectl("delete", kind, "-n", LH, "-l", "app.kubernetes.io/managed-by=k3sops",
                        "--ignore-not-found", check=False)
        lab.kubectl("delete", "volumes.longhorn.io", v.volume, "-n", LH, "--ignore-not-found",
                    check=False)
        lab.kubectl("delete", "namespace", v.ns, "--wait=false", check=False)
        lab.kubectl("delete", "pv", v.pv, "--ignore-not-found", "--wait=false", check=False)
        lab.kubectl("delete", "storageclass", "-l", "app.kubernetes.io/managed-by=k3sops",
                    "--ignore-not-found", check=False)


def _completed(name: str, v: Volume) -> dict[str, Any]:
    return {"state": "Completed", "progress": 100, "backupTargetName": "default",
            "backupCreatedAt": "2026-11-26T13:00:09Z", "lastSyncedAt": "2026-11-26T13:00:10Z",
            "snapshotCreatedAt": "2026-11-26T13:00:01Z", "compressionMethod": "lz4",
            "size": "2147483648", "newlyUploadDataSize": "104857600",
            "reUploadedDataSize": "0", "volumeName": v.volume, "volumeSize": str(2 << 30),
            "url": f"s3://longhorn-backups@eu-west-1/?backup={name}&volume={v.volume}"}


Final = Callable[[str], dict[str, Any]] | dict[str, Any] | None


def _play_longhorn(lab: Lab, v: Volume, final: Final, seen: list[str],
                   observed: threading.Event | None = None) -> threading.Thread:
    """Act as Longhorn's controller for the next Backup of ``v``: InProgress, then ``final``.

    With ``observed``, ``final`` is written only after k3sops reported InProgress.
    """
    def status(name: str, body: dict[str, Any]) -> None:
        lab.kubectl("patch", "backups.longhorn.io", name, "-n", LH, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": body}))

    def run() -> None:
        def find() -> str:
            r = lab.kubectl("get", "backups.longhorn.io", "-n", LH, "-l",
                            f"backup-volume={v.volume}", "-o", "jsonpath={.items[*].metadata.name}",
                            check=False)
            return r.stdout.strip()
        name = wait_for(find, timeout=60, every=0.3)
        if not name:
            return
        seen.append(name)
        snap = json.loads(lab.kubectl("get", "backups.longhorn.io", name, "-n", LH, "-o",
                                      "json").stdout)["spec"]["snapshotName"]
        status(name, {"state": "InProgress", "progress": 4, "snapshotName": snap,
                      "replicaAddress": "tcp://10.42.1.16:10015", "ownerID": "k3s-agent-1",
                      "url": "", "size": ""})
        if observed is not None:
            observed.wait(30)
        if final is not None:
            body = final(name) if callable(final) else final
            status(name, {**body, "snapshotName": snap})

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_completed_backup_is_recorded_with_url_and_size(lab: Lab, objects: KubeClient,
                                                        bctx: Ctx, volume: Volume) -> None:
    seen: list[str] = []
    observed = threading.Event()
    t = _play_longhorn(lab, volume, lambda n: _completed(n, volume), seen, observed)
    progress: list[tuple[str, int]] = []

    def on_progress(state: str, pct: int) -> None:
        progress.append((state, pct))
        if state == "InProgress":
            observed.set()

    result = svc.backup_volume(bctx, Longhorn(objects),
                               volume.ns, volume.pvc, timeout=60, poll=0.3,
                               on_progress=on_progress)
    t.join(10)
    assert result.manifest.status == "Completed"
    assert result.manifest.kind == "volume"
    assert result.manifest.target == f"{volume.ns}/{volume.pvc}"
    assert result.longhorn.url.endswith(f"volume={volume.volume}")
    assert result.manifest.facts["size"] == 2147483648
    assert result.volume.volume == volume.volume and result.volume.pv == volume.pv
    assert ("InProgress", 4) in progress and progress[-1] == ("Completed", 100)
    # The objects Longhorn acts on were stored by the API server as k3sops created them.
    backup = json.loads(lab.kubectl("get", "backups.longhorn.io", seen[0], "-n", LH, "-o",
                                    "json").stdout)
    assert backup["metadata"]["labels"]["backup-volume"] == volume.volume
    snap = json.loads(lab.kubectl("get", "snapshots.longhorn.io",
                                  backup["spec"]["snapshotName"], "-n", LH, "-o", "json").stdout)
    assert snap["spec"] == {"volume": volume.volume, "createSnapshot": True,
                            "labels": {"k3sops.io/pvc": f"{volume.ns}.{volume.pvc}"}}
    # In restic: a Running manifest, the data (Longhorn's record) and the Completed manifest.
    entries = backups.entries_from_snapshots(bctx.restic.snapshots())
    assert [(e.id, e.status, e.kind) for e in entries] == [
        (result.manifest.id, "Completed", "volume")]
    record = json.loads(bctx.restic.dump_bytes(result.manifest.snapshot_ids[0],
                                          result.manifest.filename))
    assert record["url"] == result.longhorn.url
    assert record["pvc"]["volume"] == volume.volume


@pytest.mark.parametrize(("final", "why"), [
    ({"state": "Error", "progress": 84,
      "error": "failed to put object: backupstore/volumes/17/22/bak/blocks: XMinioStorageFull "
               "Storage backend has reached its minimum free disk threshold"},
     "XMinioStorageFull"),
    ({"state": "Completed", "progress": 100, "url": "", "size": "0"}, "no status.url"),
])
def test_error_or_unrestorable_completed_is_failed(lab: Lab, objects: KubeClient,
                                                   bctx: Ctx, volume: Volume,
                                                   final: dict[str, Any], why: str) -> None:
    t = _play_longhorn(lab, volume, final, [])
    with pytest.raises(AdapterError, match=why):
        svc.backup_volume(bctx, Longhorn(objects),
                          volume.ns, volume.pvc, timeout=60, poll=0.3)
    t.join(10)
    entries = backups.entries_from_snapshots(bctx.restic.snapshots())
    assert [e.status for e in entries] == ["Failed"]


def test_timeout_is_a_clear_error_and_failed(lab: Lab, objects: KubeClient, bctx: Ctx,
                                             volume: Volume) -> None:
    t = _play_longhorn(lab, volume, None, [])  # stuck InProgress, like a dead manager
    with pytest.raises(Timeout, match="still InProgress"):
        svc.backup_volume(bctx, Longhorn(objects),
                          volume.ns, volume.pvc, timeout=3, poll=0.3)
    t.join(10)
    assert [e.status for e in backups.entries_from_snapshots(bctx.restic.snapshots())] == ["Failed"]


def test_not_longhorn_or_missing_is_refused_before_anything(lab: Lab, objects: KubeClient,
                                                            bctx: Ctx,
                                                            volume: Volume) -> None:
    lh = Longhorn(objects)
    lab.kubectl("create", "-n", volume.ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "pending"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "nowhere",
                 "resources": {"requests": {"storage": "1Gi"}}}}))
    with pytest.raises(PlanRejected, match="not bound"):
        svc.backup_volume(bctx, lh, volume.ns, "pending", timeout=5)
    lab.kubectl("delete", "volumes.longhorn.io", volume.volume, "-n", LH)
    with pytest.raises(PlanRejected, match="Longhorn has no volume"):
        svc.backup_volume(bctx, lh, volume.ns, volume.pvc, timeout=5)
    assert bctx.restic.snapshots() == []  # nothing recorded: refused before the backup opened


def test_restore_into_a_new_pvc_never_overwrites(lab: Lab, objects: KubeClient,
                                                 bctx: Ctx, volume: Volume,
                                                 tmp_path: Path) -> None:
    t = _play_longhorn(lab, volume, lambda n: _completed(n, volume), [])
    lh = Longhorn(objects)
    done = svc.backup_volume(bctx, lh, volume.ns, volume.pvc, timeout=60, poll=0.3)
    t.join(10)
    manifest, record = svc.load(bctx, done.manifest.id)
    assert manifest == done.manifest
    audit = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(PlanRejected, match="already exists"):
        svc.restore_volume(lh, done.manifest, record, volume.ns, volume.pvc, apply=True,
                           audit=audit)
    plan = svc.restore_volume(lh, done.manifest, record, volume.ns, "data-restored",
                              apply=False, audit=audit)
    assert not plan.applied and audit.read() == []
    assert lh.find_pvc(volume.ns, "data-restored") is None
    report = svc.restore_volume(lh, done.manifest, record, volume.ns, "data-restored",
                                apply=True, audit=audit)
    pvc = lh.find_pvc(volume.ns, "data-restored")
    assert pvc is not None and pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    sc = lh.storage_class(pvc["spec"]["storageClassName"])
    assert sc is not None and sc["parameters"]["fromBackup"] == done.longhorn.url
    assert sc["provisioner"] == "driver.longhorn.io"
    assert [r["what"]["action"] for r in audit.read()] == ["create-storageclass", "create-pvc"]
    assert report.created[-1] == f"{volume.ns}/persistentvolumeclaims/data-restored"
    # the original PVC is untouched
    orig = lh.find_pvc(volume.ns, volume.pvc)
    assert orig is not None and orig["spec"]["volumeName"] == volume.pv
    password = bctx.env["K3SOPS_TEST_BACKUP_MORE_PW"]
    assert password not in (tmp_path / "audit.jsonl").read_text()
    assert password not in json.dumps(report.model_dump(mode="json"))


def test_backup_crd_has_a_status_subresource(lab: Lab) -> None:
    """What the fake controller relies on: status is written only through /status."""
    crd = json.loads(lab.kubectl("get", "crd", "backups.longhorn.io", "-o", "json").stdout)
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def _cli(bctx: Ctx, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "k3sops", *args], env=bctx.env,
                          capture_output=True, text=True, timeout=180)


def test_cli_backup_volume_then_restore_to_a_new_pvc(lab: Lab, bctx: Ctx,
                                                     volume: Volume) -> None:
    """The commands as a user runs them: JSON on stdout, progress lines on stderr."""
    t = _play_longhorn(lab, volume, lambda n: _completed(n, volume), [])
    r = _cli(bctx, "-o", "json", "backup", "volume", volume.pvc, "-n", volume.ns,
             "--timeout", "60s", "--state-dir", str(bctx.state))
    t.join(10)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["manifest"]["status"] == "Completed" and out["longhorn"]["state"] == "Completed"
    assert "longhorn backup of" in r.stderr  # plain progress lines: stderr is not a terminal
    bid = out["manifest"]["id"]
    listed = json.loads(_cli(bctx, "-o", "json", "backup", "list").stdout)
    assert any(b["id"] == bid and b["kind"] == "volume" for b in listed["backups"])
    plan = _cli(bctx, "-o", "json", "backup", "restore", bid, "--to", "data-copy",
                "--state-dir", str(bctx.state))
    assert plan.returncode == 0, plan.stderr
    assert not json.loads(plan.stdout)["applied"]
    assert lab.kubectl("get", "pvc", "data-copy", "-n", volume.ns, check=False).returncode != 0
    done = _cli(bctx, "-o", "json", "backup", "restore", bid, "--to", "data-copy", "--yes",
                "--state-dir", str(bctx.state))
    assert done.returncode == 0, done.stderr
    pvc = json.loads(lab.kubectl("get", "pvc", "data-copy", "-n", volume.ns, "-o",
                                 "json").stdout)
    assert pvc["metadata"]["annotations"]["k3sops.io/backup-id"] == bid
    again = _cli(bctx, "backup", "restore", bid, "--to", "data-copy", "--yes",
                 "--state-dir", str(bctx.state))
    assert again.returncode == 1 and "already exists" in again.stderr
    missing = _cli(bctx, "backup", "volume", "nope", "-n", volume.ns)
    assert missing.returncode == 1 and "PVC " + volume.ns + "/nope does not exist" in (
        missing.stderr)
    password = bctx.env["K3SOPS_TEST_BACKUP_MORE_PW"]
    for run in (r, plan, done, again, missing):
        assert password not in run.stdout + run.stderr


def test_longhorn_check_finds_a_backup_that_is_gone(lab: Lab, objects: KubeClient, bctx: Ctx,
                                                   volume: Volume) -> None:
    """A Completed k3sops record whose Longhorn Backup was deleted is not restorable."""
    seen: list[str] = []
    t = _play_longhorn(lab, volume, lambda n: _completed(n, volume), seen)
    lh = Longhorn(objects)
    done = svc.backup_volume(bctx, lh, volume.ns, volume.pvc, timeout=60, poll=0.3)
    t.join(10)
    manifest, record = svc.load(bctx, done.manifest.id)
    ok = svc.check_longhorn(lh, manifest, record)
    assert ok.ok, ok.detail
    lab.kubectl("patch", "backups.longhorn.io", seen[0], "-n", LH, "--subresource=status",
                "--type=merge", "-p", json.dumps({"status": {"url": "s3://elsewhere/"}}))
    moved = svc.check_longhorn(lh, manifest, record)
    assert not moved.ok and "URL changed" in moved.detail
    lab.kubectl("delete", "backups.longhorn.io", seen[0], "-n", LH)
    gone = svc.check_longhorn(lh, manifest, record)
    assert not gone.ok and "no longer exists" in gone.detail
