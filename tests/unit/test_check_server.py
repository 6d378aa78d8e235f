"""`k3sops check --server URL` against a real local HTTP server replaying the service's answers.

The answers in tests/data/serve_api/ were recorded from `k3sops serve` on the lab
(tests/lab/test_serve_remote_lab.py with K3SOPS_RECORD_SERVE); an unknown token's 401 and the
503 of a service whose API server is down are the real service app's (tests/unit/servekit.py).
The server here is a real socket server: the CLI's adapter, its headers and its error mapping
run as they do against the service.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from servekit import JsonServer, asgi_get, lagging_cache, review_client, unreachable_client

from k3sops.cli import tree

pytestmark = pytest.mark.unit

DATA = Path(__file__).parents[1] / "data" / "serve_api"
TOKEN = "reader-token-abc123"  # made up: what the fake service accepts
NOBODY = "nobody-token-xyz789"


@dataclass
class Fake:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int | None = None
    """Force this status (with a recorded-shaped error body) for every request."""


def _token_kubeconfig(path: Path) -> Path:
    """A kubeconfig at ``path`` whose user has the bearer token ``TOKEN`` (nobody listens)."""
    path.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: l\n  cluster:\n"
        "    server: https://127.0.0.1:1\nusers:\n- name: u\n  user:\n"
        f"    token: {TOKEN}\ncontexts:\n- name: c\n  context: {{cluster: l, user: u}}\n"
        "current-context: c\n")
    return path


def _json(name: str) -> Any:
    return json.loads((DATA / name).read_text())


@functools.cache
def _service_answer(token: str, down: bool) -> tuple[int, Any]:
    """The real service app's answer to /api/v1/report when its API server is unreachable
    (``down``: the token cannot be reviewed) or does not know ``token`` (recorded reviews)."""
    from pydantic import SecretStr

    from k3sops.serve.api import ApiContext, Reports
    from k3sops.serve.app import create_app
    from k3sops.serve.auth import Authorizer, SharedToken
    from k3sops.serve.metrics import ServiceMetrics
    from k3sops.services.context import Settings

    cache = lagging_cache()
    reports = Reports(Settings(None, None, None), cache, None, None)  # type: ignore[arg-type]
    client = unreachable_client() if down else review_client()
    ctx = ApiContext(reports=reports, authorizer=Authorizer(client),
                     alertmanager=SharedToken(SecretStr("am")),
                     metrics=ServiceMetrics(reports.reports, cache.status, lambda: True),
                     is_leader=lambda: True)
    r = asgi_get(create_app(ctx), "/api/v1/report", token)
    return r.status_code, r.json()


def _answer(state: Fake, path: str, auth: str | None) -> tuple[int, Any]:
    """What the service answered on the lab for this request (recorded), or what the real
    service app answers (an unknown token; its API server down: 503)."""
    if state.status == 503:
        return _service_answer(TOKEN, down=True)
    if auth is None:
        return 401, _json("report-401.json")
    if auth == f"Bearer {NOBODY}":
        return 403, _json("report-403.json")
    if auth != f"Bearer {TOKEN}":
        return _service_answer((auth or "").removeprefix("Bearer "), down=False)
    recorded = {"/api/v1/report": "report-daily.json",
                "/api/v1/diagnose/service": "diagnose-service.json"}
    for prefix, name in recorded.items():
        if path.startswith(prefix):
            return 200, _json(name)
    return 404, {"error": "not found"}


def _serve(tls: tuple[Path, Path] | None = None) -> tuple[Fake, JsonServer]:
    """A real HTTP(S) server on a free port answering as the service did on the lab."""
    state = Fake(url="")
    server = JsonServer(lambda path, auth: _answer(state, path, auth), tls)
    state.url, state.requests = server.url, server.requests
    return state, server


@pytest.fixture
def fake() -> Iterator[Fake]:
    state, server = _serve()
    try:
        yield state
    finally:
        server.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No kubeconfig, platform file, token or server from the developer's environment."""
    for var in ("KUBECONFIG", "K3SOPS_CONFIG", "K3SOPS_KUBECONFIG", "K3SOPS_SERVER",
                "K3SOPS_SERVER_TOKEN", "K3SOPS_STATE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = tree.run(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def _token_file(tmp: Path, token: str = TOKEN) -> Path:
    f = tmp / "token"
    f.write_text(token + "\n")
    return f


def test_json_output_is_the_service_s_report(fake: Fake, clean_env: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["check", "--server", fake.url, "--token-file",
                           str(_token_file(clean_env)), "-o", "json"], capsys)
    recorded = _json("report-daily.json")
    assert code in (0, 4), err  # 4 when the recorded report names a source it could not read
    assert json.loads(out)["findings"] == recorded["findings"]
    assert json.loads(out)["summary"] == recorded["summary"]
    assert fake.requests == [{"path": "/api/v1/report", "query": {"period": ["daily"]},
                              "auth": f"Bearer {TOKEN}"}]
    assert TOKEN not in out + err


def test_period_environment_and_fail_on(fake: Fake, clean_env: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    os_env = _token_file(clean_env)
    code, _, err = _run(["check", "--weekly", "--server", fake.url, "--token-file", str(os_env),
                         "--fail-on", "warning", "-o", "json"], capsys)
    assert any(f["severity"] in ("warning", "critical")
               for f in _json("report-daily.json")["findings"])
    assert code == 3, err
    assert "finding(s) at or above warning" in err
    assert fake.requests[-1]["query"] == {"period": ["weekly"]}


@pytest.mark.parametrize("fmt", ["table", "yaml", "markdown", "html", "junit"])
def test_every_output_format_renders_the_remote_report(
        fmt: str, fake: Fake, clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["check", "--server", fake.url, "--token-file",
                           str(_token_file(clean_env)), "-o", fmt], capsys)
    assert code in (0, 4), err
    name = _json("report-daily.json")["findings"][0]["resource"]["name"]
    assert name in out


def test_token_from_env_then_from_kubeconfig(fake: Fake, clean_env: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("K3SOPS_SERVER", fake.url)
    monkeypatch.setenv("K3SOPS_SERVER_TOKEN", TOKEN)
    code, _, err = _run(["check", "-o", "json"], capsys)
    assert code in (0, 4), err
    assert fake.requests[-1]["auth"] == f"Bearer {TOKEN}"
    monkeypatch.delenv("K3SOPS_SERVER_TOKEN")
    kubeconfig = _token_kubeconfig(clean_env / "kc.yaml")
    code, out, err = _run(["--kubeconfig", str(kubeconfig), "check", "-o", "json"], capsys)
    assert code in (0, 4), err
    assert fake.requests[-1]["auth"] == f"Bearer {TOKEN}"
    assert TOKEN not in out + err


def test_no_token_is_unauthorized_with_the_service_s_message(
        fake: Fake, clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["check", "--server", fake.url], capsys)
    assert code == 1
    assert "HTTP 401" in err and _json("report-401.json")["error"] in err
    assert fake.requests[-1]["auth"] is None
    code, out, err = _run(["check", "--server", fake.url, "--token-file",
                           str(_token_file(clean_env, NOBODY))], capsys)
    assert code == 1
    assert "HTTP 403" in err and _json("report-403.json")["error"] in err
    assert NOBODY not in out + err


def test_503_is_service_not_ready(fake: Fake, clean_env: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    fake.status = 503
    code, _, err = _run(["check", "--server", fake.url, "--token-file",
                         str(_token_file(clean_env))], capsys)
    assert code == 1
    assert "service not ready" in err and "could not review the token" in err


def test_unreachable_names_the_url_without_the_token(clean_env: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = _run(["check", "--server", f"http://127.0.0.1:{port}/", "--token-file",
                           str(_token_file(clean_env))], capsys)
    assert code == 1
    assert f"http://127.0.0.1:{port}" in err and "could not be reached" in err
    assert TOKEN not in out + err


@pytest.mark.parametrize(("flags", "named"), [
    (["--no-history"], "--no-history"),
    (["--state-dir", "/tmp/x"], "--state-dir"),
    (["--show-suppressed"], "--show-suppressed"),
])
def test_local_only_flags_conflict_with_server(flags: list[str], named: str, fake: Fake,
                                               clean_env: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["check", "--server", fake.url, *flags], capsys)
    assert code == 2
    assert "--server cannot be combined with" in err and named in err
    assert fake.requests == []


def test_token_file_without_server_is_a_usage_error(clean_env: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["check", "--token-file", str(_token_file(clean_env))], capsys)
    assert code == 2 and "only apply with --server" in err


def test_a_server_that_is_not_http_is_a_usage_error(clean_env: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["check", "--server", "k3sops.example:8443"], capsys)
    assert code == 2 and "is not an http(s) URL" in err


def test_diagnose_kind_name_reads_the_service_s_diagnosis(
        fake: Fake, clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recorded = _json("diagnose-service.json")
    ns, name = recorded["target"].split("/")[1:]
    code, out, err = _run(["diagnose", f"svc/{name}", "-n", ns, "--server", fake.url,
                           "--token-file", str(_token_file(clean_env)), "-o", "json"], capsys)
    assert code in (0, 4), err
    assert json.loads(out)["target"] == recorded["target"]
    assert fake.requests[-1]["path"] == f"/api/v1/diagnose/services/{ns}/{name}"
    # a namespaced kind without -n cannot be looked up on the service
    code, _, err = _run(["diagnose", f"svc/{name}", "--server", fake.url], capsys)
    assert code == 2 and "needs its namespace" in err


def test_https_is_verified_with_the_system_cas_or_server_ca(
        clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from k3sops.lab import pki as lab_pki

    # a private CA and a server certificate for 127.0.0.1 (the lab's PKI code)
    p = lab_pki.generate(clean_env / "pki")
    state, server = _serve((p.crt("apiserver"), p.key("apiserver")))
    try:
        args = ["check", "--server", state.url, "--token-file", str(_token_file(clean_env)),
                "-o", "json"]
        code, out, err = _run(args, capsys)
        assert code == 1, err  # the system CAs do not know the private CA
        assert "could not be reached" in err and state.url in err
        assert TOKEN not in out + err
        code, out, err = _run([*args, "--server-ca", str(p.crt("ca"))], capsys)
        assert code in (0, 4), err
        assert json.loads(out)["findings"] == _json("report-daily.json")["findings"]
        code, _, err = _run([*args, "--server-ca", str(clean_env / "missing.crt")], capsys)
        assert code == 2 and "cannot use --server-ca" in err
    finally:
        server.close()


def test_the_kubeconfig_token_never_goes_in_clear_text_over_a_network(
        clean_env: Path) -> None:
    """The kubeconfig's token is the user's cluster credential: sent over https or to
    loopback only; an explicit token (file or variable) is the user's choice."""
    from k3sops.services.context import Settings
    from k3sops.services.remote import server_token

    kubeconfig = _token_kubeconfig(clean_env / "kc.yaml")
    settings = Settings(kubeconfig=kubeconfig, context=None, platform=None)
    for url in ("https://k3sops.example:8443", "http://127.0.0.1:8080", "http://localhost:80",
                "http://[::1]:8080"):
        assert server_token(url, None, settings, {}, clean_env) == TOKEN, url
    for url in ("http://k3sops.example:8080", "http://10.0.0.5:8080"):
        assert server_token(url, None, settings, {}, clean_env) is None, url
        assert server_token(url, None, settings, {"K3SOPS_SERVER_TOKEN": "explicit"},
                            clean_env) == "explicit"
