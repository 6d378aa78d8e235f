"""PodDisruptionBudgets that block every eviction, overlap, or protect nothing.

The eviction API (what ``kubectl drain``, node upgrades and the cluster autoscaler use)
refuses to evict a pod when its budget allows no disruption, and refuses outright a pod
covered by more than one budget. A budget that allows nothing while all its pods are healthy
hangs every drain; one that allows nothing because pods are already down is doing its job.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import Obj, get, meta, parse_time

NO_PODS_GRACE_SECONDS = 300
"""A budget applied with (or before) its workload selects nothing until the pods are made."""
MAX_PODS_SHOWN = 5


def _pdbs(ctx: CheckContext) -> list[Obj]:
    return [p for p in ctx.snapshot.get("poddisruptionbudgets")
            if ctx.in_scope(meta(p)[0]) and ix.live(p)]


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _budget(pdb: Obj) -> str:
    spec = get(pdb, "spec", default={}) or {}
    if spec.get("minAvailable") is not None:
        return f"minAvailable {spec['minAvailable']}"
    if spec.get("maxUnavailable") is not None:
        return f"maxUnavailable {spec['maxUnavailable']}"
    return "no budget"


@check("pdb-blocks-eviction", "Disruption budgets allow drains",
       reads=("poddisruptionbudgets",))
def pdb_blocks_eviction(ctx: CheckContext) -> list[Finding]:
    """Budgets that allow 0 disruptions while every pod they count is healthy.

    Typical: minAvailable equal to the replicas (1 of 1), maxUnavailable 0. Every eviction,
    so every drain of a node running one of these pods, waits forever. Budgets whose status
    is older than their spec (observedGeneration) are not judged.
    """
    out = []
    for pdb in _pdbs(ctx):
        status = get(pdb, "status", default={}) or {}
        if _int(get(pdb, "metadata", "generation")) > _int(status.get("observedGeneration")):
            continue  # the disruption controller has not caught up with the spec
        expected = _int(status.get("expectedPods"))
        healthy, desired = _int(status.get("currentHealthy")), _int(status.get("desiredHealthy"))
        if (status.get("disruptionsAllowed") is None or _int(status["disruptionsAllowed"]) > 0
                or expected == 0 or healthy < desired or healthy < expected):
            continue
        ns, name = meta(pdb)
        out.append(ctx.finding(
            "pdb-blocks-eviction", "warning", "PodDisruptionBudget", ns, name,
            f"poddisruptionbudget {ns}/{name} ({_budget(pdb)}) allows no disruption although "
            f"all {expected} of its pods are healthy: every eviction, so every drain of their "
            "nodes, hangs", "pdb-blocks-eviction",
            {"budget": _budget(pdb), "expected_pods": expected, "current_healthy": healthy,
             "desired_healthy": desired, "disruptions_allowed": 0,
             "selector": get(pdb, "spec", "selector")}))
    return out


def _selected(ctx: CheckContext, pdb: Obj) -> list[Obj]:
    """Live, unfinished pods a budget selects (an empty selector selects every pod)."""
    ns = meta(pdb)[0]
    sel = get(pdb, "spec", "selector")
    if not isinstance(sel, Mapping):
        return []  # a null selector selects nothing (policy/v1)
    if not sel.get("matchLabels") and not sel.get("matchExpressions"):
        pods = [p for p in ix.in_namespace(ctx.snapshot, "pods", ns) if ix.live(p)]
    else:
        pods = ix.pods_selected(ctx.snapshot, ns, sel)
    return [p for p in pods if get(p, "status", "phase") not in ("Succeeded", "Failed")]


@check("pdb-overlap", "Pods have one disruption budget", reads=("poddisruptionbudgets", "pods"))
def pdb_overlap(ctx: CheckContext) -> list[Finding]:
    """Budgets sharing pods: the eviction API refuses to evict a pod under two budgets.

    Each budget of an overlap gets a finding naming the others and the shared pods.
    """
    by_ns: dict[str | None, list[Obj]] = defaultdict(list)
    for pdb in _pdbs(ctx):
        by_ns[meta(pdb)[0]].append(pdb)
    out = []
    for ns, pdbs in sorted(by_ns.items(), key=lambda kv: str(kv[0])):
        if len(pdbs) < 2:
            continue
        owners: dict[str, list[str]] = defaultdict(list)
        for pdb in pdbs:
            for pod in _selected(ctx, pdb):
                owners[meta(pod)[1]].append(meta(pdb)[1])
        shared: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for pod_name, names in owners.items():
            if len(names) > 1:
                for n in names:
                    for other in names:
                        if other != n:
                            shared[n][other].append(pod_name)
        for name, others in sorted(shared.items()):
            pods = sorted({p for ps in others.values() for p in ps})
            out.append(ctx.finding(
                "pdb-overlap", "warning", "PodDisruptionBudget", ns, name,
                f"poddisruptionbudget {ns}/{name} shares {len(pods)} pod(s) with "
                f"{', '.join(sorted(others))}: the eviction API refuses to evict them, so "
                "drains fail", "pdb-overlap",
                {"overlaps_with": sorted(others), "pods": pods[:MAX_PODS_SHOWN],
                 "pod_count": len(pods)}))
                # no cause_ref: each budget of an overlap would name the other as its cause,
                # and a diagnosis would find no root in the circle
    return out


@check("pdb-no-pods", "Disruption budgets protect pods", periods=("weekly",),
       reads=("poddisruptionbudgets",), uses=("pods",))
def pdb_no_pods(ctx: CheckContext) -> list[Finding]:
    """Budgets that select no pod (a renamed workload, a typo in the selector): info.

    Judged from the pods when they were read, else from the disruption controller's count.
    """
    out = []
    pods_unread = ctx.unread("pods")
    for pdb in _pdbs(ctx):
        created = parse_time(get(pdb, "metadata", "creationTimestamp"))
        if created is not None and (ctx.snapshot.now - created).total_seconds() \
                < NO_PODS_GRACE_SECONDS:
            continue
        if pods_unread:
            if get(pdb, "status", "expectedPods") is None or \
                    _int(get(pdb, "status", "expectedPods")) > 0:
                continue
        elif _selected(ctx, pdb):
            continue
        ns, name = meta(pdb)
        evidence: dict[str, Any] = {"selector": get(pdb, "spec", "selector"),
                                    "budget": _budget(pdb)}
        if pods_unread:
            evidence["judged_from"] = ("status.expectedPods (pods: could not read: "
                                       f"{pods_unread})")
        out.append(ctx.finding(
            "pdb-no-pods", "info", "PodDisruptionBudget", ns, name,
            f"poddisruptionbudget {ns}/{name} selects no pod: it protects nothing",
            "pdb-no-pods", evidence))
    return out
