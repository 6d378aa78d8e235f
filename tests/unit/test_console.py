"""The web console through the ASGI app: sessions, CSRF, headers, escaping, ack, pages.

The reviews are the lab API server's recorded answers (servekit: a reader, an acker, users
who may get only reports or only backups); the history store is a
real SQLite store; reports are a fixed CheckReport (the lab test, tests/lab/test_console_lab.py,
judges the lab's cluster in a real browser).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr
from servekit import ACKER, BACKUPS_ONLY, READER, REPORTS_ONLY, USERS, review_client, synced_cache

from k3sops.domain.findings import CheckReport, Finding, ResourceRef, Summary
from k3sops.serve.auth import Authorizer, SharedToken

pytestmark = pytest.mark.unit

EVIL = '<script>alert("x")</script>'
BASE = "https://serve"  # https: the session cookie is Secure, and httpx honours that


def _finding(name: str, message: str, severity: Any = "critical", new: bool = False,
             environment: str | None = "development") -> Finding:
    return Finding(check="pod-crashloop", severity=severity,
                   resource=ResourceRef(kind="Pod", namespace="dev", name=name),
                   message=message, runbook="pod-crashloop", environment=environment, new=new)


class FixedReports:
    """The report the console shows (what Reports.run judges from the cache in the lab)."""

    def __init__(self, store: Any) -> None:
        from k3sops.services.context import Settings

        self.store = store
        self.settings = Settings(None, None, None)
        self.cache = synced_cache()
        self.findings = [_finding("web-1", f"crashed: {EVIL}", new=True),
                         _finding("web-2", "back-off 5m", "warning", environment="production")]

    def run(self, period: str, environment: str | None = None, *,
            record: bool = False) -> CheckReport:
        return CheckReport(summary=Summary(period="daily", environment=None,
                                           started_at="2026-12-05T07:00:00+00:00",
                                           duration_seconds=0.1, total=2, critical=1,
                                           warning=1, info=0, new=1, resolved=0,
                                           health_score=71, checks_run=70),
                           findings=self.findings, sources=[])

    def reports(self) -> dict[str, CheckReport]:
        return {}

    def diagnose(self, kind: str, namespace: str, name: str) -> Any:
        from k3sops.domain.diagnose.model import ChainStep, DiagnosisReport, RootCause

        f = self.findings[0]
        return DiagnosisReport(target=f"pods/{namespace}/{name}", findings=[f],
                               chain=[ChainStep(step="container web", ok=False,
                                                detail=f"CrashLoopBackOff {EVIL}")],
                               root_causes=[RootCause(resource=f.resource, check=f.check,
                                                      severity=f.severity, message=f.message,
                                                      runbook=f.runbook)])


def _app(tmp_path: Path, backups: dict[str, Any] | None = None) -> tuple[Any, Any]:
    from k3sops.adapters.store import SqliteStore
    from k3sops.serve.api import ApiContext
    from k3sops.serve.app import create_app
    from k3sops.serve.metrics import ServiceMetrics
    from k3sops.serve.views import PlatformViews

    store = SqliteStore.open(tmp_path / "history")
    reports = FixedReports(store)
    ctx = ApiContext(reports=reports, authorizer=Authorizer(review_client()),
                     alertmanager=SharedToken(SecretStr("am-token")),
                     metrics=ServiceMetrics(reports.reports, reports.cache.status,
                                            lambda: True),
                     is_leader=lambda: True)
    views = PlatformViews(lambda: backups or {}, lambda: {})
    return create_app(ctx, views=views), store


def _browse(app: Any, flow: Callable[[httpx2.AsyncClient], Awaitable[None]]) -> None:
    """Run ``flow`` with one client (a browser: it keeps its cookies) on the ASGI app."""
    async def go() -> None:
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                      base_url=BASE) as client:
            await flow(client)
    asyncio.run(go())


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


async def _login(client: httpx2.AsyncClient, token: str) -> httpx2.Response:
    form = await client.get("/ui/login")
    assert form.status_code == 200
    return await client.post("/ui/login", data={"csrf": _csrf(form.text), "token": token})


def test_no_session_redirects_every_page_to_the_login(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)

    async def flow(client: httpx2.AsyncClient) -> None:
        for path in ("/ui/", "/ui/findings", "/ui/diagnose/pod/dev/web-1",
                     "/ui/runbooks/pod-crashloop"):
            r = await client.get(path)
            assert (r.status_code, r.headers["location"]) == (303, "/ui/login"), path
        root = await client.get("/")
        assert (root.status_code, root.headers["location"]) == (303, "/ui/")
        # a cookie the server never issued is no session either
        client.cookies.set("k3sops_session", "forged-session-id", domain="serve")
        r = await client.get("/ui/")
        assert (r.status_code, r.headers["location"]) == (303, "/ui/login")
    _browse(app, flow)


def test_login_sets_a_strict_cookie_that_is_not_the_token(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)

    async def flow(client: httpx2.AsyncClient) -> None:
        anonymous = client.cookies.get("k3sops_session")
        r = await _login(client, READER)
        assert (r.status_code, r.headers["location"]) == (303, "/ui/")
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie
        assert READER not in cookie
        session = client.cookies.get("k3sops_session")
        assert session and session != anonymous  # a new id after login: no fixation
        page = await client.get("/ui/")
        assert page.status_code == 200 and USERS[READER] in page.text
        assert READER not in page.text
    _browse(app, flow)


def test_a_bad_token_is_refused_on_the_login_page_without_echoing_it(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)

    async def flow(client: httpx2.AsyncClient) -> None:
        r = await _login(client, "not-a-token-at-all-xyz")
        assert r.status_code == 401
        assert "was not accepted by the API server" in r.text
        assert "not-a-token-at-all-xyz" not in r.text
        assert (await client.get("/ui/")).status_code == 303
    _browse(app, flow)


def test_forged_or_missing_csrf_is_403(tmp_path: Path) -> None:
    app, store = _app(tmp_path)

    async def flow(client: httpx2.AsyncClient) -> None:
        form = await client.get("/ui/login")
        token = _csrf(form.text)
        assert (await client.post("/ui/login", data={"token": ACKER})).status_code == 403
        assert (await client.post("/ui/login", data={"csrf": token + "x",
                                                      "token": ACKER})).status_code == 403
        assert (await client.post("/ui/login", data={"csrf": token,
                                                      "token": ACKER})).status_code == 303
        page = await client.get("/ui/")
        good = _csrf(page.text)
        assert good != token  # a new session, a new CSRF token
        item = {"item": "review-overnight-incidents", "note": "done"}
        wrong = good[:-1] + ("B" if good.endswith("A") else "A")  # one character off
        for sent in ({}, {"csrf": ""}, {"csrf": token}, {"csrf": wrong}):
            r = await client.post("/ui/ack", data={**item, **sent})
            assert r.status_code == 403, sent
        assert store.acks(datetime.now(UTC)) == {}  # nothing was recorded
        assert (await client.post("/ui/logout", data={})).status_code == 403
        assert (await client.get("/ui/")).status_code == 200  # still logged in
        r = await client.post("/ui/logout", data={"csrf": good})
        assert (r.status_code, r.headers["location"]) == (303, "/ui/login")
        assert (await client.get("/ui/")).status_code == 303
    _browse(app, flow)


def test_pages_carry_a_strict_csp_and_no_inline_script(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)

    async def flow(client: httpx2.AsyncClient) -> None:
        pages = [await client.get("/ui/login")]
        await _login(client, READER)
        for path in ("/ui/", "/ui/findings", "/ui/diagnose/pod/dev/web-1",
                     "/ui/runbooks/pod-crashloop", "/ui/alerts", "/ui/backups"):
            pages.append(await client.get(path))
        for r in pages:
            assert r.status_code == 200, r.url
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert "<script" not in r.text.lower(), r.url
            assert ' style="' not in r.text and "<style" not in r.text, r.url
            # no third-party request: every src/href is on this origin
            for ref in re.findall(r'(?:src|href)="([^"]*)"', r.text):
                assert not re.match(r"(?i)^(https?:)?//", ref), (r.url, ref)
        css = await client.get("/ui/static/console.css")
        assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    _browse(app, flow)


def test_a_finding_message_with_a_script_tag_is_shown_as_text(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)

    async def flow(client: httpx2.AsyncClient) -> None:
        await _login(client, READER)
        for path in ("/ui/", "/ui/findings", "/ui/diagnose/pod/dev/web-1"):
            r = await client.get(path)
            assert EVIL not in r.text, path
            assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in r.text, path
    _browse(app, flow)


def test_findings_filter_by_query_and_link_diagnosis_runbook_and_plan(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)

    async def flow(client: httpx2.AsyncClient) -> None:
        await _login(client, READER)
        everything = (await client.get("/ui/findings")).text
        assert "2 of 2 findings" in everything
        prod = (await client.get("/ui/findings?environment=production")).text
        assert "1 of 2 findings" in prod and "web-2" in prod and "web-1" not in prod
        crit = (await client.get("/ui/findings?severity=critical&namespace=dev")).text
        assert "web-1" in crit and "web-2" not in crit
        assert 'href="/ui/diagnose/pod/dev/web-1"' in crit
        assert 'href="/ui/runbooks/pod-crashloop"' in crit
        diagnosis = (await client.get("/ui/diagnose/pod/dev/web-1")).text
        assert "Root causes" in diagnosis and "k3sops logs web-1 -n dev --previous" in diagnosis
        runbook = (await client.get("/ui/runbooks/pod-crashloop")).text
        assert "<h1>" in runbook and "<pre><code" in runbook
        assert (await client.get("/ui/runbooks/no-such-book")).status_code == 404
    _browse(app, flow)


def test_pages_ask_rbac_for_each_resource(tmp_path: Path) -> None:
    # a user who may read reports only: findings and diagnoses are refused, alerts left out
    app, _ = _app(tmp_path)

    async def flow(client: httpx2.AsyncClient) -> None:
        await _login(client, REPORTS_ONLY)
        overview = await client.get("/ui/")
        assert overview.status_code == 200
        assert "You may not read alerts" in overview.text
        assert 'action="/ui/ack"' not in overview.text  # no acknowledge form without create
        r = await client.get("/ui/findings")
        assert r.status_code == 403
        assert f"{USERS[REPORTS_ONLY]} may not get findings.k3sops.io" in r.text
        assert (await client.get("/ui/diagnose/pod/dev/web-1")).status_code == 403
    _browse(app, flow)


def test_acknowledge_writes_the_check_ack_record_as_the_reviewed_user(tmp_path: Path) -> None:
    app, store = _app(tmp_path)

    async def flow(client: httpx2.AsyncClient) -> None:
        await _login(client, ACKER)
        page = await client.get("/ui/")
        assert "review-overnight-incidents" in page.text
        r = await client.post("/ui/ack", data={"csrf": _csrf(page.text), "by": "mallory",
                                               "item": "review-overnight-incidents",
                                               "note": "all quiet"})
        assert r.status_code == 303
        after = await client.get(r.headers["location"])
        assert "Acknowledged" in after.text
        assert 'value="review-overnight-incidents"' not in after.text  # no longer open
        bad = await client.post("/ui/ack", data={"csrf": _csrf(page.text), "item": "nope"})
        assert bad.status_code == 400
    _browse(app, flow)
    acks = store.acks(datetime.now(UTC).astimezone())
    assert acks["review-overnight-incidents"]["by"] == USERS[ACKER]  # the token's user, not "by"
    assert acks["review-overnight-incidents"]["note"] == "all quiet"


def test_the_overview_draws_the_stored_runs_as_svg_charts(tmp_path: Path) -> None:
    app, store = _app(tmp_path)
    report = FixedReports(store).run("daily")
    for _ in range(3):
        store.record(report)

    async def flow(client: httpx2.AsyncClient) -> None:
        await _login(client, READER)
        page = (await client.get("/ui/")).text
        assert "Trend (last 3 runs)" in page
        assert 'aria-label="Health score of the last 3 runs"' in page
        assert page.count("<circle") == 3  # one dot per run
        assert 'aria-label="Findings by severity over time"' in page
        assert "health 71</title>" in page
    _browse(app, flow)


def test_the_alerts_page_shows_enriched_alerts_with_object_causes_and_runbook(
        tmp_path: Path) -> None:
    from k3sops.adapters.store import AlertRecord

    app, store = _app(tmp_path)
    root = {"resource": {"kind": "Pod", "namespace": "dev", "name": "web-1"},
            "severity": "critical", "message": f"crashed {EVIL}", "check": "pod-crashloop"}
    store.record_alert(AlertRecord(
        fingerprint="f1", starts_at=datetime(2026, 12, 5, 6, 0, tzinfo=UTC),
        alertname="KubePodCrashLooping", received_at=datetime(2026, 12, 5, 6, 1, tzinfo=UTC),
        labels={"severity": "critical", "namespace": "dev", "pod": "web-1"},
        enriched={"annotations": {"summary": f"web-1 restarts {EVIL}"},
                  "object": {"kind": "Pod", "namespace": "dev", "name": "web-1",
                             "found": True},
                  "diagnosis": {"root_causes": [root]},
                  "runbook": {"id": "pod-crashloop", "known": True,
                              "title": "Container in CrashLoopBackOff"}}))

    async def flow(client: httpx2.AsyncClient) -> None:
        await _login(client, READER)
        page = (await client.get("/ui/alerts")).text
        assert "KubePodCrashLooping" in page
        assert 'href="/ui/diagnose/pod/dev/web-1"' in page
        assert 'href="/ui/runbooks/pod-crashloop"' in page
        assert EVIL not in page and "crashed &lt;script&gt;" in page
        resolved = (await client.get("/ui/alerts?state=resolved")).text
        assert "KubePodCrashLooping" not in resolved and "No resolved alert stored." in resolved
    _browse(app, flow)


def test_the_backups_page_marks_a_flagged_target_red_with_its_reasons(tmp_path: Path) -> None:
    targets = [{"kind": "etcd", "target": "etcd", "flagged": False, "reasons": [],
                "newest_status": "Completed", "newest_at": "2026-12-05T06:00:00+00:00",
                "age_seconds": 7200.0, "size": 5 * 1024 * 1024, "verified": True,
                "verified_at": "2026-12-05T06:10:00+00:00", "drill_at": "2026-12-04T05:00:00",
                "drill_ok": True, "drill_seconds": 4.25, "environment": None},
               {"kind": "postgres", "target": "orders", "flagged": True,
                "reasons": ["newest good backup is 30.0h old (over 26h)"],
                "newest_status": "Failed", "newest_at": "2026-12-04T00:00:00+00:00",
                "age_seconds": 108000.0, "size": None, "verified": None, "verified_at": None,
                "drill_at": None, "drill_ok": None, "drill_seconds": None,
                "environment": "production"}]
    app, _ = _app(tmp_path, {"targets": targets})

    async def flow(client: httpx2.AsyncClient) -> None:
        await _login(client, BACKUPS_ONLY)
        r = await client.get("/ui/backups")
        assert r.status_code == 200
        rows = re.findall(r"<tr class=\"([^\"]*)\">", r.text)
        assert rows == ["", "flagged"]
        assert "30.0h old" in r.text and "4.2 s" in r.text and "5.0 MiB" in r.text
        assert (await client.get("/ui/alerts")).status_code == 403  # no get on alerts
    _browse(app, flow)
