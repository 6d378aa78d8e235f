"""The four k3sops dashboards: nodes, cluster, applications and backups.

The node queries have exactly the meanings `k3sops metrics` uses (CPU, memory and disk usage in
percent, network rates in bytes/s), so a number on a dashboard and in the CLI agree. Queries
that must show a value on a healthy platform use ``or vector(0)`` where "nothing matched" means
zero (no 5xx responses, no crash-looping container), so an empty panel always means "not
scraped", never "all is well".
"""

from __future__ import annotations

from collections.abc import Callable

from k3sops.domain.dashboards.model import (
    DashboardContext,
    DashboardDef,
    PanelDef,
    Query,
    RowDef,
    VariableName,
)
from k3sops.domain.metrics import IGNORED_FSTYPES

__all__ = ["DASHBOARD_NAMES", "all_dashboards", "applications", "backups", "cluster", "nodes"]

# Every query averages rates over 5m: four scrapes at the 15s interval k3sops' Prometheus uses,
# and the window the metrics command and the alert rules use, so the three agree.
RATE = "5m"
# File systems that are not real disks: the list `k3sops metrics` leaves out, so both report
# the same disks.
_PSEUDO_FS = "|".join(IGNORED_FSTYPES)
NS = 'namespace=~"$namespace"'


def node_cpu_percent(selector: str = "") -> str:
    """CPU usage in percent per instance (the meaning `k3sops metrics nodes` uses)."""
    sel = f'mode="idle"{"," + selector if selector else ""}'
    return f"100 - (avg by(instance) (rate(node_cpu_seconds_total{{{sel}}}[{RATE}])) * 100)"


def node_memory_percent(selector: str = "") -> str:
    """Memory usage in percent per instance."""
    s = f"{{{selector}}}" if selector else ""
    return f"(1 - (node_memory_MemAvailable_bytes{s} / node_memory_MemTotal_bytes{s})) * 100"


def node_disk_percent(selector: str = "") -> str:
    """Disk usage in percent per file system."""
    sel = f'fstype!~"{_PSEUDO_FS}"{"," + selector if selector else ""}'
    return (f"100 - ((node_filesystem_avail_bytes{{{sel}}} * 100) / "
            f"node_filesystem_size_bytes{{{sel}}})")


def node_network_rate(direction: str, selector: str = "") -> str:
    """Network receive or transmit rate in bytes/s per instance (receive|transmit)."""
    sel = f'device!="lo"{"," + selector if selector else ""}'
    return f"sum without(device) (rate(node_network_{direction}_bytes_total{{{sel}}}[{RATE}]))"


def nodes(ctx: DashboardContext) -> DashboardDef:
    """Node resources from node-exporter: CPU, memory, disk, network, load."""
    inst = 'instance=~"$instance"'
    t = ctx.thresholds
    resources = RowDef("Resources", (
        PanelDef("CPU usage", "timeseries", (Query(node_cpu_percent(inst), "{{instance}}"),),
                 "Share of CPU time not idle, averaged over all cores (5m rate).",
                 unit="percent", thresholds=(t.cpu_percent * 0.9, t.cpu_percent),
                 min_value=0, max_value=100),
        PanelDef("Memory usage", "timeseries",
                 (Query(node_memory_percent(inst), "{{instance}}"),),
                 "Memory in use: 1 - MemAvailable / MemTotal.", unit="percent",
                 thresholds=(t.memory_percent * 0.9, t.memory_percent),
                 min_value=0, max_value=100),
        PanelDef("Disk usage", "timeseries",
                 (Query(node_disk_percent(inst), "{{instance}} {{mountpoint}}"),),
                 "Used share of each real file system (tmpfs/overlay left out).",
                 unit="percent",
                 thresholds=(100 - 2 * t.disk_free_percent, 100 - t.disk_free_percent),
                 min_value=0, max_value=100),
        PanelDef("System load (1m)", "timeseries",
                 (Query(f"node_load1{{{inst}}}", "{{instance}}"),),
                 "1-minute load average; compare with the number of cores."),
    ))
    network = RowDef("Network", (
        PanelDef("Network receive", "timeseries",
                 (Query(node_network_rate("receive", inst), "{{instance}}"),),
                 "Bytes received per second, all interfaces but loopback (5m rate).",
                 unit="Bps"),
        PanelDef("Network transmit", "timeseries",
                 (Query(node_network_rate("transmit", inst), "{{instance}}"),),
                 "Bytes sent per second, all interfaces but loopback (5m rate).",
                 unit="Bps"),
    ))
    return DashboardDef("nodes", "k3sops / Nodes",
                        "Node resources (node-exporter), with the meanings of `k3sops metrics`.",
                        ("instance",), (resources, network))


def cluster(ctx: DashboardContext) -> DashboardDef:
    """Node readiness, pods, restarts, API server and (when scraped) etcd."""
    ready = 'condition="Ready"'
    node_row = RowDef("Nodes", (
        PanelDef("Ready nodes", "stat",
                 (Query(f'sum(kube_node_status_condition{{{ready},status="true"}})'),),
                 "Nodes whose Ready condition is true.", width=6, height=4),
        PanelDef("Not ready nodes", "stat",
                 (Query(f'sum(kube_node_status_condition{{{ready},status!="true"}})'),),
                 "Nodes whose Ready condition is false or unknown.", width=6, height=4,
                 thresholds=(1,)),
        PanelDef("Allocatable CPU", "stat",
                 (Query('sum(kube_node_status_allocatable{resource="cpu"})'),),
                 "CPU cores the scheduler can hand out, all nodes.", width=6, height=4),
        PanelDef("Allocatable memory", "stat",
                 (Query('sum(kube_node_status_allocatable{resource="memory"})'),),
                 "Memory the scheduler can hand out, all nodes.", unit="bytes", width=6,
                 height=4),
        PanelDef("Node readiness", "timeseries",
                 (Query(f'max by(node) (kube_node_status_condition{{{ready},status="true"}})',
                        "{{node}}"),),
                 "1 while a node is Ready, 0 when it is not.", width=24, min_value=0,
                 max_value=1),
    ))
    pod_row = RowDef("Pods", (
        PanelDef("Pods by phase", "timeseries",
                 (Query(f"sum by(phase) (kube_pod_status_phase{{{NS}}})", "{{phase}}"),),
                 "Pods in each phase in the selected namespaces."),
        PanelDef("Failed and pending pods", "timeseries",
                 (Query(f'sum by(namespace, phase) (kube_pod_status_phase{{{NS},'
                        f'phase=~"Failed|Pending"}})', "{{namespace}} {{phase}}"),),
                 "Pods that failed or cannot be scheduled/started, per namespace."),
        PanelDef("Container restarts (1h)", "timeseries",
                 (Query(f"topk(10, sum by(namespace, pod) "
                        f"(increase(kube_pod_container_status_restarts_total{{{NS}}}[1h])))",
                        "{{namespace}}/{{pod}}"),),
                 "The 10 pods with the most container restarts in the last hour.",
                 thresholds=(ctx.thresholds.restarts_per_hour / 2,
                             float(ctx.thresholds.restarts_per_hour))),
        PanelDef("Containers in CrashLoopBackOff", "stat",
                 (Query(f'sum(kube_pod_container_status_waiting_reason{{{NS},'
                        f'reason="CrashLoopBackOff"}}) or vector(0)'),),
                 "Containers waiting in CrashLoopBackOff now.", thresholds=(1,)),
    ))
    api_row = RowDef("API server", (
        PanelDef("API request latency p99", "timeseries",
                 (Query("histogram_quantile(0.99, sum by(le, verb) (rate("
                        'apiserver_request_duration_seconds_bucket{verb!~"WATCH|CONNECT"}'
                        f"[{RATE}])))", "{{verb}}"),),
                 "99th percentile API request latency per verb (long-running WATCH and "
                 "CONNECT left out).", unit="s", thresholds=(0.5, 1)),
        PanelDef("API 5xx share", "timeseries",
                 (Query(f'(sum(rate(apiserver_request_total{{code=~"5.."}}[{RATE}])) or vector(0))'
                        f" / sum(rate(apiserver_request_total[{RATE}])) * 100", "5xx"),),
                 "Share of API requests answered with a 5xx code.", unit="percent",
                 thresholds=(1, ctx.thresholds.http_error_rate_percent)),
        PanelDef("API requests by code", "timeseries",
                 (Query(f"sum by(code) (rate(apiserver_request_total[{RATE}]))", "{{code}}"),),
                 "API requests per second by HTTP code.", unit="reqps", width=24),
    ))
    rows = [node_row, pod_row, api_row]
    if ctx.etcd_metrics:
        rows.append(RowDef("etcd", (
            PanelDef("etcd has leader", "stat", (Query("min(etcd_server_has_leader)"),),
                     "1 when every member sees a leader; 0 means writes stop.", width=6,
                     height=4),
            PanelDef("etcd leader changes (1h)", "stat",
                     (Query("sum(increase(etcd_server_leader_changes_seen_total[1h]))"),),
                     "Leader elections in the last hour; frequent ones point to slow disks "
                     "or network.", width=6, height=4, thresholds=(1, 3)),
            PanelDef("etcd DB size of quota", "stat",
                     (Query("max(etcd_mvcc_db_total_size_in_bytes / "
                            "etcd_server_quota_backend_bytes * 100)"),),
                     "Backend database size as a share of its quota; at 100% etcd "
                     "refuses writes.", unit="percent", width=6, height=4,
                     thresholds=(70, 85), min_value=0, max_value=100),
            PanelDef("etcd DB size", "stat",
                     (Query("max(etcd_mvcc_db_total_size_in_bytes)"),),
                     "Backend database size on disk (defragment to reclaim).", unit="bytes",
                     width=6, height=4),
            PanelDef("etcd WAL fsync p99", "timeseries",
                     (Query("histogram_quantile(0.99, sum by(instance, le) (rate("
                            f"etcd_disk_wal_fsync_duration_seconds_bucket[{RATE}])))",
                            "{{instance}}"),),
                     "99th percentile WAL fsync time; above 10ms the disk is too slow for "
                     "etcd.", unit="s", thresholds=(0.01, 0.05)),
            PanelDef("etcd DB size vs quota", "timeseries",
                     (Query("etcd_mvcc_db_total_size_in_bytes", "size {{instance}}"),
                      Query("etcd_server_quota_backend_bytes", "quota {{instance}}")),
                     "Database size against the backend quota.", unit="bytes"),
        )))
    return DashboardDef("cluster", "k3sops / Cluster",
                        "Node readiness, pods and restarts, API server and etcd health.",
                        _env_vars(ctx), tuple(rows))


def applications(ctx: DashboardContext) -> DashboardDef:
    """RED metrics and process resources per workload (metric names from platform.yaml)."""
    m = ctx.app_metrics
    by = ", ".join(m.workload_labels)
    legend = "/".join(f"{{{{{label}}}}}" for label in m.workload_labels)
    req = m.requests_total
    code = m.status_label

    def rate(extra: str = "") -> str:
        sel = NS + (f",{extra}" if extra else "")
        return f"sum by({by}) (rate({req}{{{sel}}}[{RATE}]))"

    t = ctx.thresholds
    errors5xx = rate(f'{code}=~"5.."')
    red = RowDef("Requests", (
        PanelDef("Request rate", "timeseries", (Query(rate(), legend),),
                 f"Requests per second ({req}).", unit="reqps", expects_data=False),
        PanelDef("Response time p95", "timeseries",
                 (Query(f"histogram_quantile(0.95, sum by({by}, le) "
                        f"(rate({m.duration_seconds}_bucket{{{NS}}}[{RATE}])))", legend),),
                 f"95th percentile response time ({m.duration_seconds}).", unit="s",
                 thresholds=(t.p95_latency_seconds * 0.8, t.p95_latency_seconds),
                 expects_data=False),
        PanelDef("4xx rate", "timeseries", (Query(rate(f'{code}=~"4.."'), legend),),
                 "Client-error responses per second.", unit="reqps", expects_data=False),
        PanelDef("5xx rate", "timeseries", (Query(errors5xx, legend),),
                 "Server-error responses per second.", unit="reqps", expects_data=False),
        PanelDef("5xx share", "timeseries",
                 (Query(f"{errors5xx} / {rate()} * 100", legend),),
                 "Share of responses that are server errors.", unit="percent",
                 thresholds=(t.http_error_rate_percent / 2, t.http_error_rate_percent),
                 expects_data=False, width=24),
    ))
    cpu = f"rate(container_cpu_usage_seconds_total{{{_CADVISOR}}}[{RATE}])"
    resources = RowDef("Resources", (
        PanelDef("CPU per workload", "timeseries",
                 (Query(per_workload(cpu), "{{namespace}}/{{workload}}"),),
                 "CPU cores used by each workload's containers (cAdvisor, 5m rate).",
                 expects_data=False),
        PanelDef("Memory per workload", "timeseries",
                 (Query(per_workload(f"container_memory_working_set_bytes{{{_CADVISOR}}}"),
                        "{{namespace}}/{{workload}}"),),
                 "Working-set memory of each workload's containers (cAdvisor).",
                 unit="bytes", expects_data=False),
    ))
    return DashboardDef("applications", "k3sops / Applications",
                        "Request rate, latency, errors and resources per workload.",
                        _env_vars(ctx), (red, resources))


def backups(ctx: DashboardContext) -> DashboardDef:
    """Freshness, duration and size of k3sops backups and restore drills."""
    del ctx  # the backup metrics are k3sops' own; nothing in platform.yaml renames them
    day = 86400.0

    def one(metric: str) -> str:
        # `k3sops serve` and node-exporter's textfile collector may both export the gauge
        # (other job/instance labels): one series per kind and target, the newest value.
        return f"max by (kind, target) ({metric})"

    row = RowDef("Backups", (
        PanelDef("Time since last successful backup", "stat",
                 (Query("time() - " + one("k3sops_backup_last_success_timestamp_seconds"),
                        "{{kind}} {{target}}"),),
                 "Age of the newest successful backup.", unit="s", width=12,
                 thresholds=(day, 2 * day), expects_data=False),
        PanelDef("Time since last restore drill", "stat",
                 (Query("time() - " + one("k3sops_restore_drill_last_success_timestamp_seconds"),
                        "{{kind}} {{target}}"),),
                 "Age of the newest successful restore drill; an untested backup is a hope.",
                 unit="s", width=12, thresholds=(7 * day, 31 * day), expects_data=False),
        PanelDef("Backup duration", "timeseries",
                 (Query(one("k3sops_backup_duration_seconds"), "{{kind}} {{target}}"),),
                 "How long the last backup took.", unit="s", expects_data=False),
        PanelDef("Backup size", "timeseries",
                 (Query(one("k3sops_backup_size_bytes"), "{{kind}} {{target}}"),),
                 "Size of the last backup.", unit="bytes", expects_data=False),
    ))
    return DashboardDef("backups", "k3sops / Backups",
                        "Backup and restore-drill freshness from k3sops' own metrics.", (),
                        (row,))


# cAdvisor also reports the pod sandbox ("POD") and a pod-level sum (container=""): both
# would double-count (the same selection `k3sops metrics apps` makes).
_CADVISOR = f'{NS},container!="",container!="POD"'


def per_workload(pod_series: str) -> str:
    """Sum a per-pod (cAdvisor) series by the workload owning each pod.

    Pods are joined to their owner through kube-state-metrics' ``kube_pod_owner``; a
    ReplicaSet owner is shortened to its Deployment by dropping the pod-template hash, the
    way `k3sops metrics apps` maps pods to workloads.
    """
    owner = (f"max by(namespace, pod, owner_kind, owner_name) "
             f"(kube_pod_owner{{{NS}}})")
    joined = f"{pod_series} * on(namespace, pod) group_left(owner_kind, owner_name) {owner}"
    # label_join gives "Kind/name"; the first replace takes the name, the second strips the
    # ReplicaSet hash (a non-matching label_replace leaves the series as it was).
    kind_name = f'label_join({joined}, "kind_name", "/", "owner_kind", "owner_name")'
    named = f'label_replace({kind_name}, "workload", "$1", "kind_name", "[^/]*/(.*)")'
    deployment = (f'label_replace({named}, "workload", "$1", "kind_name", '
                  f'"ReplicaSet/(.*)-[a-z0-9]+")')
    return f"sum by(namespace, workload) ({deployment})"


def _env_vars(ctx: DashboardContext) -> tuple[VariableName, ...]:
    # Without environments there is nothing to choose between: only the namespace picker.
    return ("environment", "namespace") if ctx.environments else ("namespace",)


_BUILDERS: dict[str, Callable[[DashboardContext], DashboardDef]] = {
    "nodes": nodes, "cluster": cluster, "applications": applications, "backups": backups,
}
DASHBOARD_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def all_dashboards(ctx: DashboardContext) -> list[DashboardDef]:
    """Every dashboard, in a fixed order."""
    return [build(ctx) for build in _BUILDERS.values()]
