"""`k3sops metrics` against the lab's real Prometheus (URL endpoint from the lab platform file).

The service-proxy endpoint form is not exercised here: the lab's pods have fake addresses the
API server must never dial (see tests/unit/test_metrics.py for the path it builds).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Lab, wait_for
from k3sops.adapters.prometheus import HttpApi, PrometheusAdapter
from k3sops.config import Endpoint
from k3sops.domain.metrics import InstantResult
from k3sops.errors import AdapterError, QueryError, Unreachable

pytestmark = pytest.mark.lab


def _platform(lab: Lab) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(lab.layout.platform_file.read_text())
    return data


def _write(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _json(lab: Lab, *args: str, config: str | None = None) -> tuple[int, Any, str]:
    cfg = config or str(lab.layout.platform_file)
    r = lab.k3sops("--config", cfg, "-o", "json", "metrics", *args)
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else None, r.stderr


@pytest.fixture(scope="module")
def prom(lab: Lab) -> Any:
    url = _platform(lab)["monitoring"]["prometheus"]["url"]
    adapter = PrometheusAdapter(HttpApi.from_endpoint("Prometheus", Endpoint(url=url), None))
    # rate()/increase() over 5m need two scrapes of node-exporter; a fresh lab has them soon
    # (tests may run right after the lab started, e.g. first on an xdist worker's lab):
    # wait for every windowed series the tests below read, not only node-exporter's.
    for q in ('rate(node_cpu_seconds_total{mode="idle"}[5m])',
              "histogram_quantile(0.99, sum by (le) "
              "(rate(apiserver_request_duration_seconds_bucket[5m]))) > 0",
              "sum(rate(prometheus_http_requests_total[5m])) > 0",
              "histogram_quantile(0.95, sum by (le) "
              "(rate(prometheus_http_request_duration_seconds_bucket[5m]))) > 0",
              "rate(container_cpu_usage_seconds_total[5m])",
              "container_memory_working_set_bytes > 0"):
        wait_for(lambda q=q: adapter.query(q).samples, timeout=180, every=3)
    yield adapter
    adapter.close()


def test_metrics_all_real_values(lab: Lab, prom: PrometheusAdapter) -> None:
    code, rep, err = _json(lab, "all")
    assert code == 0, err
    assert rep["scopes"] == ["nodes", "cluster", "apps"] and rep["failed_queries"] == []
    host = next(n for n in rep["nodes"] if n["node"] == "lab-host")
    for key in ("cpu_percent", "memory_percent", "disk_percent"):
        assert 0 <= host[key] <= 100, key
    assert host["filesystems"] and host["network_receive_bytes_per_second"] >= 0
    c = rep["cluster"]
    assert c["nodes_total"] == 6 and len(c["nodes"]) == 6
    assert all(n["cpu_allocatable_cores"] > 0 for n in c["nodes"])
    assert c["etcd"] and all(m["has_leader"] is True for m in c["etcd"])
    assert 0 < c["etcd"][0]["db_used_percent"] < 100
    assert c["apiserver"]["request_p99_seconds"] > 0
    assert 0 <= c["apiserver"]["error_5xx_share"] <= 1
    # No application HTTP metrics in the lab: "no data", not a failure. Container usage comes
    # from kwok's kubelet-like /metrics/resource (scrape job "kubelet"): real numbers.
    assert rep["apps"]
    assert all(a["request_rate"] is None for a in rep["apps"])
    measured = [a for a in rep["apps"]
                if a["cpu_cores"] is not None and a["memory_bytes"] is not None]
    assert measured, rep["apps"]
    assert all(a["cpu_cores"] >= 0 and a["memory_bytes"] > 0 for a in measured)


def test_metrics_table_shows_no_data(lab: Lab) -> None:
    r = lab.k3sops("metrics", "apps", "--env", "production")
    assert r.returncode == 0, r.stderr
    assert "no data" in r.stdout and "production" in r.stdout and "staging" not in r.stdout


def test_env_restricts_apps_to_its_namespaces(lab: Lab) -> None:
    code, rep, err = _json(lab, "apps", "--env", "staging")
    assert code == 0, err
    assert rep["namespaces"] == ["staging"] and rep["nodes"] is None and rep["cluster"] is None
    assert {a["namespace"] for a in rep["apps"]} == {"staging"}
    assert any(a["workload"] == "web" and a["kind"] == "Deployment" for a in rep["apps"])


def test_app_metrics_from_real_http_metrics(lab: Lab, tmp_path: Path,
                                           prom: PrometheusAdapter) -> None:
    """Point app_metrics at Prometheus' own HTTP metrics: real RED figures per workload."""
    data = _platform(lab)
    data["monitoring"]["app_metrics"] = {
        "requests_total": "prometheus_http_requests_total",
        "duration_seconds": "prometheus_http_request_duration_seconds",
        "status_label": "code", "workload_labels": ["job"]}
    code, rep, err = _json(lab, "apps", config=_write(tmp_path, data))
    assert code == 0, err
    row = next(a for a in rep["apps"] if a["workload"] == "prometheus")
    assert row["request_rate"] > 0 and row["p95_seconds"] > 0


def test_adhoc_query(lab: Lab) -> None:
    code, rep, err = _json(lab, "--query", 'up{job="etcd"}')
    assert code == 0, err
    assert rep["result_type"] == "vector"
    assert [r["labels"]["job"] for r in rep["rows"]] == ["etcd"] and rep["rows"][0]["value"] == "1"
    r = lab.k3sops("metrics", "--query", 'count(kube_node_info)')
    assert r.returncode == 0 and "6" in r.stdout


def test_bad_promql_exits_2_with_the_position(lab: Lab) -> None:
    r = lab.k3sops("metrics", "--query", "sum(rate(up[5m])")
    assert r.returncode == 2
    assert "1:17: parse error: unclosed left parenthesis" in r.stderr
    assert lab.layout.url("prometheus").removeprefix("http://") in r.stderr and r.stdout == ""


def test_unreachable_prometheus_exits_1_naming_it(lab: Lab, tmp_path: Path) -> None:
    data = _platform(lab)
    data["monitoring"]["prometheus"] = {"url": "http://127.0.0.1:1", "timeout_seconds": 5}
    r = lab.k3sops("--config", _write(tmp_path, data), "metrics", "all")
    assert r.returncode == 1
    assert "cannot reach Prometheus at http://127.0.0.1:1" in r.stderr
    assert "refused" in r.stderr.lower()


def test_partial_failure_exits_4_and_shows_the_rest(lab: Lab, tmp_path: Path) -> None:
    """A metric name that is not PromQL (a typo in platform.yaml) fails its queries for real."""
    data = _platform(lab)
    data["monitoring"]["app_metrics"] = {"requests_total": "http-requests-total"}
    code, rep, err = _json(lab, "all", config=_write(tmp_path, data))
    assert code == 4, err
    assert {f["name"] for f in rep["failed_queries"]} == {"app_requests", "app_4xx", "app_5xx"}
    assert all("parse error" in f["error"] for f in rep["failed_queries"])
    assert "partial result" in err and "app_requests" in err
    assert rep["cluster"]["nodes_total"] == 6 and rep["nodes"]  # the rest is there
    assert rep["apps"] and all(a["request_rate"] is None for a in rep["apps"])


def test_query_many_reports_each_failure(prom: PrometheusAdapter) -> None:
    got = prom.query_many({"good": "up", "bad": "sum(up", "exec": "up * on() up",
                           "empty": "absent_metric_for_k3sops_tests"})
    assert isinstance(got["good"], InstantResult) and got["good"].samples
    assert isinstance(got["bad"], QueryError) and "1:7: parse error" in got["bad"].message
    # parses, but fails while running (many-to-many matching): a failure, not bad PromQL
    assert isinstance(got["exec"], AdapterError) and not isinstance(got["exec"], QueryError)
    assert "execution" in got["exec"].message
    assert isinstance(got["empty"], InstantResult) and got["empty"].samples == []


def test_query_many_against_a_closed_port() -> None:
    dead = PrometheusAdapter(HttpApi.from_endpoint(
        "Prometheus", Endpoint(url="http://127.0.0.1:1", timeout_seconds=5), None))
    try:
        got = dead.query_many({"a": "up", "b": "time()"})
    finally:
        dead.close()
    assert all(isinstance(e, Unreachable) and "127.0.0.1:1" in e.message for e in got.values())


def test_watch_prints_each_refresh(lab: Lab) -> None:
    r = lab.k3sops("-o", "json", "metrics", "nodes", "--watch", "1", "--count", "2")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 2 and all(x["nodes"][0]["node"] == "lab-host" for x in lines)
    r = lab.k3sops("metrics", "cluster", "--watch", "--count", "1")
    assert r.returncode == 0, r.stderr
    assert "etcd" in r.stdout
    r = lab.k3sops("metrics", "--count", "2")
    assert r.returncode == 2 and "--watch" in r.stderr


def test_ctrl_c_stops_watch_with_130(lab: Lab) -> None:
    # As from a terminal, SIGINT raising KeyboardInterrupt: a test run started in the
    # background by a non-interactive shell (`cmd &`) inherits SIGINT ignored, and Python then
    # never raises it — the watch would go on, as any program would.
    as_terminal = ("import runpy, signal, sys; "
                   "signal.signal(signal.SIGINT, signal.default_int_handler); "
                   "sys.argv = ['k3sops', *sys.argv[1:]]; "
                   "runpy.run_module('k3sops', run_name='__main__', alter_sys=True)")
    proc = subprocess.Popen([sys.executable, "-c", as_terminal, "-o", "json", "metrics",
                             "nodes", "--watch", "1"], env=lab.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # one refresh printed: the loop is running
        assert first["nodes"]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted (Ctrl-C)" in err
