"""Node health: Ready, pressure conditions, cordoned nodes, nodes left by an upgrade."""

from __future__ import annotations

from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import conditions, events_for, get, meta

UPGRADE_ANNOTATION = "k3sops.io/upgrade-in-progress"
"""Set on a Node by ``k3sops upgrade apply`` from its cordon until its uncordon (value: the
target version): a cordoned node still carrying it was left by an upgrade that stopped."""

PRESSURES = {"MemoryPressure": "node-memory-pressure", "DiskPressure": "node-disk-pressure",
             "PIDPressure": "node-pid-pressure"}


@check("node-not-ready", "Nodes Ready", reads=("nodes",), uses=("events",))
def node_not_ready(ctx: CheckContext) -> list[Finding]:
    """A node whose Ready condition is not True (critical: its pods are being lost)."""
    out = []
    for node in ctx.snapshot.get("nodes"):
        _, name = meta(node)
        ready = conditions(node).get("Ready")
        status = str(ready.get("status")) if ready else "Unknown"
        if status == "True":
            continue
        taints = [t.get("key") for t in get(node, "spec", "taints", default=[]) or []]
        out.append(ctx.finding(
            "node-not-ready", "critical", "Node", None, name,
            f"node {name} is {'NotReady' if status == 'False' else 'Unknown'}"
            + (f" since {ready.get('lastTransitionTime')}" if ready else ""),
            "node-not-ready",
            {"ready": status, "reason": ready.get("reason") if ready else None,
             "message": ready.get("message") if ready else None, "taints": taints,
             "events": events_for(ctx.snapshot, "Node", None, name)}))
    return out


@check("node-pressure", "Nodes without pressure", reads=("nodes",))
def node_pressure(ctx: CheckContext) -> list[Finding]:
    """Memory, disk or PID pressure reported by the kubelet."""
    out = []
    for node in ctx.snapshot.get("nodes"):
        _, name = meta(node)
        for cond, runbook in PRESSURES.items():
            c = conditions(node).get(cond)
            if c and c.get("status") == "True":
                out.append(ctx.finding("node-pressure", "warning", "Node", None, name,
                                       f"node {name} reports {cond}", runbook,
                                       {"condition": dict(c)}))
    return out


@check("node-cordoned", "Nodes schedulable", reads=("nodes",))
def node_cordoned(ctx: CheckContext) -> list[Finding]:
    """A cordoned node (unschedulable): fine during maintenance, worth knowing every morning."""
    return [ctx.finding("node-cordoned", "info", "Node", None, meta(n)[1],
                        f"node {meta(n)[1]} is cordoned (unschedulable)", "node-cordoned",
                        {"taints": get(n, "spec", "taints", default=[])})
            for n in ctx.snapshot.get("nodes") if get(n, "spec", "unschedulable")]


@check("node-upgrade-interrupted", "No node left cordoned by an upgrade", reads=("nodes",))
def node_upgrade_interrupted(ctx: CheckContext) -> list[Finding]:
    """A cordoned node still marked by ``k3sops upgrade apply``: the upgrade stopped there.

    The annotation is removed when the node is uncordoned after its upgrade; while an upgrade
    runs, the node it works on shows here too (for as long as its step takes).
    """
    out = []
    for n in ctx.snapshot.get("nodes"):
        target = (get(n, "metadata", "annotations", default={}) or {}).get(UPGRADE_ANNOTATION)
        if target is None or not get(n, "spec", "unschedulable"):
            continue
        name = meta(n)[1]
        version = get(n, "status", "nodeInfo", "kubeletVersion")
        out.append(ctx.finding(
            "node-upgrade-interrupted", "warning", "Node", None, name,
            f"node {name} is cordoned by a k3sops upgrade to {target or '?'} that is still "
            f"running or was interrupted (it reports {version or 'no version'}): finish it "
            f"with `k3sops upgrade apply --to {target or 'VERSION'} --resume`",
            "node-upgrade-interrupted",
            {"annotation": UPGRADE_ANNOTATION, "target": target, "kubelet_version": version,
             "command": f"k3sops upgrade apply --to {target or 'VERSION'} --resume"}))
    return out


@check("node-network-unavailable", "Nodes' networks are set up", reads=("nodes",))
def node_network_unavailable(ctx: CheckContext) -> list[Finding]:
    """Nodes reporting NetworkUnavailable=True: no route or CNI, pods there cannot talk."""
    out = []
    for node in ctx.snapshot.get("nodes"):
        c = conditions(node).get("NetworkUnavailable")
        if not c or c.get("status") != "True":
            continue
        _, name = meta(node)
        out.append(ctx.finding(
            "node-network-unavailable", "critical", "Node", None, name,
            f"node {name} reports NetworkUnavailable: {c.get('reason')}"
            + (f" ({c.get('message')})" if c.get("message") else ""),
            "node-network-unavailable",
            {"condition": {k: c.get(k) for k in ("status", "reason", "message",
                                                 "lastTransitionTime")}}))
    return out
