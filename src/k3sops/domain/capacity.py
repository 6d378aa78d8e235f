"""Capacity: requests and limits against allocatable, per node and per environment (pure).

Requests are counted as the scheduler counts them (:func:`k3sops.domain.checks.capacity.
pod_request`: the larger of the containers' sum and the largest init container, plus pod
overhead) for pods bound to a node that are Pending or Running. Limits are the sum of the
containers' explicit limits; containers without a limit are counted separately (they may use
the whole node).

Forecast: a least-squares line through the history of the cluster's total requests (Prometheus,
``sum(kube_pod_container_resource_requests{resource=...})`` sampled hourly over the window),
extended until the requests reach :data:`FULL_PERCENT` of the schedulable nodes' allocatable,
the point at which new pods stop fitting comfortably and a node should be added. The answer is
the days left and how many nodes of the average size would restore the margin at the horizon.
Without the history (no Prometheus, too few points) the forecast says so by name.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.domain.checks.capacity import REQUESTS_PERCENT, pod_request, quantity
from k3sops.domain.snapshot import get

RESOURCES = ("cpu", "memory")
FULL_PERCENT = REQUESTS_PERCENT
"""Requested share of allocatable at which more nodes are needed (the weekly check's 85 %)."""
HORIZON_DAYS = 90
"""How far ahead the forecast looks."""
MIN_POINTS = 6
"""Fewer history points than this: no forecast."""


class Usage(BaseModel):
    """Requests and limits of one resource against an allocatable amount (cores or bytes)."""

    allocatable: float = 0.0
    requests: float = 0.0
    limits: float = 0.0
    unlimited: int = Field(0, description="containers without a limit on this resource")

    @property
    def requests_percent(self) -> float | None:
        """Requests as a share of allocatable (None without allocatable)."""
        return self.requests / self.allocatable * 100 if self.allocatable else None

    @property
    def limits_percent(self) -> float | None:
        """Limits as a share of allocatable (over 100: overcommitted)."""
        return self.limits / self.allocatable * 100 if self.allocatable else None

    @property
    def headroom(self) -> float:
        """Allocatable not yet requested."""
        return self.allocatable - self.requests


class NodeCapacity(BaseModel):
    """One node."""

    name: str
    schedulable: bool = True
    pods: int = 0
    cpu: Usage = Field(default_factory=Usage)
    memory: Usage = Field(default_factory=Usage)


class EnvCapacity(BaseModel):
    """One environment (its namespaces), against the whole cluster's allocatable."""

    name: str
    namespaces: list[str]
    pods: int = 0
    cpu: Usage = Field(default_factory=Usage)
    memory: Usage = Field(default_factory=Usage)


class Forecast(BaseModel):
    """When the cluster's requests of one resource reach :data:`FULL_PERCENT`."""

    resource: Literal["cpu", "memory"]
    method: str
    status: Literal["ok", "full", "not-growing", "no-data"]
    points: int = 0
    requests_now: float | None = None
    growth_per_day: float | None = None
    full_at: float | None = Field(None, description="requests at which more nodes are needed")
    days_left: float | None = None
    nodes_needed: int = Field(0, description="nodes of the average size to add by the horizon")
    missing: str | None = Field(None, description="the source that was missing, by name")


class Source(BaseModel):
    """A data source and whether it could be read."""

    name: str
    ok: bool
    error: str | None = None


class CapacityReport(BaseModel):
    """``k3sops capacity``: nodes, environments, cluster totals, forecast."""

    nodes: list[NodeCapacity]
    environments: list[EnvCapacity]
    cluster_cpu: Usage
    cluster_memory: Usage
    forecast: list[Forecast]
    horizon_days: int = HORIZON_DAYS
    full_percent: float = FULL_PERCENT
    sources: list[Source] = Field(default_factory=list)


def pod_limits(pod: Mapping[str, Any], resource: str) -> tuple[float, int]:
    """Sum of the explicit limits of a pod's containers, and how many have none."""
    total, missing = 0.0, 0
    for c in get(pod, "spec", "containers", default=[]) or []:
        value = quantity(get(c, "resources", "limits", resource))
        if value is None:
            missing += 1
        else:
            total += value
    return total, missing


def _counted(pod: Mapping[str, Any]) -> bool:
    return bool(get(pod, "spec", "nodeName")) and get(pod, "status", "phase") in (
        "Pending", "Running")


def _add(u: Usage, pod: Mapping[str, Any], resource: str) -> None:
    u.requests += pod_request(dict(pod), resource)
    lim, missing = pod_limits(pod, resource)
    u.limits += lim
    u.unlimited += missing


def node_capacity(nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]],
                  ) -> list[NodeCapacity]:
    """Requests and limits of the pods on each node against its allocatable."""
    by_node: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for p in pods:
        if _counted(p):
            by_node[str(get(p, "spec", "nodeName"))].append(p)
    out = []
    for n in nodes:
        name = str(get(n, "metadata", "name"))
        nc = NodeCapacity(name=name, schedulable=not get(n, "spec", "unschedulable"),
                          pods=len(by_node[name]))
        for r in RESOURCES:
            u: Usage = getattr(nc, r)
            u.allocatable = quantity(get(n, "status", "allocatable", r)) or 0.0
            for p in by_node[name]:
                _add(u, p, r)
        out.append(nc)
    return sorted(out, key=lambda x: x.name)


def cluster_usage(nodes: Sequence[NodeCapacity], resource: str) -> Usage:
    """Totals over the schedulable nodes (a cordoned node's room is not room)."""
    total = Usage()
    for n in nodes:
        u: Usage = getattr(n, resource)
        if n.schedulable:
            total.allocatable += u.allocatable
        total.requests += u.requests
        total.limits += u.limits
        total.unlimited += u.unlimited
    return total


def env_capacity(environments: Mapping[str, Sequence[str]], pods: Iterable[Mapping[str, Any]],
                 cluster_cpu: Usage, cluster_memory: Usage) -> list[EnvCapacity]:
    """Requests and limits per environment, as shares of the cluster's allocatable.

    An environment without namespaces owns every namespace (platform.yaml's rule).
    """
    ns_env = {ns: env for env, nss in environments.items() for ns in nss}
    owns_all = [env for env, nss in environments.items() if not nss]
    out = {env: EnvCapacity(name=env, namespaces=list(nss)) for env, nss in environments.items()}
    for e in out.values():
        e.cpu.allocatable = cluster_cpu.allocatable
        e.memory.allocatable = cluster_memory.allocatable
    for p in pods:
        if not _counted(p):
            continue
        env = ns_env.get(str(get(p, "metadata", "namespace")))
        for name in ([env] if env is not None else []) + owns_all:
            e = out[name]
            e.pods += 1
            _add(e.cpu, p, "cpu")
            _add(e.memory, p, "memory")
    return list(out.values())


def linear_fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line ``v = slope * t + intercept`` through (t, v) points.

    Raises:
        ValueError: fewer than two points, or all at the same time.
    """
    n = len(points)
    if n < 2:
        raise ValueError("a line needs two points")
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        raise ValueError("all points at the same time")
    slope = sum((t - mt) * (v - mv) for t, v in points) / var
    return slope, mv - slope * mt


def forecast(resource: Literal["cpu", "memory"], history: Sequence[tuple[float, float]] | None,
             usage: Usage, node_count: int, *, missing: str | None = None,
             window: str = "7d", step: str = "1h") -> Forecast:
    """When more nodes are needed for ``resource``, from the history of total requests.

    Args:
        resource: cpu or memory.
        history: (unix time, total requests) points; None when the source could not be read.
        usage: the cluster's allocatable and requests now (schedulable nodes).
        node_count: schedulable nodes (for the average node size).
        missing: the name of the source that could not be read, for the message.
        window: the history window, for the method text.
        step: the sampling step of the history, for the method text.
    """
    method = (f"least-squares fit over {window} of total requests sampled every {step} "
              "(Prometheus kube_pod_container_resource_requests), extended to "
              f"{FULL_PERCENT:g}% of the schedulable nodes' allocatable")
    full_at = usage.allocatable * FULL_PERCENT / 100
    avg_node = usage.allocatable / node_count if node_count else 0.0
    f = Forecast(resource=resource, method=method, status="no-data", full_at=full_at,
                 requests_now=usage.requests, points=len(history or []), missing=missing)

    def nodes_for(requests: float) -> int:
        if avg_node <= 0 or requests <= full_at:
            return 0
        return math.ceil((requests - full_at) / (avg_node * FULL_PERCENT / 100))

    if usage.requests >= full_at:
        f.status, f.days_left, f.nodes_needed = "full", 0.0, nodes_for(usage.requests)
    if history is None or len(history) < MIN_POINTS:
        if f.missing is None and history is not None:
            f.missing = f"request history (fewer than {MIN_POINTS} points in {window})"
        return f
    try:
        slope, _ = linear_fit(history)
    except ValueError:
        return f
    f.growth_per_day = slope * 86400
    if f.status == "full":
        return f
    if f.growth_per_day <= 0:
        f.status = "not-growing"
        return f
    f.status = "ok"
    f.days_left = (full_at - usage.requests) / f.growth_per_day
    f.nodes_needed = nodes_for(usage.requests + f.growth_per_day * HORIZON_DAYS)
    return f
