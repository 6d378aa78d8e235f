"""`k3sops status`: nodes, pods and monitoring targets in one look."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from k3sops.adapters.prometheus import HttpApi, PrometheusAdapter
from k3sops.domain import status as dstatus
from k3sops.domain.models import SourceStatus, StatusReport
from k3sops.errors import AdapterError, K3sopsError
from k3sops.services.context import Settings, kube, monitoring


def gather(settings: Settings, env: Mapping[str, str], home: Path) -> StatusReport:
    """Read nodes and pods (one LIST each, concurrently) and Prometheus targets.

    A source that cannot be read is reported in ``sources`` (the CLI exits 4); the API server
    being unreachable is an error of its own (exit 1), since nothing else can be shown then.
    """
    k = kube(settings, env, home)
    try:
        version = k.version()
        lists = k.list_raw_many({"nodes": "/api/v1/nodes", "pods": "/api/v1/pods"})
        sources = [SourceStatus(name="kubernetes", ok=True, endpoint=k.server)]
        raw: dict[str, list[dict[str, Any]]] = {}
        for kind, res in lists.items():
            if isinstance(res, AdapterError):
                raise res
            raw[kind] = res
        nodes = [dstatus.node_status(n) for n in raw["nodes"]]
        counts, problems = dstatus.pod_summary(raw["pods"])
        endpoint = monitoring(settings).prometheus
        targets = []
        api = None
        try:
            api = HttpApi.from_endpoint("Prometheus", endpoint, k)
            targets = dstatus.targets(PrometheusAdapter(api).targets())
            sources.append(SourceStatus(name="prometheus", ok=True, endpoint=api.how))
        except K3sopsError as e:
            sources.append(SourceStatus(name="prometheus", ok=False,
                                        endpoint=api.how if api else str(endpoint.service),
                                        error=e.message))
        finally:
            if api is not None:
                api.close()
    finally:
        k.close()
    return StatusReport(cluster=k.server, server_version=version,
                        nodes=sorted(nodes, key=lambda n: n.name), pods=counts,
                        problems=problems, targets=targets, sources=sources)
