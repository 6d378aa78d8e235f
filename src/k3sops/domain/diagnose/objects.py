"""One object's diagnosis (any kind, pods, Deployments) and the pod and rollout helpers."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from k3sops.config.schema import Platform
from k3sops.domain import index as ix
from k3sops.domain.checks.scheduling import scheduling_causes as _causes
from k3sops.domain.diagnose.model import Diagnosis, RootCause
from k3sops.domain.diagnose.walk import (
    NodeKey,
    context,
    node_label,
    node_ref,
    relevant_not_evaluated,
    walker_for,
)
from k3sops.domain.snapshot import (
    CLUSTER_SCOPED,
    PLURALS,
    ClusterSnapshot,
    Obj,
    conditions,
    get,
    meta,
)


def diagnose_object(snapshot: ClusterSnapshot, kind: str, namespace: str | None, name: str,
                    d: Diagnosis | None = None, platform: Platform | None = None) -> Diagnosis:
    """Any object's chain: its findings, its dependencies' findings, the roots.

    ``kind`` is the plural name (``ingresses``).
    """
    d = d or Diagnosis(context(snapshot, platform))
    w = walker_for(snapshot, platform)
    ns = None if kind in CLUSTER_SCOPED else namespace
    key: NodeKey = (kind, ns, name)
    why = snapshot.unread(kind)
    if why:
        d.step(node_label(key), False, f"could not read {kind} ({why})")
        d.roots.append(RootCause(resource=node_ref(key), determined=False,
                                 missing=f"could not read {kind} ({why})",
                                 message=f"{node_label(key)} could not be read: {why}"))
        return d
    if w.obj(key) is None:
        d.step(node_label(key), False, "not found")
        return d
    w.chain(d, key)
    w.collect(d, key)
    d.roots += w.roots_from(key)
    d.not_evaluated = relevant_not_evaluated(w, [key])
    return d



# --- the classic targets ----------------------------------------------------------------------

def find(snapshot: ClusterSnapshot, kind: str, name: str, namespace: str | None) -> Obj | None:
    """The object of ``kind`` with that name (and namespace for namespaced kinds)."""
    for o in snapshot.get(kind):
        ns, n = meta(o)
        if n == name and (namespace is None or ns == namespace):
            return o
    return None


def similar(snapshot: ClusterSnapshot, kind: str, name: str,
            namespace: str | None = None) -> list[str]:
    """Names of ``kind`` close to ``name`` (for a NotFound hint)."""
    names = [meta(o)[1] for o in snapshot.get(kind)
             if namespace is None or meta(o)[0] == namespace]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    return close or [n for n in names if n.startswith(name[:3])][:5]


def scheduling_causes(snapshot: ClusterSnapshot, pod: Obj, message: str) -> list[dict[str, Any]]:
    """The FailedScheduling message turned into causes (see :mod:`.checks.scheduling`)."""
    return _causes(context(snapshot), pod, message)


def diagnose_pod(snapshot: ClusterSnapshot, namespace: str, name: str,
                 previous_logs: Mapping[str, list[str]] | None = None,
                 d: Diagnosis | None = None, platform: Platform | None = None) -> Diagnosis:
    """A pod's chain (node, claims, config) and its owner's state.

    ``previous_logs`` maps container name to the tail of its previous instance's log; it is
    attached to the pod's crash-loop finding as evidence.
    """
    d = d or Diagnosis(context(snapshot, platform))
    start = len(d.findings)
    diagnose_object(snapshot, "pods", namespace, name, d, platform)
    pod = ix.find(snapshot, "pods", namespace, name) if "pods" in snapshot.objects else None
    if pod is not None:
        _owner_step(d, snapshot, pod)
    if previous_logs:
        for i in range(start, len(d.findings)):
            f = d.findings[i]
            container = f.evidence.get("container")
            if f.check == "pod-crashloop" and f.resource.name == name and \
                    str(container) in previous_logs:
                d.findings[i] = f.model_copy(update={"evidence": {
                    **f.evidence, "previous_logs": list(previous_logs[str(container)])}})
                d.step(f"container {container} previous logs", False,
                       " | ".join(previous_logs[str(container)][-5:]), 1)
    return d


def _owner_chain(snapshot: ClusterSnapshot, pod: Obj) -> tuple[str, str] | None:
    """The owning workload (kind, name), following a ReplicaSet up to its Deployment."""
    return ix.top_owner(snapshot, pod)


def _owner_step(d: Diagnosis, snapshot: ClusterSnapshot, pod: Obj) -> None:
    namespace = meta(pod)[0]
    owner = _owner_chain(snapshot, pod)
    if owner is None:
        d.step("owner", True, "none: nothing recreates this pod if it is deleted")
        return
    kind, oname = owner
    plural = PLURALS.get(kind)
    obj = ix.find(snapshot, plural, namespace, oname) if plural and \
        plural in snapshot.objects else None
    if kind == "Deployment" and obj is not None:
        r = rollout_state(obj)
        d.step("owner rollout", r["state"] != "stuck",
               f"Deployment {oname}: {r['state']}, {r['available']}/{r['desired']} "
               f"available, {r['updated']} updated"
               + (f" ({r['progressing']})" if r["progressing"] else ""))
    else:
        d.step("owner", True, f"{kind} {oname}")


def rollout_state(dep: Obj) -> dict[str, Any]:
    """A Deployment's rollout: replicas by kind and its Progressing/Available conditions."""
    st = get(dep, "status", default={}) or {}
    conds = conditions(dep)
    prog = conds.get("Progressing") or {}
    avail = conds.get("Available") or {}
    desired = int(get(dep, "spec", "replicas", default=1) or 0)
    stuck = prog.get("reason") == "ProgressDeadlineExceeded"
    done = (not stuck and int(st.get("updatedReplicas") or 0) == desired
            and int(st.get("availableReplicas") or 0) >= desired)
    return {"desired": desired, "updated": st.get("updatedReplicas", 0),
            "ready": st.get("readyReplicas", 0), "available": st.get("availableReplicas", 0),
            "unavailable": st.get("unavailableReplicas", 0),
            "progressing": prog.get("reason"), "progressing_message": prog.get("message"),
            "available_condition": avail.get("status"),
            "state": "stuck" if stuck else ("complete" if done else "progressing")}


def diagnose_deployment(snapshot: ClusterSnapshot, namespace: str, name: str,
                        previous_logs: Mapping[str, Mapping[str, list[str]]] | None = None,
                        platform: Platform | None = None) -> Diagnosis:
    """A Deployment's rollout state, then the chain down its ReplicaSets and pods."""
    d = Diagnosis(context(snapshot, platform))
    dep = find(snapshot, "deployments", name, namespace)
    if dep is None:
        d.step("deployment exists", False, f"deployment {namespace}/{name} not found")
        return d
    r = rollout_state(dep)
    d.step("rollout", r["state"] != "stuck",
           f"{r['state']}: {r['available']}/{r['desired']} available, {r['updated']} updated"
           + (f"; {r['progressing']}: {r['progressing_message']}" if r["progressing"] else ""))
    diagnose_object(snapshot, "deployments", namespace, name, d, platform)
    attach_logs(d, previous_logs)
    return d


def attach_logs(d: Diagnosis, logs: Mapping[str, Mapping[str, list[str]]] | None) -> None:
    """Attach previous logs (pod -> container -> lines) to the crash-loop findings."""
    if not logs:
        return
    for i, f in enumerate(d.findings):
        lines = logs.get(f.resource.name, {}).get(str(f.evidence.get("container")))
        if f.check == "pod-crashloop" and lines:
            d.findings[i] = f.model_copy(update={"evidence": {**f.evidence,
                                                              "previous_logs": list(lines)}})


def pods_of_deployment(snapshot: ClusterSnapshot, namespace: str, name: str) -> list[Obj]:
    """Pods whose owner chain leads to the Deployment."""
    return [p for p in ix.in_namespace(snapshot, "pods", namespace)
            if _owner_chain(snapshot, p) == ("Deployment", name)]


def unhealthy_pods(snapshot: ClusterSnapshot, namespace: str | None = None) -> list[Obj]:
    """Pods worth a chain: not Running/Succeeded, or with a container not ready."""
    out = []
    for p in snapshot.get("pods"):
        if namespace is not None and meta(p)[0] != namespace:
            continue
        phase = get(p, "status", "phase")
        statuses = get(p, "status", "containerStatuses", default=[]) or []
        if phase == "Succeeded":
            continue
        if phase != "Running" or any(not cs.get("ready") for cs in statuses):
            out.append(p)
    return out


def crashlooping(pod: Obj) -> list[str]:
    """Containers of a pod that have a previous instance worth reading logs of."""
    return [str(cs.get("name")) for cs in get(pod, "status", "containerStatuses",
                                               default=[]) or []
            if get(cs, "lastState", "terminated") and int(cs.get("restartCount") or 0) > 0
            and get(cs, "lastState", "terminated", "reason") != "OOMKilled"]
