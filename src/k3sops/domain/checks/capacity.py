"""Capacity (weekly): requests against allocatable, run-out forecasts, unused images, restores.

``capacity-requests`` adds up the requests of the pods bound to each node (Pending or Running,
as the scheduler counts them: the larger of the containers' sum and the largest init container,
plus pod overhead) from the API objects, against the node's allocatable.

``capacity-forecast`` extrapolates linearly (PromQL ``predict_linear``, a least-squares fit):
free disk over the last 6 hours, available memory over the last 24 hours and CPU busy share (a
5-minute subquery) over the last 24 hours, 7 days ahead. A resource whose prediction runs out
(free space below 0, CPU above 100 %) within :data:`HORIZON_DAYS` is reported with the days
left, ``horizon * now / (now - predicted)`` for what shrinks. A series younger than most of its
window is left out (the ``offset`` guard in each query): a fit over a few minutes of a fresh
node says nothing about next week.

``images-unused`` compares ``node.status.images`` (the kubelet lists at most 50, largest first)
with the images of the pods on that node, and reports nodes where unused images take more than
:data:`UNUSED_IMAGES_BYTES`. ``restore-not-verified`` reads the restore drills of the history.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from k3sops.domain.checks.backups import drill_overdue
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding
from k3sops.domain.metrics import IGNORED_FSTYPES, InstantResult, Sample
from k3sops.domain.snapshot import Obj, get, meta

REQUESTS_PERCENT = 85.0
"""Share of allocatable CPU or memory requested on a node above which it is nearly full."""
HORIZON_DAYS = 7
"""How far ahead the forecast looks."""
UNUSED_IMAGES_BYTES = 2 * 1024**3
"""Unused image bytes on a node above which pruning is suggested."""
RESTORE_DRILL_DAYS = 7

_HORIZON = HORIZON_DAYS * 86400
_FS = 'fstype!~"' + "|".join(IGNORED_FSTYPES) + '", mountpoint!=""'
_CPU_BUSY = '(1 - avg by(instance, node) (rate(node_cpu_seconds_total{mode="idle"}[5m])))'

Q_DISK_PRED = "capacity-forecast:disk_predicted"
Q_DISK_NOW = "capacity-forecast:disk_avail"
Q_MEM_PRED = "capacity-forecast:memory_predicted"
Q_MEM_NOW = "capacity-forecast:memory_avail"
Q_CPU_PRED = "capacity-forecast:cpu_predicted"
Q_CPU_NOW = "capacity-forecast:cpu_busy"

FORECAST_QUERIES = {
    Q_DISK_PRED: (f"predict_linear(node_filesystem_avail_bytes{{{_FS}}}[6h], {_HORIZON}) < 0"
                  f" and on(instance, device, mountpoint) "
                  f"node_filesystem_avail_bytes{{{_FS}}} offset 5h"),
    Q_DISK_NOW: f"node_filesystem_avail_bytes{{{_FS}}}",
    Q_MEM_PRED: (f"predict_linear(node_memory_MemAvailable_bytes[24h], {_HORIZON}) < 0"
                 " and on(instance) node_memory_MemAvailable_bytes offset 20h"),
    Q_MEM_NOW: "node_memory_MemAvailable_bytes",
    Q_CPU_PRED: (f"predict_linear({_CPU_BUSY}[24h:5m], {_HORIZON}) > 1"
                 ' and on(instance) count by(instance) '
                 '(node_cpu_seconds_total{mode="idle"} offset 20h)'),
    Q_CPU_NOW: _CPU_BUSY,
}


# --------------------------------------------------------------------------------------------
# capacity-requests

_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIX = {"": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "P": 1e15, "E": 1e18, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40,
           "Pi": 2.0**50, "Ei": 2.0**60}


def quantity(value: Any) -> float | None:
    """A Kubernetes quantity (``250m``, ``1.5Gi``, ``2``, ``1e3``) as a float; None if invalid."""
    if isinstance(value, int | float):
        return float(value)
    return _parse_quantity(str(value))


@functools.lru_cache(maxsize=4096)
def _parse_quantity(text: str) -> float | None:
    # the same few strings ("50m", "64Mi") repeat across tens of thousands of containers
    match = _QUANTITY.match(text.strip())
    if match is None or match[2] not in _SUFFIX:
        return None
    try:
        return float(match[1]) * _SUFFIX[match[2]]
    except ValueError:
        return None


def _requests(containers: Iterable[Obj], resource: str) -> float:
    return sum(quantity(get(c, "resources", "requests", resource)) or 0.0 for c in containers)


def pod_request(pod: Obj, resource: str) -> float:
    """What the scheduler reserves for a pod: max(containers + sidecars, each init) + overhead."""
    inits = get(pod, "spec", "initContainers", default=[]) or []
    sidecars = [c for c in inits if c.get("restartPolicy") == "Always"]
    regular = _requests(get(pod, "spec", "containers", default=[]) or [], resource)
    regular += _requests(sidecars, resource)
    init_max = max((quantity(get(c, "resources", "requests", resource)) or 0.0
                    for c in inits if c.get("restartPolicy") != "Always"), default=0.0)
    overhead = quantity(get(pod, "spec", "overhead", resource)) or 0.0
    return max(regular, init_max) + overhead


@check("capacity-requests", "Nodes have room for more requests", periods=("weekly",),
       reads=("pods", "nodes"))
def capacity_requests(ctx: CheckContext) -> list[Finding]:
    """Nodes whose pods request more than 85 % of allocatable CPU or memory."""
    used: dict[tuple[str, str], float] = defaultdict(float)
    pods: dict[str, int] = defaultdict(int)
    for pod in ctx.snapshot.get("pods"):
        node = get(pod, "spec", "nodeName")
        if not node or get(pod, "status", "phase") not in ("Pending", "Running"):
            continue
        pods[node] += 1
        for resource in ("cpu", "memory"):
            used[(node, resource)] += pod_request(pod, resource)
    out = []
    for node in ctx.snapshot.get("nodes"):
        _, name = meta(node)
        for resource in ("cpu", "memory"):
            alloc = quantity(get(node, "status", "allocatable", resource))
            if not alloc:
                continue
            percent = used[(name, resource)] / alloc * 100
            if percent <= REQUESTS_PERCENT:
                continue
            out.append(ctx.finding(
                "capacity-requests", "warning", "Node", None, name,
                f"pods on node {name} request {percent:.0f}% of its allocatable {resource} "
                f"(threshold {REQUESTS_PERCENT:g}%): new pods may not fit", "capacity-requests",
                {"resource": resource, "requested": used[(name, resource)],
                 "allocatable": alloc, "requested_percent": round(percent, 1),
                 "pods": pods[name]}))
    return out


# --------------------------------------------------------------------------------------------
# capacity-forecast


def _node(labels: dict[str, str]) -> str:
    """The node a node-exporter series belongs to: its ``node`` label, else the instance."""
    return labels.get("node") or labels.get("instance", "?")


def _by(res: InstantResult | None, *keys: str) -> dict[tuple[str, ...], Sample]:
    return {tuple(s.labels.get(k, "") for k in keys): s for s in (res.samples if res else [])}


def _days_left(now: float | None, predicted: float | None, limit: float) -> float | None:
    """Days until a linear trend from ``now`` to ``predicted`` (at the horizon) hits ``limit``."""
    if now is None or predicted is None or predicted == now:
        return None
    days = HORIZON_DAYS * (limit - now) / (predicted - now)
    return max(days, 0.0) if days <= HORIZON_DAYS else None


@check("capacity-forecast", "No resource runs out within a week", periods=("weekly",),
       queries=FORECAST_QUERIES, needs=("prometheus",))
def capacity_forecast(ctx: CheckContext) -> list[Finding]:
    """Disk, memory or CPU of a node forecast to run out within 7 days (linear trend)."""
    s = ctx.snapshot
    out = []
    disk_now = _by(s.metric(Q_DISK_NOW), "instance", "device", "mountpoint")
    for key, pred in sorted(_by(s.metric(Q_DISK_PRED), "instance", "device",
                                "mountpoint").items()):
        now = disk_now.get(key)
        days = _days_left(now.number if now else None, pred.number, 0.0)
        node = _node(pred.labels)
        out.append(ctx.finding(
            "capacity-forecast", "warning", "Node", None, node,
            f"disk {key[2]} on {node} full within {HORIZON_DAYS} days"
            + (f" (about {days:.1f} days left at the 6h trend)" if days is not None else ""),
            "node-disk-filling-up",
            {"resource": "disk", "mountpoint": key[2], "device": key[1],
             "avail_bytes": now.number if now else None,
             "predicted_avail_bytes_in_7d": pred.number, "days_left": days,
             "method": "predict_linear over 6h", "labels": pred.labels}))
    mem_now = _by(s.metric(Q_MEM_NOW), "instance")
    for key, pred in sorted(_by(s.metric(Q_MEM_PRED), "instance").items()):
        now = mem_now.get(key)
        days = _days_left(now.number if now else None, pred.number, 0.0)
        node = _node(pred.labels)
        out.append(ctx.finding(
            "capacity-forecast", "warning", "Node", None, node,
            f"memory on {node} runs out within {HORIZON_DAYS} days"
            + (f" (about {days:.1f} days left at the 24h trend)" if days is not None else ""),
            "node-high-memory",
            {"resource": "memory", "available_bytes": now.number if now else None,
             "predicted_available_bytes_in_7d": pred.number, "days_left": days,
             "method": "predict_linear over 24h"}))
    cpu_now = _by(s.metric(Q_CPU_NOW), "instance")
    for key, pred in sorted(_by(s.metric(Q_CPU_PRED), "instance").items()):
        now = cpu_now.get(key)
        days = _days_left(now.number if now else None, pred.number, 1.0)
        node = _node(now.labels if now else pred.labels)
        out.append(ctx.finding(
            "capacity-forecast", "warning", "Node", None, node,
            f"CPU on {node} saturates within {HORIZON_DAYS} days"
            + (f" (about {days:.1f} days left at the 24h trend)" if days is not None else ""),
            "node-high-cpu",
            {"resource": "cpu", "busy_share": now.number if now else None,
             "predicted_busy_share_in_7d": pred.number, "days_left": days,
             "method": "predict_linear over a 24h subquery of the 5m busy share"}))
    return out


# --------------------------------------------------------------------------------------------
# images-unused


def normalize_image(ref: str) -> str:
    """An image ref as the runtime lists it (``nginx``: ``docker.io/library/nginx:latest``)."""
    ref = ref.strip()
    for prefix in ("docker-pullable://", "docker://"):
        ref = ref.removeprefix(prefix)
    first, _, rest = ref.partition("/")
    if not rest:
        ref = f"docker.io/library/{ref}"
    elif "." not in first and ":" not in first and first != "localhost":
        ref = f"docker.io/{ref}"
    last = ref.rsplit("/", 1)[-1]
    if "@" not in last and ":" not in last:
        ref += ":latest"
    return ref


def _pod_images(pod: Obj) -> set[str]:
    spec = get(pod, "spec", default={}) or {}
    refs = [c.get("image", "") for key in ("containers", "initContainers", "ephemeralContainers")
            for c in spec.get(key) or []]
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in get(pod, "status", key, default=[]) or []:
            refs += [cs.get("image", ""), cs.get("imageID", "")]
    return {normalize_image(r) for r in refs if r}


@check("images-unused", "No large unused images on nodes", periods=("weekly",),
       reads=("pods", "nodes"))
def images_unused(ctx: CheckContext) -> list[Finding]:
    """Nodes holding images no pod on them uses, when those add up to more than 2 GiB."""
    used: dict[str, set[str]] = defaultdict(set)
    for pod in ctx.snapshot.get("pods"):
        node = get(pod, "spec", "nodeName")
        if node:
            used[node] |= _pod_images(pod)
    out = []
    for node in ctx.snapshot.get("nodes"):
        _, name = meta(node)
        unused: list[tuple[str, int]] = []
        for image in get(node, "status", "images", default=[]) or []:
            names = [normalize_image(n) for n in image.get("names") or []]
            # The sandbox (pause) image is used by every pod without being in any pod spec.
            if not names or any("/pause:" in n or "/pause@" in n or "-pause:" in n
                                for n in names):
                continue
            if not used[name] & set(names):
                tagged = next((n for n in names if "@" not in n), names[0])
                unused.append((tagged, int(image.get("sizeBytes") or 0)))
        total = sum(size for _, size in unused)
        if total <= UNUSED_IMAGES_BYTES:
            continue
        unused.sort(key=lambda i: (-i[1], i[0]))
        out.append(ctx.finding(
            "images-unused", "info", "Node", None, name,
            f"{len(unused)} images on node {name} ({total / 1024**3:.1f} GiB) are not used by "
            "any pod on it: prune them (crictl rmi --prune)", "images-unused",
            {"unused_bytes": total, "threshold_bytes": UNUSED_IMAGES_BYTES,
             "images": [{"image": i, "size_bytes": n} for i, n in unused[:20]],
             "listed_images": len(
                 get(node, "status", "images", default=[]) or [])}))
    return out


# --------------------------------------------------------------------------------------------
# restore-not-verified


@check("restore-not-verified", "A backup restore was verified this week", periods=("weekly",),
       uses=("etcdsnapshotfiles.k3s.cattle.io", "backups.longhorn.io"))
def restore_not_verified(ctx: CheckContext) -> list[Finding]:
    """No successful restore drill in the last 7 days (from the history store)."""
    overdue, evidence = drill_overdue(ctx, RESTORE_DRILL_DAYS)
    if not overdue:
        return []
    return [ctx.finding(
        "restore-not-verified", "warning", "RestoreDrill", None, "weekly",
        "no backup restore was verified this week: run a restore drill", "restore-drill",
        evidence)]
