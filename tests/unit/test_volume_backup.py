"""Longhorn volume backups as data: PVC -> volume, the objects sent, reading Longhorn's status.

Backup statuses are Longhorn's own shapes: the Completed and Error records of
tests/data/check-prom-backup-objects.json (validated against the lab's CRDs by a lab test) and
an InProgress status as a Longhorn maintainer posted it (longhorn/longhorn issue 3298).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from k3sops.domain import volume_backup as vb
from k3sops.errors import PlanRejected, UsageError

pytestmark = pytest.mark.unit

DATA = Path(__file__).parents[1] / "data" / "check-prom-backup-objects.json"
BACKUPS = json.loads(DATA.read_text())["backups.longhorn.io"]

IN_PROGRESS_3298 = {  # longhorn/longhorn#3298, after a manager restart
    "metadata": {"name": "backup-x", "labels": {"backup-volume": "pvc-1"}},
    "spec": {"snapshotName": "164f9ec5-f84c-4d4c-89c6-6e5e7596abf9"},
    "status": {"backupCreatedAt": "", "labels": None, "lastSyncedAt": None, "messages": None,
               "ownerID": "worker2", "progress": 4, "replicaAddress": "tcp://10.42.1.16:10015",
               "size": "", "snapshotCreatedAt": "",
               "snapshotName": "164f9ec5-f84c-4d4c-89c6-6e5e7596abf9", "state": "InProgress",
               "url": "", "volumeBackingImageName": "", "volumeCreated": "", "volumeName": "",
               "volumeSize": ""}}


def _pvc(phase: str = "Bound", volume_name: str | None = "pvc-123") -> dict[str, Any]:
    return {"metadata": {"name": "data", "namespace": "production"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "longhorn",
                     "volumeName": volume_name, "resources": {"requests": {"storage": "2Gi"}}},
            "status": {"phase": phase}}


def _pv(driver: str = "driver.longhorn.io") -> dict[str, Any]:
    return {"metadata": {"name": "pvc-123"},
            "spec": {"csi": {"driver": driver, "volumeHandle": "pvc-123"}}}


def test_a_bound_longhorn_pvc_resolves_to_its_volume() -> None:
    ref = vb.resolve_volume(_pvc(), _pv())
    assert (ref.namespace, ref.pvc, ref.pv, ref.volume, ref.size) == (
        "production", "data", "pvc-123", "pvc-123", "2Gi")
    assert ref.access_modes == ["ReadWriteOnce"]


@pytest.mark.parametrize(("pvc", "pv", "match"), [
    (_pvc(phase="Pending", volume_name=None), None, "not bound"),
    (_pvc(), _pv("rancher.io/local-path"), "not a Longhorn volume"),
    (_pvc(), {"spec": {}}, "driver none"),
])
def test_other_pvcs_are_refused(pvc: dict[str, Any], pv: dict[str, Any] | None,
                                match: str) -> None:
    with pytest.raises(PlanRejected, match=match):
        vb.resolve_volume(pvc, pv)


def test_completed_with_url_and_size_is_restorable() -> None:
    done = vb.read_backup(BACKUPS[0])
    assert done.state == "Completed" and done.size == 2147483648 and done.progress == 100
    assert done.restorable and done.finished and done.problems() == []
    assert done.volume == "pvc-orders" and done.backup_target == "default"


def test_error_and_in_progress_are_not_restorable() -> None:
    err = vb.read_backup(BACKUPS[1])
    assert err.finished and not err.restorable
    assert err.problems()[0].startswith("state Error: failed to upload snapshot")
    running = vb.read_backup(IN_PROGRESS_3298)
    assert (running.state, running.progress, running.size) == ("InProgress", 4, None)
    assert not running.finished and not running.restorable
    assert running.volume == "pvc-1"  # from the backup-volume label when status has none


def test_completed_without_url_or_size_is_not_restorable() -> None:
    obj = json.loads(json.dumps(BACKUPS[0]))
    obj["status"]["url"] = ""
    obj["status"]["size"] = "0"
    state = vb.read_backup(obj)
    assert state.finished and not state.restorable
    assert state.problems() == ["no status.url", "no status.size"]


def test_objects_name_the_volume_as_longhorn_reads_it() -> None:
    ref = vb.resolve_volume(_pvc(), _pv())
    bid = "volume-production-data-20261126T130000Z-ab12cd"
    name = vb.object_name("k3sops", bid)
    assert name == "k3sops-volume-production-data-20261126t130000z-ab12cd"
    snap = vb.snapshot_object(ref, name, bid)
    assert snap["spec"] == {"volume": "pvc-123", "createSnapshot": True,
                            "labels": {"k3sops.io/pvc": "production.data"}}
    backup = vb.backup_object(ref, "b1", name, bid)
    assert backup["metadata"]["labels"]["backup-volume"] == "pvc-123"
    assert backup["metadata"]["annotations"]["k3sops.io/backup-id"] == bid
    assert backup["spec"]["snapshotName"] == name


def test_long_ids_keep_their_unique_tail_within_63_characters() -> None:
    bid = "volume-" + "x" * 80 + "-20261126T130000Z-ab12cd"
    name = vb.object_name("k3sops", bid)
    assert len(name) <= 63 and name.endswith("20261126t130000z-ab12cd")
    assert name.startswith("k3sops-")


def test_restore_makes_a_from_backup_class_and_a_new_pvc() -> None:
    url = BACKUPS[0]["status"]["url"]
    sc, pvc = vb.restore_objects(url, vb.RestoreRequest(namespace="staging", pvc="restored",
                                                        size="2Gi"), "volume-x-1")
    assert sc["provisioner"] == "driver.longhorn.io"
    assert sc["parameters"]["fromBackup"] == url
    assert sc["reclaimPolicy"] == "Retain"
    assert pvc["spec"]["storageClassName"] == sc["metadata"]["name"]
    assert pvc["metadata"] == {"name": "restored", "namespace": "staging",
                               "labels": {"app.kubernetes.io/managed-by": "k3sops"},
                               "annotations": {"k3sops.io/backup-id": "volume-x-1",
                                               "k3sops.io/restored-from": url}}


@pytest.mark.parametrize(("ns", "pvc", "url", "match"), [
    ("Staging", "x", "s3://b", "namespace"),
    ("staging", "x_y", "s3://b", "PVC name"),
    ("staging", "x", "", "no Longhorn backup URL"),
])
def test_bad_restore_input_is_a_usage_error(ns: str, pvc: str, url: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        vb.restore_objects(url, vb.RestoreRequest(namespace=ns, pvc=pvc, size="1Gi"), "id")
