"""The PromQL of `k3sops metrics`: a fixed catalogue of named instant queries per level."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from k3sops.config.schema import AppMetrics

Scope = Literal["nodes", "cluster", "apps"]
SCOPES: tuple[Scope, ...] = ("nodes", "cluster", "apps")

# Filesystems that are not real disks: their usage says nothing about a node running full.
IGNORED_FSTYPES = ("tmpfs", "overlay", "squashfs", "ramfs", "devtmpfs", "nsfs", "iso9660",
                   "autofs", "fuse.lxcfs")
_FS = f'fstype!~"{"|".join(IGNORED_FSTYPES)}"'

TOP_RESTARTS = 10
"""How many pods `metrics cluster` lists by restarts over the last hour."""


class Query(BaseModel):
    """One named PromQL instant query of the catalogue."""

    model_config = ConfigDict(frozen=True)

    name: str
    """Stable identifier, used in messages and in ``failed_queries``."""
    scope: Scope
    """The level the query belongs to."""
    expr: str
    """The PromQL expression."""


# --------------------------------------------------------------------------------------------
# The catalogue

NODE_CPU = '100 - (avg by(instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])) * 100)'
NODE_MEMORY = "(1 - (node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)) * 100"
NODE_DISK = (f"100 - ((node_filesystem_avail_bytes{{{_FS}}} * 100) / "
             f"node_filesystem_size_bytes{{{_FS}}})")
NODE_NET_RX = 'sum without(device) (rate(node_network_receive_bytes_total{device!="lo"}[5m]))'
NODE_NET_TX = 'sum without(device) (rate(node_network_transmit_bytes_total{device!="lo"}[5m]))'
NODE_UNAME = "node_uname_info"
KUBE_NODE_INFO = "kube_node_info"

POD_RESTARTS = (f"topk({TOP_RESTARTS}, sum by(namespace, pod) "
                "(increase(kube_pod_container_status_restarts_total[1h])) > 0)")
POD_PROBLEMS = 'kube_pod_status_phase{phase=~"Failed|Pending"} == 1'
NODE_READY = 'kube_node_status_condition{condition="Ready"} == 1'
NODE_ALLOCATABLE = 'kube_node_status_allocatable{resource=~"cpu|memory"}'
# Only pods that hold their requests (Pending or Running): finished pods keep their
# request series in kube-state-metrics but no longer use the capacity.
NODE_REQUESTS = ("sum by(node, resource) "
                 '(kube_pod_container_resource_requests{resource=~"cpu|memory"}'
                 " * on(namespace, pod) group_left() max by(namespace, pod) "
                 '(kube_pod_status_phase{phase=~"Pending|Running"} == 1))')
APISERVER_P99 = ("histogram_quantile(0.99, sum by(le)"
                 '(rate(apiserver_request_duration_seconds_bucket{verb!~"WATCH|CONNECT"}[5m])))')
APISERVER_5XX = ('sum(rate(apiserver_request_total{code=~"5.."}[5m])) / '
                 "sum(rate(apiserver_request_total[5m]))")
ETCD_HAS_LEADER = "etcd_server_has_leader"
ETCD_FSYNC_P99 = ("histogram_quantile(0.99, sum by(instance, le) "
                  "(rate(etcd_disk_wal_fsync_duration_seconds_bucket[5m])))")
ETCD_DB_SIZE = "etcd_mvcc_db_total_size_in_bytes"
ETCD_QUOTA = "etcd_server_quota_backend_bytes"

NODE_QUERIES = (
    ("node_cpu", NODE_CPU), ("node_memory", NODE_MEMORY), ("node_disk", NODE_DISK),
    ("node_network_receive", NODE_NET_RX), ("node_network_transmit", NODE_NET_TX),
    ("node_uname", NODE_UNAME),
)
"""The ``nodes`` level: (query name, expression), in the order they are run."""
CLUSTER_QUERIES = (
    ("pod_restarts", POD_RESTARTS), ("pod_problems", POD_PROBLEMS), ("node_ready", NODE_READY),
    ("node_allocatable", NODE_ALLOCATABLE), ("node_requests", NODE_REQUESTS),
    ("apiserver_p99", APISERVER_P99), ("apiserver_5xx_share", APISERVER_5XX),
    ("etcd_has_leader", ETCD_HAS_LEADER), ("etcd_wal_fsync_p99", ETCD_FSYNC_P99),
    ("etcd_db_size", ETCD_DB_SIZE), ("etcd_quota", ETCD_QUOTA),
)
"""The ``cluster`` level (``kube_node_info`` is added once for either level)."""


def _ns_matcher(namespaces: Sequence[str]) -> str:
    """A ``namespace=~"a|b"`` matcher, or "" for every namespace.

    Namespaces are DNS labels (validated in platform.yaml): no regex or string escaping needed.
    """
    if not namespaces:
        return ""
    return 'namespace=~"' + "|".join(namespaces) + '"'


def _selector(*matchers: str) -> str:
    inner = ", ".join(m for m in matchers if m)
    return f"{{{inner}}}" if inner else ""


def app_queries(app: AppMetrics, namespaces: Sequence[str] = ()) -> list[Query]:
    """The application-level queries for the configured metric names.

    Args:
        app: metric and label names from ``monitoring.app_metrics``.
        namespaces: restrict to these namespaces (an environment's); empty: all.

    Returns:
        Queries named app_requests, app_p95, app_4xx, app_5xx, app_cpu, app_memory,
        pod_owner and replicaset_owner.
    """
    ns = _ns_matcher(namespaces)
    by = ", ".join(app.workload_labels)
    by_le = ", ".join([*app.workload_labels, "le"])
    total = app.requests_total
    code = app.status_label
    # cAdvisor also reports the pod sandbox ("POD") and a pod-level sum (container="").
    cadvisor = _selector('container!=""', 'container!="POD"', ns)
    c4xx = _selector(f'{code}=~"4.."', ns)
    c5xx = _selector(f'{code}=~"5.."', ns)
    return [
        Query(name="app_requests", scope="apps",
              expr=f"sum by({by}) (rate({total}{_selector(ns)}[5m]))"),
        Query(name="app_p95", scope="apps",
              expr=f"histogram_quantile(0.95, sum by({by_le}) "
                   f"(rate({app.duration_seconds}_bucket{_selector(ns)}[5m])))"),
        Query(name="app_4xx", scope="apps",
              expr=f"sum by({by}) (rate({total}{c4xx}[5m]))"),
        Query(name="app_5xx", scope="apps",
              expr=f"sum by({by}) (rate({total}{c5xx}[5m]))"),
        Query(name="app_cpu", scope="apps",
              expr=("sum by(namespace, pod) "
                    f"(rate(container_cpu_usage_seconds_total{cadvisor}[5m]))")),
        Query(name="app_memory", scope="apps",
              expr=f"sum by(namespace, pod) (container_memory_working_set_bytes{cadvisor})"),
        Query(name="pod_owner", scope="apps", expr=f"kube_pod_owner{_selector(ns)}"),
        Query(name="replicaset_owner", scope="apps", expr=f"kube_replicaset_owner{_selector(ns)}"),
    ]


def catalogue(scopes: Iterable[Scope], app: AppMetrics,
              namespaces: Sequence[str] = ()) -> list[Query]:
    """Every query needed for ``scopes``, each once, in a stable order.

    Args:
        scopes: the levels asked for.
        app: application metric names (used for the ``apps`` level).
        namespaces: restrict the ``apps`` level to these namespaces; empty: all.

    Returns:
        The queries; ``kube_node_info`` appears once even when two levels need it.
    """
    wanted = set(scopes)
    out: list[Query] = []
    if "nodes" in wanted:
        out += [Query(name=name, scope="nodes", expr=expr) for name, expr in NODE_QUERIES]
    if wanted & {"nodes", "cluster"}:
        scope: Scope = "nodes" if "nodes" in wanted else "cluster"
        out.append(Query(name="kube_node_info", scope=scope, expr=KUBE_NODE_INFO))
    if "cluster" in wanted:
        out += [Query(name=name, scope="cluster", expr=expr)
                for name, expr in CLUSTER_QUERIES]
    if "apps" in wanted:
        out += app_queries(app, namespaces)
    return out
