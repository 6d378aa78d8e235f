"""The console's routes under ``/ui``: login, overview, findings, diagnosis, runbook, ack.

Each page calls what the matching ``/api/v1`` route calls (:class:`~k3sops.serve.api.Reports`,
the history store) and asks the same SubjectAccessReview: ``get`` on ``reports`` (overview),
``findings`` (findings, runbooks), ``diagnoses``, ``alerts`` (the alerts page; the overview's
alert list is left out without it), ``backups``, ``environments``, ``capacity``, ``create``
on ``acks`` (the acknowledge form) and ``approvals`` (:mod:`.environments`). No session: 303 to the
login page. Every POST carries the session's CSRF token; a missing or wrong one is 403.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from k3sops.domain import checks as registry
from k3sops.errors import HistoryError
from k3sops.serve.auth import AuthFailure, User
from k3sops.serve.console import capacity, environments, render, silences
from k3sops.serve.console.sessions import COOKIE, LOGIN_COOKIE, Session, Sessions, csrf_ok

if TYPE_CHECKING:
    from k3sops.domain.findings import CheckReport, Finding
    from k3sops.serve.api import ApiContext
    from k3sops.serve.console.environments import GitOpsOpener
    from k3sops.serve.views import PlatformViews

PREFIX = "/ui"
MAX_FORM = 16 * 1024
"""The largest form body read (a token is a few KiB at most)."""
NO_ENVIRONMENT = "(none)"
REPORT_TTL = 10.0
"""Seconds a judged report serves the overview and findings pages (no evaluator)."""
REPORT_WAIT = 30.0
"""Seconds a page waits for the service's first report (only while the cache first syncs)."""


class Refused(Exception):
    """A page refused: ``status`` and a message safe to show (no token, no header)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ToLogin(Exception):
    """No live session: the answer is a redirect to the login page."""


def set_cookie(response: Response, session: Session, name: str = COOKIE) -> None:
    """The session id cookie: HttpOnly, Secure, SameSite=Strict, for ``/`` of this host."""
    response.set_cookie(name, session.id, httponly=True, secure=True, samesite="strict",
                        path="/")


def delete_cookie(response: Response, name: str) -> None:
    """Remove cookie ``name`` from the browser."""
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="strict")


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (first value per name); 413 if too big."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise Refused(413, f"the form is larger than {MAX_FORM} bytes")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items() if v}


def check_csrf(session: Session | None, form: dict[str, str]) -> None:
    """Raises Refused 403 unless the form carries ``session``'s CSRF token."""
    if not csrf_ok(session, form.get("csrf")):
        raise Refused(403, "the form's CSRF token is missing or wrong: reload the page")


async def posted(console: Console, request: Request) -> tuple[dict[str, str], Session | None]:
    """A POSTed form and its session, the form's CSRF token checked (Refused 403)."""
    form = await read_form(request)
    s = await run_in_threadpool(console.session, request)  # a store read: not on the loop
    check_csrf(s, form)
    return form, s


class Console:
    """The console's state (sessions) and its checks, over the API's context."""

    def __init__(self, ctx: ApiContext, sessions: Sessions | None = None,
                 views: PlatformViews | None = None,
                 gitops: GitOpsOpener | None = None) -> None:
        self.ctx = ctx
        self.sessions = sessions or Sessions(ctx.reports.store)
        self.views = views
        self.gitops = gitops
        """The GitOps context as a user (approvals); default: the CLI's, on the settings."""
        self._report_lock = threading.Lock()
        self._report: tuple[float, CheckReport] | None = None

    def report(self) -> CheckReport:
        """The daily checklist: the service's kept report, the one ``/api/v1/report`` answers.

        Without the background evaluator (a test's app), judged from the cache and reused for
        :data:`REPORT_TTL` seconds: clicking from the overview to the findings and back judges
        once, not per page; one caller computes while the others wait for its answer.
        """
        ev = self.ctx.evaluator
        if ev is not None:
            got = ev.current("daily", REPORT_WAIT)
            if got is None:
                raise Refused(503, f"no daily report was judged within {REPORT_WAIT:g} s; "
                                   "reload in a moment")
            return got.report
        with self._report_lock:
            now = time.monotonic()
            if self._report is None or now - self._report[0] >= REPORT_TTL:
                self._report = (now, self.ctx.reports.run("daily"))
            return self._report[1]

    def session(self, request: Request) -> Session | None:
        """The request's live session, if any (Refused 503: the store cannot be read)."""
        try:
            return self.sessions.get(request.cookies.get(COOKIE))
        except HistoryError as e:
            raise Refused(503, f"the console's sessions cannot be read: {e.message}") from None

    def user(self, request: Request, verb: str, resource: str) -> tuple[Session, User]:
        """The logged-in session and user, allowed ``verb`` on ``resource``.

        Raises:
            ToLogin: no session or not logged in.
            Refused: 403 (not allowed; names the grant) or 503 (the API server is down).
        """
        s = self.session(request)
        if s is None or s.user is None:
            raise ToLogin
        try:
            if not self.ctx.authorizer.allowed(s.user, verb, resource):
                raise Refused(403, f"{s.user.name} may not {verb} {resource}.k3sops.io "
                                   f"(grant it with a (Cluster)Role: apiGroups [k3sops.io], "
                                   f"resources [{resource}], verbs [{verb}])")
        except AuthFailure as e:
            raise Refused(e.status, e.message) from None
        return s, s.user

    def may(self, user: User, verb: str, resource: str) -> bool:
        """Whether ``user`` may (False also when the API server cannot say)."""
        try:
            return self.ctx.authorizer.allowed(user, verb, resource)
        except AuthFailure:
            return False

    def html(self, template: str, session: Session | None, status: int = 200,
             **values: Any) -> HTMLResponse:
        """A page, with the session's CSRF token and user for the layout."""
        body = render.page(template, csrf=session.csrf if session else "",
                           user=session.user if session else None, **values)
        return HTMLResponse(body, status_code=status)


def _by_environment(findings: list[Finding]) -> list[tuple[str, Counter[str]]]:
    counts: dict[str, Counter[str]] = {}
    for f in findings:
        counts.setdefault(f.environment or NO_ENVIRONMENT, Counter())[f.severity] += 1
    return sorted(counts.items())


def _open_manual(acks: dict[str, dict[str, str]]) -> list[tuple[str, list[Any]]]:
    """Manual steps not acknowledged in their current period, by period."""
    out = []
    for period, words in (("daily", "today"), ("weekly", "this week"),
                          ("monthly", "this month")):
        items = [m for m in registry.MANUAL.values() if m.period == period and m.id not in acks]
        out.append((words, sorted(items, key=lambda m: m.id)))
    return out


def router(console: Console) -> APIRouter:
    """The console's routes (prefix ``/ui``)."""
    ui = APIRouter(prefix=PREFIX, include_in_schema=False)
    _session_routes(ui, console)
    _read_routes(ui, console)
    _platform_routes(ui, console)
    _ack_route(ui, console)
    environments.routes(ui, console, console.gitops)
    capacity.routes(ui, console)
    silences.routes(ui, console)
    return ui


def _session_routes(ui: APIRouter, console: Console) -> None:
    """Login and logout."""
    ctx = console.ctx

    @ui.get("/login")
    def login_form(request: Request) -> Response:
        """The login form (its CSRF token is bound to a fresh ``k3sops_login`` cookie)."""
        s = console.session(request)
        if s is not None and s.user is not None:
            return RedirectResponse(f"{PREFIX}/", status_code=303)
        form = console.sessions.anonymous(request.cookies.get(LOGIN_COOKIE))
        if form is None:
            form = console.sessions.login_form()
        response = console.html("login.html", form, error=None)
        set_cookie(response, form, LOGIN_COOKIE)
        return response

    @ui.post("/login")
    async def login(request: Request) -> Response:
        """Review the token (TokenReview); a new logged-in session on success."""
        form = await read_form(request)
        anonymous = console.sessions.anonymous(request.cookies.get(LOGIN_COOKIE))
        check_csrf(anonymous, form)
        token = form.get("token", "").strip()
        try:
            user = await run_in_threadpool(ctx.authorizer.authenticate, token or None)
        except AuthFailure as e:
            return console.html("login.html", anonymous, status=e.status, error=e.message)
        try:
            fresh = await run_in_threadpool(console.sessions.new, user)
        except HistoryError as e:
            raise Refused(503, f"the console's session could not be stored: {e.message}"
                          ) from None
        old = request.cookies.get(COOKIE)
        if old:  # logging in again replaces a previous session of this browser
            await run_in_threadpool(console.sessions.drop, old)
        response = RedirectResponse(f"{PREFIX}/", status_code=303)
        set_cookie(response, fresh)
        delete_cookie(response, LOGIN_COOKIE)
        return response

    @ui.post("/logout")
    async def logout(request: Request) -> Response:
        """End the session."""
        _, s = await posted(console, request)
        try:
            await run_in_threadpool(console.sessions.drop, s.id if s else None)
        except HistoryError as e:
            raise Refused(503, f"the console's session could not be ended: {e.message}"
                          ) from None
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        delete_cookie(response, COOKIE)
        return response


def _read_routes(ui: APIRouter, console: Console) -> None:
    """The pages: overview, findings, diagnosis, runbook."""
    ctx = console.ctx

    @ui.get("/")
    def overview(request: Request) -> Response:
        """Health score and trend, findings per environment, new/resolved, alerts, manual."""
        s, user = console.user(request, "get", "reports")
        report = console.report()
        store = ctx.reports.store
        trend = [p for p in store.trend(30) if p.environment is None]
        alerts = (store.alerts("firing", 20) if console.may(user, "get", "alerts") else None)
        acks = store.acks(datetime.now(UTC).astimezone())
        return console.html(
            "overview.html", s, page="overview", report=report,
            score_chart=render.score_chart(trend), severity_chart=render.severity_chart(trend),
            legend=render.legend(), runs=len(trend), by_env=_by_environment(report.findings),
            new=[f for f in report.findings if f.new], resolved=report.resolved,
            alerts=alerts, manual=_open_manual(acks),
            may_ack=console.may(user, "create", "acks"), acked=request.query_params.get("acked"))

    @ui.get("/findings")
    def findings(request: Request) -> Response:
        """Findings now, filtered by environment, namespace, severity and check (GET form)."""
        s, _ = console.user(request, "get", "findings")
        q = {k: request.query_params.get(k, "").strip()
             for k in ("environment", "namespace", "severity", "check")}
        report = console.report()
        rows = [f for f in report.findings
                if (not q["environment"] or (f.environment or NO_ENVIRONMENT) == q["environment"])
                and (not q["namespace"] or f.resource.namespace == q["namespace"])
                and (not q["severity"] or f.severity == q["severity"])
                and (not q["check"] or f.check == q["check"])]
        choices = {
            "environment": sorted({f.environment or NO_ENVIRONMENT for f in report.findings}),
            "namespace": sorted({f.resource.namespace for f in report.findings
                                 if f.resource.namespace}),
            "check": sorted({f.check for f in report.findings})}
        return console.html("findings.html", s, page="findings", findings=rows, q=q,
                            choices=choices, total=len(report.findings),
                            remediation=render.remediation)

    @ui.get("/diagnose/{kind}/{namespace}/{name}")
    def diagnosis(request: Request, kind: str, namespace: str, name: str) -> Response:
        """One object's diagnosis: the causal chain, root causes with evidence, commands."""
        s, _ = console.user(request, "get", "diagnoses")
        rep = ctx.reports.diagnose(kind, namespace, name)
        if rep is None:
            raise Refused(404, f"unknown kind {kind[:40]!r}")
        return console.html("diagnosis.html", s, page="findings", d=rep,
                            remediation=render.remediation,
                            runbook_commands=render.runbook_commands)

    @ui.get("/runbooks/{runbook_id}")
    def runbook(request: Request, runbook_id: str) -> Response:
        """A runbook rendered from its Markdown."""
        s, _ = console.user(request, "get", "findings")
        found = render.runbook_html(runbook_id)
        if found is None:
            raise Refused(404, f"no runbook {runbook_id[:60]!r}")
        title, body = found
        return console.html("runbook.html", s, page="findings", title=title, body=body)


def _platform_routes(ui: APIRouter, console: Console) -> None:
    """Alerts (the webhook's enriched records) and backups (``/api/v1/backups``' answer)."""
    ctx = console.ctx

    @ui.get("/alerts")
    def alerts(request: Request) -> Response:
        """Enriched alerts, newest first: object, root causes, runbook (GET ``state``)."""
        s, user = console.user(request, "get", "alerts")
        q = request.query_params
        state = q.get("state", "firing")
        wanted: Any = state if state in ("firing", "resolved") else None
        rows = ctx.reports.store.alerts(wanted, 200)
        return console.html("alerts.html", s, page="alerts", alerts=rows,
                            state=wanted or "all", sil=silences.listing(console, user),
                            done={k: q.get(k, "")[:64] for k in ("silenced", "expired")})

    @ui.get("/backups")
    def backups(request: Request) -> Response:
        """Per target: newest backup, age, size, verification, last restore drill and RTO."""
        s, _ = console.user(request, "get", "backups")
        if console.views is None:
            raise Refused(503, "backup views are not available in this service")
        body = console.views.backups()
        drills = ctx.reports.store.facts().get("restore_drills") or []
        return console.html("backups.html", s, page="backups",
                            targets=body.get("targets") or [], reason=body.get("reason"),
                            rto=render.rto_charts(drills))


def _ack_route(ui: APIRouter, console: Console) -> None:
    """The acknowledge form's target."""
    ctx = console.ctx

    @ui.post("/ack")
    async def ack(request: Request) -> Response:
        """Acknowledge a manual step as the logged-in user (the record `check ack` writes)."""
        form = await read_form(request)
        s, user = await run_in_threadpool(console.user, request, "create", "acks")
        check_csrf(s, form)
        item = registry.MANUAL.get(form.get("item", ""))
        if item is None:
            raise Refused(400, "no such manual checklist step")
        note = form.get("note", "").strip()[:500] or None
        at = datetime.now(UTC).replace(microsecond=0)
        await run_in_threadpool(ctx.reports.store.ack, item.id, item.period, user.name, note, at)
        return RedirectResponse(f"{PREFIX}/?" + urlencode({"acked": item.id}), status_code=303)


def handlers(console: Console) -> dict[type[Exception], Callable[..., Any]]:
    """The app's exception handlers for the console's refusals."""
    async def refused(request: Request, exc: Exception) -> Response:
        status, message = ((exc.status, exc.message) if isinstance(exc, Refused)
                           else (500, "internal error"))
        return console.html("error.html", console.session(request), status=status,
                            page="", status_code=status, message=message)

    async def to_login(request: Request, exc: Exception) -> Response:
        return RedirectResponse(f"{PREFIX}/login", status_code=303)

    return {Refused: refused, ToLogin: to_login}
