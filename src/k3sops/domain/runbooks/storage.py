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
    Runbook(
        id="pvc-resize-failed", title="PVC expansion failed or hangs",
        summary="A claim asked for more space and the resizer failed (or is stuck): the volume "
                "keeps its old size while the application expects the new one.",
        severity_hint="warning",
        steps=[
            step("Read the claim's conditions and events", "The resizer says why.",
                 "kubectl -n <namespace> describe pvc <name>",
                 "ControllerResizeError / NodeResizeError and VolumeResizeFailed events."),
            step("Check the class allows expansion and the backend has room",
                 "Longhorn needs free space on the replicas' nodes.",
                 "kubectl get storageclass <class> -o jsonpath='{.allowVolumeExpansion}'",
                 "true; then the storage backend's free space."),
            step("FileSystemResizePending: restart the pod", "The file system grows when a "
                 "pod mounts the volume again.",
                 "kubectl -n <namespace> delete pod <pod>",
                 "status.capacity equals the request.", "k3sops check"),
        ],
        related=["pvc-pending"]),
    Runbook(
        id="pv-failed", title="PersistentVolume Failed",
        summary="Automatic reclamation of a released volume failed (its plugin could not "
                "delete or recycle it): the storage is not freed and may still hold data.",
        severity_hint="warning",
        steps=[
            step("Read why", "The PV controller records the error.",
                 "kubectl describe pv <name>",
                 "Message such as 'no deletable volume plugin matched' or a provisioner "
                 "error."),
            step("Clean up the backing storage, then delete the PV", "Make sure nothing "
                 "needs the data first.",
                 "kubectl delete pv <name>",
                 "The PV is gone; the backend's volume removed by hand if needed.",
                 "k3sops check"),
        ],
        related=["pv-released"]),
    Runbook(
        id="pv-released", title="PersistentVolume Released",
        summary="The claim of a volume was deleted and the reclaim policy kept the volume: "
                "its data waits for a decision and its space stays used.",
        severity_hint="info",
        steps=[
            step("Decide whether the data is needed", "Retain exists to prevent accidental "
                 "loss.",
                 "kubectl get pv <name> -o jsonpath='{.spec.claimRef} "
                 "{.spec.persistentVolumeReclaimPolicy}'",
                 "The claim it belonged to."),
            step("Re-use it or delete it", "Removing spec.claimRef makes it Available again; "
                 "deleting it frees the space (the backend may keep the data with Retain).",
                 "kubectl patch pv <name> --type=json "
                 "-p '[{\"op\":\"remove\",\"path\":\"/spec/claimRef\"}]'",
                 "Phase Available, or the PV deleted.", "k3sops check --weekly"),
        ],
        related=["pv-failed", "pvc-unused"]),
    Runbook(
        id="pv-node-missing", title="Volume pinned to a node that is gone",
        summary="A node-local volume (K3s local-path) lives on a node no longer in the "
                "cluster: pods using it cannot be scheduled, and the data is on that machine.",
        severity_hint="warning",
        steps=[
            step("Find the node and the claim", "The PV's node affinity names the host.",
                 "kubectl get pv <name> -o jsonpath='{.spec.nodeAffinity} {.spec.claimRef}'",
                 "The hostname, and the claim/pod depending on it."),
            step("Bring the node back, or restore elsewhere", "If the node is lost for good, "
                 "the data comes back only from a backup.",
                 "kubectl get nodes",
                 "Node back and Ready; or a backup restored into a new claim.",
                 "k3sops status"),
            step("Replace the claim", "Delete the pod's claim and PV so a new volume is "
                 "provisioned on a live node (data restored from backup).",
                 "kubectl -n <namespace> delete pvc <claim>; kubectl delete pv <name>",
                 "The pod is scheduled with a new volume.", "k3sops check"),
        ],
        related=["node-not-ready", "pod-pending"]),
    Runbook(
        id="volumeattachment-error", title="Volume cannot attach or detach",
        summary="The CSI attacher reports an error attaching a volume to a node (pods stay "
                "ContainerCreating) or detaching it (the volume cannot move to another node).",
        severity_hint="warning",
        steps=[
            step("Read the attachment's error", "The CSI driver's message.",
                 "kubectl get volumeattachment <name> -o jsonpath='{.status}'",
                 "attachError/detachError: multi-attach, node not found, timeout."),
            step("Check the CSI driver on that node", "Longhorn's manager/CSI pods there.",
                 "kubectl -n longhorn-system get pods -o wide",
                 "CSI plugin or manager pods not Running on the node."),
            step("Detach from a dead node", "A VolumeAttachment to a node that is gone blocks "
                 "the volume: delete the attachment once the node is confirmed down.",
                 "kubectl delete volumeattachment <name>",
                 "The pod's volume attaches on its new node.", "k3sops check"),
        ],
        related=["pv-node-missing", "longhorn-volume-faulted"]),
    Runbook(
        id="storageclass-default-conflict", title="Several default StorageClasses",
        summary="More than one StorageClass is marked default: claims without a class get the "
                "newest one, which may not be the storage you meant.",
        severity_hint="warning",
        steps=[
            step("List the defaults", "(default) after the name.",
                 "kubectl get storageclass", "More than one (default)."),
            step("Unmark the unintended one", "K3s marks local-path default; with Longhorn "
                 "keep one default.",
                 "kubectl patch storageclass <name> -p '{\"metadata\":{\"annotations\":"
                 "{\"storageclass.kubernetes.io/is-default-class\":\"false\"}}}'",
                 "One (default) left.", "k3sops check"),
        ],
        related=["storageclass-no-default"]),
    Runbook(
        id="storageclass-no-default", title="No default StorageClass",
        summary="Claims (or StatefulSet claim templates) name no class and no StorageClass is "
                "the default: they stay Pending until one is.",
        severity_hint="info",
        steps=[
            step("List the classes", "Decide which one claims without a class should get.",
                 "kubectl get storageclass", "No (default)."),
            step("Mark one default", "Pending claims without a class get it retroactively.",
                 "kubectl patch storageclass <name> -p '{\"metadata\":{\"annotations\":"
                 "{\"storageclass.kubernetes.io/is-default-class\":\"true\"}}}'",
                 "The claims bind.", "k3sops check --weekly"),
        ],
        related=["pvc-pending", "storageclass-default-conflict"]),
    Runbook(
        id="pvc-unused", title="Claim bound but unused",
        summary="A bound claim is mounted by no pod and named by no workload: its volume "
                "keeps costing space (and may hold forgotten data).",
        severity_hint="info",
        steps=[
            step("Find who created it", "Labels and annotations tell the app or chart.",
                 "kubectl -n <namespace> get pvc <name> -o yaml",
                 "An app that was removed, or a claim from an old release."),
            step("Back it up if needed, then delete it", "Deleting the claim deletes the "
                 "volume when the reclaim policy is Delete.",
                 "kubectl -n <namespace> delete pvc <name>",
                 "The claim is gone.", "k3sops check --weekly"),
        ],
        related=["pv-released"]),
]
