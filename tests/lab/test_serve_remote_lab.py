"""`k3sops check --server URL`: the CLI reads a running `k3sops serve` on the lab.

The service runs as in test_serve_lab (its own least-privilege ServiceAccount:
tests/lab/kit/serve.py); the CLI is given the reader's ServiceAccount token in a file and
must print the same findings as the service's own /api/v1/report; without a token the
service's 401 is the CLI's exit 1 (Unauthorized), with the service's message and no token in
the output.

With ``K3SOPS_RECORD_SERVE=DIR`` the service's answers are written to DIR (how
tests/data/serve_api/ was recorded).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.serve import PORT_OFFSET, Rbac, Running, accounts, get, kill, start

from conftest import Lab

pytestmark = pytest.mark.lab
NS = f"t-serve-remote-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def rbac(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rbac]:
    with accounts(lab, NS, tmp_path_factory.mktemp("serve-remote")) as r:
        yield r


@pytest.fixture(scope="module")
def service(lab: Lab, rbac: Rbac) -> Iterator[Running]:
    s = start(lab, rbac, PORT_OFFSET + 10)  # its own port: another module's may be closing
    yield s
    kill(s)


def _cli(lab: Lab, *args: str, token_file: Path | None = None,
         extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # no KUBECONFIG/K3SOPS_CONFIG: the CLI must not need the cluster with --server
    env = {k: v for k, v in lab.env.items()
           if k not in ("K3SOPS_CONFIG", "KUBECONFIG", "K3SOPS_SERVER_TOKEN")}
    env["HOME"] = str(token_file.parent if token_file else Path("/nonexistent"))
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "k3sops", "check", *args]
    if token_file is not None:
        cmd += ["--token-file", str(token_file)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def _keys(report: dict[str, object]) -> list[tuple[str, str, str | None, str]]:
    # a cluster-scoped finding has no namespace: "" sorts it (None and str do not compare)
    return sorted((f["check"], f["resource"]["kind"], f["resource"].get("namespace") or "",
                   f["resource"]["name"]) for f in report["findings"])  # type: ignore[attr-defined]


def test_check_server_gives_the_service_s_findings(lab: Lab, rbac: Rbac,
                                                   service: Running) -> None:
    token_file = rbac.tmp / "reader.token"
    token_file.write_text(service.tokens["reader"] + "\n")
    # the service answers its kept report; a background run may finish between the two
    # requests, so compare the CLI with the API's answer of the same run (its started_at)
    for _ in range(5):
        direct = get(service, "/api/v1/report?period=daily", service.tokens["reader"])
        assert direct.status_code == 200, direct.text
        out = _cli(lab, "--server", service.url, "-o", "json", token_file=token_file)
        assert out.returncode in (0, 4), out.stderr  # 4: a monitoring source may be down
        report = json.loads(out.stdout)
        if report["summary"]["started_at"] == direct.json()["summary"]["started_at"]:
            break
    assert report["summary"]["started_at"] == direct.json()["summary"]["started_at"]
    assert _keys(report) == _keys(direct.json())
    assert ("service-no-endpoints", "Service", NS, "nobody-home") in _keys(report)
    assert report["summary"]["checks_run"] == direct.json()["summary"]["checks_run"]
    # --fail-on works on the service's report as on a local one
    failing = _cli(lab, "--server", service.url, "--fail-on", "warning", "-o", "json",
                   token_file=token_file)
    assert failing.returncode == 3, failing.stderr
    for text in (out.stdout, out.stderr, failing.stderr):
        assert service.tokens["reader"] not in text
    record = os.environ.get("K3SOPS_RECORD_SERVE")
    if record:
        d = Path(record)
        d.mkdir(parents=True, exist_ok=True)
        (d / "report-daily.json").write_text(json.dumps(direct.json(), indent=1))
        diag = get(service, f"/api/v1/diagnose/service/{NS}/nobody-home",
                    service.tokens["reader"])
        (d / "diagnose-service.json").write_text(json.dumps(diag.json(), indent=1))
        for name, token in (("401", None), ("403", service.tokens["nobody"])):
            r = get(service, "/api/v1/report?period=daily", token)
            (d / f"report-{name}.json").write_text(json.dumps(r.json(), indent=1))


def test_check_server_without_a_token_is_unauthorized(lab: Lab, service: Running,
                                                      ) -> None:
    out = _cli(lab, "--server", service.url, "-o", "json")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "HTTP 401" in out.stderr and "bearer token" in out.stderr, out.stderr
    nobody = _cli(lab, "--server", service.url, "-o", "json",
                  extra_env={"K3SOPS_SERVER_TOKEN": service.tokens["nobody"]})
    assert nobody.returncode == 1, nobody.stderr
    assert "HTTP 403" in nobody.stderr and "may not get reports.k3sops.io" in nobody.stderr
    assert service.tokens["nobody"] not in nobody.stderr + nobody.stdout


def test_diagnose_server_gives_the_service_s_diagnosis(lab: Lab, rbac: Rbac,
                                                       service: Running) -> None:
    token_file = rbac.tmp / "reader.token"
    token_file.write_text(service.tokens["reader"] + "\n")
    direct = get(service, f"/api/v1/diagnose/service/{NS}/nobody-home",
                  service.tokens["reader"])
    assert direct.status_code == 200, direct.text
    out = subprocess.run(
        [sys.executable, "-m", "k3sops", "diagnose", "service/nobody-home", "-n", NS,
         "--server", service.url, "--token-file", str(token_file), "-o", "json"],
        env={k: v for k, v in lab.env.items() if k not in ("K3SOPS_CONFIG", "KUBECONFIG")},
        capture_output=True, text=True, timeout=120)
    assert out.returncode in (0, 4), out.stderr
    got = json.loads(out.stdout)
    assert got["target"] == direct.json()["target"] == f"services/{NS}/nobody-home"
    assert got["findings"] == direct.json()["findings"]
    assert "service-no-endpoints" in out.stdout
