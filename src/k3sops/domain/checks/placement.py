"""DaemonSet pods on nodes where their DaemonSet no longer wants them.

A NoSchedule taint added to a node (or a label removed) does not evict a running DaemonSet
pod; the DaemonSet controller counts it as misscheduled and leaves it. A node that is down
gets the unreachable/not-ready NoSchedule taints and makes every DaemonSet count its pod
there too: that is the node's problem (node-not-ready), told apart here by the node's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.workloads import _in_scope, _index, _int, _restricted
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import Obj, conditions, get, meta


def _tolerated(taint: Mapping[str, Any], tolerations: list[Mapping[str, Any]]) -> bool:
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and not t.get("key"):
            return True
        if t.get("key") != taint.get("key"):
            continue
        if t.get("operator") == "Exists" or t.get("value") == taint.get("value"):
            return True
    return False


def _why_misplaced(ds: Obj, node: Obj | None) -> str:
    """Why a DaemonSet pod should not be on a node: untolerated taint or selector mismatch."""
    if node is None:
        return "its node is not in the cluster"
    spec = get(ds, "spec", "template", "spec", default={}) or {}
    tolerations = list(spec.get("tolerations") or [])
    for taint in get(node, "spec", "taints", default=[]) or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerated(
                taint, tolerations):
            return (f"taint {taint.get('key')}={taint.get('value') or ''}:{taint.get('effect')}"
                    " is not tolerated")
    labels = get(node, "metadata", "labels", default={}) or {}
    selector = spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return "the node no longer matches its node selector"
    return "the node no longer matches its affinity"


def _ds_pod_node(pod: Obj) -> str:
    """The node a DaemonSet pod is on, or is made for (its matchFields affinity) if Pending."""
    if get(pod, "spec", "nodeName"):
        return str(get(pod, "spec", "nodeName"))
    terms = get(pod, "spec", "affinity", "nodeAffinity",
                "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms",
                default=[]) or []
    for term in terms:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("values"):
                return str(f["values"][0])
    return ""


@check("daemonset-misscheduled", "DaemonSet pods only where they belong",
       reads=("daemonsets", "pods", "nodes"))
def daemonset_misscheduled(ctx: CheckContext) -> list[Finding]:
    """DaemonSets with pods on nodes that should not run them (numberMisscheduled > 0).

    A NoSchedule taint added to a node (or a label removed) does not evict a running
    DaemonSet pod: it keeps running where its DaemonSet no longer wants it. A node that is
    down gets the unreachable/not-ready NoSchedule taints and makes every DaemonSet count its
    pod there as misscheduled: that is node-not-ready's finding, not each DaemonSet's. Telling
    the two apart needs the pods and their nodes: without them the rule is not evaluated.
    """
    out = []
    by_ds: dict[str, list[Obj]] | None = None
    for ds in _in_scope(ctx, "daemonsets"):
        misscheduled = _int(get(ds, "status", "numberMisscheduled"))
        if misscheduled == 0:
            continue
        ns, name = meta(ds)
        if by_ds is None:
            by_ds = _index(ctx.snapshot.get("pods"), "DaemonSet")
        where: list[dict[str, Any]] = []
        nodes = ix.by_name(ctx.snapshot, "nodes")
        for pod in by_ds.get(f"{ns}/{name}", []):
            node_name = _ds_pod_node(pod)
            node = nodes.get((None, node_name))
            if node is None or (conditions(node).get("Ready") or {}).get("status") != "True":
                continue  # a node gone or down: node-not-ready's finding
            why = _why_misplaced(ds, node)
            if why == "the node no longer matches its affinity" and not _restricted(ds):
                continue  # nothing keeps it off this node: a pod where it belongs
            where.append({"pod": meta(pod)[1], "node": node_name, "why": why})
        if not where:
            continue
        shown = "; ".join(f"{w['node']}: {w['why']}" for w in where[:3])
        out.append(ctx.finding(
            "daemonset-misscheduled", "warning", "DaemonSet", ns, name,
            f"daemonset {ns}/{name} runs {misscheduled} pod(s) on nodes where it should not"
            + f" ({shown})", "daemonset-misscheduled",
            {"misscheduled": misscheduled,
             "desired": _int(get(ds, "status", "desiredNumberScheduled")),
             "pods": where[:10]}))
    return out
