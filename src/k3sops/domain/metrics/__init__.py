"""The PromQL behind `k3sops metrics` and the models its answers become (pure, no I/O).

Three levels, each a fixed catalogue of named instant queries:

* nodes: CPU, memory and disk usage (percent) and network receive/transmit rates from
  node-exporter, one row per scraped host, named after its Kubernetes node;
* cluster: pod restarts over the last hour, failed and pending pods, node readiness and
  allocatable CPU/memory against requests, API server p99 latency and 5xx share, etcd health;
* apps: per workload, request rate, p95 latency, 4xx and 5xx rates (metric names from
  ``monitoring.app_metrics`` in platform.yaml) and CPU / memory from cAdvisor.

A query that answers with no series means "no data" (None in the models, "no data" in the
table), never an error: the lab, for one, has neither application HTTP metrics nor cAdvisor.

Mapping node-exporter instances to node names (:func:`node_names`), first match wins:

1. the ``node`` label on the node-exporter series, when the scrape config sets one (the
   usual ``__meta_kubernetes_pod_node_name`` relabelling; the lab sets ``node="lab-host"``);
2. the instance host equal to the ``internal_ip`` of exactly one ``kube_node_info`` series;
3. node-exporter's ``nodename`` (the host name) equal to a Kubernetes node name;
4. otherwise the instance itself is shown as the node.

The package, lowest first (import-linter keeps it one-way): :mod:`.queries` (the catalogue)
and :mod:`.results` (Prometheus' answers as samples); :mod:`.models` (the report models);
:mod:`.build` (answers turned into the report).
"""

from k3sops.domain.metrics.build import (
    Results,
    build_apps,
    build_cluster,
    build_nodes,
    build_report,
    node_names,
    workloads,
)
from k3sops.domain.metrics.models import (
    ApiServerMetrics,
    AppRow,
    ClusterMetrics,
    EtcdMember,
    FailedQuery,
    FilesystemUsage,
    MetricsReport,
    NodeCapacity,
    NodeMetrics,
    PodPhase,
    PodRestarts,
    QueryReport,
    QueryRow,
    query_report,
)
from k3sops.domain.metrics.queries import (
    APISERVER_5XX,
    APISERVER_P99,
    ETCD_DB_SIZE,
    ETCD_FSYNC_P99,
    ETCD_HAS_LEADER,
    ETCD_QUOTA,
    IGNORED_FSTYPES,
    KUBE_NODE_INFO,
    NODE_ALLOCATABLE,
    NODE_CPU,
    NODE_DISK,
    NODE_MEMORY,
    NODE_NET_RX,
    NODE_NET_TX,
    NODE_READY,
    NODE_REQUESTS,
    NODE_UNAME,
    POD_PROBLEMS,
    POD_RESTARTS,
    SCOPES,
    TOP_RESTARTS,
    Query,
    Scope,
    app_queries,
    catalogue,
)
from k3sops.domain.metrics.results import FrozenModel, InstantResult, Sample, parse_result, point_at

__all__ = [
    "APISERVER_5XX", "APISERVER_P99", "ETCD_DB_SIZE", "ETCD_FSYNC_P99", "ETCD_HAS_LEADER",
    "ETCD_QUOTA", "IGNORED_FSTYPES", "KUBE_NODE_INFO", "NODE_ALLOCATABLE", "NODE_CPU",
    "NODE_DISK", "NODE_MEMORY", "NODE_NET_RX", "NODE_NET_TX", "NODE_READY", "NODE_REQUESTS",
    "NODE_UNAME", "POD_PROBLEMS", "POD_RESTARTS", "SCOPES", "TOP_RESTARTS", "ApiServerMetrics",
    "AppRow", "ClusterMetrics", "EtcdMember", "FailedQuery", "FilesystemUsage", "FrozenModel",
    "InstantResult", "MetricsReport", "NodeCapacity", "NodeMetrics", "PodPhase", "PodRestarts",
    "Query", "QueryReport", "QueryRow", "Results", "Sample", "Scope", "app_queries",
    "build_apps", "build_cluster", "build_nodes", "build_report", "catalogue", "node_names",
    "parse_result", "point_at", "query_report", "workloads",
]
