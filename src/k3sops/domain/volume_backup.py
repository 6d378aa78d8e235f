"""Longhorn volume backups as data: which volume a PVC is, the objects to create, their state.

The procedure (Longhorn's own, as its docs show it for kubectl): the PVC's PersistentVolume
names the Longhorn Volume in ``spec.csi.volumeHandle``; a ``Snapshot`` (longhorn.io/v1beta2,
``spec.volume``, ``spec.createSnapshot: true``) is taken of it, then a ``Backup`` with label
``backup-volume: VOLUME`` and ``spec.snapshotName``. Longhorn's manager uploads it and writes
``status.state`` (Pending, InProgress, Completed, Error, Unknown), ``status.progress``,
``status.url`` and ``status.size``.

Longhorn has reported backups Completed that were not restorable; k3sops calls one Completed
only when Longhorn says Completed **and** the backup has a URL (where it can be restored from)
and a size (it holds data). Restore goes into a **new** PVC through a StorageClass whose
``fromBackup`` parameter is the backup URL; an existing PVC is never written over.

Pure: the objects are built and read here; the service sends them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.errors import PlanRejected, UsageError

LONGHORN_API = "longhorn.io/v1beta2"
LONGHORN_NAMESPACE = "longhorn-system"
LONGHORN_DRIVER = "driver.longhorn.io"
VOLUME_LABEL = "backup-volume"
"""The label Longhorn reads a Backup's volume from."""
MANAGED_BY = "app.kubernetes.io/managed-by"
BACKUP_ID_ANNOTATION = "k3sops.io/backup-id"
"""An annotation, not a label: backup ids can be longer than a label value may be."""
TERMINAL = ("Completed", "Error")

LonghornState = Literal["", "New", "Pending", "InProgress", "Completed", "Error", "Unknown",
                        "Deleting"]

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class VolumeRef(BaseModel):
    """A PVC and the Longhorn volume behind it."""

    namespace: str
    pvc: str
    pv: str
    volume: str = Field(description="Longhorn Volume name (the PV's csi.volumeHandle)")
    storage_class: str | None = None
    size: str | None = Field(default=None, description="PVC request, e.g. 2Gi")
    access_modes: list[str] = Field(default_factory=list)


class LonghornBackupState(BaseModel):
    """A Longhorn Backup's status, as k3sops reads it."""

    name: str
    state: str = ""
    progress: int = 0
    url: str = ""
    size: int | None = None
    error: str = ""
    snapshot: str = ""
    volume: str = ""
    backup_target: str = ""
    created_at: str = ""

    @property
    def finished(self) -> bool:
        """Longhorn stopped working on it (Completed or Error)."""
        return self.state in TERMINAL

    @property
    def restorable(self) -> bool:
        """Completed, with a URL to restore from and a non-zero size."""
        return self.state == "Completed" and bool(self.url) and bool(self.size)

    def problems(self) -> list[str]:
        """Why this backup is not restorable (empty when it is)."""
        out = []
        if self.state != "Completed":
            out.append(f"state {self.state or 'unset'}"
                       + (f": {self.error}" if self.error else ""))
        if not self.url:
            out.append("no status.url")
        if not self.size:
            out.append("no status.size")
        return out


def _get(obj: Mapping[str, Any], *path: str) -> Any:
    cur: Any = obj
    for p in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(p)
    return cur


def resolve_volume(pvc: Mapping[str, Any], pv: Mapping[str, Any] | None) -> VolumeRef:
    """The Longhorn volume behind a bound PVC.

    Raises:
        PlanRejected: the PVC is not bound, or its volume is not a Longhorn CSI volume.
    """
    ns = str(_get(pvc, "metadata", "namespace") or "")
    name = str(_get(pvc, "metadata", "name") or "")
    phase = _get(pvc, "status", "phase")
    pv_name = _get(pvc, "spec", "volumeName")
    if phase != "Bound" or not pv_name or pv is None:
        raise PlanRejected(f"PVC {ns}/{name} is not bound to a volume (phase {phase})",
                           hint="only a bound PVC has data to back up")
    csi = _get(pv, "spec", "csi") or {}
    driver = csi.get("driver") if isinstance(csi, Mapping) else None
    handle = csi.get("volumeHandle") if isinstance(csi, Mapping) else None
    if driver != LONGHORN_DRIVER or not handle:
        raise PlanRejected(f"PVC {ns}/{name} is on PV {pv_name} of driver {driver or 'none'}, "
                           f"not a Longhorn volume ({LONGHORN_DRIVER})",
                           hint="use `k3sops backup app` for data on other storage")
    return VolumeRef(
        namespace=ns, pvc=name, pv=str(pv_name), volume=str(handle),
        storage_class=_get(pvc, "spec", "storageClassName"),
        size=_get(pvc, "spec", "resources", "requests", "storage"),
        access_modes=list(_get(pvc, "spec", "accessModes") or []))


def object_name(prefix: str, backup_id: str) -> str:
    """A DNS-1123 name (at most 63 characters) for a Snapshot/Backup of ``backup_id``."""
    clean = re.sub(r"[^a-z0-9-]+", "-", backup_id.lower()).strip("-")
    # keep the tail when too long: it has the timestamp and the random suffix (unique)
    room = 63 - len(prefix) - 1
    return f"{prefix}-{clean[-room:].strip('-')}"


def snapshot_object(ref: VolumeRef, name: str, backup_id: str) -> dict[str, Any]:
    """The Longhorn Snapshot to take of the volume."""
    return {"apiVersion": LONGHORN_API, "kind": "Snapshot",
            "metadata": {"name": name, "namespace": LONGHORN_NAMESPACE,
                         "labels": {MANAGED_BY: "k3sops"},
                         "annotations": {BACKUP_ID_ANNOTATION: backup_id}},
            "spec": {"volume": ref.volume, "createSnapshot": True,
                     "labels": {"k3sops.io/pvc": f"{ref.namespace}.{ref.pvc}"}}}


def backup_object(ref: VolumeRef, name: str, snapshot: str, backup_id: str,
                  mode: Literal["incremental", "full"] = "incremental") -> dict[str, Any]:
    """The Longhorn Backup of that snapshot (the volume is named by label, as Longhorn reads)."""
    return {"apiVersion": LONGHORN_API, "kind": "Backup",
            "metadata": {"name": name, "namespace": LONGHORN_NAMESPACE,
                         "labels": {VOLUME_LABEL: ref.volume, MANAGED_BY: "k3sops"},
                         "annotations": {BACKUP_ID_ANNOTATION: backup_id}},
            "spec": {"snapshotName": snapshot, "backupMode": mode,
                     "labels": {"k3sops.io/backup-id": backup_id,
                                "k3sops.io/pvc": f"{ref.namespace}.{ref.pvc}"}}}


def read_backup(obj: Mapping[str, Any]) -> LonghornBackupState:
    """Read a Backup object's status (``size`` is a decimal string in Longhorn's API)."""
    status = _get(obj, "status") or {}
    raw_size = status.get("size") if isinstance(status, Mapping) else None
    size = int(raw_size) if isinstance(raw_size, str) and raw_size.isdigit() else (
        raw_size if isinstance(raw_size, int) else None)
    progress = status.get("progress") if isinstance(status, Mapping) else 0
    return LonghornBackupState(
        name=str(_get(obj, "metadata", "name") or ""),
        state=str(status.get("state") or ""), progress=int(progress or 0),
        url=str(status.get("url") or ""), size=size, error=str(status.get("error") or ""),
        snapshot=str(status.get("snapshotName") or _get(obj, "spec", "snapshotName") or ""),
        volume=str(status.get("volumeName") or _get(obj, "metadata", "labels", VOLUME_LABEL)
                   or ""),
        backup_target=str(status.get("backupTargetName") or ""),
        created_at=str(status.get("backupCreatedAt") or ""))


class RestoreRequest(BaseModel):
    """Where to restore a volume backup to: always a new PVC."""

    namespace: str
    pvc: str
    size: str
    access_modes: list[str] = Field(default_factory=lambda: ["ReadWriteOnce"])
    replicas: int = 3


def restore_objects(url: str, req: RestoreRequest, backup_id: str,
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A StorageClass with ``fromBackup: URL`` and a new PVC on it (Longhorn's documented way).

    One StorageClass per restore (its parameters are immutable), named after the backup, so
    that the PVC's provenance stays visible.

    Raises:
        UsageError: a name that is not a DNS-1123 label, or an empty URL.
    """
    for what, value in (("namespace", req.namespace), ("PVC name", req.pvc)):
        if not _DNS1123.match(value) or len(value) > 63:
            raise UsageError(f"{what} {value!r} is not a valid Kubernetes name",
                             hint="lowercase letters, digits and '-'")
    if not url:
        raise UsageError(f"backup {backup_id} has no Longhorn backup URL to restore from",
                         hint="only a Completed volume backup with a URL can be restored")
    sc_name = object_name("k3sops-restore", backup_id)
    sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
          "metadata": {"name": sc_name, "labels": {MANAGED_BY: "k3sops"},
                       "annotations": {BACKUP_ID_ANNOTATION: backup_id}},
          "provisioner": LONGHORN_DRIVER, "reclaimPolicy": "Retain",
          "allowVolumeExpansion": True, "volumeBindingMode": "Immediate",
          "parameters": {"numberOfReplicas": str(req.replicas), "staleReplicaTimeout": "30",
                         "fromBackup": url}}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": req.pvc, "namespace": req.namespace,
                        "labels": {MANAGED_BY: "k3sops"},
                        "annotations": {BACKUP_ID_ANNOTATION: backup_id,
                                        "k3sops.io/restored-from": url}},
           "spec": {"accessModes": req.access_modes, "storageClassName": sc_name,
                    "resources": {"requests": {"storage": req.size}}}}
    return sc, pvc
