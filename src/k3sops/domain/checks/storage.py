"""Storage: PVCs Pending or Lost, missing StorageClasses, Longhorn volume robustness.

A PVC whose class binds on first consumer (K3s' default ``local-path`` does) stays Pending
until a pod uses it: that is by design, so it is reported as info only while no pod does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding, Severity
from k3sops.domain.snapshot import Obj, events_for, get, meta, parse_time

DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                             "storageclass.beta.kubernetes.io/is-default-class")
LONGHORN_VOLUMES = "volumes.longhorn.io"
LONGHORN_REPLICAS = "replicas.longhorn.io"
"""Not part of the standard snapshot; read when present (the replicas' nodes as evidence)."""


def _classes(ctx: CheckContext) -> dict[str, Obj]:
    return {meta(sc)[1]: sc for sc in ctx.snapshot.get("storageclasses")}


def _default_class(classes: Mapping[str, Obj]) -> str | None:
    for name, sc in classes.items():
        if any(get(sc, "metadata", "annotations", a) == "true" for a in DEFAULT_CLASS_ANNOTATIONS):
            return name
    return None


PVC_GRACE_SECONDS = 120
"""A claim younger than this may simply be provisioning (or wait for the PV applied with it)."""
SELECTED_NODE = "volume.kubernetes.io/selected-node"
"""Written on a WaitForFirstConsumer claim by the scheduler once it placed the claim's pod."""
PROVISIONER_ANNOTATIONS = ("volume.kubernetes.io/storage-provisioner",
                           "volume.beta.kubernetes.io/storage-provisioner")
"""Set on a claim by the PV controller when it asks a provisioner for a volume: a claim
without them was bound to a pre-created (static) PersistentVolume."""


def _young(ctx: CheckContext, obj: Obj) -> bool:
    created = parse_time(get(obj, "metadata", "creationTimestamp"))
    return created is not None and (ctx.snapshot.now - created).total_seconds() < \
        PVC_GRACE_SECONDS


def _claims(ctx: CheckContext) -> list[Obj]:
    return [c for c in ctx.snapshot.get("persistentvolumeclaims") if ctx.in_scope(meta(c)[0])
            and not get(c, "metadata", "deletionTimestamp")]


def _class_name(pvc: Obj) -> str | None:
    """The class a PVC asks for: spec field, else the legacy annotation (None: the default)."""
    name = get(pvc, "spec", "storageClassName")
    if name is None:
        name = get(pvc, "metadata", "annotations", "volume.beta.kubernetes.io/storage-class")
    return None if name is None else str(name)


def _missing_class(pvc: Obj, classes: Mapping[str, Obj]) -> str | None:
    name = _class_name(pvc)
    return name if name and name not in classes else None


def _dynamic(pvc: Obj) -> bool:
    """The claim's volume was (or is being) provisioned by a provisioner."""
    return any(get(pvc, "metadata", "annotations", a) for a in PROVISIONER_ANNOTATIONS)


def _request(pvc: Obj) -> Any:
    return get(pvc, "spec", "resources", "requests", "storage")


def _data_source(pvc: Obj) -> dict[str, Any] | None:
    src = get(pvc, "spec", "dataSourceRef") or get(pvc, "spec", "dataSource")
    if not isinstance(src, Mapping):
        return None
    return {k: src.get(k) for k in ("apiGroup", "kind", "name", "namespace") if src.get(k)}


def _prebound(ctx: CheckContext, pvc: Obj, volume: str) -> tuple[str, dict[str, Any] | None]:
    """Why a claim pre-bound to a named PersistentVolume waits (and the PV when it is absent)."""
    ns, name = meta(pvc)
    if why := ctx.unread("persistentvolumes"):
        return (f"it is pre-bound to PersistentVolume {volume} (could not read "
                f"persistentvolumes: {why})", None)
    pv = ix.find(ctx.snapshot, "persistentvolumes", None, volume)
    if pv is None:
        return (f"it is pre-bound to PersistentVolume {volume}, which does not exist",
                {"kind": "PersistentVolume", "namespace": None, "name": volume})
    ref = get(pv, "spec", "claimRef") or {}
    if ref.get("name") and (ref.get("namespace"), ref.get("name")) != (ns, name):
        return (f"it is pre-bound to PersistentVolume {volume}, which is claimed by "
                f"{ref.get('namespace')}/{ref.get('name')}", None)
    return (f"it is pre-bound to PersistentVolume {volume} (phase "
            f"{get(pv, 'status', 'phase')}), which does not match it (class, size or access "
            "modes)", None)


@check("pvc-pending", "PVCs bound", reads=("persistentvolumeclaims", "storageclasses"),
       uses=("pods", "events", "persistentvolumes"))
def pvc_pending(ctx: CheckContext) -> list[Finding]:  # noqa: PLR0912 - one branch per cause
    """PVCs in phase Pending past their grace, with the cause.

    Causes: pre-bound to a PersistentVolume that is missing or taken; no class (only a static
    PV can bind it); a WaitForFirstConsumer class whose consumer is not scheduled yet, or that
    no pod uses (info: by design); provisioning failed (the provisioner's event); still
    waiting for the provisioner, from a data source when it has one. A claim on a missing
    class is ``storageclass-missing``'s.
    """
    classes = _classes(ctx)
    default = _default_class(classes)
    pending = [c for c in _claims(ctx) if get(c, "status", "phase") == "Pending"
               and not _young(ctx, c)
               # a claim on a missing class is storageclass-missing's (critical), unless it
               # is pre-bound to a named volume (then the class does not matter)
               and (get(c, "spec", "volumeName") or not _missing_class(c, classes))]
    if not pending:
        return []
    pods_unread = ctx.unread("pods")
    users = ix.claim_users(ctx.snapshot) if not pods_unread else {}
    out = []
    for pvc in pending:
        ns, name = meta(pvc)
        asked = _class_name(pvc)
        cls_name = default if asked is None else asked
        sc = classes.get(cls_name) if cls_name else None
        binding = get(sc, "volumeBindingMode", default="Immediate") if sc else None
        consumers = None if pods_unread else users.get((ns, name), [])
        events = events_for(ctx.snapshot, "PersistentVolumeClaim", ns, name)
        source = _data_source(pvc)
        volume = get(pvc, "spec", "volumeName")
        selected = get(pvc, "metadata", "annotations", SELECTED_NODE)
        cause_ref = None
        severity: Severity = "warning"
        if volume:
            why, cause_ref = _prebound(ctx, pvc, str(volume))
        elif cls_name == "" or (asked is None and default is None):
            why = ("it names no storage class and no StorageClass is the default: it waits "
                   "for one (or for a matching pre-created PersistentVolume)" if asked is None else
                   "it asks for no storage class (\"\"): only a pre-created PersistentVolume "
                   "can bind it")
        elif failed := next((e for e in events if e.get("reason") == "ProvisioningFailed"),
                            None):
            why = f"provisioning failed: {failed.get('message')}"
        elif binding == "WaitForFirstConsumer" and selected:
            why = (f"its pod was placed on node {selected} and {get(sc, 'provisioner')} has "
                   "not created the volume there (is the provisioner running?)")
        elif binding == "WaitForFirstConsumer":
            # the claim waits for its pod to be scheduled: by design, or the pod's own problem
            # (pod-pending says why); not a second warning for the same cause
            severity = "info"
            if consumers is None:
                why = (f"class {cls_name} binds when a pod first uses the claim (could not read "
                       f"pods: {pods_unread})")
            elif consumers:
                why = (f"class {cls_name} binds once its pod {', '.join(consumers[:3])} is "
                       "scheduled, which it is not yet")
            else:
                why = f"class {cls_name} binds when a pod first uses the claim, and none does yet"
        else:
            why = f"no volume provisioned yet by {get(sc, 'provisioner')} (class {cls_name})"
            if source:
                why += f" from {source.get('kind')} {source.get('name')}"
                if (source.get("kind") == "PersistentVolumeClaim"
                        and not source.get("apiGroup")
                        and ix.find(ctx.snapshot, "persistentvolumeclaims",
                                    source.get("namespace") or ns,
                                    str(source.get("name"))) is None):
                    why += ", which does not exist"
                    cause_ref = {"kind": "PersistentVolumeClaim",
                                 "namespace": source.get("namespace") or ns,
                                 "name": source.get("name")}
        evidence: dict[str, Any] = {
            "storage_class": cls_name, "class_from_default": asked is None,
            "class_exists": sc is not None,
            "provisioner": get(sc, "provisioner") if sc else None,
            "volume_binding_mode": binding, "requested": _request(pvc),
            "access_modes": get(pvc, "spec", "accessModes"), "data_source": source,
            "volume_name": volume, "consumers": consumers, "selected_node": selected,
            "since": get(pvc, "metadata", "creationTimestamp"), "events": events}
        if cause_ref:
            evidence["cause_ref"] = cause_ref
        out.append(ctx.finding(
            "pvc-pending", severity, "PersistentVolumeClaim", ns, name,
            f"PVC {ns}/{name} ({_request(pvc)}) is Pending: {why}", "pvc-pending", evidence))
    return out


@check("pvc-lost", "No PVC lost its volume", reads=("persistentvolumeclaims",),
       uses=("persistentvolumes", "pods", "events"))
def pvc_lost(ctx: CheckContext) -> list[Finding]:
    """PVCs in phase Lost: the PersistentVolume they were bound to is gone."""
    lost = [c for c in _claims(ctx) if get(c, "status", "phase") == "Lost"]
    if not lost:
        return []
    pvs_unread = ctx.unread("persistentvolumes")
    pvs = {meta(pv)[1] for pv in ctx.snapshot.get("persistentvolumes")}
    users = ix.claim_users(ctx.snapshot) if not ctx.unread("pods") else {}
    out = []
    for pvc in lost:
        ns, name = meta(pvc)
        volume = get(pvc, "spec", "volumeName")
        state = ("could not read persistentvolumes" if pvs_unread else
                 "no longer exists" if volume not in pvs else "is no longer bound to it")
        out.append(ctx.finding(
            "pvc-lost", "critical", "PersistentVolumeClaim", ns, name,
            f"PVC {ns}/{name} is Lost: its volume {volume or '?'} {state}", "pvc-lost",
            {"volume_name": volume, "volume_exists": None if pvs_unread else volume in pvs,
             "storage_class": _class_name(pvc), "consumers": users.get((ns, name), []),
             "events": events_for(ctx.snapshot, "PersistentVolumeClaim", ns, name)}))
    return out


@check("storageclass-missing", "PVCs name existing StorageClasses",
       reads=("persistentvolumeclaims", "storageclasses"), uses=("events",))
def storageclass_missing(ctx: CheckContext) -> list[Finding]:
    """PVCs naming a StorageClass that does not exist.

    Critical while the claim waits for a volume (at once: no class is coming by itself); a
    warning once bound to a
    provisioned volume (it keeps working, but nothing can re-provision or expand it). A claim
    bound to a pre-created PersistentVolume of the same class name is fine: for static
    binding a class name is only a label, no StorageClass object has to exist. A claim
    pre-bound to a named volume (``spec.volumeName``) waits for that volume, not for a class:
    ``pvc-pending``'s.
    """
    classes = _classes(ctx)
    out = []
    for pvc in _claims(ctx):
        ns, name = meta(pvc)
        missing = _missing_class(pvc, classes)
        if missing is None:
            continue
        bound = get(pvc, "status", "phase") == "Bound"
        if (bound and not _dynamic(pvc)) or (not bound and get(pvc, "spec", "volumeName")):
            continue  # static binding; a claim pre-bound to a volume
        severity: Severity = "warning" if bound else "critical"
        out.append(ctx.finding(
            "storageclass-missing", severity, "PersistentVolumeClaim", ns, name,
            f"PVC {ns}/{name} names StorageClass {missing}, which does not exist"
            + (" (the claim is bound; its volume cannot be re-provisioned or expanded)"
               if bound else ""), "storageclass-missing",
            {"storage_class": missing, "phase": get(pvc, "status", "phase"),
             "existing_classes": sorted(classes), "default_class": _default_class(classes),
             "cause_ref": {"kind": "StorageClass", "namespace": None, "name": missing},
             "events": events_for(ctx.snapshot, "PersistentVolumeClaim", ns, name)}))
    return out


def _replicas(ctx: CheckContext, volume: str) -> list[dict[str, Any]] | None:
    if not ctx.snapshot.has(LONGHORN_REPLICAS):
        return None
    return [{"name": meta(r)[1], "node": get(r, "spec", "nodeID"),
             "state": get(r, "status", "currentState"),
             "failed_at": get(r, "spec", "failedAt") or None}
            for r in ctx.snapshot.get(LONGHORN_REPLICAS)
            if get(r, "spec", "volumeName") == volume]


def _abnormal(conds: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Longhorn volume conditions worth showing: Scheduled=False, any other one True."""
    return [{k: c.get(k) for k in ("type", "status", "reason", "message") if c.get(k)}
            for c in conds
            if (c.get("type") == "Scheduled") == (c.get("status") == "False")]


def _longhorn(ctx: CheckContext, robustness: str, check_id: str,
              severity: Severity) -> list[Finding]:
    out = []
    for vol in ctx.snapshot.get(LONGHORN_VOLUMES):
        if get(vol, "status", "robustness") != robustness:
            continue
        ns, name = meta(vol)
        kstatus = get(vol, "status", "kubernetesStatus", default={}) or {}
        claim_ns = kstatus.get("namespace") or None
        if claim_ns is not None and not ctx.in_scope(claim_ns):
            continue  # scope by the namespace of the claim the volume serves
        claim = f"{claim_ns}/{kstatus.get('pvcName')}" if kstatus.get("pvcName") else None
        replicas = _replicas(ctx, name)
        healthy = (None if replicas is None else
                   sum(r["state"] == "running" and not r["failed_at"] for r in replicas))
        wanted = get(vol, "spec", "numberOfReplicas")
        what = ("is degraded: fewer healthy replicas than wanted" if robustness == "degraded"
                else "is faulted: no healthy replica, its data is unavailable")
        out.append(ctx.finding(
            check_id, severity, "Volume", ns, name,
            f"Longhorn volume {name}" + (f" (PVC {claim})" if claim else "") + f" {what}"
            + (f" ({healthy}/{wanted} healthy)" if healthy is not None else ""), check_id,
            {"state": get(vol, "status", "state"), "robustness": robustness,
             "number_of_replicas": wanted, "healthy_replicas": healthy, "replicas": replicas,
             "node": get(vol, "status", "currentNodeID") or None,
             "last_degraded_at": get(vol, "status", "lastDegradedAt"), "pvc": claim,
             "pv": kstatus.get("pvName"),
             "workloads": kstatus.get("workloadsStatus"),
             "conditions": _abnormal(get(vol, "status", "conditions", default=[]) or [])}))
    return out


@check("longhorn-volume-degraded", "Longhorn volumes fully replicated",
       reads=(LONGHORN_VOLUMES,), uses=(LONGHORN_REPLICAS,))
def longhorn_volume_degraded(ctx: CheckContext) -> list[Finding]:
    """Longhorn volumes with robustness degraded (still serving, with fewer replicas)."""
    return _longhorn(ctx, "degraded", "longhorn-volume-degraded", "warning")


@check("longhorn-volume-faulted", "No faulted Longhorn volume", reads=(LONGHORN_VOLUMES,),
       uses=(LONGHORN_REPLICAS,))
def longhorn_volume_faulted(ctx: CheckContext) -> list[Finding]:
    """Longhorn volumes with robustness faulted (no healthy replica: data unavailable)."""
    return _longhorn(ctx, "faulted", "longhorn-volume-faulted", "critical")
