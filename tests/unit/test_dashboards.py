"""Dashboards: definitions, Grafana JSON structure, ConfigMaps, query checking (pure parts).

Grafana cannot run here, so the JSON is tested against what Grafana's classic dashboard JSON
model requires to import and lay out a dashboard: ``uid``/``title``/``schemaVersion``,
``panels`` with unique integer ``id`` and a ``gridPos`` inside the 24-column grid, ``targets``
with ``expr`` and ``refId``, ``templating.list`` defining every variable a query uses. The query
side is tested for real against the lab Prometheus in tests/lab/test_dashboards_lab.py; the
answers classified below were recorded from that Prometheus (2.42).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from k3sops.config import AppMetrics, parse_platform
from k3sops.domain import dashboards as dd
from k3sops.domain.dashboards import definitions
from k3sops.errors import ExitCode, K3sopsError, UsageError
from k3sops.services import dashboards as svc
from k3sops.services.context import Settings

pytestmark = pytest.mark.unit

PLATFORM = """
name: test
environments:
  development:
    namespaces: [development]
  staging:
    namespaces: [staging, staging-jobs]
  production:
    namespaces: [production]
    thresholds:
      cpu_percent: 70
      http_error_rate_percent: 2
monitoring:
  namespace: observability
  prometheus:
    url: http://127.0.0.1:9
"""
UIDS = ["k3sops-nodes", "k3sops-cluster", "k3sops-applications", "k3sops-backups"]
# Recorded from the lab Prometheus' /api/v1/query.
ANSWER_DATA = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {}, "value": [1795691530.870, "1"]}]}}
ANSWER_EMPTY = {"status": "success", "data": {"resultType": "vector", "result": []}}
ANSWER_SCALAR = {"status": "success", "data": {"resultType": "scalar",
                                               "result": [1795691530.913, "1"]}}
ANSWER_BAD = {"status": "error", "errorType": "bad_data",
              "error": 'invalid parameter "query": 1:16: parse error: unclosed left parenthesis'}


def _platform(text: str = PLATFORM) -> Any:
    return parse_platform(text)


def _render(environment: str | None = None, text: str | None = PLATFORM) -> list[Any]:
    platform = parse_platform(text) if text is not None else None
    return dd.render_all(dd.DashboardContext.from_platform(platform, environment))


def _by_uid(dashboards: list[dd.RenderedDashboard]) -> dict[str, dict[str, Any]]:
    return {d.definition.uid: d.json_model for d in dashboards}


def _panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in model["panels"] if p["type"] != "row"]


def _variables(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in model["templating"]["list"]}


def _exprs(model: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in _panels(model) for t in p["targets"]]


# --- rendering and identity -------------------------------------------------------------


@pytest.mark.parametrize("text", [PLATFORM, None], ids=["platform", "no-platform"])
def test_every_dashboard_renders_with_stable_uid_tags_and_file_name(text: str | None) -> None:
    rendered = _render(text=text)
    assert [d.definition.uid for d in rendered] == UIDS
    for d in rendered:
        m = d.json_model
        assert m["uid"] == d.definition.uid
        assert m["tags"] == ["k3sops"]
        assert m["title"].startswith("k3sops / ")
        assert d.definition.file_name == f"{m['uid']}.json"
        json.dumps(m)  # plain JSON types only


def test_rendering_is_deterministic() -> None:
    first = [dd.dashboard_json(d) for d in _render()]
    assert first == [dd.dashboard_json(d) for d in _render()]


# --- what Grafana needs from the JSON ---------------------------------------------------


@pytest.mark.parametrize("uid", UIDS)
def test_json_has_what_grafana_requires(uid: str) -> None:
    m = _by_uid(_render())[uid]
    assert isinstance(m["schemaVersion"], int) and m["schemaVersion"] >= 36
    assert isinstance(m["annotations"]["list"], list)
    assert m["time"] == {"from": "now-6h", "to": "now"}
    ids = [p["id"] for p in m["panels"]]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
    rects = []
    for p in m["panels"]:
        g = p["gridPos"]
        assert {"h", "w", "x", "y"} <= set(g) and g["w"] > 0 and g["h"] > 0
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        rects.append((g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"], p["title"]))
    for i, a in enumerate(rects):  # Grafana would push overlapping panels around
        for b in rects[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    titles = [p["title"] for p in _panels(m)]
    assert len(set(titles)) == len(titles)  # the check maps results back by title
    for p in _panels(m):
        assert p["type"] in ("timeseries", "stat")
        assert isinstance(p["options"], dict)
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"], f"{p['title']} has no query"
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(set(ref_ids)) == len(ref_ids)
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == "${datasource}"
            assert t.get("instant") is (p["type"] == "stat")


@pytest.mark.parametrize("uid", UIDS)
def test_datasource_variable_and_every_used_variable_is_defined(uid: str) -> None:
    m = _by_uid(_render())[uid]
    variables = _variables(m)
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    # $1 and the like are label_replace back-references, which Grafana leaves alone too.
    used = {name for e in _exprs(m) for name in re.findall(r"\$([A-Za-z_]\w*)", e)}
    assert used <= set(variables), used - set(variables)


def test_environment_and_namespace_variables_come_from_platform() -> None:
    m = _by_uid(_render())
    for uid in ("k3sops-cluster", "k3sops-applications"):
        v = _variables(m[uid])
        env = v["environment"]
        assert env["type"] == "custom"
        assert env["query"] == ("development : development,staging : staging|staging-jobs,"
                                "production : production")
        assert [o["text"] for o in env["options"]] == ["All", "development", "staging",
                                                       "production"]
        assert env["includeAll"] and env["allValue"] == ".*"
        assert env["current"]["value"] == "$__all"
        ns = v["namespace"]
        assert ns["type"] == "query" and ns["multi"] and ns["includeAll"]
        assert ns["query"] == 'label_values(kube_pod_info{namespace=~"$environment"}, namespace)'
        assert all('namespace=~"$namespace"' in e for e in _exprs(m[uid])
                   if "kube_pod" in e or "http_" in e or "process_" in e)
    assert set(_variables(m["k3sops-nodes"])) == {"datasource", "instance"}
    assert set(_variables(m["k3sops-backups"])) == {"datasource"}


def test_env_flag_narrows_to_one_environment_and_its_thresholds() -> None:
    m = _by_uid(_render("production"))
    env = _variables(m["k3sops-cluster"])["environment"]
    assert env["query"] == "production : production"
    assert env["current"]["text"] == "production" and not env["includeAll"]
    cpu = next(p for p in _panels(m["k3sops-nodes"]) if p["title"] == "CPU usage")
    steps = cpu["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"color": "red", "value": 70}
    share = next(p for p in _panels(m["k3sops-applications"]) if p["title"] == "5xx share")
    assert share["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == 2


def test_without_platform_there_is_no_environment_variable() -> None:
    ns = _variables(_by_uid(_render(text=None))["k3sops-cluster"])
    assert "environment" not in ns
    assert ns["namespace"]["query"] == "label_values(kube_pod_info, namespace)"


def test_unknown_or_unusable_env_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=re.escape("'qa' is not in platform.yaml")) as e:
        dd.DashboardContext.from_platform(_platform(), "qa")
    assert e.value.exit_code == ExitCode.USAGE
    with pytest.raises(UsageError, match=re.escape("needs a platform.yaml")):
        dd.DashboardContext.from_platform(None, "production")


# --- the queries mean what `k3sops metrics` means ---------------------------------------


def test_node_queries_have_the_metrics_command_meanings() -> None:
    assert definitions.node_cpu_percent() == (
        '100 - (avg by(instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])) * 100)')
    assert definitions.node_memory_percent() == (
        "(1 - (node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)) * 100")
    disk = definitions.node_disk_percent()
    assert re.sub(r"\{[^}]*\}", "", disk) == (
        "100 - ((node_filesystem_avail_bytes * 100) / node_filesystem_size_bytes)")
    exprs = _exprs(_by_uid(_render())["k3sops-nodes"])
    assert definitions.node_cpu_percent('instance=~"$instance"') in exprs
    assert any("node_network_receive_bytes_total" in e for e in exprs)
    assert any("node_network_transmit_bytes_total" in e for e in exprs)


def test_cluster_dashboard_covers_readiness_pods_apiserver_and_etcd() -> None:
    exprs = " ".join(_exprs(_by_uid(_render())["k3sops-cluster"]))
    for metric in ("kube_node_status_condition", "kube_pod_status_phase",
                   "kube_pod_container_status_restarts_total",
                   "apiserver_request_duration_seconds_bucket", "apiserver_request_total",
                   "etcd_server_has_leader", "etcd_disk_wal_fsync_duration_seconds_bucket",
                   "etcd_mvcc_db_total_size_in_bytes", "etcd_server_quota_backend_bytes"):
        assert metric in exprs, metric
    assert "histogram_quantile(0.99" in exprs and 'code=~"5.."' in exprs


def test_no_etcd_panels_when_etcd_is_not_scraped() -> None:
    text = PLATFORM + "  etcd_metrics: false\n"
    exprs = " ".join(_exprs(_by_uid(_render(text=text))["k3sops-cluster"]))
    assert "etcd_" not in exprs and "apiserver_request_total" in exprs


def test_application_queries_use_configured_metric_names() -> None:
    ctx = dd.DashboardContext(app_metrics=AppMetrics(
        requests_total="app_requests_total", duration_seconds="app_latency_seconds",
        status_label="status", workload_labels=["namespace", "service"]))
    d = dd.render(definitions.applications(ctx), ctx)
    exprs = _exprs(d.json_model)
    joined = " ".join(exprs)
    assert "http_requests_total" not in joined and "http_request_duration" not in joined
    assert 'sum by(namespace, service) (rate(app_requests_total{namespace=~"$namespace",' \
           'status=~"5.."}[5m]))' in exprs
    assert "histogram_quantile(0.95, sum by(namespace, service, le) " \
           '(rate(app_latency_seconds_bucket{namespace=~"$namespace"}[5m])))' in exprs
    legends = {p["title"]: t["legendFormat"] for p in _panels(d.json_model)
               for t in p["targets"]}
    assert legends["Request rate"] == legends["5xx share"] == "{{namespace}}/{{service}}"
    # CPU and memory come from cAdvisor, summed by the workload owning each pod.
    assert legends["CPU per workload"] == "{{namespace}}/{{workload}}"
    cpu = next(e for e in exprs if "container_cpu_usage_seconds_total" in e)
    assert cpu.startswith("sum by(namespace, workload) (")
    assert 'container!="",container!="POD"' in cpu and "kube_pod_owner" in cpu


def test_backup_panels_use_k3sops_backup_metrics() -> None:
    exprs = " ".join(_exprs(_by_uid(_render())["k3sops-backups"]))
    for metric in ("k3sops_backup_last_success_timestamp_seconds",
                   "k3sops_backup_duration_seconds", "k3sops_backup_size_bytes",
                   "k3sops_restore_drill_last_success_timestamp_seconds"):
        assert metric in exprs
    # one series per (kind, target) though the service and the textfile both export them
    assert ("time() - max by (kind, target) (k3sops_backup_last_success_timestamp_seconds)"
            in exprs)
    assert "max by (kind, target) (k3sops_backup_size_bytes)" in exprs


# --- ConfigMaps for the Grafana sidecar -------------------------------------------------


def test_configmap_shape_label_namespace_and_payload() -> None:
    for d in _render():
        cm = dd.configmap(d, "observability")
        assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
        meta = cm["metadata"]
        assert meta["namespace"] == "observability"
        assert meta["name"] == f"k3sops-dashboard-{d.definition.name}"
        assert meta["labels"]["grafana_dashboard"] == "1"
        assert list(cm["data"]) == [f"k3sops-{d.definition.name}.json"]
        assert json.loads(cm["data"][d.definition.file_name]) == d.json_model


def test_configmaps_yaml_is_a_stream_kubectl_can_apply() -> None:
    settings = Settings(kubeconfig=None, context=None, platform=_platform())
    text = svc.stdout_text(settings, _render(), as_configmaps=True)
    docs = list(yaml.safe_load_all(text))
    assert [d["metadata"]["name"] for d in docs] == [
        "k3sops-dashboard-nodes", "k3sops-dashboard-cluster", "k3sops-dashboard-applications",
        "k3sops-dashboard-backups"]
    assert all(d["metadata"]["namespace"] == "observability" for d in docs)
    assert "grafana_dashboard: '1'" in text  # a string, as label values must be
    assert "k3sops-nodes.json: |" in text  # JSON kept readable as a literal block


# --- checking queries -------------------------------------------------------------------


def test_substitute_expands_every_grafana_variable_form() -> None:
    v = {"namespace": ".*", "instance": ".*"}
    assert dd.substitute('up{namespace=~"$namespace"}', v) == 'up{namespace=~".*"}'
    assert dd.substitute('up{namespace=~"${namespace}"}', v) == 'up{namespace=~".*"}'
    assert dd.substitute('up{namespace=~"${namespace:regex}"}', v) == 'up{namespace=~".*"}'
    assert dd.substitute('up{instance=~"[[instance]]"}', v) == 'up{instance=~".*"}'
    assert dd.substitute("rate(x[$__rate_interval])", v) == "rate(x[5m])"
    # $ as a regex anchor and unknown names are Prometheus' business, not ours
    assert dd.substitute('x{device!~"lo$",a="$other"}', v) == 'x{device!~"lo$",a="$other"}'


def test_panel_queries_cover_every_target_with_variables_substituted() -> None:
    for d in _render():
        qs = dd.panel_queries(d)
        assert len(qs) == sum(len(p["targets"]) for p in _panels(d.json_model))
        for q in qs:
            assert "$namespace" not in q.query and "$instance" not in q.query
            assert "$environment" not in q.query
            assert q.dashboard == d.definition.uid
    nodes = dd.panel_queries(_render()[0])
    assert all(q.expects_data for q in nodes)
    backups = dd.panel_queries(_render()[3])
    assert not any(q.expects_data for q in backups)


def test_classify_recorded_prometheus_answers() -> None:
    q = dd.panel_queries(_render()[1])[0]
    ok = dd.classify(q, ANSWER_DATA)
    assert (ok.status, ok.series, ok.problem) == ("ok", 1, False)
    assert dd.classify(q, ANSWER_SCALAR).status == "ok"
    empty = dd.classify(q, ANSWER_EMPTY)
    assert (empty.status, empty.series, empty.problem) == ("no data", 0, True)
    bad = dd.classify(q, ANSWER_BAD)
    assert bad.status == "error" and "unclosed left parenthesis" in (bad.error or "")
    optional = dd.classify(dd.panel_queries(_render()[3])[0], ANSWER_EMPTY)
    assert optional.status == "no data" and not optional.problem
    report = dd.CheckReport(prometheus="x", panels=[ok, empty, bad, optional])
    assert report.errors == [bad] and report.missing == [empty]


# --- writing files and the CLI ----------------------------------------------------------


def test_write_json_files_atomically(tmp_path: Path) -> None:
    settings = Settings(kubeconfig=None, context=None, platform=_platform())
    out = tmp_path / "dash"
    rendered = _render()
    (out).mkdir()
    (out / "k3sops-nodes.json").write_text("stale")
    files = svc.write(settings, rendered, out, as_configmaps=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{u}.json" for u in UIDS)
    for f, d in zip(files, rendered, strict=True):
        assert Path(f.path).read_text() == dd.dashboard_json(d)
        assert f.kind == "json" and f.panels == len(d.definition.panels)
        assert Path(f.path).stat().st_mode & 0o777 == 0o644


def test_write_configmaps(tmp_path: Path) -> None:
    settings = Settings(kubeconfig=None, context=None, platform=_platform())
    files = svc.write(settings, _render(), tmp_path, as_configmaps=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{u}.yaml" for u in UIDS)
    cm = yaml.safe_load(Path(files[0].path).read_text())
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_write_to_unusable_directory_says_where(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = Settings(kubeconfig=None, context=None, platform=None)
    with pytest.raises(K3sopsError, match=re.escape(str(blocker / "sub"))) as e:
        svc.write(settings, _render(text=None), blocker / "sub", as_configmaps=False)
    assert e.value.hint


def _cli() -> typer.Typer:
    # The lead wires `dashboards` into k3sops.cli.app; here the same root callback is used.
    from k3sops.cli import app as appmod
    from k3sops.cli import dashboards_cmd

    app = typer.Typer()
    app.callback()(appmod.root)
    dashboards_cmd.register(app)
    return app


def test_cli_render_to_dir_and_stdout(tmp_path: Path) -> None:
    cfg = tmp_path / "platform.yaml"
    cfg.write_text(PLATFORM)
    runner = CliRunner()
    r = runner.invoke(_cli(), ["-c", str(cfg), "-o", "json", "dashboards", "render",
                               "--out", str(tmp_path / "out"), "--env", "staging"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert [f["dashboard"] for f in report["files"]] == UIDS and report["check"] is None
    r = runner.invoke(_cli(), ["-c", str(cfg), "dashboards", "render"])
    assert r.exit_code == 0, r.output
    assert sorted(json.loads(r.stdout)) == sorted(f"{u}.json" for u in UIDS)
    r = runner.invoke(_cli(), ["-c", str(cfg), "dashboards", "render", "--configmap"])
    assert r.exit_code == 0 and len(list(yaml.safe_load_all(r.stdout))) == 4
    r = runner.invoke(_cli(), ["-c", str(cfg), "dashboards", "render", "--env", "qa"])
    assert isinstance(r.exception, UsageError)


def test_check_problems_map_to_exit_codes() -> None:
    from k3sops.cli.dashboards_cmd import raise_for_check

    cluster_q = dd.panel_queries(_render()[1])[0]
    backup_q = dd.panel_queries(_render()[3])[0]
    ok = dd.classify(cluster_q, ANSWER_DATA)
    optional_empty = dd.classify(backup_q, ANSWER_EMPTY)
    raise_for_check(dd.CheckReport(prometheus="p", panels=[ok, optional_empty]))  # exit 0
    missing = dd.classify(cluster_q, ANSWER_EMPTY)
    with pytest.raises(K3sopsError, match="no data") as e:
        raise_for_check(dd.CheckReport(prometheus="p", panels=[ok, missing]))
    assert e.value.exit_code == ExitCode.FINDINGS
    bad = dd.classify(cluster_q, ANSWER_BAD)
    with pytest.raises(K3sopsError, match="rejected by Prometheus") as e:
        raise_for_check(dd.CheckReport(prometheus="p", panels=[bad, missing]))
    assert e.value.exit_code == ExitCode.RUNTIME
