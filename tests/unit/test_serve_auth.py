"""`k3sops serve`'s authentication and authorization, and the app's answers for them.

The API server's answers are the lab's, recorded by tests/lab/test_serve_reviews_lab.py with
real ServiceAccount tokens and replayed through a real client (tests/unit/servekit.py); the
lab tests (tests/lab/test_serve_lab.py) run the same live. What is asserted here is the
service's side: 401/403/503, the cache keyed by a digest of the token, nothing of a token in an
answer, the Alertmanager token compared as a whole, probes open, /metrics guarded.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr
from servekit import (
    CACHED_NODES,
    GONE,
    NOBODY,
    NOBODY_USER,
    READER,
    READER_USER,
    RECORDED,
    Reviews,
    asgi_get,
    lagging_cache,
    review_client,
    synced_cache,
    unreachable_client,
)

from k3sops.domain.findings import CheckReport, Summary
from k3sops.serve.auth import AuthFailure, Authorizer, SharedToken, bearer, token_key

pytestmark = pytest.mark.unit

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bearer_reads_only_the_bearer_scheme() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer   abc ") == "abc"
    assert bearer("Basic YWJj") is None
    assert bearer("Bearer ") is None
    assert bearer(None) is None


def test_who_may_do_what_and_the_status_of_each_refusal() -> None:
    auth = Authorizer(review_client())
    assert auth.check(READER, "get", "reports").name == READER_USER
    with pytest.raises(AuthFailure) as no_token:
        auth.check(None, "get", "reports")
    assert no_token.value.status == 401
    with pytest.raises(AuthFailure) as unknown:
        auth.check("someone-else", "get", "reports")
    assert unknown.value.status == 401
    with pytest.raises(AuthFailure) as deleted:  # its ServiceAccount was deleted since
        auth.check(GONE, "get", "reports")
    assert deleted.value.status == 401
    with pytest.raises(AuthFailure) as denied:
        auth.check(NOBODY, "get", "reports")
    assert denied.value.status == 403
    assert f"{NOBODY_USER} may not get reports.k3sops.io" in denied.value.message
    assert "resources [reports], verbs [get]" in denied.value.message
    with pytest.raises(AuthFailure) as down:
        Authorizer(unreachable_client()).check(READER, "get", "reports")
    assert down.value.status == 503
    for failure in (no_token, unknown, deleted, denied, down):
        for token in (READER, NOBODY, GONE):
            assert token not in failure.value.message


def test_answers_are_reused_for_the_ttl_and_keyed_by_a_digest() -> None:
    reviews, clock = Reviews(), Clock()
    auth = Authorizer(review_client(reviews), ttl=10, clock=clock)
    for _ in range(5):
        auth.check(READER, "get", "reports")
    assert auth.reviews == 2  # one TokenReview, one SubjectAccessReview
    auth.check(READER, "get", "metrics")
    assert auth.reviews == 3  # another decision, the same user
    assert all(READER not in key for key in auth._users)
    assert token_key(READER) in auth._users
    clock.now = 10.5
    auth.check(READER, "get", "reports")
    assert auth.reviews == 5
    # a revoked grant (the reader's binding deleted) is seen once the ttl is over
    reviews.revoke()
    clock.now = 21
    with pytest.raises(AuthFailure) as denied:
        auth.check(READER, "get", "reports")
    assert denied.value.status == 403


def test_the_review_names_the_user_s_groups_and_uid() -> None:
    reviews = Reviews()
    Authorizer(review_client(reviews)).check(READER, "get", "reports")
    review, sar = reviews.bodies[0], reviews.bodies[1]
    assert review["kind"] == "TokenReview"
    assert sar["kind"] == "SubjectAccessReview"
    user = next(json.loads(x["response"]["body"])["status"]["user"]
                for x in RECORDED["exchanges"]
                if x["request"]["body"] == {**review, "spec": {"token": "<token:reader>"}})
    assert sar["spec"]["uid"] == user["uid"] != ""
    assert sar["spec"]["groups"] == user["groups"]
    assert "system:authenticated" in sar["spec"]["groups"]
    assert "token" not in str(sar)


def test_alertmanager_s_token_must_match_whole() -> None:
    shared = SharedToken(SecretStr("am-secret-token"))
    shared.check("am-secret-token")
    for wrong in ("am-secret-toke", "am-secret-token2", "", None):
        with pytest.raises(AuthFailure) as e:
            shared.check(wrong)
        assert e.value.status == 401
        assert "am-secret-token" not in e.value.message
    with pytest.raises(AuthFailure):
        SharedToken(None).check("anything")
    assert not SharedToken(SecretStr("")).configured


# --------------------------------------------------------------------------- the app itself


def _app(synced: bool = True, reports: dict[str, CheckReport] | None = None) -> Any:
    from k3sops.serve.api import ApiContext, Reports
    from k3sops.serve.app import create_app
    from k3sops.serve.metrics import ServiceMetrics
    from k3sops.services.context import Settings

    cache = synced_cache() if synced else lagging_cache()
    r = Reports(Settings(None, None, None), cache, None, None)  # type: ignore[arg-type]
    r.latest.update(reports or {})
    ctx = ApiContext(reports=r, authorizer=Authorizer(review_client()),
                     alertmanager=SharedToken(SecretStr("am-token")),
                     metrics=ServiceMetrics(r.reports, cache.status, lambda: True),
                     is_leader=lambda: True)
    return create_app(ctx)


def test_probes_need_no_token_and_readyz_follows_the_cache() -> None:
    assert asgi_get(_app(), "/healthz").json() == {"status": "ok"}
    ready = asgi_get(_app(), "/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    lagging = asgi_get(_app(synced=False), "/readyz")
    assert lagging.status_code == 503
    assert lagging.json()["lagging"] == ["nodes"]


def test_metrics_need_the_right_and_show_the_latest_report() -> None:
    report = CheckReport(summary=Summary(period="daily", started_at="2026-12-05T07:00:00+00:00",
                                         duration_seconds=0.25, total=0, critical=0,
                                         warning=0, info=0, health_score=97, checks_run=70,
                                         environment=None, new=0, resolved=0),
                         findings=[], sources=[])
    app = _app(reports={"daily": report})
    assert asgi_get(app, "/metrics").status_code == 401
    assert asgi_get(app, "/metrics", NOBODY).status_code == 403
    r = asgi_get(app, "/metrics", READER)
    assert r.status_code == 200
    assert 'k3sops_health_score{period="daily"} 97.0' in r.text
    assert 'k3sops_check_duration_seconds{period="daily"} 0.25' in r.text
    assert f'k3sops_cache_objects{{kind="nodes"}} {float(CACHED_NODES)}' in r.text
    assert "k3sops_leader 1.0" in r.text


def test_api_refusals_are_json_and_carry_no_token() -> None:
    app = _app()
    r = asgi_get(app, "/api/v1/findings", NOBODY)
    assert r.status_code == 403
    assert r.json()["error"].startswith(f"{NOBODY_USER} may not get findings.k3sops.io")
    r = asgi_get(app, "/api/v1/report", "Bearer-junk-token")
    assert r.status_code == 401 and "Bearer-junk-token" not in r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert asgi_get(app, "/api/v1/report?period=hourly", READER).status_code == 400


def test_the_webhook_takes_alertmanager_s_token_not_a_user_s() -> None:
    app = _app()
    assert asgi_get(app, "/api/v1/alerts", method="POST", body=b"{}").status_code == 401
    assert asgi_get(app, "/api/v1/alerts", READER, method="POST", body=b"{}").status_code == 401
    # the right token: with no intake wired the service says so instead of dropping alerts
    r = asgi_get(app, "/api/v1/alerts", "am-token", method="POST", body=b"{}")
    assert r.status_code == 503
