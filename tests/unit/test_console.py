"""The web console through the ASGI app: sessions, CSRF, headers, escaping, ack, pages.

The reviews are the lab API server's recorded answers (servekit: a reader, an acker, users
who may get only reports or only backups); the history store is a
real SQLite store; reports are a fixed CheckReport (the lab test, tests/lab/test_console_lab.py,
judges the lab's cluster in a real browser).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr
from servekit import (
    ACKER,
    BACKUPS_ONLY,
    OPERATOR,
    READER,
    REPORTS_ONLY,
    USERS,
    review_client,
    synced_cache,
)

from k3sops.domain.findings import CheckReport, Finding, ResourceRef, Summary
from k3sops.serve.auth import Authorizer, SharedToken

pytestmark = pytest.mark.unit

EVIL = '<script>alert("x")</script>'
UNREACHABLE = "http://127.0.0.1:1"
BASE = "https://serve"  # https: the session cookie is Secure, and httpx honours that


def _finding(name: str, message: str, severity: Any = "critical", new: bool = False,
             environment: str | None = "development") -> Finding:
    return Finding(check="pod-crashloop", severity=severity,
                   resource=ResourceRef(kind="Pod", namespace="dev", name=name),
                   message=message, runbook="pod-crashloop", environment=environment, new=new)


class FixedReports:
    """The report the console shows (what Reports.run judges from the cache in the lab)."""

    def __init__(self, store: Any) -> None:
        from k3sops.config import parse_platform
        from k3sops.services.context import Settings

        self.store = store
        # Prometheus and Alertmanager where nobody listens (a real refused connection, as
        # servekit's unreachable API server): the silences list says it could not be read
        self.settings = Settings(None, None, parse_platform(
            f"name: t\nenvironments: {{development: {{namespaces: [dev]}}}}\nmonitoring:\n"
            f"  prometheus: {{url: '{UNREACHABLE}'}}\n  alertmanager: {{url: '{UNREACHABLE}'}}\n"))
        self.cache = synced_cache()
        self.client = None  # no API server here: Prometheus by service proxy is unreachable
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


def _app(tmp_path: Path, backups: dict[str, Any] | None = None, settings: Any = None,
         environments: Callable[[], dict[str, Any]] | None = None,
         cache: Any = None) -> tuple[Any, Any]:
    from k3sops.adapters.store import SqliteStore
    from k3sops.serve.api import ApiContext
    from k3sops.serve.app import create_app
    from k3sops.serve.metrics import ServiceMetrics
    from k3sops.serve.views import PlatformViews

    store = SqliteStore.open(tmp_path / "history")
    reports = FixedReports(store)
    if settings is not None:
        reports.settings = settings
    if cache is not None:
        reports.cache = cache
    ctx = ApiContext(reports=reports, authorizer=Authorizer(review_client()),
                     alertmanager=SharedToken(SecretStr("am-token")),
                     metrics=ServiceMetrics(reports.reports, reports.cache.status,
                                            lambda: True),
                     is_leader=lambda: True)
    views = PlatformViews(lambda: backups or {}, environments or (lambda: {}), ttl=0.0)
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


def test_two_replicas_on_one_store_share_login_and_sessions(tmp_path: Path) -> None:
    """Two services on one store (as two replicas on one PostgreSQL): a browser moved from
    one to the other (no client affinity, a failover) stays logged in; logout ends it on both;
    the store holds no session id."""
    a, _ = _app(tmp_path)
    b, _ = _app(tmp_path)

    async def flow() -> None:
        transports = {name: httpx2.ASGITransport(app=app) for name, app in (("a", a), ("b", b))}
        async with httpx2.AsyncClient(transport=transports["a"], base_url=BASE) as on_a, \
                httpx2.AsyncClient(transport=transports["b"], base_url=BASE) as on_b:
            form = await on_a.get("/ui/login")  # the form from one replica ...
            on_b.cookies = on_a.cookies         # (one browser: one cookie jar)
            r = await on_b.post("/ui/login", data={"csrf": _csrf(form.text), "token": READER})
            assert (r.status_code, r.headers["location"]) == (303, "/ui/")  # ... posted to b
            session = on_b.cookies.get("k3sops_session")
            assert session and on_b.cookies.get("k3sops_login") is None
            on_a.cookies = on_b.cookies
            page = await on_a.get("/ui/")
            assert page.status_code == 200 and USERS[READER] in page.text
            assert session.encode() not in (tmp_path / "history" / "k3sops.db").read_bytes()
            r = await on_a.post("/ui/logout", data={"csrf": _csrf(page.text)})
            assert r.status_code == 303
            on_b.cookies.set("k3sops_session", session, domain="serve")  # a stolen copy
            assert (await on_b.get("/ui/")).status_code == 303
    asyncio.run(flow())


def test_sessions_expire_when_idle_or_old_and_the_store_is_pruned(tmp_path: Path) -> None:
    from k3sops.adapters.store import SqliteStore
    from k3sops.serve.auth import User
    from k3sops.serve.console import sessions

    now = [datetime(2026, 12, 5, 8, tzinfo=UTC)]
    with SqliteStore.open(tmp_path / "state") as store:
        s = sessions.Sessions(store, clock=lambda: now[0])
        alice = User(name="alice", groups=("system:authenticated",))
        idle = s.new(alice)
        got = s.get(idle.id)
        assert got is not None and got.user == alice and got.csrf == idle.csrf
        assert s.get(idle.id + "x") is None
        now[0] += sessions.IDLE + timedelta(seconds=1)
        assert s.get(idle.id) is None  # idle an hour: gone, and dropped from the store
        assert store.session_get(sessions.store_key(idle.id)) is None
        busy = s.new(alice)
        for i in range(17):  # used every 30 minutes: never idle, but 8.5 hours old at the end
            now[0] += timedelta(minutes=30)
            assert (s.get(busy.id) is None) == (i == 16)
        stale = s.new(alice)
        now[0] += sessions.PRUNE_EVERY + sessions.IDLE
        s.new(alice)  # a login prunes the expired ones (at most every PRUNE_EVERY)
        assert store.session_get(sessions.store_key(stale.id)) is None


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
    app, store = _app(tmp_path, {"targets": targets})
    now = datetime.now(UTC).replace(microsecond=0)
    for days, ok, seconds in ((3, True, 4.0), (2, False, 9.5), (1, True, 4.25)):
        store.record_restore_drill("etcd", "etcd", ok, now - timedelta(days=days), seconds)

    async def flow(client: httpx2.AsyncClient) -> None:
        await _login(client, BACKUPS_ONLY)
        r = await client.get("/ui/backups")
        assert r.status_code == 200
        rows = re.findall(r"<tr class=\"([^\"]*)\">", r.text)
        assert rows == ["", "flagged"]
        assert "30.0h old" in r.text and "4.2 s" in r.text and "5.0 MiB" in r.text
        # the drills' RTO over time: one chart per target, a dot per drill, the failed red
        charts = re.findall(r'<svg class="chart rto".*?</svg>', r.text, re.S)
        assert len(charts) == 1 and "etcd etcd: 3 drills" in charts[0]
        dots = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="4" class="(rto-\w+)">',
                          charts[0])
        assert [c for _, _, c in dots] == ["rto-ok", "rto-failed", "rto-ok"]
        xs, ys = [float(x) for x, _, _ in dots], [float(y) for _, y, _ in dots]
        assert xs == sorted(xs) and ys[1] < ys[2] < ys[0]  # 9.5 s highest, 4.0 s lowest
        # the axis' ticks say what their lines are: 0, 5 and 10 s for a 9.5 s peak
        ticks = re.findall(r'y1="([\d.]+)"[^>]*class="grid"/><text[^>]*>([^<]+)</text>',
                           charts[0])
        assert [t for _, t in ticks] == ["0 s", "5 s", "10 s"]
        top = float(ticks[2][0]) + (float(ticks[0][0]) - float(ticks[2][0])) * (1 - 9.5 / 10)
        assert abs(ys[1] - top) < 0.2
        assert (await client.get("/ui/alerts")).status_code == 403  # no get on alerts
    _browse(app, flow)


def _gitops(tmp_path: Path, approvers: list[str]) -> tuple[Any, Callable[[], dict[str, Any]]]:
    """A real GitOps repository (bare remote) whose production needs 2 of ``approvers``; the
    settings and the ``/api/v1/environments`` body computed by the services on it (the
    running versions are given: no cluster here)."""
    from k3sops.adapters import git
    from k3sops.config import parse_platform
    from k3sops.services import gitops as svc
    from k3sops.services.context import Settings
    from k3sops.services.env.overview import next_promotions
    from k3sops.services.env.status import AppEnvStatus, env_list

    bare = tmp_path / "remote.git"
    git.init_remote(bare, "main")
    text = f"""
name: t
environments:
  development: {{namespaces: [dev], promotion: {{policy: auto}}}}
  staging: {{namespaces: [stg], promotion: {{policy: manual}}}}
  production: {{namespaces: [prod], promotion: {{policy: approval,
                approvers: {json.dumps(approvers)}, required_approvals: 2}}}}
gitops: {{repo: {bare}, branch: main, push: direct, deploy: none}}
"""
    settings = Settings(kubeconfig=None, context=None, platform=parse_platform(text))
    svc.init_repo(settings, tmp_path / "tree", ["web=example/web:1.0"], push=str(bare))

    def body() -> dict[str, Any]:
        ctx = svc.open_context(settings, {}, tmp_path, tmp_path / "reader", user="reader")
        rows = [AppEnvStatus(app="web", env=env, namespace=env, git_version=v,
                             running_version=r, in_sync=v == r, rollout="complete")
                for env, v, r in (("development", "1.2", "1.2"), ("staging", "1.2", "1.2"),
                                  ("production", "1.0", "0.9"))]
        return {**env_list(ctx).model_dump(mode="json"),
                "apps": [r.model_dump(mode="json") for r in rows],
                "next_promotions": [n.model_dump(mode="json")
                                    for n in next_promotions(ctx, rows)], "reason": None}
    return settings, body


def test_approve_records_env_approve_as_the_reviewed_user(tmp_path: Path,
                                                          monkeypatch: Any) -> None:
    monkeypatch.setenv("K3SOPS_STATE_DIR", str(tmp_path / "state"))
    operator = USERS[OPERATOR]
    settings, body = _gitops(tmp_path, [operator, "cto"])
    app, _ = _app(tmp_path, settings=settings, environments=body)

    async def flow(client: httpx2.AsyncClient) -> None:
        await _login(client, OPERATOR)
        page = await client.get("/ui/environments")
        assert page.status_code == 200
        assert "approvals 0 of 2" in page.text and 'action="/ui/approve"' in page.text
        cells = re.findall(r'<td class="(in-sync|drift)">\s*<span class="ver">([^<]*)</span> / '
                           r'<span class="ver">([^<]*)</span>', page.text)
        assert cells == [("in-sync", "1.2", "1.2"), ("in-sync", "1.2", "1.2"),
                         ("drift", "1.0", "0.9")]
        form = {"csrf": _csrf(page.text), "app": "web", "target": "production",
                "version": "1.2", "by": "cto", "note": "load test passed"}
        assert (await client.post("/ui/approve", data={**form, "csrf": "x"})).status_code \
            == 403
        r = await client.post("/ui/approve", data=form)
        assert r.status_code == 303, r.text
        after = await client.get(r.headers["location"])
        assert f"Approved web 1.2 into production as {operator}" in after.text
        # cto's name in the form was ignored: the one approval is the operator's
        assert f"approvals 1 of 2: {operator}, 1 missing" in after.text
    _browse(app, flow)
    audit = [json.loads(line) for line in
             (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    assert [(a["who"], a["what"]["action"], a["result"], a["what"]["detail"]["by"])
            for a in audit] == [(operator, "approve", "ok", operator)]


def test_approve_needs_the_environment_to_list_the_user_besides_rbac(
        tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("K3SOPS_STATE_DIR", str(tmp_path / "state"))
    settings, body = _gitops(tmp_path, ["ops-lead", "cto"])
    app, _ = _app(tmp_path, settings=settings, environments=body)

    async def flow(client: httpx2.AsyncClient) -> None:
        await _login(client, OPERATOR)  # RBAC lets it create approvals; production does not list it
        page = await client.get("/ui/environments")
        r = await client.post("/ui/approve", data={"csrf": _csrf(page.text), "app": "web",
                                                   "target": "production", "version": "1.2"})
        assert r.status_code == 403
        assert f"{USERS[OPERATOR]} may not approve promotions into production" in r.text
    _browse(app, flow)


def test_approve_is_refused_without_the_grant_and_the_form_is_not_shown(
        tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("K3SOPS_STATE_DIR", str(tmp_path / "state"))
    settings, body = _gitops(tmp_path, [USERS[READER], "cto"])
    app, _ = _app(tmp_path, settings=settings, environments=body)

    async def flow(client: httpx2.AsyncClient) -> None:
        await _login(client, READER)
        page = await client.get("/ui/environments")
        assert 'action="/ui/approve"' not in page.text
        assert "You may not approve" in page.text
        r = await client.post("/ui/approve", data={"csrf": _csrf(page.text), "app": "web",
                                                   "target": "production", "version": "1.2"})
        assert r.status_code == 403
        assert f"{USERS[READER]} may not create approvals.k3sops.io" in r.text
        assert "resources [approvals], verbs [create]" in r.text
    _browse(app, flow)
    assert not (tmp_path / "state" / "audit.jsonl").exists()


class LabObjects:
    """The service's watch cache, asked for nodes and pods: the lab's, as captured in
    tests/data/lab-nodes.json and lab-pods.json (6 nodes, 46 pods)."""

    def __init__(self) -> None:
        data = Path(__file__).parent.parent / "data"
        self.cache = synced_cache()
        self.objects = {k: json.loads((data / f"lab-{k}.json").read_text())["items"]
                        for k in ("nodes", "pods")}

    def snapshot(self, now: datetime, kinds: Any = None) -> Any:
        from k3sops.domain.snapshot import ClusterSnapshot

        return ClusterSnapshot(now=now, objects=self.objects)

    def __getattr__(self, name: str) -> Any:  # status, in_sync, source: the real cache's
        return getattr(self.cache, name)


def test_the_capacity_page_shows_requests_per_node_and_environment(tmp_path: Path) -> None:
    from k3sops.config import parse_platform
    from k3sops.services.context import Settings

    settings = Settings(None, None, parse_platform(
        "name: t\nenvironments:\n  development: {namespaces: [development]}\n"
        "  production: {namespaces: [production]}\n"))
    app, _ = _app(tmp_path, settings=settings, cache=LabObjects())

    async def flow(client: httpx2.AsyncClient) -> None:
        await _login(client, READER)
        r = await client.get("/ui/capacity")
        assert r.status_code == 200, r.text
        rows = re.findall(r'<tr><th scope="row">([^<]*?)(?: <span[^>]*>([^<]*)</span>)?</th>'
                          r'\s*<td class="num" data-label="Pods">(\d+)</td>', r.text)
        # bound Pending/Running pods only (the Failed one and the unscheduled one are not)
        assert rows[:2] == [("development", "development", "6"),
                            ("production", "production", "4")]
        nodes = rows[2:]
        assert sorted(n for n, _, _ in nodes) == [
            "k3s-agent-1", "k3s-agent-2", "k3s-agent-3", "k3s-server-1", "k3s-server-2",
            "k3s-server-3"]
        assert nodes[0][0] == "k3s-server-1"  # the fullest first: 0.40 of 4 cores
        assert "0.40 cores of 4.00 cores (10%)" in r.text
        assert "CPU 2.15 cores of 36 cores" in r.text  # the schedulable nodes' totals
        assert "prometheus could not be read" in r.text and "no forecast" in r.text
        r = await client.get("/ui/capacity?window=1h&step=1m")
        assert r.status_code == 200 and 'value="1h"' in r.text
        r = await client.get("/ui/capacity?window=7d)[1h")  # not a duration: not a query
        assert r.status_code == 400 and "window must be a Prometheus duration" in r.text
    _browse(app, flow)

    async def refused(client: httpx2.AsyncClient) -> None:
        await _login(client, REPORTS_ONLY)
        r = await client.get("/ui/capacity")
        assert r.status_code == 403 and "resources [capacity], verbs [get]" in r.text
    _browse(app, refused)


def test_the_forecast_chart_draws_the_fitted_history_to_the_full_line() -> None:
    from k3sops.domain.capacity import Usage, forecast
    from k3sops.serve.console.capacity import forecast_chart

    now = 1_700_000_000.0
    history = [(now - 3600 * (24 - i), 2.0 + 0.05 * i) for i in range(25)]
    usage = Usage(allocatable=8.0, requests=3.2)
    f = forecast("cpu", history, usage, 2)
    assert f.status == "ok" and f.days_left is not None
    svg = str(forecast_chart(f, history, usage.allocatable, now))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    points = re.search(r'<polyline points="([^"]+)" class="req-line"', svg)
    assert points and len(points.group(1).split()) == 25
    ys = [float(p.split(",")[1]) for p in points.group(1).split()]
    assert ys == sorted(ys, reverse=True)  # growing requests: each point higher on screen
    assert 'class="full-line"' in svg and 'class="fit-line"' in svg and ">now<" in svg
    assert str(forecast_chart(f, history[:1], 8.0, now)) == ""
    # no date to reach (too few points to forecast): the axis spans the history only
    few = history[-3:]
    short = forecast("cpu", few, usage, 2)
    assert short.status == "no-data"
    xs = re.search(r'<polyline points="([^"]+)" class="req-line"', str(
        forecast_chart(short, few, usage.allocatable, now)))
    assert xs and [float(p.split(",")[0]) for p in xs.group(1).split()][-1] > 500


def test_silence_forms_keep_the_cli_rules_csrf_and_rbac(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)

    async def operator(client: httpx2.AsyncClient) -> None:
        await _login(client, OPERATOR)
        page = await client.get("/ui/alerts")
        assert 'action="/ui/silences"' in page.text  # create: the form
        # get: the list is asked of Alertmanager, which this unit test does not run
        assert "Alertmanager could not be read" in page.text
        csrf = _csrf(page.text)
        ok = {"csrf": csrf, "matchers": "alertname=KubePodCrashLooping", "duration": "2h",
              "comment": "deploy"}
        assert (await client.post("/ui/silences", data={**ok, "csrf": ""})).status_code == 403
        # the CLI's rules, refused before Alertmanager is asked
        r = await client.post("/ui/silences", data={**ok, "matchers": "\n \n"})
        assert r.status_code == 400 and "a silence needs at least one matcher" in r.text
        r = await client.post("/ui/silences", data={**ok, "duration": "forever"})
        assert r.status_code == 400 and "forever" in r.text
        r = await client.post("/ui/silences", data={**ok, "matchers": "alertname"})
        assert r.status_code == 400 and "has no operator" in r.text
        r = await client.post("/ui/silences/expire", data={"csrf": csrf, "id": "not-a-uuid"})
        assert r.status_code == 400  # the CLI's id check, before Alertmanager is asked
    _browse(app, operator)

    async def reader(client: httpx2.AsyncClient) -> None:
        await _login(client, READER)
        page = await client.get("/ui/alerts")
        assert 'action="/ui/silences"' not in page.text
        assert "You may not create silences" in page.text
        csrf = _csrf(page.text)
        r = await client.post("/ui/silences", data={"csrf": csrf, "matchers": "alertname=X",
                                                    "comment": "c"})
        assert r.status_code == 403
        assert f"{USERS[READER]} may not create silences.k3sops.io" in r.text
        r = await client.post("/ui/silences/expire",
                              data={"csrf": csrf, "id": "0b1c2d3e-0000-4000-8000-000000000000"})
        assert r.status_code == 403 and "resources [silences], verbs [delete]" in r.text
    _browse(app, reader)
