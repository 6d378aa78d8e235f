"""The web console in a real browser: Debian's Chromium driven by Playwright against
`k3sops serve` running on the lab with its least-privilege ServiceAccount.

A reader ServiceAccount (get reports, findings, diagnoses, alerts; create acks) logs in with
its real token, sees the lab's crashloop scenario and the module's Service without endpoints
as findings, filters them, opens the crash-looping pod's diagnosis and its runbook, and
acknowledges a manual checklist step, which lands in the service's history store under the
account's name from the TokenReview. The nobody account is refused. Every page is
screenshotted at 1280 and 390 px into $K3SOPS_ARTIFACTS (default /tmp/k3sops-screenshots).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kit.browser import browser, login, page_faults, shoot
from kit.serve import PORT_OFFSET, Rbac, Running, accounts, apply, binding, kill, label, start

from conftest import Lab, wait_for

pytestmark = pytest.mark.lab
NS = f"t-console-{uuid.uuid4().hex[:6]}"
OFFSET = PORT_OFFSET + 30  # this module's own service port (lab base + 730)
ITEM = "review-overnight-incidents"

__all__ = ["browser"]  # the fixture, used by name


@pytest.fixture(scope="module")
def crashloop(lab: Lab) -> Iterator[set[str]]:
    r = lab.k3sops("lab", "scenario", "apply", "crashloop", timeout=300)
    assert r.returncode == 0, r.stderr
    pods = json.loads(lab.kubectl("-n", "development", "get", "pods", "-l",
                                  "k3sops.io/scenario=crashloop", "-o", "json").stdout)["items"]
    yield {p["metadata"]["name"] for p in pods}
    r = lab.k3sops("lab", "scenario", "reset", timeout=300)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def rbac(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rbac]:
    with accounts(lab, NS, tmp_path_factory.mktemp("console")) as r:
        # the console's reader also reads alerts and acknowledges manual steps
        extra = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                 "metadata": {"name": f"{NS}-console", "labels": label(NS)},
                 "rules": [{"apiGroups": ["k3sops.io"], "resources": ["alerts"],
                            "verbs": ["get"]},
                           {"apiGroups": ["k3sops.io"], "resources": ["acks"],
                            "verbs": ["create"]}]}
        apply(lab, [extra, binding(f"{NS}-console", f"{NS}-console", "reader", NS)])
        yield r


@pytest.fixture(scope="module")
def service(lab: Lab, rbac: Rbac, crashloop: set[str]) -> Iterator[Running]:
    # two `k3sops check` runs into the service's store: the overview's trend
    for _ in range(2):
        lab.k3sops("check", "--state-dir", str(rbac.tmp / f"state-{OFFSET}"), timeout=300)
    s = start(lab, rbac, OFFSET)
    yield s
    kill(s)


def _login(browser: Any, service: Running, token: str) -> Any:
    return login(browser, service.url, token, first="/ui/findings")


def test_the_nobody_account_logs_in_but_is_refused_every_page(
        browser: Any, service: Running) -> None:
    page = _login(browser, service, service.tokens["nobody"])
    assert page.locator("h1").inner_text() == "Not allowed"
    assert f"system:serviceaccount:{NS}:nobody may not get reports.k3sops.io" in (
        page.locator(".error").inner_text())
    shoot(page, "refused")
    page.context.close()


def test_a_wrong_token_stays_on_the_login_page(browser: Any, service: Running) -> None:
    page = _login(browser, service, "not-a-real-token")
    assert page.url.endswith("/ui/login")
    assert "not accepted by the API server" in page.locator(".error").inner_text()
    shoot(page, "login-refused")
    page.context.close()


READER = f"system:serviceaccount:{NS}:reader"


@pytest.fixture(scope="module")
def reader(browser: Any, service: Running) -> Iterator[Any]:
    """The reader's logged-in browser context (each test opens its own pages in it)."""
    page = _login(browser, service, service.tokens["reader"])
    assert page.url.endswith("/ui/"), page.url
    page.close()
    yield page.context
    page.context.close()


def test_the_reader_s_overview_and_its_session_cookie(reader: Any, service: Running) -> None:
    page = reader.new_page()
    page.goto("/ui/")
    assert page.locator(".who").inner_text() == READER
    # the session cookie: HttpOnly, Secure, SameSite=Strict, and not the token
    cookie = next(c for c in reader.cookies() if c["name"] == "k3sops_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert cookie["value"] != service.tokens["reader"]
    assert page.locator(".big").inner_text().endswith("/100")
    assert page.locator("#h-trend").inner_text() == "Trend (last 2 runs)"
    assert page.locator("svg.chart").count() == 2  # the score line and the severity bars
    envs = page.locator("#h-env ~ .scroll tbody th").all_inner_texts()
    assert "development" in envs, envs
    shoot(page, "overview")
    page.close()


def test_the_reader_filters_the_lab_s_findings(reader: Any, crashloop: set[str]) -> None:
    page = reader.new_page()
    page.goto("/ui/findings")
    page.get_by_label("Namespace").select_option("development")
    page.get_by_label("Severity").select_option("critical")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    assert "namespace=development" in page.url and "severity=critical" in page.url
    texts: list[str] = []

    def looping() -> list[str]:
        # the page shows the service's kept report: a change reaches it after the run in
        # progress plus one (seconds on a loaded machine), so reload until it has
        nonlocal texts
        page.reload()
        texts = page.locator("table.findings tbody tr").all_inner_texts()
        return [t for t in texts if "pod-crashloop" in t and any(p in t for p in crashloop)]
    assert wait_for(lambda: bool(looping()), timeout=90, every=2), texts
    assert all("development" in t for t in texts)
    shoot(page, "findings")
    page.goto(f"/ui/findings?namespace={NS}")
    table = page.locator("table.findings").inner_text()
    assert "nobody-home" in table and "service-no-endpoints" in table
    page.close()


def test_the_reader_opens_a_diagnosis_and_its_runbook(reader: Any) -> None:
    page = reader.new_page()
    link = page.locator("table.findings a[href^='/ui/diagnose/pod/development/']")

    def listed() -> bool:
        page.goto("/ui/findings?namespace=development&check=pod-crashloop")
        return link.count() > 0
    assert wait_for(listed, timeout=90, every=2), "no pod-crashloop finding in development"
    link.first.click()
    page.wait_for_load_state()
    assert "Diagnosis of" in page.locator("h1").inner_text()
    roots = page.locator(".roots").inner_text()
    assert "pod-crashloop" in roots, roots
    assert page.locator(".chain li").count() >= 1
    assert "k3sops logs" in page.locator(".evidence").first.inner_text()
    shoot(page, "diagnosis")
    page.locator(".roots a[href^='/ui/runbooks/']").first.click()
    page.wait_for_load_state()
    assert page.locator("article.runbook h1").count() == 1
    assert page.locator("article.runbook pre").count() >= 1
    shoot(page, "runbook")
    page.close()


def test_the_alerts_and_backups_pages_answer_on_the_lab(reader: Any) -> None:
    page = reader.new_page()
    page.goto("/ui/alerts")
    assert page.locator("h1").inner_text() == "Alerts"
    shoot(page, "alerts")
    page.goto("/ui/backups")
    assert page.locator("h1").inner_text() == "Backups"
    # the lab's platform.yaml has no backup: section (platform-backup.yaml has): said so
    assert page.locator("main .card").first.inner_text() == (
        "platform.yaml has no backup: section")
    shoot(page, "backups")
    page.close()


def test_the_reader_acknowledges_a_manual_step_under_the_reviewed_name(
        reader: Any, rbac: Rbac) -> None:
    page = reader.new_page()
    page.goto("/ui/")
    item = page.locator(f"li:has(input[value='{ITEM}'])")
    item.get_by_label("Note").fill("console lab test")
    item.get_by_role("button", name="Acknowledge").click()
    page.wait_for_load_state()
    assert f"Acknowledged {ITEM}" in page.locator(".ok").inner_text()
    assert page.locator(f"input[value='{ITEM}']").count() == 0
    shoot(page, "acknowledged")
    page.close()
    from k3sops.adapters.store import SqliteStore

    # the record `k3sops check ack` writes, by the account the TokenReview named
    with SqliteStore.open(rbac.tmp / f"state-{OFFSET}") as store:
        ack = store.acks(datetime.now(UTC).astimezone())[ITEM]
    assert (ack["by"], ack["note"]) == (READER, "console lab test")


def test_logout_ends_the_session_and_no_token_reaches_the_log(
        browser: Any, service: Running) -> None:
    page = _login(browser, service, service.tokens["reader"])
    page.get_by_role("button", name="Log out").click()
    page.wait_for_load_state()
    assert page.url.endswith("/ui/login")
    page.goto("/ui/")
    assert page.url.endswith("/ui/login")
    page.context.close()
    log = service.log.read_text()
    assert all(t not in log for t in service.tokens.values())


def test_the_pages_keep_contrast_violate_no_csp_and_work_from_the_keyboard(
        reader: Any, browser: Any, service: Running) -> None:
    page = reader.new_page()
    assert page_faults(page, ("/ui/", "/ui/findings", "/ui/findings?namespace=development",
                              "/ui/runbooks/pod-crashloop", "/ui/alerts", "/ui/backups")) == []
    page.close()
    # the login works from the keyboard alone: the skip link, the home link, the token, Enter
    context = browser.new_context(base_url=service.url)
    login = context.new_page()
    login.goto("/ui/login")
    order = []
    for _ in range(3):
        login.keyboard.press("Tab")
        order.append(login.evaluate("document.activeElement.id || "
                                    "document.activeElement.textContent"))
    assert order == ["Skip to content", "k3sops", "token"]
    login.keyboard.type(service.tokens["reader"])
    login.keyboard.press("Enter")
    login.wait_for_url("**/ui/")
    assert login.locator(".who").inner_text() == READER
    context.close()
