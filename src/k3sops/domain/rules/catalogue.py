"""The default alert rules of k3sops, each with the promtool cases that prove it.

Names follow the upstream mixins (kubernetes-mixin, node-mixin, etcd-mixin, cert-manager's)
where they have the alert, so existing silences, routes and habits carry over; thresholds that
the platform configures come from ``environments.*.thresholds``; the others are upstream's
(see :data:`CATALOGUE` and the ``threshold_source`` of each rule).

K3s awareness: K3s runs the scheduler and controller-manager inside the server process, with no
scrape targets of their own. With ``monitoring.embedded_control_plane`` (the default) there are
no KubeSchedulerDown/KubeControllerManagerDown rules, and TargetDown ignores those two jobs, so
a K3s cluster does not page for components it does not have. The etcd rules exist only with
``monitoring.etcd_metrics`` (K3s: ``--etcd-expose-metrics``).

Backup freshness uses k3sops' own gauge ``k3sops_backup_last_success_timestamp_seconds{kind,
target}`` (unix time of the last successful backup of each kind and target):
K3sopsBackupTooOld fires when a backup is older than 26 hours (a daily schedule plus two hours
of slack); K3sopsBackupMissing fires when the gauge has been absent for an hour, and exists only
when platform.yaml has a ``backup:`` section, so platforms without k3sops backups stay quiet.

Every rule builds its own promtool test cases: one where it must fire (with the exact labels and
annotations expected) and one where it must not; the quiet case sits on the safe side of the
same threshold and, for namespace-scoped rules, adds a firing-worthy series in a namespace of
another environment to prove the namespace matcher.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from k3sops.config.schema import Platform
from k3sops.domain.rules.model import (
    Case,
    ExpectedAlert,
    Inputs,
    RuleCases,
    RuleDef,
    Series,
)

__all__ = ["BACKUP_METRIC", "CATALOGUE", "FILESYSTEM_SELECTOR", "catalogue_by_id"]

BACKUP_METRIC = "k3sops_backup_last_success_timestamp_seconds"
"""Gauge k3sops exports per backup ``kind`` and ``target``: unix time of the last success."""
BACKUP_MAX_AGE_SECONDS = 26 * 3600
"""A daily backup plus two hours of slack for a slow run."""
FILESYSTEM_SELECTOR = 'fstype!~"tmpfs|overlay|squashfs|ramfs",mountpoint!=""'
"""Real filesystems only: memory-backed and container layer filesystems are not disks."""
EMBEDDED_JOBS = ("kube-scheduler", "kube-controller-manager")
"""Scrape jobs of components K3s embeds in its server process."""

CaseBuilder = Callable[[Inputs, float], RuleCases]

_NODE = {"instance": "node-1:9100", "job": "node-exporter"}
_KSM = {"job": "kube-state-metrics"}
_ETCD = {"instance": "10.0.0.1:2381", "job": "etcd"}


# --------------------------------------------------------------------------------------------
# Helpers for expressions and test series


def num(x: float) -> str:
    """A number as PromQL and promtool read it: ``80``, ``0.5``, ``1209600``."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _sel(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _series(metric: str, labels: dict[str, str], values: str) -> Series:
    return Series(f"{metric}{_sel(labels)}", values)


def _const(v: float, minutes: int) -> str:
    return f"{num(v)}x{minutes}"


def _counter(per_minute: float, minutes: int, start: float = 100) -> str:
    # Counters start above zero so that increase()/rate() never extrapolate to a reset.
    return f"{num(start)}+{num(per_minute)}x{minutes}"


def _minutes(hold: float, warmup: int) -> int:
    """Evaluation time: data warm-up (range windows) + the ``for`` duration + a margin."""
    return warmup + math.ceil(hold / 60) + 2


def nice_between(lo: float, hi: float, *, whole_ok: bool = True) -> float:
    """A value strictly between ``lo`` and ``hi`` with few significant digits.

    Test values with few digits make Prometheus' ``humanize`` output independent of the last
    bit of floating-point arithmetic; 1 is avoided because ``humanize`` switches units there.
    Returns the midpoint when no such value exists (e.g. an empty interval).
    """
    mid = (lo + hi) / 2
    for digits in range(12):
        v = round(mid, digits)
        if lo < v < hi and v != 1 and (whole_ok or not v.is_integer()):
            return v
    return mid


def _hist(metric: str, labels: dict[str, str], bounds: tuple[float, ...], into: int,
          minutes: int, rate: float = 10) -> tuple[Series, ...]:
    """Cumulative ``_bucket`` counters with every observation in bucket ``into``.

    ``bounds`` are the finite upper bounds; ``+Inf`` is added.
    """
    out = []
    for i, le in enumerate((*bounds, math.inf)):
        per_minute = rate if i >= into else 0
        le_text = "+Inf" if math.isinf(le) else num(le)
        out.append(_series(f"{metric}_bucket", {**labels, "le": le_text},
                           _counter(per_minute, minutes, start=100 if i >= into else 0)))
    return tuple(out)


def _quantile_buckets(lo: float, result: float, q: float) -> tuple[float, float]:
    """Bucket bounds (lo, hi) putting quantile ``q`` of observations in (lo, hi] at ``result``.

    histogram_quantile interpolates linearly inside the bucket.
    """
    return lo, lo + (result - lo) / q


def _foreign(inp: Inputs, series: tuple[Series, ...]) -> tuple[Series, ...]:
    """The same series moved to a namespace the rule must ignore (none if it selects all)."""
    if inp.foreign_namespace is None:
        return ()
    old, new = f'namespace="{inp.test_namespace}"', f'namespace="{inp.foreign_namespace}"'
    return tuple(Series(s.series.replace(old, new), s.values) for s in series)


def _days(inp: Inputs) -> int:
    return inp.thresholds.cert_expiry_days * 86400


# --------------------------------------------------------------------------------------------
# Nodes


def _cpu_expr(i: Inputs) -> str:
    return ('100 - (avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])) * 100)'
            f" > {num(i.thresholds.cpu_percent)}")


def _cpu_cases(i: Inputs, hold: float) -> RuleCases:
    thr = i.thresholds.cpu_percent
    n = _minutes(hold, 6)

    def idle(usage: float) -> Series:
        return _series("node_cpu_seconds_total", {**_NODE, "cpu": "0", "mode": "idle"},
                       _counter(60 * (100 - usage) / 100, n))

    busy = nice_between(thr, 100)
    return RuleCases(
        firing=Case((idle(busy),), n, (ExpectedAlert({"instance": _NODE["instance"]}, busy),)),
        quiet=Case((idle(thr / 2),), n),
    )


def _memory_cases(i: Inputs, hold: float) -> RuleCases:
    thr = i.thresholds.memory_percent
    n = _minutes(hold, 1)
    total = 8e9

    def mem(used: float) -> tuple[Series, ...]:
        return (_series("node_memory_MemAvailable_bytes", _NODE,
                        _const(total * (100 - used) / 100, n)),
                _series("node_memory_MemTotal_bytes", _NODE, _const(total, n)))

    used = nice_between(thr, 100)
    return RuleCases(firing=Case(mem(used), n, (ExpectedAlert(_NODE, used),)),
                     quiet=Case(mem(thr / 2), n))


_FS_LABELS = {**_NODE, "device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/"}


def _fs(labels: dict[str, str], avail: str, size: float, minutes: int) -> tuple[Series, ...]:
    return (_series("node_filesystem_avail_bytes", labels, avail),
            _series("node_filesystem_size_bytes", labels, _const(size, minutes)),
            _series("node_filesystem_readonly", labels, _const(0, minutes)))


def _disk_low_expr(i: Inputs) -> str:
    s = FILESYSTEM_SELECTOR
    return (f"(node_filesystem_avail_bytes{{{s}}} / node_filesystem_size_bytes{{{s}}} * 100"
            f" < {num(i.thresholds.disk_free_percent)}"
            f" and node_filesystem_readonly{{{s}}} == 0)")


def _disk_low_cases(i: Inputs, hold: float) -> RuleCases:
    thr = i.thresholds.disk_free_percent
    n = _minutes(hold, 1)
    size = 1e11
    low = nice_between(0, thr)
    tmpfs = {**_FS_LABELS, "device": "tmpfs", "fstype": "tmpfs", "mountpoint": "/run"}
    return RuleCases(
        firing=Case(_fs(_FS_LABELS, _const(size * low / 100, n), size, n), n,
                    (ExpectedAlert(_FS_LABELS, low),)),
        quiet=Case(_fs(_FS_LABELS, _const(size * nice_between(thr, 100) / 100, n), size, n)
                   + _fs(tmpfs, _const(size * 0.01 / 100, n), size, n), n),
    )


def _filling_expr(_: Inputs) -> str:
    s = FILESYSTEM_SELECTOR
    return (f"(node_filesystem_avail_bytes{{{s}}} / node_filesystem_size_bytes{{{s}}} * 100 < 40"
            f" and predict_linear(node_filesystem_avail_bytes{{{s}}}[6h], 86400) < 0"
            f" and node_filesystem_readonly{{{s}}} == 0)")


def _filling_cases(_: Inputs, hold: float) -> RuleCases:
    n = _minutes(hold, 8)
    # 39% free, losing 0.05% a minute: 72% a day, so the disk is full within 24h.
    value = (390 - 0.5 * n) / 10
    return RuleCases(
        firing=Case(_fs(_FS_LABELS, f"390-0.5x{n}", 1000, n), n,
                    (ExpectedAlert(_FS_LABELS, value),)),
        quiet=Case(_fs(_FS_LABELS, _const(300, n), 1000, n), n),  # 30% free, but steady
    )


def _up_cases(job: str, hold: float, other_job: str = "apiserver") -> RuleCases:
    n = _minutes(hold, 1)
    labels = {"instance": "10.0.0.1:9100", "job": job}
    other = {"instance": "10.0.0.9:8080", "job": other_job}
    return RuleCases(
        firing=Case((_series("up", labels, _const(0, n)),), n, (ExpectedAlert(labels, 0),)),
        quiet=Case((_series("up", labels, _const(1, n)), _series("up", other, _const(0, n))), n),
    )


def _not_ready_cases(_: Inputs, hold: float) -> RuleCases:
    n = _minutes(hold, 1)
    ready = {**_KSM, "condition": "Ready", "node": "node-1", "status": "true"}

    def node(is_ready: int) -> tuple[Series, ...]:
        return (_series("kube_node_status_condition", ready, _const(is_ready, n)),
                _series("kube_node_status_condition", {**ready, "status": "false"},
                        _const(1 - is_ready, n)))

    return RuleCases(firing=Case(node(0), n, (ExpectedAlert(ready, 0),)),
                     quiet=Case(node(1), n))


def _unreachable_cases(_: Inputs, hold: float) -> RuleCases:
    n = _minutes(hold, 1)
    taint = {**_KSM, "effect": "NoSchedule", "key": "node.kubernetes.io/unreachable",
             "node": "node-1"}
    other = {**taint, "key": "node.kubernetes.io/disk-pressure"}
    return RuleCases(
        firing=Case((_series("kube_node_spec_taint", taint, _const(1, n)),), n,
                    (ExpectedAlert(taint, 1),)),
        quiet=Case((_series("kube_node_spec_taint", other, _const(1, n)),), n),
    )


# --------------------------------------------------------------------------------------------
# Pods


def _container(i: Inputs) -> dict[str, str]:
    return {**_KSM, "container": "app", "namespace": i.test_namespace, "pod": "app-0"}


def _crashloop_cases(i: Inputs, hold: float) -> RuleCases:
    n = _minutes(hold, 6)
    crash = {**_container(i), "reason": "CrashLoopBackOff"}
    firing = (_series("kube_pod_container_status_waiting_reason", crash, _const(1, n)),)
    creating = {**crash, "reason": "ContainerCreating"}
    return RuleCases(
        firing=Case(firing, n, (ExpectedAlert(crash, 1),)),
        quiet=Case((_series("kube_pod_container_status_waiting_reason", creating,
                            _const(1, n)), *_foreign(i, firing)), n),
    )


def _restarts_cases(i: Inputs, hold: float) -> RuleCases:
    limit = i.thresholds.restarts_per_hour
    n = _minutes(hold, 62)
    labels = _container(i)

    def restarts(per_hour: float) -> tuple[Series, ...]:
        return (_series("kube_pod_container_status_restarts_total", labels,
                        _counter(per_hour / 60, n)),)

    many = 2 * limit + 2
    return RuleCases(
        firing=Case(restarts(many), n, (ExpectedAlert(labels, many),)),
        quiet=Case(restarts(limit / 2) + _foreign(i, restarts(many)), n),
    )


# --------------------------------------------------------------------------------------------
# Control plane

_API_LATENCY_FILTER = 'verb!~"WATCH|CONNECT",subresource!~"log|exec|portforward|attach|proxy"'
_API_JOBS = "apiserver|kubernetes-apiservers"
"""Job names of the API server scrape in kube-prometheus and in the prometheus Helm chart."""


def _api_errors_expr(i: Inputs) -> str:
    return ('sum by (job) (rate(apiserver_request_total{code=~"5.."}[5m]))'
            " / sum by (job) (rate(apiserver_request_total[5m])) * 100"
            f" > {num(i.thresholds.http_error_rate_percent)}")


def _share_series(metric: str, labels: dict[str, str], status_label: str, share: float,
                  minutes: int) -> tuple[Series, ...]:
    """Requests at 100 a minute, ``share`` percent of them answered 500."""
    return (_series(metric, {**labels, status_label: "500"}, _counter(share, minutes)),
            _series(metric, {**labels, status_label: "200"}, _counter(100 - share, minutes)))


def _api_errors_cases(i: Inputs, hold: float) -> RuleCases:
    thr = i.thresholds.http_error_rate_percent
    n = _minutes(hold, 6)
    labels = {"instance": "10.0.0.1:6443", "job": "apiserver", "verb": "GET"}
    bad = nice_between(thr, 100)
    return RuleCases(
        firing=Case(_share_series("apiserver_request_total", labels, "code", bad, n), n,
                    (ExpectedAlert({"job": "apiserver"}, bad),)),
        quiet=Case(_share_series("apiserver_request_total", labels, "code", thr / 2, n), n),
    )


def _api_latency_cases(_: Inputs, hold: float) -> RuleCases:
    n = _minutes(hold, 6)
    get = {"instance": "10.0.0.1:6443", "job": "apiserver", "verb": "GET"}
    watch = {**get, "verb": "WATCH"}
    slow = _quantile_buckets(1, 1.5, 0.99)
    bounds = (0.5, *slow)
    metric = "apiserver_request_duration_seconds"
    return RuleCases(
        firing=Case(_hist(metric, get, bounds, 2, n), n,
                    (ExpectedAlert({"job": "apiserver"}, 1.5),)),
        # Fast requests, and slow WATCHes, which are long by design and not counted.
        quiet=Case(_hist(metric, get, bounds, 0, n) + _hist(metric, watch, bounds, 2, n), n),
    )


def _absent_up_cases(job: str, hold: float) -> RuleCases:
    n = _minutes(hold, 1)
    labels = {"instance": "10.0.0.1:10259", "job": job}
    return RuleCases(
        firing=Case((_series("up", labels, _const(0, n)),), n, (ExpectedAlert({}, 1),)),
        quiet=Case((_series("up", labels, _const(1, n)),), n),
    )


def _api_down_cases(_: Inputs, hold: float) -> RuleCases:
    n = _minutes(hold, 1)
    labels = {"instance": "10.0.0.1:6443", "job": "apiserver"}
    return RuleCases(
        firing=Case((_series("up", labels, _const(0, n)),), n, (ExpectedAlert({}, 1),)),
        quiet=Case((_series("up", labels, _const(1, n)),), n),
    )


# --------------------------------------------------------------------------------------------
# Certificates


def _client_cert_expr(i: Inputs) -> str:
    return ("histogram_quantile(0.01, sum by (job, le) "
            "(rate(apiserver_client_certificate_expiration_seconds_bucket[5m])))"
            f" < {_days(i)}"
            " and on (job) apiserver_client_certificate_expiration_seconds_count > 0")


def _client_cert_cases(i: Inputs, hold: float) -> RuleCases:
    n = _minutes(hold, 6)
    limit = _days(i)
    labels = {"instance": "10.0.0.1:6443", "job": "apiserver"}
    metric = "apiserver_client_certificate_expiration_seconds"

    def certs(lo: float) -> tuple[Series, ...]:
        # 1% quantile of observations in (lo, lo+50] is lo + 0.5: never a whole second.
        return (*_hist(metric, labels, (lo, lo + 50), 1, n),
                _series(f"{metric}_count", labels, _counter(10, n)))

    return RuleCases(
        firing=Case(certs(limit / 2), n, (ExpectedAlert({"job": "apiserver"}, limit / 2 + 0.5),)),
        quiet=Case(certs(limit * 2), n),
    )


def _kubelet_cert_cases(metric: str) -> CaseBuilder:
    def cases(i: Inputs, hold: float) -> RuleCases:
        n = _minutes(hold, 1)
        limit = _days(i)
        labels = {"instance": "10.0.0.2:10250", "job": "kubelet", "node": "node-1"}
        left = limit / 2 + 0.5
        return RuleCases(
            firing=Case((_series(metric, labels, _const(left, n)),), n,
                        (ExpectedAlert(labels, left),)),
            quiet=Case((_series(metric, labels, _const(limit * 2, n)),), n),
        )
    return cases


def _certmanager_expr(i: Inputs) -> str:
    return ("(certmanager_certificate_expiration_timestamp_seconds > 0) - time()"
            f" < {_days(i)}")


def _certmanager_cases(i: Inputs, hold: float) -> RuleCases:
    n = _minutes(hold, 1)
    limit = _days(i)
    labels = {"job": "cert-manager", "name": "web-tls", "namespace": "apps"}
    # promtool's clock starts at 0: the certificate expires limit/2 after the evaluation.
    left = limit / 2 + 0.5
    metric = "certmanager_certificate_expiration_timestamp_seconds"
    return RuleCases(
        firing=Case((_series(metric, labels, _const(n * 60 + left, n)),), n,
                    (ExpectedAlert(labels, left),)),
        quiet=Case((_series(metric, labels, _const(n * 60 + 2 * limit, n)),), n),
    )


# --------------------------------------------------------------------------------------------
# etcd


def _etcd_members_cases(_: Inputs, hold: float) -> RuleCases:
    n = _minutes(hold, 1)

    def members(down: int) -> tuple[Series, ...]:
        return tuple(_series("up", {"instance": f"10.0.0.{k}:2381", "job": "etcd"},
                             _const(0 if k <= down else 1, n)) for k in (1, 2, 3))

    return RuleCases(firing=Case(members(2), n, (ExpectedAlert({"job": "etcd"}, 1),)),
                     quiet=Case(members(1), n))


def _etcd_histogram_cases(metric: str, limit: float, result: float) -> CaseBuilder:
    def cases(_: Inputs, hold: float) -> RuleCases:
        n = _minutes(hold, 6)
        lo, hi = _quantile_buckets(limit, result, 0.99)
        bounds = (limit / 2, lo, hi)
        return RuleCases(
            firing=Case(_hist(metric, _ETCD, bounds, 2, n), n, (ExpectedAlert(_ETCD, result),)),
            quiet=Case(_hist(metric, _ETCD, bounds, 0, n), n),
        )
    return cases


def _etcd_quota_cases(_: Inputs, hold: float) -> RuleCases:
    n = _minutes(hold, 1)
    quota = 2e9

    def db(percent: float) -> tuple[Series, ...]:
        return (_series("etcd_mvcc_db_total_size_in_bytes", _ETCD, _const(quota * percent / 100,
                                                                           n)),
                _series("etcd_server_quota_backend_bytes", _ETCD, _const(quota, n)))

    return RuleCases(firing=Case(db(97.5), n, (ExpectedAlert(_ETCD, 97.5),)),
                     quiet=Case(db(50), n))


# --------------------------------------------------------------------------------------------
# Applications


def _workload_by(i: Inputs, *extra: str) -> str:
    return ", ".join((*i.monitoring.app_metrics.workload_labels, *extra))


def _workload(i: Inputs) -> dict[str, str]:
    """Labels of a test workload: every workload label, and the namespace for the matcher."""
    labels = {name: f"shop-{name}" for name in i.monitoring.app_metrics.workload_labels}
    labels["namespace"] = i.test_namespace
    return labels


def _app_errors_expr(i: Inputs) -> str:
    m = i.monitoring.app_metrics
    by = _workload_by(i)
    errors = i.sel(m.status_label + '=~"5.."')
    return (f"sum by ({by}) (rate({m.requests_total}{{{errors}}}[5m]))"
            f" / sum by ({by}) (rate({m.requests_total}{{{i.sel()}}}[5m])) * 100"
            f" > {num(i.thresholds.http_error_rate_percent)}")


def _app_errors_cases(i: Inputs, hold: float) -> RuleCases:
    m = i.monitoring.app_metrics
    thr = i.thresholds.http_error_rate_percent
    n = _minutes(hold, 6)
    labels = _workload(i)
    key = {k: v for k, v in labels.items() if k in m.workload_labels}
    bad = nice_between(thr, 100)
    firing = _share_series(m.requests_total, labels, m.status_label, bad, n)
    return RuleCases(
        firing=Case(firing, n, (ExpectedAlert(key, bad),)),
        quiet=Case(_share_series(m.requests_total, labels, m.status_label, thr / 2, n)
                   + _foreign(i, firing), n),
    )


def _app_latency_expr(i: Inputs) -> str:
    m = i.monitoring.app_metrics
    return (f"histogram_quantile(0.95, sum by ({_workload_by(i, 'le')}) "
            f"(rate({m.duration_seconds}_bucket{{{i.sel()}}}[5m])))"
            f" > {num(i.thresholds.p95_latency_seconds)}")


def _app_latency_cases(i: Inputs, hold: float) -> RuleCases:
    m = i.monitoring.app_metrics
    limit = i.thresholds.p95_latency_seconds
    n = _minutes(hold, 6)
    labels = _workload(i)
    key = {k: v for k, v in labels.items() if k in m.workload_labels}
    slow = nice_between(limit, 2 * limit, whole_ok=False)
    bounds = (limit / 2, *_quantile_buckets(limit, slow, 0.95))
    firing = _hist(m.duration_seconds, labels, bounds, 2, n)
    return RuleCases(
        firing=Case(firing, n, (ExpectedAlert(key, slow),)),
        quiet=Case(_hist(m.duration_seconds, labels, bounds, 0, n) + _foreign(i, firing), n),
    )


# --------------------------------------------------------------------------------------------
# Monitoring and backups


def _target_down_expr(i: Inputs) -> str:
    ignored = [*(EMBEDDED_JOBS if i.monitoring.embedded_control_plane else ()),
               ".*node-exporter"]
    return f'up{{job!~"{"|".join(ignored)}"}} == 0'


def _target_down_cases(i: Inputs, hold: float) -> RuleCases:
    n = _minutes(hold, 1)
    ksm = {"instance": "10.0.0.5:8080", "job": "kube-state-metrics"}
    quiet = [_series("up", ksm, _const(1, n)),
             # NodeDown reports node-exporter; TargetDown would only repeat it.
             _series("up", {"instance": "10.0.0.1:9100", "job": "node-exporter"}, _const(0, n))]
    if i.monitoring.embedded_control_plane:
        quiet += [_series("up", {"instance": "10.0.0.1:10259", "job": job}, _const(0, n))
                  for job in EMBEDDED_JOBS]
    return RuleCases(
        firing=Case((_series("up", ksm, _const(0, n)),), n, (ExpectedAlert(ksm, 0),)),
        quiet=Case(tuple(quiet), n),
    )


def _backup_old_cases(_: Inputs, hold: float) -> RuleCases:
    n = _minutes(hold, 28 * 60)
    key = {"kind": "etcd", "target": "k3s-server-1"}
    # The same gauge scraped twice: from `k3sops serve` and from node-exporter's textfile
    # collector (other job and instance labels). One alert per (kind, target), and the newest
    # success of either source decides.
    service = {"job": "k3sops", "instance": "10.0.0.5:8443", **key}
    textfile = {"job": "node-exporter", "instance": "10.0.0.1:9100", **key}
    # promtool's clock starts at 0: the last success was at 1h (old) or at n-2h (fresh).
    old = 3600
    return RuleCases(
        firing=Case((_series(BACKUP_METRIC, service, _const(old, n)),
                     _series(BACKUP_METRIC, textfile, _const(old - 600, n))), n,
                    (ExpectedAlert(key, n * 60 - old),)),
        quiet=Case((_series(BACKUP_METRIC, service, _const(n * 60 - 7200, n)),
                    _series(BACKUP_METRIC, textfile, _const(old, n))), n),
    )


def _backup_missing_cases(_: Inputs, hold: float) -> RuleCases:
    n = _minutes(hold, 1)
    labels = {"job": "k3sops", "kind": "etcd", "target": "k3s-server-1"}
    return RuleCases(
        firing=Case((_series("up", {"instance": "10.0.0.1:9090", "job": "k3sops"},
                             _const(1, n)),), n, (ExpectedAlert({}, 1),)),
        quiet=Case((_series(BACKUP_METRIC, labels, _const(0, n)),), n),
    )


# --------------------------------------------------------------------------------------------
# The catalogue


def _etcd(p: Platform) -> bool:
    return p.monitoring.etcd_metrics


def _separate_control_plane(p: Platform) -> bool:
    return not p.monitoring.embedded_control_plane


def _backups_configured(p: Platform) -> bool:
    return p.backup is not None


def _pct(value: float) -> str:
    return f"{num(value)}%"


def _secs(value: float) -> str:
    return f"{num(value)}s"


_THRESHOLDS = "environments.*.thresholds."

CATALOGUE: tuple[RuleDef, ...] = (
    # nodes ------------------------------------------------------------------------------
    RuleDef(
        id="NodeCPUHighUsage", runbook_id="node-high-cpu", category="nodes", scope="cluster",
        severity="warning",
        summary="CPU usage on {{ $labels.instance }} is above ${threshold}",
        description="CPU usage on {{ $labels.instance }} is {{ $value | humanize }}%, above "
                    "${threshold} for ${for}.",
        threshold_source=_THRESHOLDS + "cpu_percent",
        expr=_cpu_expr, threshold=lambda i: _pct(i.thresholds.cpu_percent), cases=_cpu_cases,
    ),
    RuleDef(
        id="NodeMemoryHighUtilization", runbook_id="node-high-memory", category="nodes",
        scope="cluster", severity="warning",
        summary="Memory usage on {{ $labels.instance }} is above ${threshold}",
        description="Memory usage on {{ $labels.instance }} is {{ $value | humanize }}%, above "
                    "${threshold} for ${for}.",
        threshold_source=_THRESHOLDS + "memory_percent",
        expr=lambda i: ("(1 - (node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes))"
                        f" * 100 > {num(i.thresholds.memory_percent)}"),
        threshold=lambda i: _pct(i.thresholds.memory_percent), cases=_memory_cases,
    ),
    RuleDef(
        id="NodeFilesystemAlmostOutOfSpace", runbook_id="node-disk-space-low",
        category="nodes", scope="cluster", severity="warning",
        summary="Filesystem {{ $labels.mountpoint }} on {{ $labels.instance }} has less than "
                "${threshold} free",
        description="Filesystem {{ $labels.device }} at {{ $labels.mountpoint }} on "
                    "{{ $labels.instance }} has only {{ $value | humanize }}% space left "
                    "(threshold ${threshold}).",
        threshold_source=_THRESHOLDS + "disk_free_percent",
        expr=_disk_low_expr, threshold=lambda i: _pct(i.thresholds.disk_free_percent),
        cases=_disk_low_cases,
    ),
    RuleDef(
        id="NodeFilesystemSpaceFillingUp", runbook_id="node-disk-filling-up",
        category="nodes", scope="cluster", severity="warning",
        summary="Filesystem {{ $labels.mountpoint }} on {{ $labels.instance }} will be full "
                "within 24 hours",
        description="Filesystem {{ $labels.device }} at {{ $labels.mountpoint }} on "
                    "{{ $labels.instance }} has {{ $value | humanize }}% space left and, at "
                    "the rate of the last 6 hours, fills up within 24 hours.",
        threshold_source="fixed (node-mixin): < 40% free and predict_linear(6h) to 24h < 0",
        expr=_filling_expr, threshold=lambda _: "40% free, full within 24h",
        cases=_filling_cases, fixed_for=3600,
    ),
    RuleDef(
        id="NodeDown", runbook_id="node-down", category="nodes", scope="cluster",
        severity="critical",
        summary="Node exporter {{ $labels.instance }} is down",
        description="Prometheus cannot scrape node-exporter on {{ $labels.instance }} (job "
                    "{{ $labels.job }}) for ${for}: the node is down or unreachable.",
        threshold_source="fixed: up == 0",
        expr=lambda _: 'up{job=~".*node-exporter"} == 0', threshold=lambda _: "up == 0",
        cases=lambda _, hold: _up_cases("node-exporter", hold), fixed_for=300,
    ),
    RuleDef(
        id="KubeNodeNotReady", runbook_id="node-not-ready", category="nodes", scope="cluster",
        severity="warning",
        summary="Node {{ $labels.node }} is not ready",
        description="Node {{ $labels.node }} has been NotReady for more than ${for}.",
        threshold_source="fixed (kubernetes-mixin)",
        expr=lambda _: 'kube_node_status_condition{condition="Ready",status="true"} == 0',
        threshold=lambda _: "Ready != true", cases=_not_ready_cases, fixed_for=900,
    ),
    RuleDef(
        id="KubeNodeUnreachable", runbook_id="node-unreachable", category="nodes",
        scope="cluster", severity="warning",
        summary="Node {{ $labels.node }} is unreachable",
        description="Node {{ $labels.node }} carries the node.kubernetes.io/unreachable taint: "
                    "its kubelet stopped reporting; workloads will be evicted.",
        threshold_source="fixed (kubernetes-mixin)",
        expr=lambda _: ('kube_node_spec_taint{effect="NoSchedule",'
                        'key="node.kubernetes.io/unreachable"} == 1'),
        threshold=lambda _: "unreachable taint", cases=_unreachable_cases, fixed_for=900,
    ),
    # pods -------------------------------------------------------------------------------
    RuleDef(
        id="KubePodCrashLooping", runbook_id="pod-crash-looping", category="pods",
        scope="namespace", severity="warning",
        summary="Pod {{ $labels.namespace }}/{{ $labels.pod }} is crash looping",
        description="Container {{ $labels.container }} of pod {{ $labels.namespace }}/"
                    "{{ $labels.pod }} is in CrashLoopBackOff.",
        threshold_source="fixed (kubernetes-mixin)",
        expr=lambda i: ("max_over_time(kube_pod_container_status_waiting_reason{"
                        + i.sel('reason="CrashLoopBackOff"') + "}[5m]) >= 1"),
        threshold=lambda _: "CrashLoopBackOff", cases=_crashloop_cases, fixed_for=900,
    ),
    RuleDef(
        id="KubePodFrequentRestarts", runbook_id="pod-restarting", category="pods",
        scope="namespace", severity="warning",
        summary="Pod {{ $labels.namespace }}/{{ $labels.pod }} restarts too often",
        description="Container {{ $labels.container }} of pod {{ $labels.namespace }}/"
                    "{{ $labels.pod }} restarted {{ $value | humanize }} times in the last "
                    "hour (threshold ${threshold}).",
        threshold_source=_THRESHOLDS + "restarts_per_hour",
        expr=lambda i: (f"increase(kube_pod_container_status_restarts_total{{{i.sel()}}}[1h])"
                        f" > {i.thresholds.restarts_per_hour}"),
        threshold=lambda i: f"{i.thresholds.restarts_per_hour} restarts/h",
        cases=_restarts_cases,
    ),
    # control plane ------------------------------------------------------------------------
    RuleDef(
        id="KubeAPIErrorsHigh", runbook_id="apiserver-errors", category="control-plane",
        scope="cluster", severity="warning",
        summary="The API server answers too many requests with 5xx",
        description="{{ $value | humanize }}% of API server requests (job {{ $labels.job }}) "
                    "failed with 5xx over 5 minutes (threshold ${threshold}).",
        threshold_source=_THRESHOLDS + "http_error_rate_percent",
        expr=_api_errors_expr, threshold=lambda i: _pct(i.thresholds.http_error_rate_percent),
        cases=_api_errors_cases,
    ),
    RuleDef(
        id="KubeAPILatencyHigh", runbook_id="apiserver-latency", category="control-plane",
        scope="cluster", severity="warning",
        summary="The API server is slow",
        description="The 99th percentile latency of API server requests (job "
                    "{{ $labels.job }}) is {{ $value | humanizeDuration }}, above "
                    "${threshold}.",
        threshold_source="fixed (kubernetes-mixin): p99 > 1s, WATCH/CONNECT excluded",
        expr=lambda _: ("histogram_quantile(0.99, sum by (job, le) (rate("
                        f"apiserver_request_duration_seconds_bucket{{{_API_LATENCY_FILTER}}}"
                        "[5m]))) > 1"),
        threshold=lambda _: "1s", cases=_api_latency_cases, fixed_for=600,
    ),
    RuleDef(
        id="KubeAPIDown", runbook_id="apiserver-down", category="control-plane",
        scope="cluster", severity="critical",
        summary="The API server has disappeared from Prometheus",
        description="No API server target has been up for ${for}.",
        threshold_source="fixed (kubernetes-mixin)",
        expr=lambda _: f'absent(up{{job=~"{_API_JOBS}"}} == 1)',
        threshold=lambda _: "no target up", cases=_api_down_cases, fixed_for=900,
    ),
    RuleDef(
        id="KubeSchedulerDown", runbook_id="scheduler-down", category="control-plane",
        scope="cluster", severity="critical",
        summary="The scheduler has disappeared from Prometheus",
        description="No kube-scheduler target has been up for ${for}. (Only for clusters "
                    "whose scheduler runs on its own: monitoring.embedded_control_plane "
                    "is false.)",
        threshold_source="fixed (kubernetes-mixin); only when embedded_control_plane is false",
        expr=lambda _: 'absent(up{job="kube-scheduler"} == 1)',
        threshold=lambda _: "no target up",
        cases=lambda _, hold: _absent_up_cases("kube-scheduler", hold), fixed_for=900,
        enabled=_separate_control_plane,
    ),
    RuleDef(
        id="KubeControllerManagerDown", runbook_id="controller-manager-down",
        category="control-plane", scope="cluster", severity="critical",
        summary="The controller-manager has disappeared from Prometheus",
        description="No kube-controller-manager target has been up for ${for}. (Only for "
                    "clusters whose controller-manager runs on its own: "
                    "monitoring.embedded_control_plane is false.)",
        threshold_source="fixed (kubernetes-mixin); only when embedded_control_plane is false",
        expr=lambda _: 'absent(up{job="kube-controller-manager"} == 1)',
        threshold=lambda _: "no target up",
        cases=lambda _, hold: _absent_up_cases("kube-controller-manager", hold),
        fixed_for=900, enabled=_separate_control_plane,
    ),
    # certificates -------------------------------------------------------------------------
    RuleDef(
        id="KubeClientCertificateExpiration", runbook_id="apiserver-client-cert-expiry",
        category="certificates", scope="cluster", severity="warning",
        summary="A client certificate used against the API server expires soon",
        description="A client certificate used to authenticate to the API server (job "
                    "{{ $labels.job }}) expires in {{ $value | humanizeDuration }} "
                    "(threshold ${threshold}).",
        threshold_source=_THRESHOLDS + "cert_expiry_days",
        expr=_client_cert_expr, threshold=lambda i: f"{i.thresholds.cert_expiry_days} days",
        cases=_client_cert_cases, fixed_for=300,
    ),
    RuleDef(
        id="KubeletClientCertificateExpiration", runbook_id="kubelet-cert-expiry",
        category="certificates", scope="cluster", severity="warning",
        summary="The kubelet client certificate on {{ $labels.node }} expires soon",
        description="The client certificate of the kubelet on {{ $labels.node }} "
                    "({{ $labels.instance }}) expires in {{ $value | humanizeDuration }} "
                    "(threshold ${threshold}).",
        threshold_source=_THRESHOLDS + "cert_expiry_days",
        expr=lambda i: f"kubelet_certificate_manager_client_ttl_seconds < {_days(i)}",
        threshold=lambda i: f"{i.thresholds.cert_expiry_days} days",
        cases=_kubelet_cert_cases("kubelet_certificate_manager_client_ttl_seconds"),
        fixed_for=300,
    ),
    RuleDef(
        id="KubeletServerCertificateExpiration", runbook_id="kubelet-cert-expiry",
        category="certificates", scope="cluster", severity="warning",
        summary="The kubelet serving certificate on {{ $labels.node }} expires soon",
        description="The serving certificate of the kubelet on {{ $labels.node }} "
                    "({{ $labels.instance }}) expires in {{ $value | humanizeDuration }} "
                    "(threshold ${threshold}).",
        threshold_source=_THRESHOLDS + "cert_expiry_days",
        expr=lambda i: f"kubelet_certificate_manager_server_ttl_seconds < {_days(i)}",
        threshold=lambda i: f"{i.thresholds.cert_expiry_days} days",
        cases=_kubelet_cert_cases("kubelet_certificate_manager_server_ttl_seconds"),
        fixed_for=300,
    ),
    RuleDef(
        id="CertManagerCertExpirySoon", runbook_id="cert-manager-cert-expiry",
        category="certificates", scope="cluster", severity="warning",
        summary="Certificate {{ $labels.namespace }}/{{ $labels.name }} expires soon",
        description="The cert-manager Certificate {{ $labels.namespace }}/{{ $labels.name }} "
                    "expires in {{ $value | humanizeDuration }} (threshold ${threshold}) and "
                    "has not been renewed.",
        threshold_source=_THRESHOLDS + "cert_expiry_days",
        expr=_certmanager_expr, threshold=lambda i: f"{i.thresholds.cert_expiry_days} days",
        cases=_certmanager_cases, fixed_for=3600,
    ),
    # etcd -----------------------------------------------------------------------------------
    RuleDef(
        id="etcdNoLeader", runbook_id="etcd-no-leader", category="etcd", scope="cluster",
        severity="critical",
        summary="etcd member {{ $labels.instance }} has no leader",
        description="etcd member {{ $labels.instance }} has had no leader for ${for}: the "
                    "datastore cannot accept writes.",
        threshold_source="fixed (etcd-mixin); only when monitoring.etcd_metrics",
        expr=lambda _: "etcd_server_has_leader == 0", threshold=lambda _: "no leader",
        cases=lambda _, hold: RuleCases(
            firing=Case((_series("etcd_server_has_leader", _ETCD,
                                 _const(0, _minutes(hold, 1))),), _minutes(hold, 1),
                        (ExpectedAlert(_ETCD, 0),)),
            quiet=Case((_series("etcd_server_has_leader", _ETCD,
                                _const(1, _minutes(hold, 1))),), _minutes(hold, 1))),
        fixed_for=60, enabled=_etcd,
    ),
    RuleDef(
        id="etcdInsufficientMembers", runbook_id="etcd-insufficient-members",
        category="etcd", scope="cluster", severity="critical",
        summary="etcd cluster {{ $labels.job }} has lost quorum",
        description="Only {{ $value | humanize }} members of etcd cluster {{ $labels.job }} "
                    "are up: fewer than a quorum.",
        threshold_source="fixed (etcd-mixin); only when monitoring.etcd_metrics",
        expr=lambda _: ('sum by (job) (up{job=~".*etcd.*"} == bool 1) < '
                        '((count by (job) (up{job=~".*etcd.*"}) + 1) / 2)'),
        threshold=lambda _: "quorum", cases=_etcd_members_cases, fixed_for=180, enabled=_etcd,
    ),
    RuleDef(
        id="etcdHighFsyncDurations", runbook_id="etcd-slow-disk", category="etcd",
        scope="cluster", severity="warning",
        summary="etcd member {{ $labels.instance }} syncs its WAL slowly",
        description="The 99th percentile WAL fsync duration of etcd member "
                    "{{ $labels.instance }} is {{ $value | humanizeDuration }} (threshold "
                    "${threshold}): the disk is too slow for etcd.",
        threshold_source="fixed (etcd-mixin): p99 > 0.5s; only when monitoring.etcd_metrics",
        expr=lambda _: ("histogram_quantile(0.99, sum by (job, instance, le) "
                        "(rate(etcd_disk_wal_fsync_duration_seconds_bucket[5m]))) > 0.5"),
        threshold=lambda _: "0.5s",
        cases=_etcd_histogram_cases("etcd_disk_wal_fsync_duration_seconds", 0.5, 0.75),
        fixed_for=600, enabled=_etcd,
    ),
    RuleDef(
        id="etcdHighCommitDurations", runbook_id="etcd-slow-disk", category="etcd",
        scope="cluster", severity="warning",
        summary="etcd member {{ $labels.instance }} commits slowly",
        description="The 99th percentile backend commit duration of etcd member "
                    "{{ $labels.instance }} is {{ $value | humanizeDuration }} (threshold "
                    "${threshold}).",
        threshold_source="fixed (etcd-mixin): p99 > 0.25s; only when monitoring.etcd_metrics",
        expr=lambda _: ("histogram_quantile(0.99, sum by (job, instance, le) "
                        "(rate(etcd_disk_backend_commit_duration_seconds_bucket[5m]))) > 0.25"),
        threshold=lambda _: "0.25s",
        cases=_etcd_histogram_cases("etcd_disk_backend_commit_duration_seconds", 0.25, 0.375),
        fixed_for=600, enabled=_etcd,
    ),
    RuleDef(
        id="etcdDatabaseQuotaLowSpace", runbook_id="etcd-db-quota", category="etcd",
        scope="cluster", severity="critical",
        summary="etcd member {{ $labels.instance }} is close to its database quota",
        description="The database of etcd member {{ $labels.instance }} uses "
                    "{{ $value | humanize }}% of its quota (threshold ${threshold}); at 100% "
                    "etcd refuses writes. Compact and defragment.",
        threshold_source="fixed (etcd-mixin): > 95%; only when monitoring.etcd_metrics",
        expr=lambda _: ("(last_over_time(etcd_mvcc_db_total_size_in_bytes[5m]) / "
                        "last_over_time(etcd_server_quota_backend_bytes[5m])) * 100 > 95"),
        threshold=lambda _: "95%", cases=_etcd_quota_cases, fixed_for=600, enabled=_etcd,
    ),
    # applications -------------------------------------------------------------------------
    RuleDef(
        id="ApplicationHighErrorRate", runbook_id="app-error-rate", category="applications",
        scope="namespace", severity="warning",
        summary="{{ $labels.namespace }}/{{ $labels.job }} answers too many requests with 5xx",
        description="{{ $value | humanize }}% of the requests to {{ $labels.namespace }}/"
                    "{{ $labels.job }} failed with 5xx over 5 minutes (threshold "
                    "${threshold}).",
        threshold_source=_THRESHOLDS + "http_error_rate_percent (metric names: "
                         "monitoring.app_metrics)",
        expr=_app_errors_expr, threshold=lambda i: _pct(i.thresholds.http_error_rate_percent),
        cases=_app_errors_cases,
    ),
    RuleDef(
        id="ApplicationHighLatency", runbook_id="app-latency", category="applications",
        scope="namespace", severity="warning",
        summary="{{ $labels.namespace }}/{{ $labels.job }} responds slowly",
        description="The 95th percentile response time of {{ $labels.namespace }}/"
                    "{{ $labels.job }} is {{ $value | humanizeDuration }} (threshold "
                    "${threshold}).",
        threshold_source=_THRESHOLDS + "p95_latency_seconds (metric names: "
                         "monitoring.app_metrics)",
        expr=_app_latency_expr, threshold=lambda i: _secs(i.thresholds.p95_latency_seconds),
        cases=_app_latency_cases,
    ),
    # monitoring ---------------------------------------------------------------------------
    RuleDef(
        id="TargetDown", runbook_id="target-down", category="monitoring", scope="cluster",
        severity="warning",
        summary="Prometheus cannot scrape {{ $labels.job }} at {{ $labels.instance }}",
        description="Target {{ $labels.instance }} of job {{ $labels.job }} has been down for "
                    "${for}.",
        threshold_source="fixed: up == 0 (jobs of embedded K3s components and node-exporter, "
                         "reported by NodeDown, excluded)",
        expr=_target_down_expr, threshold=lambda _: "up == 0", cases=_target_down_cases,
        fixed_for=300,
    ),
    # backups ------------------------------------------------------------------------------
    RuleDef(
        id="K3sopsBackupTooOld", runbook_id="backup-stale", category="backups",
        scope="cluster", severity="warning",
        summary="The last {{ $labels.kind }} backup of {{ $labels.target }} is too old",
        description="The last successful {{ $labels.kind }} backup of {{ $labels.target }} "
                    "finished {{ $value | humanizeDuration }} ago (threshold ${threshold}).",
        threshold_source="fixed: 26h (a daily backup plus 2h)",
        # max by: the service and the textfile collector may both export the gauge
        expr=lambda _: f"time() - max by (kind, target) ({BACKUP_METRIC}) > "
                       f"{BACKUP_MAX_AGE_SECONDS}",
        threshold=lambda _: "26h", cases=_backup_old_cases, fixed_for=600,
    ),
    RuleDef(
        id="K3sopsBackupMissing", runbook_id="backup-missing", category="backups",
        scope="cluster", severity="warning",
        summary="No k3sops backup metrics",
        description=f"Prometheus has had no {BACKUP_METRIC} series for ${{for}}: backups have "
                    "never run, or their metrics are not scraped.",
        threshold_source="fixed: absent for 1h; only when platform.yaml has a backup section",
        expr=lambda _: f"absent({BACKUP_METRIC})", threshold=lambda _: "absent",
        cases=_backup_missing_cases, fixed_for=3600, enabled=_backups_configured,
    ),
)
"""Every rule k3sops knows, in the order they are rendered."""


def catalogue_by_id() -> dict[str, RuleDef]:
    """The catalogue keyed by rule id."""
    return {r.id: r for r in CATALOGUE}
