"""`k3sops alerts list --server URL` against a real local HTTP server replaying the service.

tests/data/serve_api/alerts.json and alerts-403.json were recorded from `k3sops serve` on the
lab after its real Alertmanager delivered a real KubePodCrashLooping
(tests/lab/test_serve_alertmanager_lab.py with K3SOPS_RECORD_SERVE). The server here is a real
socket server, so the CLI's adapter, headers and error mapping run as against the service.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from servekit import JsonServer

from k3sops.cli import tree
from k3sops.domain.alerting import parse_matchers
from k3sops.domain.service_alerts import alert_from_record, service_alert_list

pytestmark = pytest.mark.unit

DATA = Path(__file__).parents[1] / "data" / "serve_api"
TOKEN = "reader-token-abc123"  # made up: what the replaying server accepts
NOBODY = "nobody-token-xyz789"
POD = "checkout-7558c8f54c-g6svr"


def _recorded(name: str) -> Any:
    return json.loads((DATA / name).read_text())


class Replay:
    """A real HTTP server on 127.0.0.1 answering GET /api/v1/alerts as the service did."""

    def __init__(self) -> None:
        self.server = JsonServer(self.answer)
        self.url = self.server.url

    @property
    def queries(self) -> list[dict[str, list[str]]]:
        """Each request's parsed query, in order."""
        return [r["query"] for r in self.server.requests]

    def answer(self, path: str, auth: str | None) -> tuple[int, Any]:
        if path != "/api/v1/alerts":
            return 404, {"error": "not found"}
        if auth is None:
            return 401, _recorded("report-401.json")
        if auth == f"Bearer {NOBODY}":
            return 403, _recorded("alerts-403.json")
        if auth != f"Bearer {TOKEN}":
            return 401, {"error": "the bearer token was not accepted"}
        return 200, _recorded("alerts.json")

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def replay() -> Iterator[Replay]:
    r = Replay()
    yield r
    r.close()


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """The CLI in this process, with no kubeconfig, platform file or server token around."""
    for var in ("KUBECONFIG", "K3SOPS_CONFIG", "K3SOPS_SERVER", "K3SOPS_SERVER_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str, token: str | None = None) -> Ran:
        if token is not None:
            monkeypatch.setenv("K3SOPS_SERVER_TOKEN", token)
        code = tree.run(list(args))
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)
    return invoke


def _token_file(tmp_path: Path, token: str) -> str:
    f = tmp_path / "token"
    f.write_text(token + "\n")
    return str(f)


def test_the_recorded_alert_reads_as_a_row() -> None:
    [raw] = _recorded("alerts.json")["alerts"]
    a = alert_from_record(raw)
    assert (a.alertname, a.status, a.severity, a.environment) == (
        "KubePodCrashLooping", "firing", "warning", "development")
    assert a.object == f"Pod development/{POD}"
    assert a.runbook == "pod-crash-looping" and a.enrich_error is None
    assert any(c.startswith(f"pod-crashloop: Pod development/{POD}: ") for c in a.root_causes)
    assert a.starts_at is not None and a.ends_at is None
    assert a.enriched == raw["enriched"]


def test_filters_apply_to_the_labels() -> None:
    rows = _recorded("alerts.json")["alerts"]
    keep = service_alert_list("s", None, rows, environments=["development"],
                              severities=["warning"],
                              selectors=parse_matchers(["pod=~checkout-.*"]))
    assert keep.total == 1
    for filters in ({"environments": ["production"]}, {"severities": ["critical"]},
                    {"selectors": parse_matchers(["pod!~checkout-.*"])}):
        assert service_alert_list("s", None, rows, **filters).total == 0  # type: ignore[arg-type]


def test_a_record_without_diagnosis_says_why() -> None:
    a = alert_from_record({"fingerprint": "f", "alertname": "X", "status": "resolved",
                           "starts_at": "2026-01-01T00:00:00Z",
                           "ends_at": "2026-01-01T01:00:00Z", "labels": {"alertname": "X"},
                           "enriched": {"object": {"kind": "Pod", "namespace": "a",
                                                   "name": "b", "found": False},
                                        "diagnosis": None, "runbook": None,
                                        "enrich_error": "the cache is not in sync"}})
    assert a.object == "Pod a/b (not found)" and a.root_causes == [] and a.runbook is None
    assert a.enrich_error == "the cache is not in sync" and a.ends_at is not None


def test_json_lists_the_service_s_alerts(run: Callable[..., Ran], replay: Replay,
                                        tmp_path: Path) -> None:
    r = run("alerts", "list", "--server", replay.url, "--token-file",
             _token_file(tmp_path, TOKEN), "--state", "firing", "--limit", "5", "-o", "json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["server"] == replay.url and got["state"] == "firing" and got["total"] == 1
    [a] = got["alerts"]
    assert a["object"] == f"Pod development/{POD}" and a["runbook"] == "pod-crash-looping"
    assert replay.queries == [{"limit": ["5"], "state": ["firing"]}]


@pytest.mark.parametrize("fmt", ["table", "yaml"])
def test_other_formats_show_the_alert(run: Callable[..., Ran], replay: Replay, fmt: str) -> None:
    r = run("alerts", "list", "--server", replay.url, "-o", fmt, token=TOKEN)
    assert r.exit_code == 0, r.output
    assert "KubePodCrashLooping" in r.stdout and "pod-crash-looping" in r.stdout
    assert TOKEN not in r.output
    assert replay.queries == [{"limit": ["100"]}]


def test_the_env_filter_can_leave_nothing(run: Callable[..., Ran], replay: Replay) -> None:
    r = run("alerts", "list", "--server", replay.url, "--env", "production", token=TOKEN)
    assert r.exit_code == 0, r.output
    assert "no alerts stored by the k3sops service" in r.stdout


def test_401_and_403_exit_1_with_the_service_s_message(run: Callable[..., Ran],
                                                       replay: Replay, tmp_path: Path) -> None:
    r = run("alerts", "list", "--server", replay.url)
    assert r.exit_code == 1, r.output
    assert "HTTP 401" in r.stderr and "bearer token" in r.stderr
    r = run("alerts", "list", "--server", replay.url, "--token-file",
             _token_file(tmp_path, NOBODY))
    assert r.exit_code == 1, r.output
    assert "HTTP 403" in r.stderr and "may not get alerts.k3sops.io" in r.stderr
    assert "get` on alerts of k3sops.io" in r.stderr  # the hint names the resource
    assert NOBODY not in r.output


@pytest.mark.parametrize(("args", "says"), [
    (["--server", "http://127.0.0.1:1", "--silenced"], "Alertmanager's states"),
    (["--server", "http://127.0.0.1:1", "--limit", "0"], "--limit 0 is out of range"),
    (["--server", "http://127.0.0.1:1", "-l", "pod"], "label=~regex"),
    (["--state", "firing"], "--state only applies with --server"),
    (["--token-file", "x", "--limit", "3"], "--token-file, --limit only apply with --server"),
])
def test_bad_flags_are_usage_errors(run: Callable[..., Ran], args: list[str], says: str) -> None:
    r = run("alerts", "list", *args)
    assert r.exit_code == 2, r.output
    assert says in r.stderr
