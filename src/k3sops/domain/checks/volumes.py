"""Volumes: failed resizes, PVs failed, released or pinned to a gone node, attach errors.

Also the default StorageClass: none while claims need one, or several.

K3s' local-path provisioner creates PersistentVolumes with a required node affinity on
``kubernetes.io/hostname``: when that node is removed from the cluster, the volume (and its
data) stays behind and every pod using it stays Pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.capacity import quantity
from k3sops.domain.checks.network import since, younger_than
from k3sops.domain.checks.storage import DEFAULT_CLASS_ANNOTATIONS
from k3sops.domain.findings import Finding, Severity
from k3sops.domain.snapshot import Obj, conditions, events_for, get, meta

RESIZING_GRACE_SECONDS = 900
"""A resize still in progress after this long is stuck."""
ATTACH_GRACE_SECONDS = 120
"""Attachers retry: an error on a brand-new VolumeAttachment may clear by itself."""
HOSTNAME = "kubernetes.io/hostname"
INFEASIBLE = ("ControllerResizeInfeasible", "NodeResizeInfeasible")
SHOWN = 5


def _true(conds: Mapping[str, Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    c = conds.get(kind)
    return c if c is not None and c.get("status") == "True" else None


def _live_claims(ctx: CheckContext) -> list[Obj]:
    return [c for c in ctx.snapshot.get("persistentvolumeclaims")
            if ctx.in_scope(meta(c)[0]) and ix.live(c)]


@check("pvc-resize-failed", "PVC expansions complete", reads=("persistentvolumeclaims",),
       uses=("events",))
def pvc_resize_failed(ctx: CheckContext) -> list[Finding]:
    """PVCs whose expansion failed or hangs.

    Warning on a ControllerResizeError/NodeResizeError condition, an infeasible allocated
    resource status, or Resizing for more than 15 minutes; info on FileSystemResizePending
    (the volume grew, its file system grows when a pod (re)starts with it).
    """
    out = []
    for pvc in _live_claims(ctx):
        ns, name = meta(pvc)
        conds = conditions(pvc)
        error = _true(conds, "ControllerResizeError") or _true(conds, "NodeResizeError")
        state = get(pvc, "status", "allocatedResourceStatuses", "storage")
        resizing = _true(conds, "Resizing")
        fs_pending = _true(conds, "FileSystemResizePending")
        # the size asked for: the allocation the resizer works on, else the spec
        requested = (get(pvc, "status", "allocatedResources", "storage")
                     or get(pvc, "spec", "resources", "requests", "storage"))
        capacity = get(pvc, "status", "capacity", "storage")
        severity: Severity = "warning"
        if error is not None or state in INFEASIBLE:
            why = (f"expansion to {requested} failed: "
                   f"{(error or {}).get('message') or state}")
        elif resizing is not None and (since(ctx, resizing.get("lastTransitionTime")) or 0) \
                > RESIZING_GRACE_SECONDS:
            minutes = (since(ctx, resizing.get("lastTransitionTime")) or 0) / 60
            why = f"expansion to {requested} has been in progress for {minutes:.0f} min"
        elif fs_pending is not None:
            severity = "info"
            why = ("the volume was expanded; its file system grows when a pod using it "
                   "(re)starts")
        else:
            continue
        out.append(ctx.finding(
            "pvc-resize-failed", severity, "PersistentVolumeClaim", ns, name,
            f"PVC {ns}/{name} ({capacity} now): {why}", "pvc-resize-failed",
            {"requested": requested, "capacity": capacity,
             "allocated": get(pvc, "status", "allocatedResources", "storage"),
             "allocated_status": state, "volume_name": get(pvc, "spec", "volumeName"),
             "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message",
                                                   "lastTransitionTime")}
                            for c in conds.values()],
             "events": events_for(ctx.snapshot, "PersistentVolumeClaim", ns, name)}))
    return out


def _pv_summary(pv: Obj) -> dict[str, Any]:
    ref = get(pv, "spec", "claimRef") or {}
    return {"claim": f"{ref.get('namespace')}/{ref.get('name')}" if ref.get("name") else None,
            "capacity": get(pv, "spec", "capacity", "storage"),
            "storage_class": get(pv, "spec", "storageClassName"),
            "reclaim_policy": get(pv, "spec", "persistentVolumeReclaimPolicy"),
            "phase": get(pv, "status", "phase")}


def _pv_in_scope(ctx: CheckContext, pv: Obj) -> bool:
    """A PV belongs to the environment of the claim it serves (unclaimed: every one)."""
    return ctx.in_scope(get(pv, "spec", "claimRef", "namespace"))


@check("pv-failed", "No PersistentVolume Failed", reads=("persistentvolumes",),
       uses=("events",))
def pv_failed(ctx: CheckContext) -> list[Finding]:
    """PersistentVolumes in phase Failed: automatic reclamation (delete/recycle) failed."""
    out = []
    for pv in ctx.snapshot.get("persistentvolumes"):
        if get(pv, "status", "phase") != "Failed" or not _pv_in_scope(ctx, pv):
            continue
        _, name = meta(pv)
        summary = _pv_summary(pv)
        out.append(ctx.finding(
            "pv-failed", "warning", "PersistentVolume", None, name,
            f"PersistentVolume {name} ({summary['capacity']}, policy "
            f"{summary['reclaim_policy']}) is Failed: "
            f"{get(pv, 'status', 'message') or get(pv, 'status', 'reason') or 'reclaim failed'}",
            "pv-failed",
            {**summary, "message": get(pv, "status", "message"),
             "reason": get(pv, "status", "reason"),
             "events": events_for(ctx.snapshot, "PersistentVolume", None, name)}))
    return out


def _pinned_hosts(pv: Obj) -> list[list[str]] | None:
    """Per node-selector term, the hostnames it requires (None: some term has no such pin)."""
    terms = get(pv, "spec", "nodeAffinity", "required", "nodeSelectorTerms", default=[]) or []
    if not terms:
        return None
    out = []
    for term in terms:
        hosts = [str(v) for e in term.get("matchExpressions") or []
                 if e.get("key") == HOSTNAME and e.get("operator") == "In"
                 for v in e.get("values") or []]
        if not hosts:
            return None  # this term can be met by some node: not pinned to a hostname
        out.append(hosts)
    return out


@check("pv-node-missing", "Node-pinned volumes have their node",
       reads=("persistentvolumes", "nodes"), uses=("pods",))
def pv_node_missing(ctx: CheckContext) -> list[Finding]:
    """PersistentVolumes whose required node affinity names only nodes that no longer exist.

    Typical of K3s local-path volumes of a removed node: the data is on that machine, and pods
    using the volume cannot be scheduled anywhere. Critical when such a pod is Pending, a
    warning while a claim holds it, info for an unclaimed (Available) one. Released and Failed
    volumes are left to pv-released / pv-failed.
    """
    hostnames = {meta(n)[1] for n in ctx.snapshot.get("nodes")}
    hostnames |= {str(h) for n in ctx.snapshot.get("nodes")
                  if (h := get(n, "metadata", "labels", HOSTNAME))}
    pods_unread = ctx.unread("pods")
    users = ix.claim_users(ctx.snapshot) if not pods_unread else {}
    out = []
    for pv in ctx.snapshot.get("persistentvolumes"):
        if get(pv, "status", "phase") in ("Released", "Failed") or not _pv_in_scope(ctx, pv):
            continue
        terms = _pinned_hosts(pv)
        if terms is None or any(h in hostnames for hosts in terms for h in hosts):
            continue
        _, name = meta(pv)
        summary = _pv_summary(pv)
        ref = get(pv, "spec", "claimRef") or {}
        pods: list[str] | None = None
        pending: list[str] = []
        if ref.get("name") and not pods_unread:
            pods = users.get((ref.get("namespace"), str(ref["name"])), [])
            for pod_name in pods:
                pod = ix.find(ctx.snapshot, "pods", ref.get("namespace"), pod_name)
                if pod is not None and get(pod, "status", "phase") == "Pending":
                    pending.append(pod_name)
        # a pod waiting on it: users affected; claimed: breaks at the next reschedule;
        # unclaimed (Available): only a leftover volume
        severity: Severity = ("critical" if pending else "warning" if ref.get("name")
                              else "info")
        wanted = sorted({h for hosts in terms for h in hosts})
        effect = (f": pod {', '.join(pending[:SHOWN])} cannot be scheduled" if pending
                  else f" (claim {summary['claim']})" if summary["claim"] else "")
        evidence: dict[str, Any] = {**summary, "nodes": wanted, "pods": pods,
                                    "pending_pods": pending,
                                    "cause_ref": [{"kind": "Node", "namespace": None, "name": h}
                                                  for h in wanted]}
        if pods_unread:
            evidence["pods_unread"] = pods_unread
        out.append(ctx.finding(
            "pv-node-missing", severity, "PersistentVolume", None, name,
            f"PersistentVolume {name} lives on node {', '.join(wanted)}, which is no longer in "
            f"the cluster{effect}", "pv-node-missing", evidence))
    return out


@check("volumeattachment-error", "Volumes attach and detach", reads=("volumeattachments",))
def volumeattachment_error(ctx: CheckContext) -> list[Finding]:
    """VolumeAttachments whose attacher reports an attach or detach error."""
    out = []
    for va in ctx.snapshot.get("volumeattachments"):
        attach = get(va, "status", "attachError")
        detach = get(va, "status", "detachError")
        if not (attach or detach) or younger_than(ctx, va, ATTACH_GRACE_SECONDS):
            continue
        _, name = meta(va)
        err = attach or detach
        what = "attach to" if attach else "detach from"
        pv = get(va, "spec", "source", "persistentVolumeName")
        node = get(va, "spec", "nodeName")
        out.append(ctx.finding(
            "volumeattachment-error", "warning", "VolumeAttachment", None, name,
            f"volume {pv or '(inline)'} cannot {what} node {node} "
            f"({get(va, 'spec', 'attacher')}): {err.get('message')}", "volumeattachment-error",
            {"attacher": get(va, "spec", "attacher"), "node": node, "persistent_volume": pv,
             "attached": get(va, "status", "attached"), "attach_error": attach,
             "detach_error": detach, "deleting": not ix.live(va)}))
    return out


def _defaults(ctx: CheckContext) -> list[Obj]:
    return [sc for sc in ctx.snapshot.get("storageclasses")
            if any(get(sc, "metadata", "annotations", a) == "true"
                   for a in DEFAULT_CLASS_ANNOTATIONS)]


@check("storageclass-default-conflict", "At most one default StorageClass",
       reads=("storageclasses",))
def storageclass_default_conflict(ctx: CheckContext) -> list[Finding]:
    """More than one StorageClass marked default.

    Kubernetes (>= 1.26) then gives claims without a class the most recently created default
    one: which class a new claim gets depends on creation order, not on intent.
    """
    defaults = sorted(_defaults(ctx), key=lambda sc: (
        str(get(sc, "metadata", "creationTimestamp") or ""), meta(sc)[1]))
    if len(defaults) < 2:
        return []
    names = [meta(sc)[1] for sc in defaults]
    newest = names[-1]
    # on the newest: it is the one that changed which class new claims get
    return [ctx.finding(
        "storageclass-default-conflict", "warning", "StorageClass", None, newest,
        f"{len(names)} StorageClasses are marked default ({', '.join(names)}): new claims "
        f"without a class get the newest, {newest}", "storageclass-default-conflict",
        {"defaults": names, "used_for_new_claims": newest,
         "provisioners": {meta(sc)[1]: sc.get("provisioner") for sc in defaults}})]


@check("storageclass-no-default", "A default StorageClass exists for claims without a class",
       periods=("weekly",), reads=("storageclasses", "persistentvolumeclaims"),
       uses=("statefulsets",))
def storageclass_no_default(ctx: CheckContext) -> list[Finding]:
    """No default StorageClass while claims (or StatefulSet claim templates) name no class.

    Such a claim stays Pending until a default appears; a bound one is fine, but the next
    replica of a StatefulSet whose template names no class is not.
    """
    if _defaults(ctx):
        return []
    claims = [f"{meta(c)[0]}/{meta(c)[1]}" for c in _live_claims(ctx)
              if get(c, "spec", "storageClassName") is None
              and not get(c, "metadata", "annotations", "volume.beta.kubernetes.io/storage-class")
              and get(c, "status", "phase") != "Bound"]
    templates = sorted(f"{meta(s)[0]}/{meta(s)[1]}" for s in ctx.snapshot.get("statefulsets")
                       if ctx.in_scope(meta(s)[0]) and any(
                           get(t, "spec", "storageClassName") is None
                           for t in get(s, "spec", "volumeClaimTemplates", default=[]) or []))
    if not claims and not templates:
        return []
    what = (f"{len(claims)} unbound claim{'s' if len(claims) != 1 else ''} (e.g. {claims[0]})"
            if claims else
            f"StatefulSet {templates[0]}'s claim template")
    return [ctx.finding(
        "storageclass-no-default", "info", "Cluster", None, "default-storageclass",
        f"no StorageClass is the default, and {what} names no class: it waits for a default",
        "storageclass-no-default",
        {"claims": claims[:SHOWN * 4], "statefulsets": templates[:SHOWN * 4],
         "classes": sorted(meta(sc)[1] for sc in ctx.snapshot.get("storageclasses"))})]


@check("pv-released", "No PersistentVolume left Released", periods=("weekly",),
       reads=("persistentvolumes",))
def pv_released(ctx: CheckContext) -> list[Finding]:
    """PersistentVolumes Released: their claim is gone, their data waits for a decision.

    With policy Retain nothing happens by itself: delete the volume (and its data) or make it
    Available again for a new claim. With Delete, a volume still Released means its
    provisioner is not deleting it.
    """
    out = []
    for pv in ctx.snapshot.get("persistentvolumes"):
        if get(pv, "status", "phase") != "Released" or not _pv_in_scope(ctx, pv):
            continue
        _, name = meta(pv)
        summary = _pv_summary(pv)
        policy = summary["reclaim_policy"]
        tail = ("its data is kept until someone deletes or re-binds it" if policy == "Retain"
                else f"policy {policy}, but it has not been reclaimed")
        size = quantity(summary["capacity"]) if summary["capacity"] else None
        out.append(ctx.finding(
            "pv-released", "info", "PersistentVolume", None, name,
            f"PersistentVolume {name} ({summary['capacity']}) is Released (its claim "
            f"{summary['claim']} was deleted): {tail}", "pv-released",
            {**summary, "bytes": size}))
    return out
