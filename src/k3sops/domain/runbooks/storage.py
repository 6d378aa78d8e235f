"""Runbooks for storage: claims, storage classes and Longhorn volumes."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

_LONGHORN_VOLUME = step(
    "Inspect the Longhorn volume and its replicas", "Robustness comes from how many replicas "
    "are healthy and where they run.",
    "kubectl -n longhorn-system get volumes.longhorn.io <volume> -o wide; "
    "kubectl -n longhorn-system get replicas.longhorn.io -l longhornvolume=<volume> -o wide",
    "status.robustness, replicas not running, and the nodes they are on (a NotReady node or "
    "a full disk).", "k3sops check")

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="pvc-pending", title="PersistentVolumeClaim Pending",
        summary="The claim has no volume: the storage class does not exist, its provisioner "
                "fails, or it waits for a pod (WaitForFirstConsumer).",
        severity_hint="warning",
        steps=[
            step("Read the claim's events", "The provisioner reports its error there.",
                 "kubectl -n <namespace> describe pvc <name>",
                 "'waiting for first consumer' (normal until a pod uses it), 'storageclass "
                 "not found', or provisioning errors.", "k3sops check"),
            step("Check the storage class", "Its provisioner must be running.",
                 "kubectl get storageclass",
                 "The class exists; a default class is marked (default)."),
            step("Check the provisioner", "Longhorn or local-path must be healthy.",
                 "kubectl -n longhorn-system get pods", "Manager or CSI pods not Running."),
        ],
        related=["storageclass-missing", "pod-pending"]),
    Runbook(
        id="pvc-lost", title="PersistentVolumeClaim Lost",
        summary="The claim's volume is gone or no longer bound to it: data may be lost; pods "
                "using it cannot start.",
        severity_hint="critical",
        steps=[
            step("Check the volume", "Whether the PV exists and what it is bound to.",
                 "kubectl get pv <volume> -o yaml",
                 "A missing PV or a claimRef pointing elsewhere."),
            step("Restore from backup", "A lost volume's data comes back only from a backup.",
                 "kubectl -n longhorn-system get backups.longhorn.io -l backup-volume=<volume>",
                 "The newest Completed backup; restore it into a new PVC."),
        ],
        related=["backup-stale", "longhorn-volume-faulted"]),
    Runbook(
        id="storageclass-missing", title="StorageClass missing",
        summary="A claim names a StorageClass that does not exist: new claims stay Pending, "
                "bound ones cannot be expanded.",
        severity_hint="warning",
        steps=[
            step("List storage classes", "Renamed or never installed.",
                 "kubectl get storageclass", "The class the claim names."),
            step("Recreate the class or fix the manifests", "The class usually comes from the "
                 "storage installation (Longhorn's Helm values).",
                 "kubectl -n <namespace> get pvc <name> -o jsonpath='{.spec.storageClassName}'",
                 "After the fix, `kubectl get pvc` shows Bound."),
        ],
        related=["pvc-pending"]),
    Runbook(
        id="longhorn-volume-degraded", title="Longhorn volume degraded",
        summary="A Longhorn volume runs with fewer healthy replicas than configured: it "
                "serves I/O but one more failure may lose it.",
        severity_hint="warning",
        steps=[
            _LONGHORN_VOLUME,
            step("Check Longhorn's disks and nodes", "Rebuilds need a schedulable node with "
                 "free space.", "kubectl -n longhorn-system get nodes.longhorn.io -o wide",
                 "Nodes not schedulable or disks without space: free space or add a disk."),
        ],
        related=["longhorn-volume-faulted", "node-not-ready"]),
    Runbook(
        id="longhorn-volume-faulted", title="Longhorn volume faulted",
        summary="No healthy replica is left: the volume cannot serve I/O and its data may "
                "only be in a backup.",
        severity_hint="critical",
        steps=[
            _LONGHORN_VOLUME,
            step("Try salvaging a replica", "Longhorn can salvage the latest replica if its "
                 "data is intact (Longhorn UI: Volume, Salvage).",
                 "kubectl -n longhorn-system logs deployment/longhorn-driver-deployer",
                 "Which replica has the newest data."),
            step("Restore from backup if salvage fails", "The backup is the last copy.",
                 "kubectl -n longhorn-system get backups.longhorn.io -l backup-volume=<volume>",
                 "The newest Completed backup and its time: that is the data you get back."),
        ],
        related=["longhorn-volume-degraded", "pvc-lost", "backup-stale"]),
]
