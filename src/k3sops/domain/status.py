"""Summarise nodes, pods and targets into a StatusReport (pure functions of API data)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from k3sops.domain.models import NodeStatus, PodCounts, PodProblem, Target

ROLE_PREFIX = "node-role.kubernetes.io/"
PRESSURES = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")


def _get(d: Mapping[str, Any] | None, *path: str) -> Any:
    cur: Any = d
    for p in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(p)
    return cur


def node_status(node: Mapping[str, Any]) -> NodeStatus:
    """A node's readiness, roles, pressure conditions, version and allocatable."""
    labels: Mapping[str, str] = _get(node, "metadata", "labels") or {}
    roles = sorted(k.removeprefix(ROLE_PREFIX) for k in labels if k.startswith(ROLE_PREFIX))
    conds = {c.get("type"): c.get("status") for c in _get(node, "status", "conditions") or []}
    ready = conds.get("Ready", "Unknown")
    return NodeStatus(
        name=str(_get(node, "metadata", "name")),
        roles=roles or ["worker"],
        ready=ready if ready in ("True", "False") else "Unknown",
        schedulable=not bool(_get(node, "spec", "unschedulable")),
        version=str(_get(node, "status", "nodeInfo", "kubeletVersion") or "unknown"),
        pressure=[p for p in PRESSURES if conds.get(p) == "True"],
        cpu=_get(node, "status", "allocatable", "cpu"),
        memory=_get(node, "status", "allocatable", "memory"),
    )


def _pod_reason(pod: Mapping[str, Any]) -> str:
    """The most telling reason, in the order kubectl's STATUS column picks it."""
    status = _get(pod, "status") or {}
    if _get(pod, "metadata", "deletionTimestamp"):
        return "Terminating"
    for cs in status.get("containerStatuses") or []:
        waiting = _get(cs, "state", "waiting", "reason")
        if waiting:
            return str(waiting)
        terminated = _get(cs, "state", "terminated", "reason")
        if terminated:
            return str(terminated)
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return str(cond.get("reason") or "Unschedulable")
    return str(status.get("reason") or status.get("phase") or "Unknown")


def _restarts(pod: Mapping[str, Any]) -> int:
    return sum(int(cs.get("restartCount") or 0)
               for cs in _get(pod, "status", "containerStatuses") or [])


def _ready(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in _get(pod, "status", "conditions") or [])


def pod_summary(pods: Iterable[Mapping[str, Any]]) -> tuple[list[PodCounts], list[PodProblem]]:
    """Per-namespace pod counts, and the pods that are not Running and ready (or Succeeded)."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    problems: list[PodProblem] = []
    for pod in pods:
        ns = str(_get(pod, "metadata", "namespace"))
        phase = str(_get(pod, "status", "phase") or "Unknown")
        c = counts[ns]
        c["total"] += 1
        c[phase.lower()] += 1
        restarts = _restarts(pod)
        c["restarts"] += restarts
        healthy = phase == "Succeeded" or (phase == "Running" and _ready(pod))
        if not healthy:
            if phase == "Running":
                c["not_ready"] += 1
            problems.append(PodProblem(namespace=ns, name=str(_get(pod, "metadata", "name")),
                                       phase=phase, reason=_pod_reason(pod), restarts=restarts,
                                       node=_get(pod, "spec", "nodeName")))
    rows = [PodCounts(namespace=ns, total=c["total"], running=c["running"],
                      pending=c["pending"], failed=c["failed"], succeeded=c["succeeded"],
                      not_ready=c["not_ready"], restarts=c["restarts"])
            for ns, c in sorted(counts.items())]
    problems.sort(key=lambda p: (p.namespace, p.name))
    return rows, problems


def targets(active: Iterable[Mapping[str, Any]]) -> list[Target]:
    """Prometheus /api/v1/targets activeTargets as Target rows, sorted by job and instance."""
    out = []
    for t in active:
        labels = t.get("labels") or {}
        health = t.get("health")
        out.append(Target(job=str(labels.get("job", "")), instance=str(labels.get("instance", "")),
                          health=health if health in ("up", "down") else "unknown",
                          last_error=str(t.get("lastError") or ""),
                          scrape_url=str(t.get("scrapeUrl") or "")))
    return sorted(out, key=lambda t: (t.job, t.instance))
