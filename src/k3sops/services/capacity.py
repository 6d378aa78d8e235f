"""`k3sops capacity`: requests and limits vs allocatable, headroom, when more nodes are needed.

Collects nodes and pods with one LIST each, and the history of the cluster's total requests
from Prometheus with one query per resource (a subquery sampled every ``step`` over
``window``); the analysis is domain/capacity. Prometheus unreachable: the node and environment
tables are still shown, the forecast names the missing source, and the command exits 4.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from k3sops.adapters.kube import KubeAdapter
from k3sops.adapters.prometheus import PrometheusAdapter
from k3sops.domain import capacity
from k3sops.domain.capacity import CapacityReport, Source
from k3sops.domain.metrics import InstantResult
from k3sops.errors import K3sopsError
from k3sops.services import context
from k3sops.services.scale.common import connect_prometheus


def request_history_query(resource: str, window: str, step: str) -> str:
    """Total requests of ``resource`` (cores or bytes) across the cluster, every ``step``."""
    return (f'sum(kube_pod_container_resource_requests{{resource="{resource}"}})'
            f"[{window}:{step}]")


def environments(settings: context.Settings) -> dict[str, list[str]]:
    """platform.yaml's environments and their namespaces (none without a platform file)."""
    if settings.platform is None:
        return {}
    return {name: list(e.namespaces) for name, e in settings.platform.environments.items()}


def collect(kube: KubeAdapter, prom: PrometheusAdapter | K3sopsError,
            envs: Mapping[str, list[str]], *, window: str = "7d",
            step: str = "1h") -> CapacityReport:
    """Build the capacity report (see the module docstring)."""
    lists = kube.list_raw_many({"nodes": "/api/v1/nodes", "pods": "/api/v1/pods"})
    nodes_raw, pods_raw = lists["nodes"], lists["pods"]
    if isinstance(nodes_raw, K3sopsError):
        raise nodes_raw
    if isinstance(pods_raw, K3sopsError):
        raise pods_raw
    sources = [Source(name="kubernetes", ok=True)]
    nodes = capacity.node_capacity(nodes_raw, pods_raw)
    cpu = capacity.cluster_usage(nodes, "cpu")
    mem = capacity.cluster_usage(nodes, "memory")
    env_caps = capacity.env_capacity(envs, pods_raw, cpu, mem)
    schedulable = sum(1 for n in nodes if n.schedulable)
    histories: dict[str, list[tuple[float, float]] | None] = {"cpu": None, "memory": None}
    missing: str | None = None
    if isinstance(prom, K3sopsError):
        missing = f"prometheus ({prom.message})"
        sources.append(Source(name="prometheus", ok=False, error=prom.message))
    else:
        results = prom.query_many({r: request_history_query(r, window, step)
                                   for r in capacity.RESOURCES})
        errors = [r for r in results.values() if isinstance(r, K3sopsError)]
        sources.append(Source(name="prometheus", ok=not errors,
                              error=errors[0].message if errors else None))
        for r, res in results.items():
            if isinstance(res, InstantResult):
                histories[r] = [(s.timestamp, s.number) for s in res.samples
                                if s.number is not None]
            elif missing is None:
                missing = f"prometheus ({res.message})"
    forecasts = [capacity.forecast("cpu", histories["cpu"], cpu, schedulable,
                                   missing=missing, window=window, step=step),
                 capacity.forecast("memory", histories["memory"], mem, schedulable,
                                   missing=missing, window=window, step=step)]
    return CapacityReport(nodes=nodes, environments=env_caps, cluster_cpu=cpu,
                          cluster_memory=mem, forecast=forecasts, sources=sources)


def run(settings: context.Settings, env: Mapping[str, str], home: Path, *, window: str,
        step: str) -> CapacityReport:
    """Open the cluster and Prometheus as platform.yaml says, and build the report."""
    kube = context.kube(settings, env, home)
    prom = connect_prometheus(settings, env, home)
    try:
        return collect(kube, prom, environments(settings), window=window, step=step)
    finally:
        kube.close()
        if isinstance(prom, PrometheusAdapter):
            prom.close()
