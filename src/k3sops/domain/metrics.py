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
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
        out += [
            Query(name="node_cpu", scope="nodes", expr=NODE_CPU),
            Query(name="node_memory", scope="nodes", expr=NODE_MEMORY),
            Query(name="node_disk", scope="nodes", expr=NODE_DISK),
            Query(name="node_network_receive", scope="nodes", expr=NODE_NET_RX),
            Query(name="node_network_transmit", scope="nodes", expr=NODE_NET_TX),
            Query(name="node_uname", scope="nodes", expr=NODE_UNAME),
        ]
    if wanted & {"nodes", "cluster"}:
        scope: Scope = "nodes" if "nodes" in wanted else "cluster"
        out.append(Query(name="kube_node_info", scope=scope, expr=KUBE_NODE_INFO))
    if "cluster" in wanted:
        out += [
            Query(name="pod_restarts", scope="cluster", expr=POD_RESTARTS),
            Query(name="pod_problems", scope="cluster", expr=POD_PROBLEMS),
            Query(name="node_ready", scope="cluster", expr=NODE_READY),
            Query(name="node_allocatable", scope="cluster", expr=NODE_ALLOCATABLE),
            Query(name="node_requests", scope="cluster", expr=NODE_REQUESTS),
            Query(name="apiserver_p99", scope="cluster", expr=APISERVER_P99),
            Query(name="apiserver_5xx_share", scope="cluster", expr=APISERVER_5XX),
            Query(name="etcd_has_leader", scope="cluster", expr=ETCD_HAS_LEADER),
            Query(name="etcd_wal_fsync_p99", scope="cluster", expr=ETCD_FSYNC_P99),
            Query(name="etcd_db_size", scope="cluster", expr=ETCD_DB_SIZE),
            Query(name="etcd_quota", scope="cluster", expr=ETCD_QUOTA),
        ]
    if "apps" in wanted:
        out += app_queries(app, namespaces)
    return out


# --------------------------------------------------------------------------------------------
# Prometheus answers


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sample(_Model):
    """One point of an instant query answer (a vector element, a scalar or a matrix point)."""

    labels: dict[str, str]
    """The series' labels (empty for a scalar)."""
    timestamp: float
    """Evaluation time, Unix seconds."""
    value: str
    """The value as Prometheus wrote it (``"0.25"``, ``"NaN"``, ``"+Inf"``)."""

    @property
    def number(self) -> float | None:
        """The value as a finite float, or None for NaN/±Inf (no meaningful number)."""
        try:
            v = float(self.value)
        except ValueError:
            return None
        return v if math.isfinite(v) else None


class InstantResult(_Model):
    """The ``data`` of a /api/v1/query answer, flattened into samples."""

    result_type: Literal["vector", "scalar", "matrix", "string"]
    samples: list[Sample]


def _point(labels: dict[str, str], point: Any) -> Sample:
    if not (isinstance(point, list | tuple) and len(point) == 2):
        raise ValueError(f"a sample must be [timestamp, value], got {str(point)[:80]}")
    ts, val = point
    return Sample(labels=labels, timestamp=float(ts), value=str(val))


def parse_result(data: Any) -> InstantResult:
    """Turn the ``data`` member of a Prometheus query answer into an InstantResult.

    Args:
        data: ``{"resultType": ..., "result": ...}`` as decoded from JSON.

    Returns:
        The samples; a matrix becomes one sample per point.

    Raises:
        ValueError: the answer does not have the documented shape.
    """
    if not isinstance(data, Mapping):
        raise ValueError("the answer has no data object")
    kind = data.get("resultType")
    result = data.get("result")
    if kind in ("scalar", "string"):
        return InstantResult(result_type=kind, samples=[_point({}, result)])
    if kind not in ("vector", "matrix") or not isinstance(result, list):
        raise ValueError(f"unexpected resultType {str(kind)[:40]!r}")
    samples: list[Sample] = []
    for series in result:
        if not isinstance(series, Mapping):
            raise ValueError("a series is not an object")
        labels = {str(k): str(v) for k, v in (series.get("metric") or {}).items()}
        if kind == "vector":
            samples.append(_point(labels, series.get("value")))
        else:
            samples.extend(_point(labels, p) for p in series.get("values") or [])
    return InstantResult(result_type=kind, samples=samples)


_POSITION = re.compile(r"\b(\d+):(\d+): parse error")


def point_at(expr: str, error: str) -> str | None:
    """Draw a caret under the position a Prometheus parse error names, for one-line queries.

    Args:
        expr: the query as sent.
        error: Prometheus' error text, e.g. ``1:17: parse error: unclosed left parenthesis``.

    Returns:
        Two lines, the query and a caret, or None when the error names no usable position.
    """
    m = _POSITION.search(error)
    lines = expr.splitlines() or [""]
    if m is None or not 1 <= int(m[1]) <= len(lines):
        return None
    line = lines[int(m[1]) - 1]
    col = min(max(int(m[2]), 1), len(line) + 1)
    return f"{line}\n{' ' * (col - 1)}^"


# --------------------------------------------------------------------------------------------
# Output models


class FilesystemUsage(_Model):
    """One mounted filesystem of a node."""

    mountpoint: str
    device: str
    fstype: str
    used_percent: float


class NodeMetrics(_Model):
    """Node-exporter figures of one host."""

    node: str
    """Kubernetes node name (see the module docstring for how it is found)."""
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


class PodRestarts(_Model):
    """A pod whose containers restarted in the last hour."""

    namespace: str
    pod: str
    restarts_1h: float
    """increase() over 1h: extrapolated, so it can be fractional."""


class PodPhase(_Model):
    """A pod in phase Failed or Pending."""

    namespace: str
    pod: str
    phase: str


class NodeCapacity(_Model):
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


class ApiServerMetrics(_Model):
    """API server health over the last 5 minutes."""

    request_p99_seconds: float | None
    """p99 of request durations, all verbs but WATCH and CONNECT (long-running by design)."""
    error_5xx_share: float | None
    """5xx answers / all answers, 0..1."""


class EtcdMember(_Model):
    """One etcd member (scrape instance)."""

    instance: str
    has_leader: bool | None
    wal_fsync_p99_seconds: float | None
    db_size_bytes: float | None
    quota_bytes: float | None
    db_used_percent: float | None
    """db size as a percent of the backend quota (writes are refused at 100)."""


class ClusterMetrics(_Model):
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


class AppRow(_Model):
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


class FailedQuery(_Model):
    """A query Prometheus could not answer; the figures it feeds are missing."""

    name: str
    expr: str
    error: str


class MetricsReport(_Model):
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


class QueryRow(_Model):
    """One sample of an ad-hoc query."""

    labels: dict[str, str]
    timestamp: float
    value: str
    """As Prometheus wrote it (keeps NaN and ±Inf exact)."""


class QueryReport(_Model):
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


# --------------------------------------------------------------------------------------------
# Vectors -> models

Results = Mapping[str, InstantResult]
"""Query name -> answer; a failed query is simply absent (its figures become None)."""


def _samples(results: Results, name: str) -> list[Sample]:
    r = results.get(name)
    return r.samples if r is not None else []


def _host(instance: str) -> str:
    """The host part of ``host:port`` (IPv6 ``[::1]:9100`` too)."""
    if instance.startswith("["):
        return instance[1:].split("]", 1)[0]
    return instance.rsplit(":", 1)[0] if instance.count(":") == 1 else instance


def node_names(node_series: Iterable[Sample], kube_node_info: Iterable[Sample]) -> dict[str, str]:
    """Map node-exporter instances to Kubernetes node names.

    Args:
        node_series: any node-exporter samples (``node_uname_info`` gives ``nodename`` too).
        kube_node_info: kube-state-metrics' ``kube_node_info`` samples (node, internal_ip).

    Returns:
        instance -> node name, for every instance seen; see the module docstring for the rules.
    """
    by_ip: dict[str, set[str]] = defaultdict(set)
    kube_names: set[str] = set()
    for s in kube_node_info:
        name = s.labels.get("node")
        if name:
            kube_names.add(name)
            if s.labels.get("internal_ip"):
                by_ip[s.labels["internal_ip"]].add(name)
    labelled: dict[str, str] = {}
    hostnames: dict[str, str] = {}
    instances: dict[str, None] = {}  # ordered set
    for s in node_series:
        inst = s.labels.get("instance")
        if not inst:
            continue
        instances[inst] = None
        if s.labels.get("node"):
            labelled.setdefault(inst, s.labels["node"])
        if s.labels.get("nodename"):
            hostnames.setdefault(inst, s.labels["nodename"])
    return {inst: _node_of(inst, labelled, by_ip, hostnames, kube_names) for inst in instances}


def _node_of(inst: str, labelled: Mapping[str, str], by_ip: Mapping[str, set[str]],
             hostnames: Mapping[str, str], kube_names: set[str]) -> str:
    """Apply the mapping rules of the module docstring to one instance."""
    if inst in labelled:
        return labelled[inst]
    ip_match = by_ip.get(_host(inst), set())
    if len(ip_match) == 1:
        return next(iter(ip_match))
    if hostnames.get(inst) in kube_names:
        return hostnames[inst]
    return inst


def build_nodes(results: Results) -> list[NodeMetrics]:
    """Node rows from the ``nodes`` queries (one per node-exporter instance), sorted by node.

    Args:
        results: answers by query name; missing ones leave their columns None.
    """
    cpu = {s.labels.get("instance", ""): s.number for s in _samples(results, "node_cpu")}
    mem = {s.labels.get("instance", ""): s.number for s in _samples(results, "node_memory")}
    rx = {s.labels.get("instance", ""): s.number
          for s in _samples(results, "node_network_receive")}
    tx = {s.labels.get("instance", ""): s.number
          for s in _samples(results, "node_network_transmit")}
    disks: dict[str, list[FilesystemUsage]] = defaultdict(list)
    for s in _samples(results, "node_disk"):
        if s.number is None:  # a filesystem of size 0 (e.g. some pseudo mounts) gives NaN
            continue
        disks[s.labels.get("instance", "")].append(FilesystemUsage(
            mountpoint=s.labels.get("mountpoint", ""), device=s.labels.get("device", ""),
            fstype=s.labels.get("fstype", ""), used_percent=s.number))
    node_series = [s for name in ("node_uname", "node_cpu", "node_memory", "node_disk",
                                  "node_network_receive", "node_network_transmit")
                   for s in _samples(results, name)]
    names = node_names(node_series, _samples(results, "kube_node_info"))
    rows = []
    for inst, node in names.items():
        fs = sorted(disks.get(inst, []), key=lambda f: (-f.used_percent, f.mountpoint))
        rows.append(NodeMetrics(
            node=node, instance=inst, cpu_percent=cpu.get(inst), memory_percent=mem.get(inst),
            disk_percent=fs[0].used_percent if fs else None,
            disk_mountpoint=fs[0].mountpoint if fs else None, filesystems=fs,
            network_receive_bytes_per_second=rx.get(inst),
            network_transmit_bytes_per_second=tx.get(inst)))
    return sorted(rows, key=lambda r: (r.node, r.instance))


def _percent(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return part / whole * 100


def _scalar(results: Results, name: str) -> float | None:
    """The value of a query expected to answer with one series (or a scalar)."""
    samples = _samples(results, name)
    return samples[0].number if len(samples) == 1 else None


def build_cluster(results: Results) -> ClusterMetrics:
    """Cluster figures from the ``cluster`` queries.

    Args:
        results: answers by query name; missing ones leave their figures None or empty.
    """
    known = {s.labels["node"] for s in _samples(results, "kube_node_info") if "node" in s.labels}
    ready: dict[str, Literal["True", "False", "Unknown"]] = {}
    for s in _samples(results, "node_ready"):
        status = s.labels.get("status", "unknown")
        ready[s.labels.get("node", "")] = ("True" if status == "true"
                                           else "False" if status == "false" else "Unknown")
    alloc: dict[tuple[str, str], float | None] = {
        (s.labels.get("node", ""), s.labels.get("resource", "")): s.number
        for s in _samples(results, "node_allocatable")}
    req: dict[tuple[str, str], float | None] = {
        (s.labels.get("node", ""), s.labels.get("resource", "")): s.number
        for s in _samples(results, "node_requests")}
    # A node without a requests series has no pods holding requests: 0, if the query ran.
    no_requests = 0.0 if "node_requests" in results else None
    names = sorted((known | set(ready) | {n for n, _ in alloc}) - {""})
    nodes = []
    for n in names:
        cpu_a, cpu_r = alloc.get((n, "cpu")), req.get((n, "cpu"), no_requests)
        mem_a, mem_r = alloc.get((n, "memory")), req.get((n, "memory"), no_requests)
        nodes.append(NodeCapacity(
            node=n, ready=ready.get(n),
            cpu_allocatable_cores=cpu_a, cpu_requested_cores=cpu_r,
            cpu_requested_percent=_percent(cpu_r, cpu_a),
            memory_allocatable_bytes=mem_a, memory_requested_bytes=mem_r,
            memory_requested_percent=_percent(mem_r, mem_a)))
    restarts = sorted(
        (PodRestarts(namespace=s.labels.get("namespace", ""), pod=s.labels.get("pod", ""),
                     restarts_1h=s.number) for s in _samples(results, "pod_restarts")
         if s.number is not None),
        key=lambda r: (-r.restarts_1h, r.namespace, r.pod))
    phases = sorted(
        (PodPhase(namespace=s.labels.get("namespace", ""), pod=s.labels.get("pod", ""),
                  phase=s.labels.get("phase", "")) for s in _samples(results, "pod_problems")),
        key=lambda p: (p.namespace, p.pod))
    return ClusterMetrics(
        nodes_total=len(nodes), nodes_ready=sum(1 for n in nodes if n.ready == "True"),
        nodes=nodes, restarts=restarts,
        failed_pods=[p for p in phases if p.phase == "Failed"],
        pending_pods=[p for p in phases if p.phase == "Pending"],
        apiserver=ApiServerMetrics(request_p99_seconds=_scalar(results, "apiserver_p99"),
                                   error_5xx_share=_scalar(results, "apiserver_5xx_share")),
        etcd=_etcd(results))


def _etcd(results: Results) -> list[EtcdMember]:
    def by_instance(name: str) -> dict[str, float | None]:
        return {s.labels.get("instance", ""): s.number for s in _samples(results, name)}

    leader = by_instance("etcd_has_leader")
    fsync = by_instance("etcd_wal_fsync_p99")
    size = by_instance("etcd_db_size")
    quota = by_instance("etcd_quota")
    members = []
    for inst in sorted(set(leader) | set(size) | set(quota) | set(fsync)):
        lv = leader.get(inst)
        members.append(EtcdMember(
            instance=inst, has_leader=None if lv is None else lv == 1,
            wal_fsync_p99_seconds=fsync.get(inst), db_size_bytes=size.get(inst),
            quota_bytes=quota.get(inst),
            db_used_percent=_percent(size.get(inst), quota.get(inst))))
    return members


def workloads(pod_owner: Iterable[Sample],
              replicaset_owner: Iterable[Sample]) -> dict[tuple[str, str], tuple[str, str]]:
    """Map pods to their top-level workload.

    Args:
        pod_owner: ``kube_pod_owner`` samples (namespace, pod, owner_kind, owner_name).
        replicaset_owner: ``kube_replicaset_owner`` samples (namespace, replicaset, owner_*).

    Returns:
        (namespace, pod) -> (workload kind, workload name); a ReplicaSet owned by a Deployment
        is replaced by the Deployment, a pod with no owner is its own workload (kind Pod).
    """
    rs_owner = {(s.labels.get("namespace", ""), s.labels.get("replicaset", "")):
                (s.labels.get("owner_kind", ""), s.labels.get("owner_name", ""))
                for s in replicaset_owner}
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for s in pod_owner:
        ns, pod = s.labels.get("namespace", ""), s.labels.get("pod", "")
        kind, name = s.labels.get("owner_kind", ""), s.labels.get("owner_name", "")
        if kind in ("", "<none>") or name in ("", "<none>"):
            kind, name = "Pod", pod
        elif kind == "ReplicaSet":
            up_kind, up_name = rs_owner.get((ns, name), ("", ""))
            if up_kind not in ("", "<none>") and up_name not in ("", "<none>"):
                kind, name = up_kind, up_name
        # a pod may list several owners; the controller (first seen, stable) wins
        out.setdefault((ns, pod), (kind, name))
    return out


def _red_key(labels: Mapping[str, str], app: AppMetrics) -> tuple[str, str]:
    """(namespace, workload) of an application series: namespace label, other labels joined."""
    ns = labels.get("namespace", "")
    rest = [labels.get(k, "") for k in app.workload_labels if k != "namespace"]
    return ns, "/".join(v for v in rest if v) or "(none)"


def build_apps(results: Results, app: AppMetrics) -> list[AppRow]:
    """Workload rows from the ``apps`` queries, sorted by namespace and workload.

    Workloads come from kube-state-metrics (pods grouped by their top-level owner) and from the
    application metrics themselves; an application series joins a workload when its namespace
    matches and its other workload labels (``job`` by default) equal the workload name.

    Args:
        results: answers by query name; missing ones or empty ones give None ("no data").
        app: the metric and label names the app queries used.
    """
    owner = workloads(_samples(results, "pod_owner"), _samples(results, "replicaset_owner"))
    kinds: dict[tuple[str, str], str | None] = {}
    pods: dict[tuple[str, str], int] = defaultdict(int)
    for (ns, _pod), (kind, name) in owner.items():
        kinds[(ns, name)] = kind
        pods[(ns, name)] += 1

    def per_pod(name: str) -> dict[tuple[str, str], float]:
        acc: dict[tuple[str, str], float] = {}
        for s in _samples(results, name):
            ns, pod = s.labels.get("namespace", ""), s.labels.get("pod", "")
            if s.number is None or not pod:
                continue
            key = (ns, owner.get((ns, pod), ("Pod", pod))[1])
            kinds.setdefault(key, owner.get((ns, pod), ("Pod", pod))[0])
            acc[key] = acc.get(key, 0.0) + s.number
        return acc

    def per_workload(name: str) -> dict[tuple[str, str], float]:
        acc: dict[tuple[str, str], float] = {}
        for s in _samples(results, name):
            if s.number is None:
                continue
            key = _red_key(s.labels, app)
            kinds.setdefault(key, None)
            acc[key] = acc.get(key, 0.0) + s.number
        return acc

    cpu, mem = per_pod("app_cpu"), per_pod("app_memory")
    reqs, e4, e5 = per_workload("app_requests"), per_workload("app_4xx"), per_workload("app_5xx")
    p95: dict[tuple[str, str], float] = {}
    for s in _samples(results, "app_p95"):
        if s.number is not None:
            key = _red_key(s.labels, app)
            kinds.setdefault(key, None)
            p95[key] = max(p95.get(key, 0.0), s.number)
    return [
        AppRow(namespace=ns, workload=name, kind=kinds[(ns, name)], pods=pods.get((ns, name), 0),
               request_rate=reqs.get((ns, name)), p95_seconds=p95.get((ns, name)),
               rate_4xx=e4.get((ns, name)), rate_5xx=e5.get((ns, name)),
               cpu_cores=cpu.get((ns, name)), memory_bytes=mem.get((ns, name)))
        for ns, name in sorted(kinds)
    ]


def build_report(prometheus: str, scopes: Sequence[Scope], queries: Sequence[Query],
                 answers: Mapping[str, InstantResult | str], app: AppMetrics,
                 namespaces: Sequence[str] = ()) -> MetricsReport:
    """Assemble the report from the answers to ``queries``.

    Args:
        prometheus: the endpoint asked, for the report.
        scopes: the levels asked for.
        queries: the catalogue that was run.
        answers: query name -> result, or the error text of a query that failed.
        app: application metric names.
        namespaces: the namespaces apps were restricted to.
    """
    ok = {k: v for k, v in answers.items() if isinstance(v, InstantResult)}
    failed = [FailedQuery(name=q.name, expr=q.expr, error=answers[q.name])
              for q in queries if isinstance(answers.get(q.name), str)]
    wanted = set(scopes)
    return MetricsReport(
        prometheus=prometheus, scopes=[s for s in SCOPES if s in wanted],
        namespaces=list(namespaces),
        nodes=build_nodes(ok) if "nodes" in wanted else None,
        cluster=build_cluster(ok) if "cluster" in wanted else None,
        apps=build_apps(ok, app) if "apps" in wanted else None,
        failed_queries=failed)
