"""Stable JSON schema of `status -o json`, service-proxy paths, and CLI usage errors."""

from __future__ import annotations

import pytest

from k3sops.cli.app import main
from k3sops.config import Endpoint
from k3sops.domain.models import StatusReport

pytestmark = pytest.mark.unit


def test_status_json_schema_is_pinned() -> None:
    schema = StatusReport.model_json_schema()
    assert list(schema["properties"]) == ["cluster", "server_version", "nodes", "pods",
                                          "problems", "targets", "sources"]
    defs = schema["$defs"]
    assert list(defs["NodeStatus"]["properties"]) == [
        "name", "roles", "ready", "schedulable", "version", "pressure", "cpu", "memory"]
    assert list(defs["Target"]["properties"]) == [
        "job", "instance", "health", "last_error", "scrape_url"]
    assert list(defs["PodProblem"]["properties"]) == [
        "namespace", "name", "phase", "reason", "restarts", "node"]


def test_service_endpoint_proxy_path() -> None:
    ep = Endpoint(service="monitoring/prometheus-server:80")
    assert ep.proxy_path() == (
        "/api/v1/namespaces/monitoring/services/http:prometheus-server:80/proxy/")


def test_unknown_scenario_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["lab", "scenario", "apply", "no-such-fault"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "no-such-fault" in err and "crashloop" in err


def test_bad_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--output", "xml", "status"])
    assert e.value.code == 2
    assert "xml" in capsys.readouterr().err
