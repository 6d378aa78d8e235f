"""A node's diagnosis: its chain, then role, readiness, pressure, requests and version."""

from __future__ import annotations

import re

from k3sops.config.schema import Platform
from k3sops.domain import index as ix
from k3sops.domain.checks.capacity import pod_request, quantity
from k3sops.domain.checks.scheduling import fmt
from k3sops.domain.diagnose.model import Diagnosis
from k3sops.domain.diagnose.objects import diagnose_object, find
from k3sops.domain.diagnose.walk import context
from k3sops.domain.snapshot import (
    ClusterSnapshot,
    Obj,
    conditions,
    events_for,
    get,
    meta,
)

K3S_ROLE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master",
                   "node-role.kubernetes.io/etcd")


def node_role(node: Obj) -> str:
    """K3s role: server (control plane / etcd labels) or agent."""
    labels = get(node, "metadata", "labels", default={}) or {}
    return "server" if any(labels.get(k) in ("true", "") for k in K3S_ROLE_LABELS) else "agent"


def _minor(version: str) -> tuple[int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)", version)
    return (int(m[1]), int(m[2])) if m else None


def diagnose_node(snapshot: ClusterSnapshot, name: str, d: Diagnosis | None = None,
                  platform: Platform | None = None) -> Diagnosis:
    """A node: its findings, then facts (role, readiness, pressure, requests, version)."""
    d = d or Diagnosis(context(snapshot, platform))
    node = find(snapshot, "nodes", name, None)
    if node is None:
        d.step("node exists", False, f"node {name} not found")
        return d
    diagnose_object(snapshot, "nodes", None, name, d, platform)
    conds = conditions(node)
    ready = conds.get("Ready") or {}
    status = str(ready.get("status", "Unknown"))
    role = node_role(node)
    d.step("role", True, f"{role} ({'control plane' if role == 'server' else 'worker'})")
    d.step("ready", status == "True",
           f"{ {'True': 'Ready', 'False': 'NotReady'}.get(status, 'Unknown')} since "
           f"{ready.get('lastTransitionTime')}"
           + (f": {ready.get('reason')} {ready.get('message') or ''}".rstrip()
              if status != "True" else ""))
    pressure = [t for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
                if (conds.get(t) or {}).get("status") == "True"]
    d.step("pressure", not pressure, ", ".join(pressure) or "none")
    cordoned = bool(get(node, "spec", "unschedulable"))
    d.step("schedulable", not cordoned, "cordoned" if cordoned else "schedulable")
    taints = [f"{t.get('key')}:{t.get('effect')}" for t in
              get(node, "spec", "taints", default=[]) or []]
    d.step("taints", not taints, ", ".join(taints) or "none")
    if "pods" in snapshot.objects:
        on_node = [p for p in ix.pods_on_node(snapshot).get(name, [])
                   if get(p, "status", "phase") not in ("Succeeded", "Failed")]
        for res in ("cpu", "memory"):
            alloc = quantity(get(node, "status", "allocatable", res)) or 0.0
            used = sum(pod_request(p, res) for p in on_node)
            pct = round(100 * used / alloc) if alloc else None
            d.step(f"{res} requests", pct is None or pct <= 100,
                   f"{fmt(res, used)} of {fmt(res, alloc)} allocatable ({pct}%)")
        bad = [meta(p)[1] for p in on_node if not ix.pod_healthy(p)]
        d.step("pods on the node", not bad, f"{len(on_node)} pods"
               + (f"; not healthy: {', '.join(bad[:8])}" if bad else ""))
    version = str(get(node, "status", "nodeInfo", "kubeletVersion", default=""))
    others = sorted({str(get(n, "status", "nodeInfo", "kubeletVersion", default=""))
                     for n in snapshot.get("nodes")} - {version, ""})
    skew = _minor(version) is not None and any(
        _minor(o) is not None and _minor(o) != _minor(version) for o in others)
    d.step("kubelet version", not skew,
           f"{version}" + (f"; other nodes run {', '.join(others)}" if others else
                           " (same on every node)"))
    events = events_for(snapshot, "Node", None, name, limit=5) \
        if "events" in snapshot.objects else []
    if events:
        d.step("recent events", not any(e.get("type") == "Warning" for e in events),
               "; ".join(f"{e.get('reason')}: {e.get('message')}" for e in events[:3]))
    return d
