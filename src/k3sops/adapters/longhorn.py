"""Longhorn through its CRDs (longhorn.io/v1beta2) and the PVC/PV objects that lead to them.

Longhorn's manager watches these objects and does the work; k3sops creates Snapshots and
Backups, reads their status, and creates restore StorageClasses and PVCs. Plain JSON over
:class:`~k3sops.adapters.kube.KubeClient`; errors are k3sops errors.
"""

from __future__ import annotations

from typing import Any

from k3sops.adapters.kube import KubeClient
from k3sops.domain.volume_backup import LONGHORN_API, LONGHORN_NAMESPACE
from k3sops.errors import NotFound


class Longhorn:
    """Longhorn objects in ``longhorn-system`` plus the PVCs and PVs of volumes."""

    def __init__(self, objects: KubeClient, namespace: str = LONGHORN_NAMESPACE) -> None:
        self.objects = objects
        self.namespace = namespace

    def pvc(self, namespace: str, name: str) -> dict[str, Any]:
        """The PVC (NotFound names it)."""
        try:
            return self.objects.get("v1", "persistentvolumeclaims", name, namespace)
        except NotFound as e:
            raise NotFound(f"PVC {namespace}/{name} does not exist",
                           hint=f"list them: kubectl get pvc -n {namespace}") from e

    def find_pvc(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The PVC, or None."""
        return self.objects.find("v1", "persistentvolumeclaims", name, namespace)

    def pv(self, name: str) -> dict[str, Any] | None:
        """The PersistentVolume, or None."""
        return self.objects.find("v1", "persistentvolumes", name)

    def volume(self, name: str) -> dict[str, Any] | None:
        """The Longhorn Volume, or None."""
        return self.objects.find(LONGHORN_API, "volumes", name, self.namespace)

    def create_snapshot(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create a Longhorn Snapshot."""
        return self.objects.create_object(obj, "snapshots")

    def create_backup(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create a Longhorn Backup."""
        return self.objects.create_object(obj, "backups")

    def backup(self, name: str) -> dict[str, Any] | None:
        """A Longhorn Backup, or None when it is gone."""
        return self.objects.find(LONGHORN_API, "backups", name, self.namespace)

    def backups(self, volume: str | None = None) -> list[dict[str, Any]]:
        """Longhorn Backups (of one volume, by its ``backup-volume`` label)."""
        selector = f"backup-volume={volume}" if volume else None
        return self.objects.list(LONGHORN_API, "backups", self.namespace, selector)

    def storage_class(self, name: str) -> dict[str, Any] | None:
        """A StorageClass, or None."""
        return self.objects.find("storage.k8s.io/v1", "storageclasses", name)

    def create_storage_class(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create a StorageClass (Conflict when the name is taken)."""
        return self.objects.create_object(obj, "storageclasses")

    def create_pvc(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create a PVC (Conflict when one of that name exists: never overwritten)."""
        return self.objects.create_object(obj, "persistentvolumeclaims")
