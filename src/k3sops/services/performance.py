"""`k3sops diagnose performance`: one batch of Prometheus queries, metrics.k8s.io if served.

The API objects are read as for `k3sops check` (OOM kills come from the pods' status); the
PromQL is :data:`k3sops.domain.performance.QUERIES`; metrics.k8s.io (metrics-server) is asked
for pod usage only to stand in for missing container series.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from k3sops.adapters.kube import KubeAdapter
from k3sops.adapters.prometheus import HttpApi, PrometheusAdapter
from k3sops.domain import checks as registry
from k3sops.domain import performance as perf
from k3sops.domain.checks.base import CheckContext
from k3sops.domain.diagnose import DiagnosisReport
from k3sops.domain.findings import Source
from k3sops.domain.metrics import InstantResult
from k3sops.errors import AdapterError, K3sopsError, NotFound
from k3sops.services import check as check_service
from k3sops.services.context import Settings, kube, monitoring

METRICS_API = "/apis/metrics.k8s.io/v1beta1/"


def _metrics_api(k: KubeAdapter, sources: list[Source],
                 kind: str) -> list[dict[str, Any]] | None:
    """PodMetrics or NodeMetrics from metrics.k8s.io; None when not served (or failed)."""
    try:
        return k.list_raw(METRICS_API + kind, f"{kind}.metrics.k8s.io")
    except NotFound:
        return None
    except AdapterError as e:
        sources.append(Source(name=f"metrics.k8s.io:{kind}", ok=False, endpoint=k.server,
                              error=e.message))
        return None


def _prometheus(k: KubeAdapter, settings: Settings,
                sources: list[Source]) -> tuple[dict[str, InstantResult], str]:
    ep = monitoring(settings).prometheus
    api = None
    try:
        api = HttpApi.from_endpoint("Prometheus", ep, k)
        answers = PrometheusAdapter(api).query_many(perf.QUERIES)
        results = {n: a for n, a in answers.items() if isinstance(a, InstantResult)}
        errors = {n: a.message for n, a in answers.items() if isinstance(a, K3sopsError)}
        if errors:
            sources.append(Source(name="prometheus:performance", ok=False, endpoint=api.how,
                                  error=f"{len(errors)} queries failed: "
                                        + "; ".join(f"{n}: {e}" for n, e in errors.items())))
        return results, api.how
    except K3sopsError as e:
        where = str(ep.url or ep.service)
        sources.append(Source(name="prometheus:performance", ok=False, endpoint=where,
                              error=e.message))
        return {}, where
    finally:
        if api is not None:
            api.close()


def diagnose_performance(settings: Settings, env: Mapping[str, str],
                         home: Path) -> DiagnosisReport:
    """Top nodes and pods by CPU and memory, throttling, OOM kills, full disks and their use."""
    k = kube(settings, env, home)
    try:
        spec = registry.REGISTRY.get("pod-oomkilled")
        snapshot, sources = check_service.collect(k, settings, [spec] if spec else [],
                                                  datetime.now(UTC))
        metrics_pods = _metrics_api(k, sources, "pods")
        metrics_nodes = _metrics_api(k, sources, "nodes") if metrics_pods is not None else None
        results, where = _prometheus(k, settings, sources)
    finally:
        k.close()
    ctx = CheckContext(snapshot=snapshot, platform=settings.platform, period="daily")
    d, missing = perf.analyse(ctx, results, metrics_pods, where, metrics_nodes)
    return d.report("performance", [*sources, *missing])
