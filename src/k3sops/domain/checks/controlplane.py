"""Control plane: API server errors and latency, etcd health, the control plane's scrape targets.

The expressions are those of `k3sops metrics cluster` (:mod:`k3sops.domain.metrics`), so the
check and the metrics command agree on every figure. K3s awareness follows the alert rules:
the etcd check runs only with ``monitoring.etcd_metrics``, and with
``monitoring.embedded_control_plane`` (the K3s default) the scheduler and controller-manager are
never reported as down targets, since K3s runs them inside its server process without scrape
targets of their own.
"""

from __future__ import annotations

from collections import defaultdict

from k3sops.config.schema import Monitoring
from k3sops.domain import metrics as m
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding
from k3sops.domain.metrics import InstantResult

APISERVER_P99_LIMIT_SECONDS = 1.0
"""p99 request latency (all verbs but WATCH/CONNECT) above which the API server is slow
(kubernetes-mixin's KubeAPILatencyHigh uses 1s)."""
ETCD_FSYNC_P99_LIMIT_SECONDS = 0.5
"""WAL fsync p99 above which etcd's disk is too slow (etcd-mixin's etcdHighFsyncDurations)."""
ETCD_DB_QUOTA_PERCENT = 90.0
"""Database size, percent of the backend quota, above which etcd is about to refuse writes."""

CORE_JOBS = ("apiserver", "etcd", "kube-state-metrics", "node-exporter")
"""Scrape jobs whose targets must be up."""
EMBEDDED_JOBS = ("kube-scheduler", "kube-controller-manager")
"""Jobs of components K3s embeds in its server process (checked only when not embedded)."""

RUNBOOKS = {"apiserver": "apiserver-down", "node-exporter": "node-down",
            "kube-scheduler": "scheduler-down",
            "kube-controller-manager": "controller-manager-down"}
"""Runbook per job (as the alert rules name them); other jobs: target-down."""

Q_5XX = "apiserver-errors:5xx_share"
Q_P99 = "apiserver-latency:p99"
Q_LEADER = "etcd-health:has_leader"
Q_FSYNC = "etcd-health:wal_fsync_p99"
Q_DB_SIZE = "etcd-health:db_size"
Q_QUOTA = "etcd-health:quota"
Q_UP = "control-plane-targets:up"


def _monitoring(ctx: CheckContext) -> Monitoring:
    return ctx.platform.monitoring if ctx.platform is not None else Monitoring()


def _renamed(ctx: CheckContext, names: dict[str, str]) -> dict[str, InstantResult]:
    """This module's answers under the names :mod:`k3sops.domain.metrics` builders expect."""
    out = {}
    for mine, theirs in names.items():
        res = ctx.snapshot.metric(mine)
        if res is not None:
            out[theirs] = res
    return out


def _single(res: InstantResult | None) -> float | None:
    """The number of a one-series answer (None: no data, NaN, or several series)."""
    if res is None or len(res.samples) != 1:
        return None
    return res.samples[0].number


@check("apiserver-errors", "API server answers without 5xx errors",
       queries={Q_5XX: m.APISERVER_5XX}, needs=("prometheus",))
def apiserver_errors(ctx: CheckContext) -> list[Finding]:
    """5xx share of API server answers over 5 minutes above ``http_error_rate_percent``."""
    share = _single(ctx.snapshot.metric(Q_5XX))
    limit = ctx.thresholds().http_error_rate_percent
    if share is None or share * 100 <= limit:
        return []
    return [ctx.finding(
        "apiserver-errors", "warning", "APIServer", None, "kube-apiserver",
        f"{share * 100:.1f}% of API server requests failed with 5xx over 5m "
        f"(threshold {limit:g}%)", "apiserver-errors",
        {"error_percent": round(share * 100, 3), "threshold_percent": limit,
         "query": m.APISERVER_5XX})]


@check("apiserver-latency", "API server responds fast",
       queries={Q_P99: m.APISERVER_P99}, needs=("prometheus",))
def apiserver_latency(ctx: CheckContext) -> list[Finding]:
    """API server p99 request latency (5m, without WATCH/CONNECT) above 1 second."""
    p99 = _single(ctx.snapshot.metric(Q_P99))
    if p99 is None or p99 <= APISERVER_P99_LIMIT_SECONDS:
        return []
    return [ctx.finding(
        "apiserver-latency", "warning", "APIServer", None, "kube-apiserver",
        f"API server p99 request latency is {p99:.2f}s over 5m "
        f"(threshold {APISERVER_P99_LIMIT_SECONDS:g}s)", "apiserver-latency",
        {"p99_seconds": round(p99, 4), "threshold_seconds": APISERVER_P99_LIMIT_SECONDS,
         "query": m.APISERVER_P99})]


@check("etcd-health", "etcd has a leader, fast disks and room in its quota", queries={
    Q_LEADER: m.ETCD_HAS_LEADER, Q_FSYNC: m.ETCD_FSYNC_P99, Q_DB_SIZE: m.ETCD_DB_SIZE,
    Q_QUOTA: m.ETCD_QUOTA}, needs=("prometheus",))
def etcd_health(ctx: CheckContext) -> list[Finding]:
    """Per etcd member: no leader (critical), slow WAL fsync or a nearly full database."""
    if not _monitoring(ctx).etcd_metrics:
        return []  # etcd not scraped (kine/sqlite, or metrics not exposed): nothing to judge
    members = m.build_cluster(_renamed(ctx, {
        Q_LEADER: "etcd_has_leader", Q_FSYNC: "etcd_wal_fsync_p99", Q_DB_SIZE: "etcd_db_size",
        Q_QUOTA: "etcd_quota"})).etcd
    out = []
    for mem in members:
        evidence = mem.model_dump(mode="json")
        if mem.has_leader is False:
            out.append(ctx.finding(
                "etcd-health", "critical", "EtcdMember", None, mem.instance,
                f"etcd member {mem.instance} has no leader: the datastore refuses writes",
                "etcd-no-leader", evidence))
        if (mem.wal_fsync_p99_seconds is not None
                and mem.wal_fsync_p99_seconds > ETCD_FSYNC_P99_LIMIT_SECONDS):
            out.append(ctx.finding(
                "etcd-health", "warning", "EtcdMember", None, mem.instance,
                f"etcd member {mem.instance} WAL fsync p99 is "
                f"{mem.wal_fsync_p99_seconds:.3f}s (threshold "
                f"{ETCD_FSYNC_P99_LIMIT_SECONDS:g}s): its disk is too slow", "etcd-slow-disk",
                evidence))
        if mem.db_used_percent is not None and mem.db_used_percent > ETCD_DB_QUOTA_PERCENT:
            out.append(ctx.finding(
                "etcd-health", "warning", "EtcdMember", None, mem.instance,
                f"etcd member {mem.instance} database uses {mem.db_used_percent:.1f}% of its "
                f"quota (threshold {ETCD_DB_QUOTA_PERCENT:g}%): compact and defragment",
                "etcd-db-quota", evidence))
    return out


@check("control-plane-targets", "Control plane scrape targets up", queries={
    Q_UP: 'up{job=~"' + "|".join((*CORE_JOBS, *EMBEDDED_JOBS)) + '"}'}, needs=("prometheus",))
def control_plane_targets(ctx: CheckContext) -> list[Finding]:
    """Targets of the API server, etcd, kube-state-metrics and node-exporter that are down.

    The scheduler and controller-manager count only when ``embedded_control_plane`` is false;
    etcd only when ``etcd_metrics`` is true.
    """
    mon = _monitoring(ctx)
    jobs = set(CORE_JOBS) | (set() if mon.embedded_control_plane else set(EMBEDDED_JOBS))
    if not mon.etcd_metrics:
        jobs.discard("etcd")
    res = ctx.snapshot.metric(Q_UP)
    if res is None:
        return []
    up_by_job: dict[str, int] = defaultdict(int)
    for s in res.samples:
        if s.number == 1:
            up_by_job[s.labels.get("job", "")] += 1
    out = []
    for s in sorted(res.samples, key=lambda s: (s.labels.get("job", ""),
                                                s.labels.get("instance", ""))):
        job, instance = s.labels.get("job", ""), s.labels.get("instance", "")
        if job not in jobs or s.number != 0:
            continue
        out.append(ctx.finding(
            "control-plane-targets", "critical", "ScrapeTarget", None, f"{job}/{instance}",
            f"Prometheus cannot scrape {job} at {instance} (up == 0; "
            f"{up_by_job[job]} other {job} target(s) up)",
            RUNBOOKS.get(job, "target-down"),
            {"job": job, "instance": instance, "labels": s.labels,
             "targets_up_in_job": up_by_job[job]}))
    return out
