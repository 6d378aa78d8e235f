"""Alerts: what Alertmanager holds now, and what fired overnight but has stopped.

``alert-firing`` reads Alertmanager's alerts (every state, as the service collects them) and
reports each one that is still firing and not silenced. Inhibited alerts are left out too: an
inhibition means a more important alert covering the same fault is firing, and that one is
reported. The deadman's switch (``Watchdog``) and kube-prometheus' ``InfoInhibitor`` fire on
purpose all the time and are never findings.

``alert-overnight`` reads the ``ALERTS`` series of Prometheus. A PromQL range is fixed per
query, so the query looks back a fixed 24 hours (:data:`OVERNIGHT_WINDOW`); a second query
gives, per series, the last time it was seen firing (sampled every 15 seconds), and a series last
seen firing before the previous stored check is dropped: it was reported then. A series that
fired in the window and is no longer in ``ALERTS{alertstate="firing"}`` gives one info finding
per alert name and namespace, listing the series.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import SEVERITY_RANK, Finding, Severity
from k3sops.domain.snapshot import Obj, get, parse_time

ALWAYS_FIRING = frozenset({"Watchdog", "InfoInhibitor"})
"""Alerts that fire by design (a deadman's switch, an inhibition helper): never findings."""

OVERNIGHT_WINDOW = "24h"
"""How far `alert-overnight` looks back (PromQL needs a fixed range; see the module doc)."""
WINDOW_SECONDS = 24 * 3600
LAST_SEEN_STEP = "15s"
"""Resolution of the last-seen subquery: a firing shorter than this may have no last-seen time
(it is then reported whatever the last check saw; one rule evaluation interval is typical)."""

Q_FIRED = "alert-overnight:fired"
Q_LAST_SEEN = "alert-overnight:last_seen"
Q_NOW = "alert-overnight:now"

MAX_SERIES_EVIDENCE = 10
"""How many series of one alert name are listed in a finding's evidence."""

# Labels of the ALERTS series that say nothing about which alert it is.
_META_LABELS = frozenset({"__name__", "alertstate"})


def severity_of(labels: Obj) -> Severity:
    """Map an alert's ``severity`` label onto a finding severity (unknown values: info)."""
    value = str(labels.get("severity", "")).lower()
    return "critical" if value == "critical" else "warning" if value == "warning" else "info"


def _is_firing_now(alert: Obj, now: datetime) -> bool:
    """Active, not silenced or inhibited, and not past its endsAt."""
    status = get(alert, "status", default={}) or {}
    if status.get("state") == "suppressed":
        return False
    if status.get("silencedBy") or status.get("inhibitedBy"):
        return False
    ends = parse_time(alert.get("endsAt"))
    return ends is None or ends > now


@check("alert-firing", "No alerts firing", needs=("alertmanager",))
def alert_firing(ctx: CheckContext) -> list[Finding]:
    """One finding per alert firing now in Alertmanager and not silenced or inhibited."""
    out = []
    for alert in ctx.snapshot.alerts or []:
        labels: dict[str, Any] = dict(get(alert, "labels", default={}) or {})
        annotations: dict[str, Any] = dict(get(alert, "annotations", default={}) or {})
        name = str(labels.get("alertname") or "(unnamed)")
        namespace = labels.get("namespace") or None
        if name in ALWAYS_FIRING or not _is_firing_now(alert, ctx.snapshot.now):
            continue
        if not ctx.in_scope(namespace):
            continue
        summary = annotations.get("summary") or annotations.get("description") or ""
        finding = ctx.finding(
            "alert-firing", severity_of(labels), "Alert", namespace, name,
            f"alert {name} is firing since {alert.get('startsAt')}"
            + (f": {summary}" if summary else ""),
            str(annotations.get("runbook_id") or "alert-firing"),
            {"labels": labels, "annotations": annotations, "startsAt": alert.get("startsAt"),
             "fingerprint": alert.get("fingerprint"),
             "generatorURL": alert.get("generatorURL")})
        # An alert without a namespace may still name its environment (global rules do).
        if finding.environment is None and labels.get("environment"):
            finding = finding.model_copy(update={"environment": str(labels["environment"])})
        out.append(finding)
    return out


def _identity(labels: Obj) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in labels.items() if k not in _META_LABELS))


@check("alert-overnight", "Alerts that fired overnight", queries={
    Q_FIRED: f'max_over_time(ALERTS{{alertstate="firing"}}[{OVERNIGHT_WINDOW}])',
    Q_LAST_SEEN: ('max_over_time(timestamp(ALERTS{alertstate="firing"})'
                  f"[{OVERNIGHT_WINDOW}:{LAST_SEEN_STEP}])"),
    Q_NOW: 'ALERTS{alertstate="firing"}',
}, needs=("prometheus",), category="report")
def alert_overnight(ctx: CheckContext) -> list[Finding]:
    """Alerts that fired since the last check (at most 24h back) and are no longer firing."""
    snap = ctx.snapshot
    fired, now_res = snap.metric(Q_FIRED), snap.metric(Q_NOW)
    if fired is None or now_res is None:
        return []  # without both answers "no longer firing" cannot be told
    firing_now = {_identity(s.labels) for s in now_res.samples}
    seen_res = snap.metric(Q_LAST_SEEN)
    last_seen = ({_identity(s.labels): s.number for s in seen_res.samples}
                 if seen_res is not None else {})
    since = parse_time(ctx.last_check)
    if since is not None and (snap.now - since).total_seconds() >= WINDOW_SECONDS:
        since = None  # the previous check is older than the window: the window is the limit
    since_ts = since.astimezone(UTC).timestamp() if since else None
    groups: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
    for s in fired.samples:
        ident = _identity(s.labels)
        if ident in firing_now:
            continue  # still firing: alert-firing reports it
        seen = last_seen.get(ident)
        if since_ts is not None and seen is not None and seen < since_ts:
            continue  # stopped before the previous check, which reported it
        labels = dict(ident)
        ns = labels.get("namespace") or None
        if not ctx.in_scope(ns):
            continue
        labels["last_seen_firing"] = (datetime.fromtimestamp(seen, UTC).isoformat(
            timespec="seconds") if seen is not None else "")
        groups[(labels.get("alertname", "(unnamed)"), ns)].append(labels)
    out = []
    for (name, ns), series in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or "")):
        series.sort(key=lambda lab: lab["last_seen_firing"], reverse=True)
        worst = max((severity_of(lab) for lab in series), key=lambda v: SEVERITY_RANK[v])
        window = (f"since the last check ({ctx.last_check})" if since
                  else f"in the last {OVERNIGHT_WINDOW}")
        out.append(ctx.finding(
            "alert-overnight", "info", "Alert", ns, name,
            f"alert {name} fired {window} and is no longer firing"
            + (f" ({len(series)} series)" if len(series) > 1 else "")
            + (f", last seen {series[0]['last_seen_firing']}"
               if series[0]["last_seen_firing"] else ""),
            "alert-overnight",
            {"series": series[:MAX_SERIES_EVIDENCE], "series_count": len(series),
             "highest_severity": worst, "window": OVERNIGHT_WINDOW,
             "since": since.isoformat(timespec="seconds") if since else None}))
    return out
