"""``/api/v1``: reports, history, findings, diagnoses and alerts as JSON.

Every route names the RBAC it needs: ``get`` on a virtual resource of ``k3sops.io``
(:mod:`k3sops.serve.auth`) — ``reports`` (``/report``, ``/history``), ``findings``,
``diagnoses``, ``alerts``, ``remediations``. ``POST /alerts`` is Alertmanager's webhook: its
own bearer token.

Reports are judged from the watch cache by the CLI's engine (:func:`services.check.report_from`
on :meth:`WatchCache.snapshot`); Prometheus and Alertmanager are asked per run, as the CLI asks
them, so a source that is down is named in the report the same way. With an
:class:`~k3sops.serve.evaluator.Evaluator` (``k3sops serve``), ``/report`` and ``/findings``
answer the report it keeps current from the watch events, with its age in the headers
(``X-K3sops-As-Of``, ``Age``); ``?fresh=true`` waits for a run started after the request.
A report for one ``environment`` is judged on demand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

# FastAPI reads the routes' annotations at run time (``request: Request``): imported here, not
# lazily; this module is imported only when `k3sops serve` runs.
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from k3sops.domain import checks as registry
from k3sops.domain import diagnose as dg
from k3sops.domain.findings import CheckReport, Finding, Period, Source
from k3sops.domain.snapshot import CLUSTER_SCOPED, KIND_NAMES, ClusterSnapshot, plural_of
from k3sops.errors import K3sopsError
from k3sops.serve.auth import AuthFailure, bearer, require
from k3sops.services import check as check_service
from k3sops.services.context import Settings

if TYPE_CHECKING:
    from k3sops.adapters.kube import KubeClient
    from k3sops.adapters.store import HistoryStore, StoredRun
    from k3sops.serve.auth import Authorizer, SharedToken
    from k3sops.serve.cache import KindStatus
    from k3sops.serve.evaluator import Evaluated, Evaluator
    from k3sops.serve.metrics import ServiceMetrics

PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly")
WAIT_SECONDS = 120.0
"""How long a request waits for the first background run of a period, or a fresh one."""


class CacheView(Protocol):
    """What the API needs of the watch cache (:class:`k3sops.serve.cache.WatchCache`)."""

    def snapshot(self, now: datetime, kinds: Iterable[str] | None = None) -> ClusterSnapshot:
        """The cached objects (unread kinds named in ``errors``)."""

    def in_sync(self) -> bool:
        """Every kind listed and watching."""

    def status(self) -> Mapping[str, KindStatus]:
        """Per-kind state."""

    def source(self, kinds: Iterable[str] | None = None) -> Source:
        """The ``kubernetes`` source of a report, as the CLI's collect words it."""


class _NoRecord:
    """The store as report_from reads it (previous run, facts, acks), without recording.

    A report asked for on demand is compared with the history but does not become part of it
    (only scheduled runs do, once across replicas).
    """

    def __init__(self, store: HistoryStore) -> None:
        self._store = store

    def last_run(self, period: Period, environment: str | None) -> StoredRun | None:
        return self._store.last_run(period, environment)

    def facts(self, now: datetime | None = None) -> dict[str, Any]:
        return self._store.facts(now)

    def acks(self, now: datetime | None = None) -> dict[str, dict[str, str]]:
        return self._store.acks(now)

    def record(self, report: CheckReport, carried: Iterable[Finding] = ()) -> int:
        return 0


class Reports:
    """Builds reports from the cache and keeps the latest per period.

    Args:
        settings: flags and platform.yaml (suppressions, environments, monitoring endpoints).
        cache: the watch cache (or anything shaped like :class:`CacheView`).
        client: the Kubernetes client (Prometheus/Alertmanager through the service proxy).
        store: the history store.
        clock: now, timezone-aware.
    """

    def __init__(self, settings: Settings, cache: CacheView, client: KubeClient,
                 store: HistoryStore, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.cache = cache
        self.client = client
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()
        self.latest: dict[str, CheckReport] = {}
        self.on_findings: Callable[[list[Finding]], None] | None = None
        """Called with each scheduled run's findings (remediation by policy)."""

    def snapshot(self, specs: list[registry.CheckSpec], now: datetime,
                 ) -> tuple[ClusterSnapshot, list[Source]]:
        """The cache's objects plus Prometheus' and Alertmanager's answers, and the sources."""
        kinds = check_service.kinds_for(specs)
        # collect() with no kinds lists nothing: it asks only Prometheus and Alertmanager,
        # exactly as the CLI does; the objects come from the cache.
        monitored, sources = check_service.collect(self.client, self.settings, specs, now,
                                                   kinds=[])
        cached = self.cache.snapshot(now, kinds)
        snap = replace(cached, metrics=monitored.metrics,
                       metric_errors=monitored.metric_errors, alerts=monitored.alerts)
        # the kubernetes source is the cache's (collect's says only that /version answered)
        return snap, [self.cache.source(kinds),
                      *(s for s in sources if s.name != "kubernetes")]

    def run(self, period: Period, environment: str | None = None, *,
            record: bool = False) -> CheckReport:
        """Judge the checklist of ``period`` on the cache now; ``record``: into the history."""
        started = time.monotonic()
        specs = registry.selected(period)
        snap, sources = self.snapshot(specs, self._clock())
        history = self.store if record else cast("HistoryStore", _NoRecord(self.store))
        report = check_service.report_from(snap, sources, self.settings, period, environment,
                                           None, history, started=started)
        if environment is None:
            with self._lock:
                self.latest[period] = report
        return report

    def scheduled(self, period: Period, due: datetime) -> int | None:
        """The scheduler's run: recorded; the stored run's id."""
        report = self.run(period, record=True)
        if self.on_findings is not None:
            self.on_findings(report.findings)
        last = self.store.last_run(period, None)
        return last.id if last is not None else None

    def reports(self) -> dict[str, CheckReport]:
        """The latest report per period (for ``/metrics``)."""
        with self._lock:
            return dict(self.latest)

    def diagnose(self, kind_word: str, namespace: str, name: str) -> dg.DiagnosisReport | None:
        """The diagnosis of one object from the cache (None: unknown kind)."""
        kind = plural_of(kind_word)
        if kind is None:
            return None
        now = self._clock()
        snap = self.cache.snapshot(now)
        ns = None if kind in CLUSTER_SCOPED or namespace == "-" else namespace
        label = f"{kind}/{ns}/{name}" if ns else f"{kind}/{name}"
        kube_source = self.cache.source()
        if kind == "pods" and ns:
            d = dg.diagnose_pod(snap, ns, name, None, platform=self.settings.platform)
        else:
            d = dg.diagnose_object(snap, kind, ns, name, platform=self.settings.platform)
        return d.report(label, [kube_source])


@dataclass
class ApiContext:
    """Everything the routes use."""

    reports: Reports
    authorizer: Authorizer
    alertmanager: SharedToken
    metrics: ServiceMetrics
    is_leader: Callable[[], bool]
    intake: Any = None
    """serve.alerts.AlertIntake (None without the alerts part: POST /alerts answers 503)."""
    evaluator: Evaluator | None = None
    """The report kept current in the background (None: every request judges the cache)."""


def _finding_filter(findings: Iterable[Finding], namespace: str | None, severity: str | None,
                    check: str | None) -> list[Finding]:
    return [f for f in findings
            if (namespace is None or f.resource.namespace == namespace)
            and (severity is None or f.severity == severity)
            and (check is None or f.check == check)]


def router(ctx: ApiContext) -> APIRouter:
    """The ``/api/v1`` routes."""
    api = APIRouter(prefix="/api/v1")

    def allow(verb: str, resource: str) -> Callable[..., Any]:
        return require(ctx.authorizer, verb, resource)

    def _period(period: str) -> Period:
        for p in PERIODS:
            if p == period:
                return p
        raise HTTPException(400, f"period {period[:20]!r} is not one of " + ", ".join(PERIODS))

    def _env(environment: str | None) -> str | None:
        platform = ctx.reports.settings.platform
        if environment is not None and (platform is None
                                        or environment not in platform.environments):
            raise HTTPException(400, f"environment {environment[:30]!r} is not in "
                                     "platform.yaml")
        return environment

    def _evaluated(period: Period, fresh: bool) -> Evaluated | None:
        ev = ctx.evaluator
        if ev is None:
            return None
        got = ev.fresh(period, WAIT_SECONDS) if fresh else ev.current(period, WAIT_SECONDS)
        if got is None:
            raise HTTPException(503, f"no {period} report was judged within {WAIT_SECONDS:g} s;"
                                     " retry later", headers={"Retry-After": "10"})
        return got

    @api.get("/report", dependencies=[Depends(allow("get", "reports"))])
    def report(period: str = "daily", environment: str | None = None,
               fresh: bool = False) -> Any:
        """The checklist of ``period`` judged on the cache (compared with the history).

        The latest background run (its start in ``X-K3sops-As-Of``, its age in ``Age``);
        ``fresh``: one started after this request. With ``environment``: judged now.
        """
        env = _env(environment)
        got = _evaluated(_period(period), fresh) if env is None else None
        if got is None:
            rep = ctx.reports.run(_period(period), env)
            return JSONResponse(rep.model_dump(mode="json"))
        age = int(ctx.evaluator.age(got)) if ctx.evaluator is not None else 0
        return Response(got.body, media_type="application/json",
                        headers={"X-K3sops-As-Of": got.as_of.isoformat(),
                                 "X-K3sops-Cache-Generation": str(got.generation),
                                 "Age": str(age)})

    @api.get("/history", dependencies=[Depends(allow("get", "reports"))])
    def history(limit: int = Query(20, ge=1, le=500), period: str | None = None) -> Any:
        """Stored runs, newest first (scheduled runs; `k3sops check` runs sharing the store)."""
        runs = ctx.reports.store.runs(limit, _period(period) if period else None)
        return {"runs": [{"id": r.id, "started_at": r.started_at, "period": r.period,
                          "environment": r.environment,
                          "summary": r.summary.model_dump(mode="json")} for r in runs]}

    @api.get("/findings", dependencies=[Depends(allow("get", "findings"))])
    def findings(period: str = "daily", namespace: str | None = None,
                 severity: Literal["critical", "warning", "info"] | None = None,
                 check: str | None = None) -> Any:
        """Findings of the checklist of ``period`` (as ``/report``), filtered."""
        got = _evaluated(_period(period), False)
        rep = got.report if got is not None else ctx.reports.run(_period(period))
        return {"period": period, "findings": [f.model_dump(mode="json") for f in
                                               _finding_filter(rep.findings, namespace,
                                                               severity, check)]}

    @api.get("/diagnose/{kind}/{namespace}/{name}",
             dependencies=[Depends(allow("get", "diagnoses"))])
    def diagnose(kind: str, namespace: str, name: str) -> Any:
        """One object's diagnosis from the cache; ``-`` as namespace for cluster-scoped."""
        rep = ctx.reports.diagnose(kind, namespace, name)
        if rep is None:
            raise HTTPException(404, f"unknown kind {kind[:40]!r}; kinds: "
                                     + ", ".join(sorted(KIND_NAMES.values())))
        return JSONResponse(rep.model_dump(mode="json"))

    @api.get("/alerts", dependencies=[Depends(allow("get", "alerts"))])
    def alerts(state: Literal["firing", "resolved"] | None = None,
               limit: int = Query(100, ge=1, le=1000)) -> Any:
        """Enriched alerts, newest first."""
        rows = ctx.reports.store.alerts(state, limit)
        return {"alerts": [_jsonable(a) for a in rows]}

    @api.get("/remediations", dependencies=[Depends(allow("get", "remediations"))])
    def remediations(limit: int = Query(100, ge=1, le=1000),
                     policy: str | None = None) -> Any:
        """Remediations decided by policy (applied, dry-run, refused, failed), newest first."""
        rows = ctx.reports.store.remediations(limit, policy)
        return {"remediations": [_jsonable(r) for r in rows]}

    _webhook(api, ctx)
    return api


def _webhook(api: APIRouter, ctx: ApiContext) -> None:
    """``POST /api/v1/alerts``: Alertmanager's webhook into the intake."""
    @api.post("/alerts")
    async def webhook(request: Request) -> Any:
        """Alertmanager's webhook (payload v4), with Alertmanager's own bearer token."""
        try:
            ctx.alertmanager.check(bearer(request.headers.get("authorization")))
        except AuthFailure as e:
            raise HTTPException(e.status, e.message,
                                headers={"WWW-Authenticate": "Bearer"}) from None
        if ctx.intake is None:
            raise HTTPException(503, "alert intake is not available in this build")
        limit = int(getattr(ctx.intake, "max_body", 1 << 20))
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                ctx.metrics.alerts_rejected.labels(reason="too_large").inc()
                raise HTTPException(413, f"the webhook body exceeds {limit} bytes")
        from starlette.concurrency import run_in_threadpool

        try:
            result = await run_in_threadpool(ctx.intake.receive, bytes(body))
        except K3sopsError as e:  # PayloadInvalid (400) / PayloadTooLarge (413)
            status = int(getattr(e, "http_status", 0) or 0)
            if status in (400, 413):
                ctx.metrics.alerts_rejected.labels(
                    reason="too_large" if status == 413 else "invalid").inc()
                raise HTTPException(status, e.message) from None
            raise
        ctx.metrics.count_intake(result)
        return _jsonable(result)


def _jsonable(value: Any) -> Any:
    """A pydantic model, dataclass or plain value as JSON-able data."""
    import dataclasses

    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
