"""Two `k3sops serve` replicas on one PostgreSQL store: a console session follows the browser.

Real parts: the lab's PostgreSQL (a fresh database as the shared `state:`), two service
processes under the least-privilege ServiceAccount, Debian's Chromium through Playwright.
Cookies belong to a host, not a port, so one browser reaching the two replicas on two ports
of 127.0.0.1 is what a Service without client affinity does to it: the login on replica A is
answered by replica B; A killed (a failover), B still knows the session; logout on B ends it
for A too (restarted on the same store).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kit.browser import browser, login
from kit.serve import PORT_OFFSET, Rbac, accounts, kill, start

from conftest import Lab
from history_kit import fresh_database
from k3sops.adapters.store.postgres import PostgresStore

pytestmark = pytest.mark.lab
NS = f"t-console-rep-{uuid.uuid4().hex[:6]}"
A, B = PORT_OFFSET + 34, PORT_OFFSET + 35  # this module's own service ports

__all__ = ["browser"]  # the fixture, used by name


@pytest.fixture(scope="module")
def rbac(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rbac]:
    with accounts(lab, NS, tmp_path_factory.mktemp("replicas")) as r, \
            fresh_database(lab) as url:
        PostgresStore.open(url).close()  # migrated once, before the replicas race
        platform = yaml.safe_load(r.platform.read_text())
        platform["state"] = {"database_url": url}
        r.platform.write_text(yaml.safe_dump(platform))
        yield r


def _logged_in(page: Any, url: str) -> bool:
    page.goto(f"{url}/ui/")
    return not page.url.endswith("/ui/login")


def test_a_session_is_served_by_either_replica_and_survives_a_failover(
        lab: Lab, rbac: Rbac, browser: Any) -> None:
    a, b = start(lab, rbac, A), start(lab, rbac, B)
    try:
        page = login(browser, a.url, rbac.tokens["reader"])
        assert page.url == f"{a.url}/ui/", page.url
        assert page.locator(".who").inner_text() == f"system:serviceaccount:{NS}:reader"
        assert _logged_in(page, b.url)  # the other replica knows the session
        kill(a)  # a failover: the browser's next request lands on b
        assert _logged_in(page, b.url)
        assert page.locator(".who").inner_text() == f"system:serviceaccount:{NS}:reader"
        kept = [c for c in page.context.cookies() if c["name"] == "k3sops_session"]
        assert len(kept) == 1
        page.get_by_role("button", name="Log out").click()
        page.wait_for_load_state()
        assert page.url.endswith("/ui/login"), page.url
        assert not [c for c in page.context.cookies() if c["name"] == "k3sops_session"]
        a = start(lab, rbac, A)  # the other replica, back on the same store
        page.context.add_cookies(kept)  # a copy of the cookie taken before the logout
        assert not _logged_in(page, a.url)
        assert not _logged_in(page, b.url)
    finally:
        kill(a)
        kill(b)
