"""Query answers turned into the report: node names, node rows, cluster figures, app rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from k3sops.config.schema import AppMetrics
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
)
from k3sops.domain.metrics.queries import SCOPES, Query, Scope
from k3sops.domain.metrics.results import InstantResult, Sample

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
        instance -> node name, for every instance seen; see the package docstring for the rules.
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
    """Apply the mapping rules of the package docstring to one instance."""
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
