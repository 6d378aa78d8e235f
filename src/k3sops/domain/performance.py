"""`k3sops diagnose performance`: who uses the CPU, memory and disk (pure; the service asks).

Sources, in order of preference:

* nodes: node-exporter (CPU, memory, filesystems per mountpoint) through Prometheus;
* pods: the kubelet's container series through Prometheus (``container_cpu_usage_seconds_total``,
  ``container_memory_working_set_bytes``: cAdvisor's and the kubelet resource endpoint's standard
  names), else metrics.k8s.io (metrics-server) when that API is served;
* throttling: cAdvisor's ``container_cpu_cfs_throttled_periods_total`` / ``..._periods_total``;
* OOM kills: the pods' last termination state (from the API objects).

When a source has no series, the report says which one is missing (a ``perf-source-missing``
finding and a failed source: exit 4), rather than leaving its section empty.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from k3sops.domain import checks as registry
from k3sops.domain import metrics as m
from k3sops.domain.checks.base import CheckContext
from k3sops.domain.checks.capacity import quantity
from k3sops.domain.diagnose import Diagnosis
from k3sops.domain.findings import Finding, Source
from k3sops.domain.metrics import InstantResult, Sample

TOP = 10
"""Pods and nodes listed per ranking."""
THROTTLED_PERCENT = 25.0
"""Share of CFS periods throttled (5m) above which a pod's CPU limit is reported."""
_C = 'container!="", container!="POD"'
_FS = 'fstype!~"' + "|".join(m.IGNORED_FSTYPES) + '"'

QUERIES: dict[str, str] = {
    "node_cpu": m.NODE_CPU,
    "node_memory": m.NODE_MEMORY,
    "node_uname": m.NODE_UNAME,
    "kube_node_info": m.KUBE_NODE_INFO,
    "fs_size": f"node_filesystem_size_bytes{{{_FS}}}",
    "fs_avail": f"node_filesystem_avail_bytes{{{_FS}}}",
    "pod_cpu": f"topk({TOP}, sum by(namespace, pod) "
               f"(rate(container_cpu_usage_seconds_total{{{_C}}}[5m])))",
    "pod_memory": f"topk({TOP}, sum by(namespace, pod) "
                  f"(container_memory_working_set_bytes{{{_C}}}))",
    "has_container_cpu": "count(container_cpu_usage_seconds_total)",
    "has_container_memory": "count(container_memory_working_set_bytes)",
    "throttled": f"topk({TOP}, 100 * sum by(namespace, pod) "
                 f"(increase(container_cpu_cfs_throttled_periods_total{{{_C}}}[5m])) / "
                 f"sum by(namespace, pod) (increase(container_cpu_cfs_periods_total{{{_C}}}[5m]))"
                 " > 0)",
    "has_throttling": "count(container_cpu_cfs_periods_total)",
}
"""The PromQL of the report, by name."""

SOURCES = {"container_cpu": "container_cpu_usage_seconds_total",
           "container_memory": "container_memory_working_set_bytes",
           "throttling": "container_cpu_cfs_periods_total",
           "node_exporter": "node-exporter (node_cpu_seconds_total, node_filesystem_*)"}


def _samples(results: Mapping[str, InstantResult], name: str) -> list[Sample]:
    res = results.get(name)
    return list(res.samples) if res is not None else []


def _present(results: Mapping[str, InstantResult], name: str) -> bool:
    return any((s.number or 0) > 0 for s in _samples(results, name))


def _mib(v: float | None) -> str:
    return "?" if v is None else f"{v / 2**20:.0f}Mi"


def _node_rows(results: Mapping[str, InstantResult]) -> list[dict[str, Any]]:
    names = m.node_names([*_samples(results, "node_uname"), *_samples(results, "node_cpu")],
                         _samples(results, "kube_node_info"))
    rows: dict[str, dict[str, Any]] = {}
    for key in ("node_cpu", "node_memory"):
        for s in _samples(results, key):
            inst = s.labels.get("instance", "")
            node = s.labels.get("node") or names.get(inst, inst)
            rows.setdefault(node, {"node": node, "instance": inst})[key[5:] + "_percent"] = (
                None if s.number is None else round(s.number, 1))
    return list(rows.values())


def filesystems(results: Mapping[str, InstantResult]) -> dict[str, list[dict[str, Any]]]:
    """Per node, its filesystems (mountpoint, size, used, free %), fullest first."""
    avail = {(s.labels.get("instance"), s.labels.get("mountpoint")): s.number
             for s in _samples(results, "fs_avail")}
    names = m.node_names(_samples(results, "node_uname"), _samples(results, "kube_node_info"))
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in _samples(results, "fs_size"):
        inst, mnt = s.labels.get("instance"), s.labels.get("mountpoint")
        size, free = s.number, avail.get((inst, mnt))
        if not size or free is None:
            continue
        node = s.labels.get("node") or names.get(inst or "", inst or "?")
        out[node].append({"mountpoint": mnt, "device": s.labels.get("device"),
                          "fstype": s.labels.get("fstype"), "size_bytes": size,
                          "used_bytes": size - free, "free_percent": round(100 * free / size, 2)})
    for fs in out.values():
        fs.sort(key=lambda f: f["used_bytes"], reverse=True)
    return dict(out)


def _pod_top(results: Mapping[str, InstantResult], name: str) -> list[dict[str, Any]]:
    rows = [{"namespace": s.labels.get("namespace"), "pod": s.labels.get("pod"),
             "value": s.number} for s in _samples(results, name) if s.number is not None]
    return sorted(rows, key=lambda r: float(r["value"] or 0), reverse=True)[:TOP]


def metrics_api_top(pods: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                        list[dict[str, Any]]]:
    """Top pods by CPU (cores) and memory (bytes) from metrics.k8s.io PodMetrics items."""
    rows: list[dict[str, Any]] = []
    for p in pods:
        md = p.get("metadata") or {}
        cpu = sum(quantity((c.get("usage") or {}).get("cpu")) or 0.0
                  for c in p.get("containers") or [])
        mem = sum(quantity((c.get("usage") or {}).get("memory")) or 0.0
                  for c in p.get("containers") or [])
        rows.append({"namespace": md.get("namespace"), "pod": md.get("name"), "cpu": cpu,
                     "memory": mem})
    by_cpu = [{"namespace": r["namespace"], "pod": r["pod"], "value": r["cpu"]}
              for r in sorted(rows, key=lambda r: float(r["cpu"]), reverse=True)[:TOP]]
    by_mem = [{"namespace": r["namespace"], "pod": r["pod"], "value": r["memory"]}
              for r in sorted(rows, key=lambda r: float(r["memory"]), reverse=True)[:TOP]]
    return by_cpu, by_mem


def metrics_api_nodes(ctx: CheckContext, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Node rows from metrics.k8s.io NodeMetrics: usage in percent of allocatable."""
    alloc = {str((n.get("metadata") or {}).get("name")): (n.get("status") or {}).get(
        "allocatable") or {} for n in ctx.snapshot.get("nodes")}
    rows = []
    for item in items:
        name = str((item.get("metadata") or {}).get("name"))
        usage = item.get("usage") or {}
        row: dict[str, Any] = {"node": name, "instance": "metrics.k8s.io"}
        for res, key in (("cpu", "cpu_percent"), ("memory", "memory_percent")):
            used, total = quantity(usage.get(res)), quantity(alloc.get(name, {}).get(res))
            row[key] = round(100 * used / total, 1) if used is not None and total else None
        rows.append(row)
    return rows


def _nodes(d: Diagnosis, ctx: CheckContext, results: Mapping[str, InstantResult],
           api_nodes: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    th = ctx.thresholds()
    nodes = _node_rows(results)
    if not nodes and api_nodes:
        nodes = metrics_api_nodes(ctx, api_nodes)
    for key, limit, check in (("cpu_percent", th.cpu_percent, "node-high-cpu"),
                              ("memory_percent", th.memory_percent, "node-high-memory")):
        what = key.split("_")[0]
        ranked = sorted((n for n in nodes if n.get(key) is not None),
                        key=lambda n: float(n[key]), reverse=True)
        if not ranked:
            continue
        d.step(f"top nodes by {what}", all(n[key] <= limit for n in ranked),
               ", ".join(f"{n['node']} {n[key]}%" for n in ranked[:TOP]))
        for n in ranked:
            if n[key] > limit:
                d.add(check, "warning", "Node", None, n["node"],
                      f"node {n['node']} uses {n[key]}% {what} (threshold {limit:g}%)", check,
                      {"node": n, "threshold_percent": limit})
    return nodes


def _disks(d: Diagnosis, ctx: CheckContext,
           results: Mapping[str, InstantResult]) -> dict[str, list[dict[str, Any]]]:
    limit = ctx.thresholds().disk_free_percent
    fss = filesystems(results)
    for node, fs in sorted(fss.items()):
        low = [f for f in fs if f["free_percent"] < limit]
        d.step(f"disk {node}", not low, ", ".join(
            f"{f['mountpoint']} {100 - f['free_percent']:.0f}% used "
            f"({f['used_bytes'] / 2**30:.1f} of {f['size_bytes'] / 2**30:.1f} GiB)"
            for f in fs[:4]))
        for f in low:
            d.add("node-disk-space-low", "critical" if f["free_percent"] < limit / 2
                  else "warning", "Node", None, node,
                  f"node {node} {f['mountpoint']} has {f['free_percent']:.1f}% free "
                  f"(threshold {limit:g}%); biggest filesystems by use: "
                  + ", ".join(f"{x['mountpoint']} {x['used_bytes'] / 2**30:.1f} GiB"
                              for x in fs[:3]),
                  "node-disk-space-low", {"filesystem": f, "filesystems": fs[:10],
                                          "threshold_free_percent": limit})
    return fss


def _pods(d: Diagnosis, results: Mapping[str, InstantResult],
          metrics_api_pods: list[dict[str, Any]] | None,
          missing: list[str]) -> dict[str, Any]:
    pods_cpu = _pod_top(results, "pod_cpu")
    pods_mem = _pod_top(results, "pod_memory")
    cpu_src = "prometheus" if _present(results, "has_container_cpu") else None
    mem_src = "prometheus" if _present(results, "has_container_memory") else None
    if (cpu_src is None or mem_src is None) and metrics_api_pods is not None:
        api_cpu, api_mem = metrics_api_top(metrics_api_pods)
        if cpu_src is None:
            pods_cpu, cpu_src = api_cpu, "metrics.k8s.io"
        if mem_src is None:
            pods_mem, mem_src = api_mem, "metrics.k8s.io"
    if cpu_src:
        d.step(f"top pods by cpu ({cpu_src})", True, ", ".join(
            f"{r['namespace']}/{r['pod']} {1000 * (r['value'] or 0):.1f}m" for r in pods_cpu)
            or "no pod uses CPU")
    else:
        missing.append("container_cpu")
    if mem_src:
        d.step(f"top pods by memory ({mem_src})", True, ", ".join(
            f"{r['namespace']}/{r['pod']} {_mib(r['value'])}" for r in pods_mem)
            or "no pod uses memory")
    else:
        missing.append("container_memory")
    return {"pods_cpu_cores": pods_cpu, "pods_memory_bytes": pods_mem,
            "pods_cpu_source": cpu_src, "pods_memory_source": mem_src}


def _throttling(d: Diagnosis, results: Mapping[str, InstantResult],
                missing: list[str]) -> None:
    if not _present(results, "has_throttling"):
        missing.append("throttling")
        return
    throttled = _pod_top(results, "throttled")
    hot = [r for r in throttled if (r["value"] or 0) > THROTTLED_PERCENT]
    d.step("CPU throttling", not hot, ", ".join(
        f"{r['namespace']}/{r['pod']} {r['value']:.0f}%" for r in throttled) or "none")
    for r in hot:
        d.add("pod-cpu-throttled", "warning", "Pod", r["namespace"], str(r["pod"]),
              f"pod {r['namespace']}/{r['pod']} was CPU-throttled in {r['value']:.0f}% of "
              f"its CFS periods over 5m (threshold {THROTTLED_PERCENT:g}%)",
              "pod-cpu-throttled", {"throttled_percent": round(r["value"] or 0, 1)})


def _ooms(d: Diagnosis, ctx: CheckContext, pods_mem: list[dict[str, Any]]) -> None:
    spec = registry.REGISTRY.get("pod-oomkilled")
    ooms: list[Finding] = spec.fn(ctx) if spec is not None else []
    mem_by_pod = {(r["namespace"], r["pod"]): r["value"] for r in pods_mem}
    for f in ooms:
        usage = mem_by_pod.get((f.resource.namespace, f.resource.name))
        d.findings.append(f.model_copy(update={"evidence": {
            **f.evidence, "memory_working_set": _mib(usage) if usage else None}}))
    d.step("OOM kills", not ooms, ", ".join(
        f"{f.resource.namespace}/{f.resource.name}" for f in ooms) or "none")


def analyse(ctx: CheckContext, results: Mapping[str, InstantResult],
            metrics_api_pods: list[dict[str, Any]] | None,
            prometheus: str, metrics_api_nodes: list[dict[str, Any]] | None = None,
            ) -> tuple[Diagnosis, list[Source]]:
    """Rank nodes and pods, find throttling, OOM kills and full disks; name missing sources.

    Args:
        ctx: the check context (snapshot for OOM kills, thresholds from platform.yaml).
        results: answers to :data:`QUERIES` by name (failed queries are absent).
        metrics_api_pods: metrics.k8s.io PodMetrics items, or None when the API is not served.
        metrics_api_nodes: metrics.k8s.io NodeMetrics items (used without node-exporter).
        prometheus: where Prometheus was asked (named in missing-source findings).

    Returns:
        The diagnosis (chain and findings) and one failed Source per missing data source.
    """
    d = Diagnosis(ctx)
    missing: list[str] = []
    nodes = _nodes(d, ctx, results, metrics_api_nodes)
    if not nodes:
        missing.append("node_exporter")
    fss = _disks(d, ctx, results)
    pods = _pods(d, results, metrics_api_pods, missing)
    _throttling(d, results, missing)
    _ooms(d, ctx, pods["pods_memory_bytes"])
    d.findings.append(ctx.finding(
        "performance-top", "info", "Cluster", None, "performance",
        "top nodes and pods by CPU and memory", "node-high-cpu",
        {"nodes": nodes, **pods, "filesystems": {k: v[:10] for k, v in fss.items()}}))
    sources: list[Source] = []
    for name in missing:
        series = SOURCES[name]
        extra = "; metrics.k8s.io is not served either" if name.startswith("container") \
            and metrics_api_pods is None else ""
        d.step(f"source {name}", False, f"no {series} series in Prometheus{extra}")
        d.add("perf-source-missing", "warning", "Source", None, name,
              f"{name}: Prometheus at {prometheus} has no {series} series{extra}; that "
              "section of the report is missing", "target-down",
              {"series": series, "prometheus": prometheus})
        sources.append(Source(name=f"metrics:{name}", ok=False, endpoint=prometheus,
                              error=f"no {series} series{extra}"))
    return d, sources
