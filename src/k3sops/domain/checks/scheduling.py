"""Why the scheduler cannot place a pod: its FailedScheduling message turned into causes.

The scheduler writes ``0/6 nodes are available: 3 Insufficient cpu, 3 node(s) had untolerated
taint {...}. preemption: ...`` (or, for volumes, ``pod has unbound immediate
PersistentVolumeClaims``). Each part becomes a cause with the facts behind it: requests against
the largest allocatable and the most free node, the selector no node matches, the taints not
tolerated, the PVCs not bound (and why: missing class, no provisioner), the cordoned nodes.
A cause whose facts live in a kind that could not be read says so instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext
from k3sops.domain.checks.capacity import pod_request, quantity
from k3sops.domain.snapshot import Obj, get, meta

_ITEM = re.compile(r"^\s*(\d+)\s+(.*?)\s*$")
DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                             "storageclass.beta.kubernetes.io/is-default-class")


def parse_failed_scheduling(message: str) -> list[dict[str, Any]]:
    """The scheduler's ``0/6 nodes are available: ...`` message as (count, reason) items."""
    _, sep, rest = message.partition("nodes are available:")
    if not sep:
        return [{"nodes": None, "reason": message.strip()}] if message.strip() else []
    rest = rest.split("preemption:")[0]
    head = rest.split(". ")[0].rstrip(". ")
    out: list[dict[str, Any]] = []
    for part in head.split(", "):
        m = _ITEM.match(part)
        if m:
            out.append({"nodes": int(m[1]), "reason": m[2]})
        elif part.strip():
            # "pod has unbound immediate PersistentVolumeClaims" carries no node count
            out.append({"nodes": None, "reason": part.strip()})
    return out


def tolerates(pod: Obj, taint: Mapping[str, Any]) -> bool:
    """Whether one of the pod's tolerations tolerates ``taint``."""
    for tol in get(pod, "spec", "tolerations", default=[]) or []:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists" and not tol.get("key"):
            return True
        if tol.get("key") != taint.get("key"):
            continue
        if tol.get("operator") == "Exists" or tol.get("value") == taint.get("value"):
            return True
    return False


def fmt(resource: str, value: float) -> str:
    """CPU in millicores, memory in MiB, other resources as numbers."""
    if resource == "cpu":
        return f"{value * 1000:.0f}m"
    if resource in ("memory", "ephemeral-storage"):
        return f"{value / 2**20:.0f}Mi"
    return f"{value:g}"


def node_free(ctx: CheckContext, node: Obj, resource: str) -> tuple[float, float]:
    """(allocatable, allocatable minus the requests of the pods bound to it)."""
    name = meta(node)[1]
    alloc = quantity(get(node, "status", "allocatable", resource)) or 0.0
    used = sum(pod_request(p, resource) for p in ix.pods_on_node(ctx.snapshot).get(name, [])
               if get(p, "status", "phase") not in ("Succeeded", "Failed"))
    return alloc, alloc - used


def default_class(classes: Mapping[str, Obj]) -> str | None:
    """The default StorageClass' name."""
    for name, sc in classes.items():
        if any(get(sc, "metadata", "annotations", a) == "true"
               for a in DEFAULT_CLASS_ANNOTATIONS):
            return name
    return None


def claim_problem(ctx: CheckContext, namespace: str | None, claim: str) -> dict[str, Any]:
    """Why one PVC of a pending pod is not bound (facts, and the object to look at next)."""
    out: dict[str, Any] = {"claim": claim}
    if why := ctx.unread("persistentvolumeclaims"):
        out["detail"] = f"PVC {claim}: could not read persistentvolumeclaims ({why})"
        return out
    pvc = ix.find(ctx.snapshot, "persistentvolumeclaims", namespace, claim)
    if pvc is None:
        out["detail"] = f"PVC {claim} does not exist"
        out["missing"] = True
        return out
    phase = get(pvc, "status", "phase")
    out["phase"] = phase
    if phase == "Bound":
        out["detail"] = f"PVC {claim} is Bound"
        return out
    asked = get(pvc, "spec", "storageClassName")
    if why := ctx.unread("storageclasses"):
        out["detail"] = (f"PVC {claim} is {phase}; its class could not be checked "
                         f"(could not read storageclasses: {why})")
        return out
    classes = {meta(c)[1]: c for c in ctx.snapshot.get("storageclasses")}
    cls = default_class(classes) if asked is None else asked
    out["storage_class"] = cls
    if cls and cls not in classes:
        out["detail"] = f"PVC {claim} is {phase}: StorageClass {cls} does not exist"
        out["class_missing"] = True
    elif not cls:
        out["detail"] = (f"PVC {claim} is {phase}: it names no StorageClass and there is no "
                         "default: only a pre-created PersistentVolume can bind it")
    else:
        out["detail"] = (f"PVC {claim} is {phase}: no volume provisioned yet by "
                         f"{get(classes[cls], 'provisioner')} (class {cls})")
    return out


def scheduling_causes(ctx: CheckContext, pod: Obj, message: str) -> list[dict[str, Any]]:
    """The FailedScheduling message turned into causes with the facts behind each."""
    causes: list[dict[str, Any]] = []
    nodes = ctx.snapshot.get("nodes") if not ctx.unread("nodes") else []
    ns = meta(pod)[0]
    for item in parse_failed_scheduling(message):
        reason = str(item["reason"])
        low = reason.lower()
        cause: dict[str, Any] = {"nodes": item["nodes"], "reason": reason}
        if low.startswith("insufficient ") and nodes:
            resource = reason.split(" ", 1)[1]
            requested = pod_request(pod, resource)
            frees = [(meta(n)[1], *node_free(ctx, n, resource)) for n in nodes
                     if not get(n, "spec", "unschedulable")]
            best = max(frees, key=lambda t: t[1], default=None)
            most_free = max(frees, key=lambda t: t[2], default=None)
            cause.update(cause=f"insufficient-{resource}", resource=resource,
                         requested=fmt(resource, requested))
            if best is not None and most_free is not None:
                cause.update(largest_allocatable=fmt(resource, best[1]),
                             largest_allocatable_node=best[0],
                             most_free=fmt(resource, most_free[2]),
                             most_free_node=most_free[0])
                cause["detail"] = (f"requests {fmt(resource, requested)} {resource}; the "
                                   f"largest allocatable is {fmt(resource, best[1])} "
                                   f"({best[0]}), the most free {fmt(resource, most_free[2])} "
                                   f"({most_free[0]})")
        elif "affinity" in low or "selector" in low:
            sel = get(pod, "spec", "nodeSelector", default={}) or {}
            aff = get(pod, "spec", "affinity", "nodeAffinity", default=None)
            cause.update(cause="node-selector", node_selector=dict(sel), node_affinity=aff,
                         detail=f"no node matches nodeSelector {dict(sel)}"
                         + (" / nodeAffinity" if aff else ""))
            if "volume node affinity" in low or "persistentvolume's node affinity" in low:
                cause.update(cause="volume-node-affinity",
                             detail="a PersistentVolume it mounts is tied to a node the pod "
                                    "cannot use (or that no longer exists)")
        elif "taint" in low:
            untolerated = sorted({f"{t.get('key')}={t.get('value') or ''}:{t.get('effect')}"
                                  f" ({meta(n)[1]})"
                                  for n in nodes for t in get(n, "spec", "taints",
                                                               default=[]) or []
                                  if t.get("effect") in ("NoSchedule", "NoExecute")
                                  and not tolerates(pod, t)})
            cause.update(cause="untolerated-taints", taints=untolerated,
                         detail="untolerated taints: " + (", ".join(untolerated) or reason))
        elif "persistentvolumeclaim" in low or "volume" in low:
            claims = [claim_problem(ctx, ns, c) for c in ix.pod_claims(pod)]
            unbound = [c for c in claims if c.get("phase") != "Bound"]
            cause.update(cause="pvc-unbound", claims=unbound,
                         detail="; ".join(str(c["detail"]) for c in unbound) or reason)
        elif "unschedulable" in low:
            cordoned = [meta(n)[1] for n in nodes if get(n, "spec", "unschedulable")]
            cause.update(cause="nodes-cordoned", nodes_cordoned=cordoned,
                         detail="cordoned: " + (", ".join(cordoned) or "?"))
        elif "port" in low:
            cause.update(cause="host-port", detail=reason)
        else:
            cause.update(cause="other", detail=reason)
        causes.append(cause)
    # the reason that rules out most nodes first: that is what to fix
    return sorted(causes, key=lambda c: -(c["nodes"] or 0))
