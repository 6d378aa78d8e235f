"""`k3sops serve` as a host process against the lab, with a least-privilege ServiceAccount.

The service runs with a token kubeconfig of its own ServiceAccount (a ClusterRole with exactly
the reads the watch cache needs, plus ``create`` on tokenreviews and subjectaccessreviews),
never the admin certificate. Callers are real ServiceAccount tokens: no token -> 401, a token
without ``k3sops.io`` rights -> 403, one bound to ``get`` reports/findings/metrics -> 200 with
the lab objects' findings; ``/metrics`` exposes them; no token reaches the service's log;
SIGTERM -> exit 0.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from kit.serve import PORT_OFFSET, Rbac, Running, accounts, apply, get, kill, start

from conftest import Lab, wait_for

pytestmark = pytest.mark.lab
NS = f"t-serve-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def rbac(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rbac]:
    with accounts(lab, NS, tmp_path_factory.mktemp("serve")) as r:
        yield r


@pytest.fixture(scope="module")
def service(lab: Lab, rbac: Rbac) -> Iterator[Running]:
    s = start(lab, rbac, PORT_OFFSET)
    yield s
    kill(s)


def test_probes_answer_without_a_token_and_readyz_lists_no_lagging_kind(
        service: Running) -> None:
    assert get(service, "/healthz").json() == {"status": "ok"}
    ready = get(service, "/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True and ready.json()["lagging"] == []


def test_no_token_is_401_and_a_token_without_rights_is_403(service: Running) -> None:
    for path in ("/api/v1/report", "/api/v1/findings", "/metrics"):
        r = get(service, path)
        assert r.status_code == 401, (path, r.text)
        assert "bearer token" in r.json()["error"]
    assert get(service, "/api/v1/report", "not-a-real-token").status_code == 401
    denied = get(service, "/api/v1/report", service.tokens["nobody"])
    assert denied.status_code == 403, denied.text
    message = denied.json()["error"]
    assert f"system:serviceaccount:{NS}:nobody may not get reports.k3sops.io" in message
    # the reader may get reports, findings and metrics, nothing else
    assert get(service, "/api/v1/alerts", service.tokens["reader"]).status_code == 403


def test_a_reader_gets_the_report_with_the_lab_s_findings_and_metrics_show_them(
        service: Running) -> None:
    r = get(service, "/api/v1/report?period=daily", service.tokens["reader"])
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["summary"]["checks_run"] > 10
    assert {s["name"]: s["ok"] for s in report["sources"]}["kubernetes"] is True
    mine = [(f["check"], f["resource"]["name"]) for f in report["findings"]
            if f["resource"].get("namespace") == NS]
    assert ("service-no-endpoints", "nobody-home") in mine, mine
    findings = get(service, f"/api/v1/findings?namespace={NS}&check=service-no-endpoints",
                    service.tokens["reader"]).json()["findings"]
    assert [f["resource"]["name"] for f in findings] == ["nobody-home"]
    metrics = get(service, "/metrics", service.tokens["reader"])
    assert metrics.status_code == 200
    line = next((ln for ln in metrics.text.splitlines()
                 if ln.startswith("k3sops_findings{") and f'namespace="{NS}"' in ln
                 and 'check="service-no-endpoints"' in ln), None)
    assert line is not None and line.endswith(" 1.0"), metrics.text[:2000]
    assert 'k3sops_cache_synced{kind="pods"} 1.0' in metrics.text
    assert "k3sops_health_score{period=\"daily\"}" in metrics.text


def test_backups_and_environments_without_their_sections_say_why(service: Running) -> None:
    # the lab's platform.yaml has neither a backup: nor a gitops: section (the present case is
    # tested in tests/unit/test_serve_views.py on a real restic repository and git remote)
    for path, key, section in (("/api/v1/backups", "targets", "backup:"),
                               ("/api/v1/environments", "apps", "gitops:")):
        assert get(service, path).status_code == 401
        denied = get(service, path, service.tokens["nobody"])
        assert denied.status_code == 403, denied.text
        assert f"may not get {path.rsplit('/', 1)[1]}.k3sops.io" in denied.json()["error"]
        r = get(service, path, service.tokens["reader"])
        assert r.status_code == 200, r.text
        assert r.json()[key] == [] and section in r.json()["reason"]


def test_an_object_created_later_is_judged_from_the_cache(service: Running, lab: Lab) -> None:
    apply(lab, [{"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": "late-comer", "namespace": NS},
                  "spec": {"selector": {"app": "late"}, "ports": [{"port": 80}]}}])

    def seen() -> bool:
        found = get(service, f"/api/v1/findings?namespace={NS}&check=service-no-endpoints",
                     service.tokens["reader"]).json()["findings"]
        return "late-comer" in {f["resource"]["name"] for f in found}
    assert wait_for(seen, timeout=30, every=0.5)


def test_a_reader_diagnoses_an_object_from_the_cache(service: Running) -> None:
    r = get(service, f"/api/v1/diagnose/service/{NS}/nobody-home", service.tokens["reader"])
    assert r.status_code == 200, r.text
    diagnosis = r.json()
    assert diagnosis["target"] == f"services/{NS}/nobody-home"
    assert "service-no-endpoints" in json.dumps(diagnosis)
    assert get(service, f"/api/v1/diagnose/service/{NS}/nobody-home",
                service.tokens["nobody"]).status_code == 403
    assert get(service, f"/api/v1/diagnose/gizmo/{NS}/x",
                service.tokens["reader"]).status_code == 404


def test_once_records_a_run_the_service_s_history_then_lists(
        lab: Lab, rbac: Rbac, service: Running) -> None:
    env = {k: v for k, v in lab.env.items() if k not in ("K3SOPS_CONFIG", "KUBECONFIG")}
    once = subprocess.run(
        [sys.executable, "-m", "k3sops", "-c", str(rbac.platform), "--kubeconfig",
         str(rbac.kubeconfig), "serve", "--once", "--state-dir",
         str(rbac.tmp / f"state-{PORT_OFFSET}")], env=env, capture_output=True, text=True,
        timeout=180)
    assert once.returncode == 0, once.stderr
    summary = json.loads(once.stdout)
    assert summary["synced"] is True
    assert summary["summary"]["period"] == "daily" and summary["summary"]["checks_run"] > 10
    for token in rbac.tokens.values():
        assert token not in once.stdout + once.stderr
    r = get(service, "/api/v1/history?limit=5", service.tokens["reader"])
    assert r.status_code == 200, r.text
    runs = r.json()["runs"]
    assert runs and runs[0]["period"] == "daily"
    assert runs[0]["summary"]["checks_run"] == summary["summary"]["checks_run"]


def test_sigterm_exits_0_and_no_token_is_in_the_log(lab: Lab, rbac: Rbac) -> None:
    s = start(lab, rbac, PORT_OFFSET + 1)
    try:
        assert get(s, "/api/v1/report", s.tokens["reader"]).status_code == 200
        assert get(s, "/api/v1/report", s.tokens["nobody"]).status_code == 403
        assert get(s, "/metrics", "not-a-real-token").status_code == 401
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(60) == 0, s.log.read_text()
    finally:
        kill(s)
    text = s.log.read_text()
    assert "GET /api/v1/report" in text  # the access log was written
    assert "k3sops serve: stopped" in text
    for name, token in s.tokens.items():
        assert token not in text, f"the {name} token is in the service's log"
    assert "not-a-real-token" not in text


def _apiserver_pid(lab: Lab) -> int:
    from k3sops.lab import procs

    return next(r.pid for r in procs.running(lab.layout) if r.name == "apiserver" and r.alive)


def _start_apiserver(lab: Lab) -> None:
    from k3sops.lab import pki, procs, runner

    p = pki.Pki(lab.layout.pki_dir)
    spec = runner._specs(lab.layout, lab.binaries, p, lab.layout.run_dir / "kwok.yaml")[
        "apiserver"]
    proc = procs.start(lab.layout, spec)
    procs.wait_ready(lab.layout, spec, proc, ca=p.crt("ca"), cert=(p.crt("admin"),
                                                                  p.key("admin")))


def test_the_api_server_restarting_makes_readyz_false_then_the_cache_resyncs(
        lab: Lab, rbac: Rbac) -> None:
    from k3sops.lab import procs

    s = start(lab, rbac, PORT_OFFSET + 2)
    try:
        procs.stop(lab.layout, "apiserver", _apiserver_pid(lab))
        try:
            def lagging() -> bool:
                r = get(s, "/readyz")
                return r.status_code == 503 and bool(r.json()["lagging"])
            assert wait_for(lagging, timeout=60, every=0.5), get(s, "/readyz").text
            # no review possible meanwhile: 503, not a 401 that would blame the caller
            down = get(s, "/api/v1/report", s.tokens["reader"])
            assert down.status_code == 503, down.text
            assert "could not review" in down.json()["error"]
            assert s.proc.poll() is None
        finally:
            _start_apiserver(lab)

        def ready() -> bool:
            return get(s, "/readyz").status_code == 200
        assert wait_for(ready, timeout=90, every=0.5), get(s, "/readyz").text
        r = get(s, "/api/v1/report", s.tokens["reader"])
        assert r.status_code == 200, r.text
        assert {x["name"]: x["ok"] for x in r.json()["sources"]}["kubernetes"] is True
        assert ("service-no-endpoints", "nobody-home") in [
            (f["check"], f["resource"]["name"]) for f in r.json()["findings"]
            if f["resource"].get("namespace") == NS]
        metrics = get(s, "/metrics", s.tokens["reader"]).text
        relists = [ln for ln in metrics.splitlines()
                   if ln.startswith('k3sops_cache_relists{kind="pods"}')]
        assert relists and float(relists[0].split()[-1]) >= 1, relists
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(60) == 0, s.log.read_text()
    finally:
        kill(s)
