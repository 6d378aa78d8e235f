"""Every dashboard panel query against the lab's real Prometheus.

Grafana itself cannot run here (see DESIGN.md), so what Grafana would do with a panel is played
on the query side: each target of the rendered JSON, with its template variables set to ``.*``
(Grafana's "All"), is sent to the lab Prometheus' /api/v1/query. Every query must parse; the
node, cluster, API server and etcd panels must return data, since the lab scrapes node-exporter,
kube-state-metrics, kube-apiserver and etcd. Application and k3sops backup metrics do not exist
in the lab, so those panels may be "no data", but never an error. The JSON structure Grafana
needs is tested in tests/unit/test_dashboards.py.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from conftest import Lab, wait_for
from k3sops.adapters.prometheus import HttpApi
from k3sops.config import Endpoint
from k3sops.domain import dashboards as dd
from k3sops.domain.dashboards import definitions
from k3sops.errors import Unreachable
from k3sops.services import context
from k3sops.services import dashboards as svc

pytestmark = pytest.mark.lab

DATA_DASHBOARDS = {"k3sops-nodes", "k3sops-cluster"}


def _settings(lab: Lab) -> context.Settings:
    return context.resolve(None, None, lab.layout.platform_file, lab.env, Path.cwd())


def test_every_panel_query_parses_and_core_panels_have_data(lab: Lab) -> None:
    settings = _settings(lab)
    dashboards = svc.render(settings, None)

    def checked() -> dd.CheckReport | None:
        # Right after `lab up` the 5m/1h rate windows may still lack two samples: poll.
        r = svc.check(settings, dashboards, lab.env, Path.home())
        return None if r.missing else r

    report = wait_for(checked, timeout=120, every=5) or svc.check(
        settings, dashboards, lab.env, Path.home())
    assert report.prometheus == lab.layout.url("prometheus")
    assert not report.errors, [(p.panel, p.error) for p in report.errors]
    assert not report.missing, [(p.dashboard, p.panel, p.query) for p in report.missing]
    expected = sum(len(d.definition.panels) for d in dashboards)
    assert len({(p.dashboard, p.panel) for p in report.panels}) == expected
    by_panel = {(p.dashboard, p.panel): p for p in report.panels}
    for title in ("CPU usage", "Memory usage", "Disk usage", "Network receive",
                  "Network transmit"):
        assert by_panel["k3sops-nodes", title].status == "ok", title
    for title in ("Node readiness", "Pods by phase", "API request latency p99",
                  "API 5xx share", "etcd has leader", "etcd WAL fsync p99",
                  "etcd DB size of quota"):
        assert by_panel["k3sops-cluster", title].status == "ok", title
    assert by_panel["k3sops-cluster", "Node readiness"].series == 6  # the lab's kwok nodes
    for p in report.panels:
        if p.dashboard in DATA_DASHBOARDS:
            assert p.status == "ok" and p.series > 0, p
        else:
            assert p.status in ("ok", "no data"), p
    backups = [p for p in report.panels if p.dashboard == "k3sops-backups"]
    assert backups and all(not p.expects_data for p in backups)


def test_env_scoped_dashboards_still_check_clean(lab: Lab) -> None:
    settings = _settings(lab)
    report = svc.check(settings, svc.render(settings, "production"), lab.env, Path.home())
    assert not report.errors
    assert {p.dashboard for p in report.panels} == {
        "k3sops-nodes", "k3sops-cluster", "k3sops-applications", "k3sops-backups"}


def test_rejected_query_is_reported_with_prometheus_error(lab: Lab) -> None:
    unclosed = dd.Query('sum(rate(up{namespace=~"$namespace"}[5m])')
    broken = dd.DashboardDef("broken", "broken", "a deliberately bad query", ("namespace",), (
        dd.RowDef("r", (
            dd.PanelDef("unclosed", "stat", (unclosed,), "parse error"),
            dd.PanelDef("many to many", "timeseries", (dd.Query("up * on() group_left up"),),
                        "execution error"),
            dd.PanelDef("fine", "stat", (dd.Query("count(up)"),), "ok")),),))
    rendered = dd.render(broken, dd.DashboardContext())
    report = svc.check(_settings(lab), [rendered], lab.env, Path.home())
    by_panel = {p.panel: p for p in report.panels}
    assert by_panel["unclosed"].status == "error"
    assert "parse error" in (by_panel["unclosed"].error or "")
    assert by_panel["unclosed"].query == 'sum(rate(up{namespace=~".*"}[5m])'
    assert by_panel["many to many"].status == "error"
    assert by_panel["fine"].status == "ok"


def test_unreachable_prometheus_stops_the_check_naming_it(lab: Lab) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = _settings(lab)
    assert settings.platform is not None
    mon = settings.platform.monitoring.model_copy(
        update={"prometheus": Endpoint(url=f"http://127.0.0.1:{port}", timeout_seconds=5)})
    settings = context.Settings(kubeconfig=None, context=None,
                                platform=settings.platform.model_copy(update={"monitoring": mon}))
    with pytest.raises(Unreachable, match=f"127.0.0.1:{port}"):
        svc.check(settings, svc.render(settings, None), lab.env, Path.home())


def _cli() -> typer.Typer:
    # The same root callback as `k3sops`; the group is registered here as cli/app.py will.
    from k3sops.cli import app as appmod
    from k3sops.cli import dashboards_cmd

    app = typer.Typer()
    app.callback()(appmod.root)
    dashboards_cmd.register(app)
    return app


def test_cli_render_check_writes_files_and_reports_each_panel(lab: Lab, tmp_path: Path) -> None:
    r = CliRunner().invoke(_cli(), ["-c", str(lab.layout.platform_file), "-o", "json",
                                    "dashboards", "render", "--check", "--out", str(tmp_path)],
                           env=lab.env)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "k3sops-applications.json", "k3sops-backups.json", "k3sops-cluster.json",
        "k3sops-nodes.json"]
    panels = report["check"]["panels"]
    assert {p["status"] for p in panels if p["dashboard"] in DATA_DASHBOARDS} == {"ok"}
    assert not [p for p in panels if p["status"] == "error"]
    assert json.loads((tmp_path / "k3sops-nodes.json").read_text())["uid"] == "k3sops-nodes"


def test_configmaps_are_accepted_by_the_real_api_server(lab: Lab) -> None:
    """Server-side dry run: the lab API server validates the ConfigMaps without storing them."""
    settings = _settings(lab)
    text = svc.stdout_text(settings, svc.render(settings, None), as_configmaps=True)
    r = lab.kubectl("apply", "--dry-run=server", "-o", "name", "-f", "-", input=text)
    assert sorted(r.stdout.split()) == [
        "configmap/k3sops-dashboard-applications", "configmap/k3sops-dashboard-backups",
        "configmap/k3sops-dashboard-cluster", "configmap/k3sops-dashboard-nodes"]


def test_pods_are_summed_by_their_owning_workload(lab: Lab) -> None:
    """The per-workload join on real kube-state-metrics owners (the lab has no cAdvisor, so
    the per-pod CPU requests of kube-state-metrics stand in for the cAdvisor series)."""
    expr = dd.substitute(definitions.per_workload(
        'kube_pod_container_resource_requests{resource="cpu"}'), {"namespace": ".*"})
    settings = _settings(lab)
    assert settings.platform is not None
    api = HttpApi.from_endpoint("Prometheus", settings.platform.monitoring.prometheus, None)
    try:
        result = api.get_json("/api/v1/query", {"query": expr})["data"]["result"]
    finally:
        api.close()
    workloads = {(r["metric"]["namespace"], r["metric"]["workload"]) for r in result}
    # Deployments lose their ReplicaSet hash; StatefulSets and DaemonSets keep their name.
    assert {("production", "web"), ("staging", "web"), ("kube-system", "coredns"),
            ("production", "postgres"), ("monitoring", "node-exporter")} <= workloads
    assert not any(w.startswith("web-") for _, w in workloads)
