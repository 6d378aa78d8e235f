"""`k3sops check`: collect once, run the pure checks, compare with history, report.

Collection is one paginated LIST per kind (concurrently, as plain JSON), one batch of
Prometheus queries (those every selected check declared), and one read of Alertmanager's
alerts. Only the kinds the selected rules declare are listed. A source or kind that cannot be
read is named in ``sources`` (exit 4); the rules that need it are listed as not evaluated
(they neither fire nor resolve anything) and everything else is still reported.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from k3sops.adapters.alertmanager import AlertmanagerAdapter
from k3sops.adapters.kube import KubeAdapter
from k3sops.adapters.prometheus import HttpApi, PrometheusAdapter
from k3sops.adapters.store import HistoryStore, StoredRun
from k3sops.domain import checks as registry
from k3sops.domain import engine, projection, suppress
from k3sops.domain import snapshot as snapshot_kinds
from k3sops.domain.findings import (
    CheckReport,
    Finding,
    ManualItem,
    Period,
    Severity,
    Source,
    Summary,
    health_score,
)
from k3sops.domain.metrics import NODE_CPU, NODE_DISK, NODE_MEMORY, InstantResult
from k3sops.domain.snapshot import ClusterSnapshot
from k3sops.errors import (
    AdapterError,
    K3sopsError,
    NotFound,
    UsageError,
    short_reason,
)
from k3sops.services.context import Settings, kube, monitoring

CORE_PATHS: dict[str, str] = snapshot_kinds.CORE_PATHS
CUSTOM_PATHS: dict[str, str] = snapshot_kinds.CUSTOM_PATHS
"""Every kind a rule may read and where the API serves it (declared in the domain)."""


def kinds_for(specs: Iterable[registry.CheckSpec]) -> list[str]:
    """The kinds the given rules declare (read or consulted), in declaration order."""
    wanted = {k for spec in specs for k in (*spec.reads, *spec.uses)}
    return [k for k in (*CORE_PATHS, *CUSTOM_PATHS) if k in wanted]


def _collect_kube(k: KubeAdapter, sources: list[Source], kinds: Iterable[str] | None = None,
                  ) -> tuple[dict[str, list[Any]], dict[str, str], str | None]:
    objects: dict[str, list[Any]] = {}
    errors: dict[str, str] = {}
    try:
        version: str | None = k.version()
    except AdapterError as e:
        sources.append(Source(name="kubernetes", ok=False, endpoint=k.server, error=e.message))
        for kind in kinds if kinds is not None else (*CORE_PATHS, *CUSTOM_PATHS):
            if kind in CORE_PATHS:
                errors[kind] = e.message
        return objects, errors, None
    paths = {kind: path for kind, path in {**CORE_PATHS, **CUSTOM_PATHS}.items()
             if kinds is None or kind in set(kinds)}
    # Decoding tens of thousands of objects creates only acyclic dicts and lists: the cyclic
    # garbage collector finds nothing to free and costs about a quarter of the time (bench/).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        listed = k.list_raw_many(paths)
        for kind, res in listed.items():
            if isinstance(res, AdapterError):
                if kind in CUSTOM_PATHS and isinstance(res, NotFound):
                    continue  # CRD not installed: nothing of that kind to check
                errors[kind] = short_reason(res)
            else:
                objects[kind] = projection.project(kind, res)
    finally:
        if gc_was_enabled:
            gc.enable()
    failed = sorted(errors)
    sources.append(Source(name="kubernetes", ok=not failed, endpoint=k.server,
                          error=("could not list " + ", ".join(
                              f"{kind} ({errors[kind]})" for kind in failed))
                          if failed else None))
    return objects, errors, version


def _collect_metrics(k: KubeAdapter, settings: Settings, queries: dict[str, str],
                     sources: list[Source]) -> tuple[dict[str, InstantResult], dict[str, str]]:
    metrics: dict[str, InstantResult] = {}
    metric_errors: dict[str, str] = {}
    if not queries:
        return metrics, metric_errors
    prom_ep = monitoring(settings).prometheus
    api = None
    try:
        api = HttpApi.from_endpoint("Prometheus", prom_ep, k)
        for name, ans in PrometheusAdapter(api).query_many(queries).items():
            if isinstance(ans, K3sopsError):
                metric_errors[name] = ans.message
            else:
                metrics[name] = ans
        error = None
        if metric_errors and not metrics:
            error = next(iter(metric_errors.values()))
        elif metric_errors:
            error = f"{len(metric_errors)} queries failed: " + ", ".join(sorted(metric_errors))
        sources.append(Source(name="prometheus", ok=not metric_errors, endpoint=api.how,
                              error=error))
    except K3sopsError as e:
        sources.append(Source(name="prometheus", ok=False,
                              endpoint=api.how if api else str(prom_ep.url or prom_ep.service),
                              error=e.message))
        metric_errors = {n: e.message for n in queries}
    finally:
        if api is not None:
            api.close()
    return metrics, metric_errors


def _collect_alerts(k: KubeAdapter, settings: Settings,
                    sources: list[Source]) -> list[Any] | None:
    am_ep = monitoring(settings).alertmanager
    am = None
    try:
        am = AlertmanagerAdapter(HttpApi.from_endpoint("Alertmanager", am_ep, k))
        alerts = am.alerts()
        sources.append(Source(name="alertmanager", ok=True, endpoint=am.api.how))
        return alerts
    except K3sopsError as e:
        sources.append(Source(name="alertmanager", ok=False,
                              endpoint=am.api.how if am else str(am_ep.url or am_ep.service),
                              error=e.message))
        return None
    finally:
        if am is not None:
            am.close()


def collect(k: KubeAdapter, settings: Settings, specs: list[registry.CheckSpec],
            now: datetime, kinds: Iterable[str] | None = None,
            ) -> tuple[ClusterSnapshot, list[Source]]:
    """Gather the snapshot: kinds, queries, alerts. Never raises for a missing source.

    ``kinds`` limits the LISTs (None: every kind k3sops knows; `check` passes those its rules
    declare).
    """
    kube_sources: list[Source] = []
    prom_sources: list[Source] = []
    am_sources: list[Source] = []
    queries: dict[str, str] = {f"usage_{n}": q for n, q in USAGE_QUERIES.items()}
    for spec in specs:
        queries.update(spec.queries_for(settings.platform))
    wants_alerts = any("alertmanager" in s.needs for s in specs)
    # The three sources are independent: Prometheus and Alertmanager answer while the LISTs
    # run (they wait on the network, not the CPU).
    with ThreadPoolExecutor(max_workers=2) as pool:
        prom = pool.submit(_collect_metrics, k, settings, queries, prom_sources)
        am = pool.submit(_collect_alerts, k, settings, am_sources) if wants_alerts else None
        objects, errors, version = _collect_kube(k, kube_sources, kinds)
        metrics, metric_errors = prom.result()
        alerts = am.result() if am is not None else None
    snap = ClusterSnapshot(now=now, objects=objects, errors=errors, metrics=metrics,
                           metric_errors=metric_errors, alerts=alerts, server_version=version)
    return snap, [*kube_sources, *prom_sources, *am_sources]


def run_checks(ctx: registry.CheckContext, specs: list[registry.CheckSpec],
               sources: list[Source]) -> engine.EngineResult:
    """Run every selected rule whose inputs were read (the others are listed, not run)."""
    return engine.evaluate(ctx, specs, down={s.name for s in sources if not s.ok})


def compare(previous: StoredRun | None, result: engine.EngineResult,
            ) -> tuple[list[Finding], list[Finding], list[Finding]]:
    """(findings marked new, resolved, carried) against the previous run of this checklist.

    A finding of a rule that was not evaluated now is carried (kept for the next comparison),
    never resolved; so is one of a rule that ran without some of the kinds it consults and did
    not find it again (its absence proves nothing).
    """
    findings = result.findings
    if previous is None:
        return findings, [], []
    before = {f.key: f for f in (*previous.findings, *previous.carried)}
    now_keys = {f.key for f in findings}
    unsure = result.skipped | result.partial
    marked = [f.model_copy(update={"new": f.key not in before}) for f in findings]
    resolved = [f for key, f in before.items() if key not in now_keys and f.check not in unsure]
    carried = [f for key, f in before.items() if key not in now_keys and f.check in unsure]
    return marked, resolved, carried


def check(settings: Settings, env: Mapping[str, str], home: Path, period: Period,
          environment: str | None, fail_on: Severity | None,
          history: HistoryStore | None = None, show_suppressed: bool = False) -> CheckReport:
    """Run the checklist of ``period`` and build the report (history marks new/resolved).

    Suppressions of platform.yaml hide or re-grade findings; the hidden ones are counted and
    listed in the report when ``show_suppressed``.
    """
    if environment is not None:
        if settings.platform is None:
            raise UsageError("--env needs a platform.yaml that defines environments",
                             hint="pass --config FILE or run `k3sops init`")
        if environment not in settings.platform.environments:
            known = ", ".join(settings.platform.environments)
            raise UsageError(f"environment {environment!r} is not in platform.yaml",
                             hint=f"known: {known}")
    started = time.monotonic()
    now = datetime.now(UTC)
    specs = registry.selected(period)
    k = kube(settings, env, home)
    try:
        snapshot, sources = collect(k, settings, specs, now, kinds_for(specs))
    finally:
        k.close()
    return report_from(snapshot, sources, settings, period, environment, fail_on, history,
                       show_suppressed=show_suppressed, started=started)


def report_from(snapshot: ClusterSnapshot, sources: list[Source], settings: Settings,
                period: Period, environment: str | None, fail_on: Severity | None,
                history: HistoryStore | None = None, *, show_suppressed: bool = False,
                started: float | None = None) -> CheckReport:
    """The checklist of ``period`` judged on a snapshot already gathered, as a report.

    The CLI passes the snapshot its LISTs just built; ``k3sops serve`` one from its watch
    cache. Everything after collection is here, once: the rules, suppressions, the comparison
    with the previous run (new, resolved, carried), manual items, the summary and the record
    in ``history``.

    Args:
        snapshot: the objects, metrics and alerts read (unread kinds named in its errors).
        sources: how each source answered (a source down makes its rules not evaluated).
        settings: flags and platform.yaml (suppressions, environments).
        period: daily, weekly or monthly: which rules run.
        environment: judge only this environment's namespaces (None: all).
        fail_on: the severity the caller exits 3 at (recorded in the summary).
        history: the store compared with and recorded in (None: no history).
        show_suppressed: list the suppressed findings in the report too.
        started: ``time.monotonic()`` when the work began (default: now), for the duration.
    """
    started = time.monotonic() if started is None else started
    now = snapshot.now
    specs = registry.selected(period)
    previous = history.last_run(period, environment) if history is not None else None
    ctx = registry.CheckContext(
        snapshot=snapshot, platform=settings.platform, period=period, environment=environment,
        last_check=previous.started_at if previous else None,
        history=history.facts() if history is not None else {})
    result = run_checks(ctx, specs, sources)
    applied = suppress.apply(result.findings, settings.platform.suppressions
                             if settings.platform else [], snapshot, now.date())
    result.findings = applied.findings
    findings, resolved, carried = compare(previous, result)
    # hidden is not resolved: keep suppressed findings for the next comparison
    carried += [f for f in applied.suppressed if f.key not in {c.key for c in carried}]
    resolved = [f for f in resolved if f.key not in {s.key for s in applied.suppressed}]
    if previous is None and history is not None:
        findings = [f.model_copy(update={"new": True}) for f in findings]
    manual = _manual_items(period, history)
    summary = Summary(
        period=period, environment=environment, started_at=now.isoformat(timespec="seconds"),
        duration_seconds=round(time.monotonic() - started, 3), total=len(findings),
        critical=sum(f.severity == "critical" for f in findings),
        warning=sum(f.severity == "warning" for f in findings),
        info=sum(f.severity == "info" for f in findings),
        new=sum(f.new for f in findings), resolved=len(resolved),
        health_score=health_score(findings), checks_run=len(result.ran), fail_on=fail_on,
        usage=_usage(snapshot), not_evaluated=len(result.not_evaluated),
        suppressed=len(applied.suppressed))
    report = CheckReport(summary=summary, findings=findings, sources=sources,
                         resolved=resolved, manual=manual, not_evaluated=result.not_evaluated,
                         suppressed=applied.suppressed if show_suppressed else [])
    if history is not None:
        history.record(report, carried)
    return report


USAGE_QUERIES: dict[str, str] = {
    "cpu": f"avg({NODE_CPU})",
    "memory": f"avg({NODE_MEMORY})",
    "disk": f"max({NODE_DISK})",
}
"""Cluster-wide usage recorded with every run: `k3sops metrics nodes`' own expressions."""


def _usage(snapshot: ClusterSnapshot) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in USAGE_QUERIES:
        res = snapshot.metric(f"usage_{name}")
        if res is not None and res.samples:
            try:
                out[name] = round(float(res.samples[0].value), 2)
            except ValueError:
                continue
    return out


def _manual_items(period: Period, history: HistoryStore | None) -> list[ManualItem]:
    order = {"daily": 0, "weekly": 1, "monthly": 2}
    items = [m for m in registry.MANUAL.values() if order[m.period] <= order[period]]
    acks: Mapping[str, Mapping[str, str]] = history.acks() if history is not None else {}
    out = []
    for m in sorted(items, key=lambda m: (order[m.period], m.id)):
        ack = acks.get(m.id)
        out.append(m.model_copy(update={"acknowledged_by": ack.get("by"),
                                        "acknowledged_at": ack.get("at"),
                                        "note": ack.get("note")}) if ack else m)
    return out
