"""The console's operating pages in a real browser (Chromium via Playwright) against
`k3sops serve` on the lab: environments and approvals, silences, capacity, backups.

A real GitOps repository (a bare git remote scaffolded by `k3sops gitops init`, staging one
version ahead of production) backs the Environments page. production needs two approvals, by
the reader ServiceAccount (its TokenReview name) or ``ops-lead``. The reader, granted
``create approvals.k3sops.io``, approves from the page: the commit lands in the remote with
the reader's name and the audit log says so. The nobody account, granted only ``get
environments``, sees no form and its POST is refused (403 naming the grant); nothing is
written. The reader creates a silence in the lab's real Alertmanager and expires it from the
Alerts page. A real etcd backup restored twice by `backup verify` gives the Backups page
two measured restore times to draw. Each page is screenshotted at 1280 and 390 px
(kit.browser.shoot).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from kit.browser import browser, login, page_faults, shoot
from kit.serve import PORT_OFFSET, Rbac, Running, accounts, apply, binding, kill, label, start

from conftest import Lab, wait_for

pytestmark = pytest.mark.lab
NS = f"t-console-ops-{uuid.uuid4().hex[:6]}"
OFFSET = PORT_OFFSET + 40  # this module's own service port (lab base + 740)
READER = f"system:serviceaccount:{NS}:reader"
NOBODY = f"system:serviceaccount:{NS}:nobody"
RESTIC_PW = "console-ops-lab-restic-pw-41d9"
PAGES = ("/ui/environments", "/ui/capacity", "/ui/alerts", "/ui/backups")

__all__ = ["browser"]  # the fixture, used by name


def _role(name: str, sa: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": name, "labels": label(NS)}, "rules": rules},
            binding(name, name, sa, NS)]


def _k3sops(lab: Lab, platform: Path, *args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "k3sops", "-c", str(platform), *args],
                       env=lab.env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid",
                           *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture(scope="module")
def rbac(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rbac]:
    """The kit's accounts; the reader may also approve and silence, nobody may only look."""
    with accounts(lab, NS, tmp_path_factory.mktemp("console-ops")) as r:
        k3 = ["k3sops.io"]
        apply(lab, _role(f"{NS}-ops", "reader", [
            {"apiGroups": k3, "resources": ["alerts", "silences", "capacity"], "verbs": ["get"]},
            {"apiGroups": k3, "resources": ["approvals", "silences"], "verbs": ["create"]},
            {"apiGroups": k3, "resources": ["silences"], "verbs": ["delete"]}])
            + _role(f"{NS}-look", "nobody", [
                {"apiGroups": k3, "resources": ["environments"], "verbs": ["get"]}]))
        yield r


@pytest.fixture(scope="module")
def remote(lab: Lab, rbac: Rbac) -> Path:
    """The service's platform file gets a GitOps section; the remote has web 1.0 everywhere
    but staging, which runs 1.1 in git: a promotion into production is pending."""
    remote = rbac.tmp / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch", "main", str(remote)],
                   check=True)
    doc = yaml.safe_load(rbac.platform.read_text())
    for env in doc["environments"].values():
        env.pop("context", None)  # a name in the operator's kubeconfig, not the service's
    doc["environments"]["production"]["promotion"].update(
        {"policy": "approval", "approvers": [READER, "ops-lead"], "required_approvals": 2})
    doc["gitops"] = {"repo": str(remote), "branch": "main", "push": "direct", "deploy": "none"}
    rbac.platform.write_text(yaml.safe_dump(doc, sort_keys=False))
    _k3sops(lab, rbac.platform, "gitops", "init", str(rbac.tmp / "tree"), "--app",
            "web=example/web:1.0", "--push", str(remote))
    work = rbac.tmp / "work"
    _git(rbac.tmp, "clone", "-q", str(remote), str(work))
    values = work / "environments" / "staging" / "values.yaml"
    values.write_text(values.read_text().replace('tag: "1.0"', 'tag: "1.1"', 1))
    _git(work, "commit", "-qam", "staging runs 1.1")
    _git(work, "push", "-q", "origin", "main")
    return remote


@pytest.fixture(scope="module")
def drills(lab: Lab, rbac: Rbac, remote: Path) -> list[float]:
    """A real etcd backup in a repository of this module's own, restored twice by `backup
    verify` (two drills, their measured RTO in the service's history store); the seconds."""
    doc = yaml.safe_load(rbac.platform.read_text())
    base = yaml.safe_load(lab.layout.platform_file.with_name("platform-backup.yaml")
                          .read_text())["backup"]
    doc["backup"] = {"repository": str(rbac.tmp / "repo"), "password_env": "TEST_RESTIC_PW",
                     "binaries": base["binaries"], "etcd": base["etcd"],
                     "metrics_file": str(rbac.tmp / "textfile" / "k3sops_backup.prom"),
                     "work_dir": str(rbac.tmp / "work"), "targets": []}
    rbac.platform.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {**lab.env, "TEST_RESTIC_PW": RESTIC_PW,
           "K3SOPS_STATE_DIR": str(rbac.tmp / f"state-{OFFSET}")}  # the service's store
    subprocess.run(["restic", "init"], env={**env, "RESTIC_REPOSITORY": str(rbac.tmp / "repo"),
                                            "RESTIC_PASSWORD": RESTIC_PW},
                   check=True, capture_output=True, timeout=120)

    def ok(*args: str) -> Any:
        r = subprocess.run([sys.executable, "-m", "k3sops", "-c", str(rbac.platform), "-o",
                            "json", *args], env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
        return json.loads(r.stdout)

    bid = ok("backup", "etcd")["manifest"]["id"]
    seconds = []
    for _ in range(2):
        rec = ok("backup", "verify", bid)["records"][0]
        assert rec["ok"] is True, rec
        seconds.append(float(rec["drill_seconds"]))
    return seconds


@pytest.fixture(scope="module")
def service(lab: Lab, rbac: Rbac, remote: Path, drills: list[float]) -> Iterator[Running]:
    # no K3SOPS_STATE_DIR: the approvals' clone and audit log must follow --state-dir
    s = start(lab, rbac, OFFSET, {"TEST_RESTIC_PW": RESTIC_PW})
    yield s
    kill(s)


def _login(browser: Any, service: Running, token: str) -> Any:
    return login(browser, service.url, token)


@pytest.fixture(scope="module")
def reader(browser: Any, service: Running) -> Iterator[Any]:
    page = _login(browser, service, service.tokens["reader"])
    assert page.url.endswith("/ui/"), page.url
    page.close()
    yield page.context
    page.context.close()


def test_the_environments_page_shows_git_versions_and_the_pending_promotion(
        reader: Any) -> None:
    page = reader.new_page()
    page.goto("/ui/environments")
    assert page.locator("h1").inner_text() == "Environments"
    heads = page.locator("table.versions thead th").all_inner_texts()
    assert heads[1:] == ["development", "staging", "production"], heads
    web = page.locator("table.versions tbody tr:has(th:text-is('web')) td .ver")
    git = web.all_inner_texts()[0::2]
    assert git == ["1.0", "1.1", "1.0"], git
    promo = page.locator(".promotions > li").filter(has_text="into production")
    assert "1.1 from staging" in promo.inner_text()
    assert "approvals 0 of 2" in promo.inner_text()
    shoot(page, "environments")
    page.close()


def test_the_reader_approves_as_its_reviewed_name(reader: Any, rbac: Rbac,
                                                  remote: Path) -> None:
    page = reader.new_page()
    page.goto("/ui/environments")
    promo = page.locator(".promotions > li").filter(has_text="into production")
    promo.get_by_label("Note").fill("console lab test")
    promo.get_by_role("button", name=f"Approve 1.1 as {READER}").click()
    page.wait_for_load_state()
    status = page.locator("p[role=status]").inner_text()
    assert f"Approved web 1.1 into production as {READER}" in status, status
    # the page after the approval counts it (not the answer computed before it)
    promo = page.locator(".promotions > li").filter(has_text="into production")
    assert f"approvals 1 of 2: {READER}, 1 missing" in promo.inner_text()
    shoot(page, "environments-approved")
    page.close()
    # the record `k3sops env approve` writes: in git (the remote) and the audit log
    approvals = yaml.safe_load(subprocess.run(
        ["git", "show", "main:approvals/production.yaml"], cwd=remote,
        capture_output=True, text=True, check=True).stdout)["approvals"]
    assert [(a["app"], a["version"], a["by"], a.get("note")) for a in approvals] == [
        ("web", "1.1", READER, "console lab test")]
    audit = [json.loads(x) for x in
             (rbac.tmp / f"state-{OFFSET}" / "audit.jsonl").read_text().splitlines()]
    assert [(a["who"], a["what"]["action"], a["result"]) for a in audit] == [
        (READER, "approve", "ok")]


def test_nobody_sees_no_approve_form_and_is_refused(browser: Any, service: Running,
                                                    rbac: Rbac) -> None:
    page = _login(browser, service, service.tokens["nobody"])
    page.goto("/ui/environments")
    assert page.locator("h1").inner_text() == "Environments"
    assert page.locator("form[action='/ui/approve']").count() == 0
    assert "You may not approve" in page.locator("main").inner_text()
    csrf = page.locator("form.logout input[name=csrf]").get_attribute("value")
    # a hand-made POST with the session's valid CSRF token: RBAC refuses it
    answer = page.request.post("/ui/approve", form={"csrf": csrf, "app": "web",
                                                    "target": "production", "version": "1.1"})
    assert answer.status == 403
    assert f"{NOBODY} may not create approvals.k3sops.io" in answer.text()
    shoot(page, "environments-nobody")
    page.context.close()
    audit = (rbac.tmp / f"state-{OFFSET}" / "audit.jsonl").read_text()
    assert NOBODY not in audit


def test_the_reader_creates_and_expires_a_silence(reader: Any, lab: Lab) -> None:
    page = reader.new_page()
    page.goto("/ui/alerts")
    mark = f"console-{uuid.uuid4().hex[:6]}"
    page.get_by_label("Matchers, one a line").fill(f"alertname=ConsoleLabTest\nmark={mark}")
    page.get_by_label("Duration").fill("30m")
    page.get_by_label("Why").fill("console lab test")
    page.get_by_role("button", name=f"Silence as {READER}").click()
    page.wait_for_load_state()
    created = page.locator("p[role=status]").inner_text()
    sid = page.locator("p[role=status] code").inner_text()
    assert f"created by {READER}" in created
    am = lab.layout.url("alertmanager")
    silence = httpx2.get(f"{am}/api/v2/silence/{sid}", timeout=30).json()
    assert silence["status"]["state"] == "active" and silence["createdBy"] == READER
    assert {(m["name"], m["value"]) for m in silence["matchers"]} == {
        ("alertname", "ConsoleLabTest"), ("mark", mark)}
    row = page.locator("table.silences tbody tr").filter(has_text=mark)
    assert row.count() == 1
    shoot(page, "alerts-silence")
    row.get_by_role("button", name="Expire").click()
    page.wait_for_load_state()
    assert f"Silence {sid} expired" in page.locator("p[role=status]").inner_text()
    assert httpx2.get(f"{am}/api/v2/silence/{sid}", timeout=30).json()[
        "status"]["state"] == "expired"
    assert page.locator("table.silences tbody tr").filter(has_text=mark).count() == 0
    page.close()


def test_the_capacity_page_shows_the_lab_s_nodes(reader: Any, lab: Lab) -> None:
    page = reader.new_page()
    page.goto("/ui/capacity")
    assert page.locator("h1").inner_text() == "Capacity"
    nodes = json.loads(lab.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    rows = page.locator("#h-nodes ~ .scroll tbody th").all_inner_texts()
    names = {n["metadata"]["name"] for n in nodes}
    assert len(rows) == min(len(names), 100)
    assert {r.split()[0] for r in rows} <= names
    assert page.locator("svg.meter").count() >= 2 * len(rows)
    envs = page.locator("#h-envs ~ .scroll tbody th").all_inner_texts()
    assert any(e.startswith("development") for e in envs), envs
    assert page.locator("section h2", has_text="forecast").count() == 2
    shoot(page, "capacity")
    # an hour sampled every minute: the lab's own history of requests (kube-state-metrics
    # scraped by the lab's Prometheus) is drawn as soon as it has two points
    page.get_by_label("History window").fill("1h")
    page.get_by_label("Step").fill("1m")

    def drawn() -> bool:
        page.get_by_role("button", name="Show").click()
        page.wait_for_load_state()
        return page.locator("svg.chart polyline.req-line").count() == 2

    assert wait_for(drawn, timeout=240, every=15), page.locator("main").inner_text()
    assert "window=1h" in page.url and "step=1m" in page.url
    points = page.locator("svg.chart polyline.req-line").first.get_attribute("points") or ""
    assert len(points.split()) >= 2
    shoot(page, "capacity-forecast")
    page.close()


def test_the_new_pages_keep_contrast_fit_a_phone_and_violate_no_csp(reader: Any) -> None:
    page = reader.new_page()
    assert page_faults(page, PAGES) == []
    page.close()


def test_the_backups_page_draws_the_drills_measured_rto(reader: Any,
                                                        drills: list[float]) -> None:
    page = reader.new_page()
    page.goto("/ui/backups")
    row = page.locator("table.backups tbody tr").filter(has_text="etcd")
    assert "passed" in row.inner_text() and f"{drills[-1]:.1f} s" in row.inner_text()
    chart = page.locator("figure.rto-fig").filter(has_text="etcd")
    assert chart.locator("svg").get_attribute("aria-label") == (
        "Measured restore time of etcd etcd: 2 drills")
    titles = chart.locator("circle.rto-ok title").evaluate_all(
        "els => els.map(e => e.textContent)")
    assert [t.split(": ")[1] for t in titles] == [f"{s:.1f} s, passed" for s in drills]
    shoot(page, "backups-rto")
    page.close()
