"""The monthly review: version drift, certificate horizon, noisy alerts, usage trend, restores.

* ``version-drift`` / ``kernel-drift``: ``node.status.nodeInfo`` (K3s reports its version as the
  kubelet version, ``v1.34.4+k3s1``) grouped across nodes.
* ``cert-expiry-horizon``: certificates expiring within 30 days (warning) or 7 days (critical):
  client certificates presented to the API server in the last hour (the lowest non-empty bucket
  of the ``apiserver_client_certificate_expiration_seconds`` histogram: its bounds are all the
  metric knows, and 7 and 30 days are among them; at most a warning, as certificates issued
  short-lived on purpose land there too), kubelet client and serving certificates
  (``kubelet_certificate_manager_*_ttl_seconds``) and cert-manager Certificates
  (``certmanager_certificate_expiration_timestamp_seconds``). Whatever is not scraped is skipped.
* ``noisy-alerts``: the five alert names with the most firing samples (one per rule evaluation)
  over 30 days; the always-firing Watchdog and InfoInhibitor are left out.
* ``usage-trend``: each node's CPU and memory use (1-hour averages) now against the same hour
  30 days ago (``offset 30d``); up by more than 20 points is worth a look.
* ``restore-test-due``: no successful restore drill in the last 30 days (history store).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime

from k3sops.domain.checks.alerts import ALWAYS_FIRING
from k3sops.domain.checks.backups import drill_overdue
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import SEVERITY_RANK, Finding, Severity
from k3sops.domain.metrics import InstantResult, Sample
from k3sops.domain.snapshot import get, meta

CERT_WARNING_DAYS = 30
CERT_CRITICAL_DAYS = 7
NOISY_TOP = 5
USAGE_RISE_POINTS = 20.0
"""Rise in percentage points of CPU or memory use over 30 days worth reporting."""
RESTORE_TEST_DAYS = 30

Q_CLIENT_CERT = "cert-expiry-horizon:apiserver_client"
Q_KUBELET_CERT = "cert-expiry-horizon:kubelet"
Q_CERTMANAGER = "cert-expiry-horizon:certmanager"
Q_NOISY = "noisy-alerts:top"
Q_CPU_NOW = "usage-trend:cpu_now"
Q_CPU_THEN = "usage-trend:cpu_30d_ago"
Q_MEM_NOW = "usage-trend:memory_now"
Q_MEM_THEN = "usage-trend:memory_30d_ago"


def _samples(res: InstantResult | None) -> list[Sample]:
    return res.samples if res is not None else []


def _cpu(offset: str) -> str:
    return ('100 - avg by(instance, node) '
            f'(rate(node_cpu_seconds_total{{mode="idle"}}[1h]{offset})) * 100')


def _memory(offset: str) -> str:
    return (f"(1 - avg_over_time(node_memory_MemAvailable_bytes[1h]{offset}) / "
            f"avg_over_time(node_memory_MemTotal_bytes[1h]{offset})) * 100")


def _drift(ctx: CheckContext, field: str) -> dict[str, list[str]]:
    """``nodeInfo.<field>`` value -> nodes having it (only when more than one value exists)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for node in ctx.snapshot.get("nodes"):
        groups[str(get(node, "status", "nodeInfo", field, default="") or "unknown")].append(
            meta(node)[1])
    return {v: sorted(n) for v, n in sorted(groups.items())} if len(groups) > 1 else {}


@check("version-drift", "All nodes run the same K3s version", periods=("monthly",),
       reads=("nodes",))
def version_drift(ctx: CheckContext) -> list[Finding]:
    """Kubelet (K3s) versions differ across nodes: an upgrade is half done."""
    groups = _drift(ctx, "kubeletVersion")
    if not groups:
        return []
    listing = "; ".join(f"{v}: {', '.join(n)}" for v, n in groups.items())
    newest = max(groups, key=_release_key)
    command = f"k3sops upgrade plan --to {newest}"
    return [ctx.finding(
        "version-drift", "warning", "Cluster", None, "nodes",
        f"nodes run {len(groups)} different K3s/kubelet versions ({listing}): bring them to "
        f"the newest with `{command}`", "version-drift",
        {"versions": groups, "api_server": ctx.snapshot.server_version, "newest": newest,
         "command": command})]


def _release_key(version: str) -> tuple[int, ...]:
    """``v1.34.4+k3s1`` -> (1, 34, 4, 1): the numbers in order (releases sort by them)."""
    return tuple(int(x) for x in re.findall(r"[0-9]+", version))


@check("kernel-drift", "All nodes run the same kernel", periods=("monthly",),
       reads=("nodes",))
def kernel_drift(ctx: CheckContext) -> list[Finding]:
    """Kernel versions differ across nodes (often pending reboots after OS patches)."""
    groups = _drift(ctx, "kernelVersion")
    if not groups:
        return []
    listing = "; ".join(f"{v}: {', '.join(n)}" for v, n in groups.items())
    return [ctx.finding(
        "kernel-drift", "info", "Cluster", None, "nodes",
        f"nodes run {len(groups)} different kernels ({listing})", "kernel-drift",
        {"kernels": groups})]


def _soonest_bucket(samples: list[Sample]) -> dict[str, tuple[float, float]]:
    """Per job, the lowest histogram bucket ``(lower, upper]`` holding any observation.

    A 1st-percentile ``histogram_quantile`` would interpolate inside that bucket and invent a
    date; the bucket bounds are what the metric really knows (and 7 and 30 days are bucket
    bounds of ``apiserver_client_certificate_expiration_seconds``).
    """
    rates: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for smp in samples:
        try:
            le = float(smp.labels.get("le", ""))
        except ValueError:
            continue
        rates[smp.labels.get("job", "apiserver")].append((le, smp.number or 0.0))
    out = {}
    for job, buckets in rates.items():
        buckets.sort()
        low = 0.0
        for le, rate in buckets:
            if rate > 0:
                out[job] = (low, le)
                break
            low = le
    return out


def _span(seconds: float) -> str:
    """A duration as people say it: ``30 minutes``, ``6 hours``, ``30 days``."""
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.0f} hours" if seconds < 2 * 86400 else f"{seconds / 86400:.0f} days"


def _cert_severity(seconds: float) -> Severity | None:
    days = seconds / 86400
    if days <= CERT_CRITICAL_DAYS:
        return "critical"
    return "warning" if days <= CERT_WARNING_DAYS else None


@check("cert-expiry-horizon", "No certificate expires within 30 days", periods=("monthly",),
       queries={
           Q_CLIENT_CERT: ("sum by(job, le) "
                           "(rate(apiserver_client_certificate_expiration_seconds_bucket[1h]))"),
           Q_KUBELET_CERT: ('{__name__=~"kubelet_certificate_manager_'
                            '(client|server)_ttl_seconds"}'),
           Q_CERTMANAGER: "certmanager_certificate_expiration_timestamp_seconds > 0",
       }, needs=("prometheus",))
def cert_expiry_horizon(ctx: CheckContext) -> list[Finding]:
    """Certificates expiring within 30 days (warning) or 7 days (critical)."""
    s = ctx.snapshot
    now = s.now.timestamp()
    out = []

    def add(seconds: float | None, kind: str, namespace: str | None, name: str, what: str,
            runbook: str, labels: dict[str, str], when: str | None = None,
            cap: Severity | None = None) -> None:
        severity = None if seconds is None else _cert_severity(seconds)
        if seconds is None or severity is None:
            return
        if cap is not None and SEVERITY_RANK[severity] > SEVERITY_RANK[cap]:
            severity = cap
        expires = datetime.fromtimestamp(now + seconds, UTC).isoformat(timespec="seconds")
        out.append(ctx.finding(
            "cert-expiry-horizon", severity, kind, namespace, name,
            f"{what} expires {when or f'in {seconds / 86400:.1f} days ({expires})'}", runbook,
            {"seconds_left": round(seconds), "expires": expires, "labels": labels,
             "warning_days": CERT_WARNING_DAYS, "critical_days": CERT_CRITICAL_DAYS}))

    for job, (low, high) in sorted(_soonest_bucket(_samples(s.metric(Q_CLIENT_CERT))).items()):
        # Judged by the bucket's upper bound: the certificate expires by then at the latest.
        # Capped at warning: the histogram cannot tell a certificate about to lapse from one
        # issued short-lived on purpose (CSR-issued or exec-plugin credentials of an hour).
        add(high, "ClientCertificate", None, job,
            f"a client certificate presented to {job} in the last hour",
            "apiserver-client-cert-expiry", {"job": job},
            when=f"in {_span(low)} to {_span(high)} (histogram bucket; short-lived "
                 "certificates issued on purpose show here too)", cap="warning")
    for smp in _samples(s.metric(Q_KUBELET_CERT)):
        which = "serving" if "server" in smp.labels.get("__name__", "") else "client"
        node = smp.labels.get("node") or smp.labels.get("instance", "?")
        add(smp.number, "Node", None, node, f"the kubelet {which} certificate on {node}",
            "kubelet-cert-expiry", smp.labels)
    for smp in _samples(s.metric(Q_CERTMANAGER)):
        ns, name = smp.labels.get("namespace"), smp.labels.get("name", "?")
        if not ctx.in_scope(ns):
            continue
        add(None if smp.number is None else smp.number - now, "Certificate", ns, name,
            f"cert-manager Certificate {ns}/{name}", "cert-manager-cert-expiry", smp.labels)
    return out


_NOT_NOISY = "|".join(sorted(ALWAYS_FIRING))


@check("noisy-alerts", "The noisiest alerts of the month", periods=("monthly",), queries={
    Q_NOISY: (f"topk({NOISY_TOP}, sum by(alertname) (count_over_time(ALERTS"
              f'{{alertstate="firing", alertname!~"{_NOT_NOISY}"}}[30d])))')},
    needs=("prometheus",), category="report")
def noisy_alerts(ctx: CheckContext) -> list[Finding]:
    """The top 5 alerts by firing samples over 30 days: tune or fix what pages most."""
    res = ctx.snapshot.metric(Q_NOISY)
    ranked = sorted(((s.labels.get("alertname", "?"), s.number or 0.0) for s in _samples(res)),
                    key=lambda a: (-a[1], a[0]))
    return [ctx.finding(
        "noisy-alerts", "info", "Alert", None, name,
        f"alert {name} is the #{rank} noisiest of the last 30 days ({count:.0f} firing "
        "samples, one per rule evaluation): tune its threshold or fix its cause",
        "noisy-alerts", {"rank": rank, "firing_samples_30d": count})
        for rank, (name, count) in enumerate(ranked[:NOISY_TOP], start=1)]


@check("usage-trend", "CPU and memory use did not jump this month", periods=("monthly",),
       queries={Q_CPU_NOW: _cpu(""), Q_CPU_THEN: _cpu(" offset 30d"),
                Q_MEM_NOW: _memory(""), Q_MEM_THEN: _memory(" offset 30d")},
       needs=("prometheus",), category="report")
def usage_trend(ctx: CheckContext) -> list[Finding]:
    """Nodes whose CPU or memory use rose by more than 20 points against 30 days ago."""
    s = ctx.snapshot
    out = []
    for what, q_now, q_then in (("CPU", Q_CPU_NOW, Q_CPU_THEN),
                                ("memory", Q_MEM_NOW, Q_MEM_THEN)):
        then_res, now_res = s.metric(q_then), s.metric(q_now)
        then = {x.labels.get("instance", ""): x.number for x in _samples(then_res)}
        for smp in sorted(_samples(now_res), key=lambda x: x.labels.get("instance", "")):
            inst = smp.labels.get("instance", "")
            before = then.get(inst)
            if smp.number is None or before is None or smp.number - before <= USAGE_RISE_POINTS:
                continue
            node = smp.labels.get("node") or inst
            out.append(ctx.finding(
                "usage-trend", "info", "Node", None, node,
                f"{what} use on {node} rose from {before:.0f}% to {smp.number:.0f}% in 30 days",
                "capacity-requests",
                {"resource": what.lower(), "percent_now": round(smp.number, 1),
                 "percent_30d_ago": round(before, 1), "rise_points": round(
                     smp.number - before, 1), "window": "1h average"}))
    return out


@check("restore-test-due", "A restore was tested this month", periods=("monthly",),
       uses=("etcdsnapshotfiles.k3s.cattle.io", "backups.longhorn.io"))
def restore_test_due(ctx: CheckContext) -> list[Finding]:
    """No successful restore drill in the last 30 days (from the history store)."""
    overdue, evidence = drill_overdue(ctx, RESTORE_TEST_DAYS)
    if not overdue:
        return []
    return [ctx.finding(
        "restore-test-due", "warning", "RestoreDrill", None, "monthly",
        f"no successful backup restore test in {RESTORE_TEST_DAYS} days: the monthly restore "
        "test is due", "restore-drill", evidence)]
