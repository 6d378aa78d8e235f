"""The report models `k3sops metrics` prints (nodes, cluster, apps, ad-hoc query rows)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from k3sops.domain.metrics.queries import Scope
from k3sops.domain.metrics.results import FrozenModel, InstantResult


class FilesystemUsage(FrozenModel):
    """One mounted filesystem of a node."""

    mountpoint: str
    device: str
    fstype: str
    used_percent: float


class NodeMetrics(FrozenModel):
    """Node-exporter figures of one host."""

    node: str
    """Kubernetes node name (see the package docstring for how it is found)."""
    instance: str
    """node-exporter's scrape instance (host:port)."""
    cpu_percent: float | None
    """CPU busy, percent: 100 minus the idle share averaged over all CPUs, 5m rate."""
    memory_percent: float | None
    """Memory in use, percent: 1 - MemAvailable/MemTotal."""
    disk_percent: float | None
    """Fullest real filesystem, percent used (avail, not free: what non-root users can use)."""
    disk_mountpoint: str | None
    """Mountpoint of that fullest filesystem."""
    filesystems: list[FilesystemUsage]
    """Every real filesystem (tmpfs, overlay, squashfs … excluded), fullest first."""
    network_receive_bytes_per_second: float | None
    """Bytes received per second over all interfaces but lo, 5m rate."""
    network_transmit_bytes_per_second: float | None
    """Bytes sent per second over all interfaces but lo, 5m rate."""


class PodRestarts(FrozenModel):
    """A pod whose containers restarted in the last hour."""

    namespace: str
    pod: str
    restarts_1h: float
    """increase() over 1h: extrapolated, so it can be fractional."""


class PodPhase(FrozenModel):
    """A pod in phase Failed or Pending."""

    namespace: str
    pod: str
    phase: str


class NodeCapacity(FrozenModel):
    """A Kubernetes node's readiness and allocatable CPU/memory against pod requests."""

    node: str
    ready: Literal["True", "False", "Unknown"] | None
    """The Ready condition; None: no data."""
    cpu_allocatable_cores: float | None
    cpu_requested_cores: float | None
    cpu_requested_percent: float | None
    memory_allocatable_bytes: float | None
    memory_requested_bytes: float | None
    memory_requested_percent: float | None


class ApiServerMetrics(FrozenModel):
    """API server health over the last 5 minutes."""

    request_p99_seconds: float | None
    """p99 of request durations, all verbs but WATCH and CONNECT (long-running by design)."""
    error_5xx_share: float | None
    """5xx answers / all answers, 0..1."""


class EtcdMember(FrozenModel):
    """One etcd member (scrape instance)."""

    instance: str
    has_leader: bool | None
    wal_fsync_p99_seconds: float | None
    db_size_bytes: float | None
    quota_bytes: float | None
    db_used_percent: float | None
    """db size as a percent of the backend quota (writes are refused at 100)."""


class ClusterMetrics(FrozenModel):
    """Cluster-level figures."""

    nodes_total: int
    nodes_ready: int
    nodes: list[NodeCapacity]
    restarts: list[PodRestarts]
    """Pods by container restarts over the last hour, most first (at most 10)."""
    failed_pods: list[PodPhase]
    pending_pods: list[PodPhase]
    apiserver: ApiServerMetrics
    etcd: list[EtcdMember]


class AppRow(FrozenModel):
    """One workload: RED metrics from the application, CPU/memory from cAdvisor."""

    namespace: str
    workload: str
    kind: str | None
    """Deployment, StatefulSet, DaemonSet, Job, Pod …; None when the workload is known only
    from its HTTP metrics."""
    pods: int
    request_rate: float | None
    """Requests per second, 5m rate; None: no data."""
    p95_seconds: float | None
    rate_4xx: float | None
    """4xx answers per second."""
    rate_5xx: float | None
    """5xx answers per second."""
    cpu_cores: float | None
    memory_bytes: float | None
    """Working set bytes (what the OOM killer looks at)."""


class FailedQuery(FrozenModel):
    """A query Prometheus could not answer; the figures it feeds are missing."""

    name: str
    expr: str
    error: str


class MetricsReport(FrozenModel):
    """What `k3sops metrics` prints."""

    prometheus: str
    """The endpoint asked (URL, or service via the API server)."""
    scopes: list[Scope]
    namespaces: list[str] = Field(default_factory=list)
    """The namespaces apps were restricted to (from --env); empty: all."""
    nodes: list[NodeMetrics] | None = None
    cluster: ClusterMetrics | None = None
    apps: list[AppRow] | None = None
    failed_queries: list[FailedQuery] = Field(default_factory=list)


class QueryRow(FrozenModel):
    """One sample of an ad-hoc query."""

    labels: dict[str, str]
    timestamp: float
    value: str
    """As Prometheus wrote it (keeps NaN and ±Inf exact)."""


class QueryReport(FrozenModel):
    """What `k3sops metrics --query` prints."""

    prometheus: str
    query: str
    result_type: str
    rows: list[QueryRow]


def query_report(prometheus: str, expr: str, result: InstantResult) -> QueryReport:
    """The ad-hoc query answer as a report, rows sorted by labels."""
    rows = [QueryRow(labels=s.labels, timestamp=s.timestamp, value=s.value)
            for s in result.samples]
    rows.sort(key=lambda r: (sorted(r.labels.items()), r.timestamp))
    return QueryReport(prometheus=prometheus, query=expr, result_type=result.result_type,
                       rows=rows)
