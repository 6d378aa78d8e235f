"""`k3sops metrics`: the PromQL catalogue and the conversion of Prometheus answers into models.

The answers in tests/data/prom-*.json were captured from the lab's real Prometheus (the test
lab at 127.0.0.1:27090) with the catalogue's own queries: prom-nodes.json, prom-cluster.json
and prom-apps.json are the nodes, cluster and apps catalogues as they are; prom-apps-red.json is
the apps catalogue pointed at Prometheus' own HTTP metrics (the lab has no application metrics),
with cAdvisor's CPU/memory replaced by kube-state-metrics vectors of the same (namespace, pod)
shape (the lab has no cAdvisor); prom-shapes.json holds one answer of each result type and a
real bad_data error. Each file says so in its "note".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from k3sops.cli.metrics_cmd import optional_watch
from k3sops.config import AppMetrics, Endpoint, parse_platform
from k3sops.domain import metrics as dm
from k3sops.errors import ConfigError, ExitCode, QueryError, UsageError
from k3sops.services import metrics as svc
from k3sops.services.context import Settings

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data"
RED = AppMetrics(requests_total="prometheus_http_requests_total",
                 duration_seconds="prometheus_http_request_duration_seconds",
                 status_label="code", workload_labels=["job"])


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data["queries"]


def _results(name: str) -> dict[str, dm.InstantResult]:
    return {k: dm.parse_result(v["body"]["data"]) for k, v in _load(name).items()}


# --------------------------------------------------------------------------------------------
# The catalogue


def _exprs(scopes: list[dm.Scope], app: AppMetrics | None = None,
           namespaces: tuple[str, ...] = ()) -> dict[str, str]:
    return {q.name: q.expr for q in dm.catalogue(scopes, app or AppMetrics(), namespaces)}


def test_node_expressions_are_the_issues() -> None:
    e = _exprs(["nodes"])
    assert e["node_cpu"] == (
        '100 - (avg by(instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])) * 100)')
    assert e["node_memory"] == (
        "(1 - (node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)) * 100")
    # The issue's disk expression, with pseudo filesystems filtered out on both sides.
    fs = 'fstype!~"tmpfs|overlay|squashfs|ramfs|devtmpfs|nsfs|iso9660|autofs|fuse.lxcfs"'
    assert e["node_disk"] == (f"100 - ((node_filesystem_avail_bytes{{{fs}}} * 100) / "
                              f"node_filesystem_size_bytes{{{fs}}})")
    assert e["node_network_receive"] == (
        'sum without(device) (rate(node_network_receive_bytes_total{device!="lo"}[5m]))')
    assert e["node_network_transmit"] == (
        'sum without(device) (rate(node_network_transmit_bytes_total{device!="lo"}[5m]))')


def test_cluster_expressions_are_the_issues() -> None:
    e = _exprs(["cluster"])
    assert e["apiserver_p99"] == (
        "histogram_quantile(0.99, sum by(le)(rate(apiserver_request_duration_seconds_bucket"
        '{verb!~"WATCH|CONNECT"}[5m])))')
    assert e["apiserver_5xx_share"] == (
        'sum(rate(apiserver_request_total{code=~"5.."}[5m])) / '
        "sum(rate(apiserver_request_total[5m]))")
    assert e["pod_restarts"] == ("topk(10, sum by(namespace, pod) "
                                 "(increase(kube_pod_container_status_restarts_total[1h])) > 0)")
    assert e["pod_problems"] == 'kube_pod_status_phase{phase=~"Failed|Pending"} == 1'
    assert e["node_ready"] == 'kube_node_status_condition{condition="Ready"} == 1'
    assert e["node_allocatable"] == 'kube_node_status_allocatable{resource=~"cpu|memory"}'
    assert "kube_pod_container_resource_requests" in e["node_requests"]
    assert e["etcd_has_leader"] == "etcd_server_has_leader"
    assert e["etcd_wal_fsync_p99"] == (
        "histogram_quantile(0.99, sum by(instance, le) "
        "(rate(etcd_disk_wal_fsync_duration_seconds_bucket[5m])))")
    assert e["etcd_db_size"] == "etcd_mvcc_db_total_size_in_bytes"
    assert e["etcd_quota"] == "etcd_server_quota_backend_bytes"


def test_app_expressions_use_the_configured_names_and_env_namespaces() -> None:
    e = _exprs(["apps"])
    assert e["app_requests"] == "sum by(namespace, job) (rate(http_requests_total[5m]))"
    assert e["app_p95"] == ("histogram_quantile(0.95, sum by(namespace, job, le) "
                            "(rate(http_request_duration_seconds_bucket[5m])))")
    assert e["app_4xx"] == 'sum by(namespace, job) (rate(http_requests_total{code=~"4.."}[5m]))'
    assert e["app_5xx"] == 'sum by(namespace, job) (rate(http_requests_total{code=~"5.."}[5m]))'
    assert e["app_cpu"] == ('sum by(namespace, pod) (rate(container_cpu_usage_seconds_total'
                            '{container!="", container!="POD"}[5m]))')
    assert e["app_memory"] == ('sum by(namespace, pod) (container_memory_working_set_bytes'
                               '{container!="", container!="POD"})')
    custom = AppMetrics(requests_total="requests", duration_seconds="latency",
                        status_label="status", workload_labels=["namespace", "service"])
    e = _exprs(["apps"], custom, ("staging", "production"))
    ns = 'namespace=~"staging|production"'
    assert e["app_5xx"] == (
        f'sum by(namespace, service) (rate(requests{{status=~"5..", {ns}}}[5m]))')
    assert e["app_p95"] == ("histogram_quantile(0.95, sum by(namespace, service, le) "
                            f"(rate(latency_bucket{{{ns}}}[5m])))")
    assert e["pod_owner"] == f"kube_pod_owner{{{ns}}}"
    assert ns in e["app_cpu"] and ns in e["app_memory"] and ns in e["replicaset_owner"]


def test_catalogue_names_are_unique_and_scoped() -> None:
    every = dm.catalogue(dm.SCOPES, AppMetrics())
    names = [q.name for q in every]
    assert len(names) == len(set(names))
    assert names.count("kube_node_info") == 1
    assert {q.scope for q in dm.catalogue(["cluster"], AppMetrics())} == {"cluster"}
    assert not any(q.name.startswith("app_") for q in dm.catalogue(["nodes"], AppMetrics()))


def test_captured_answers_came_from_the_catalogue() -> None:
    """The data files hold answers to exactly today's expressions (re-capture if this fails)."""
    for scopes, name, ns in ((["nodes"], "prom-nodes.json", ()),
                             (["cluster"], "prom-cluster.json", ()),
                             (["apps"], "prom-apps.json",
                              ("development", "staging", "production"))):
        e = _exprs(scopes, namespaces=ns)  # type: ignore[arg-type]
        assert {k: v["expr"] for k, v in _load(name).items()} == e


# --------------------------------------------------------------------------------------------
# Answers


def test_parse_every_result_type() -> None:
    q = _load("prom-shapes.json")
    vec = dm.parse_result(q["vector"]["body"]["data"])
    assert vec.result_type == "vector" and len(vec.samples) == 2
    assert {s.labels["job"] for s in vec.samples} == {"etcd", "apiserver"}
    assert all(s.number == 1.0 for s in vec.samples)
    scalar = dm.parse_result(q["scalar"]["body"]["data"])
    assert scalar.result_type == "scalar" and scalar.samples[0].value == "+Inf"
    assert scalar.samples[0].number is None  # not a finite number: "no data", not inf
    matrix = dm.parse_result(q["matrix"]["body"]["data"])
    assert matrix.result_type == "matrix" and len(matrix.samples) >= 2
    assert [s.timestamp for s in matrix.samples] == sorted(s.timestamp for s in matrix.samples)
    string = dm.parse_result(q["string"]["body"]["data"])
    assert string.samples[0].value == "hello"


@pytest.mark.parametrize("bad", [None, [], {"resultType": "vector"},
                                 {"resultType": "weird", "result": []},
                                 {"resultType": "vector", "result": [{"metric": {}}]},
                                 {"resultType": "vector", "result": ["x"]}])
def test_malformed_answers_are_value_errors(bad: object) -> None:
    with pytest.raises(ValueError):
        dm.parse_result(bad)


def test_bad_data_error_position_gets_a_caret() -> None:
    q = _load("prom-shapes.json")["bad_data"]
    assert q["http_status"] == 400 and q["body"]["errorType"] == "bad_data"
    error = q["body"]["error"]
    assert "1:17: parse error" in error
    assert dm.point_at(q["expr"], error) == "sum(rate(up[5m])\n" + " " * 16 + "^"
    assert dm.point_at("up +\n foo)", "2:6: parse error: unexpected right parenthesis") == (
        " foo)\n     ^")
    assert dm.point_at("up", "some other failure") is None
    assert dm.point_at("up", "9:1: parse error: x") is None


# --------------------------------------------------------------------------------------------
# Nodes


def test_nodes_from_the_lab() -> None:
    nodes = dm.build_nodes(_results("prom-nodes.json"))
    assert [n.node for n in nodes] == ["lab-host"]
    n = nodes[0]
    assert n.instance.startswith("127.0.0.1:")
    for pct in (n.cpu_percent, n.memory_percent, n.disk_percent):
        assert pct is not None and 0 <= pct <= 100
    assert n.filesystems and n.disk_percent == n.filesystems[0].used_percent
    assert n.disk_mountpoint == n.filesystems[0].mountpoint
    assert all(f.fstype not in dm.IGNORED_FSTYPES for f in n.filesystems)
    assert n.network_receive_bytes_per_second is not None
    assert n.network_receive_bytes_per_second >= 0


def _without_node_label(samples: list[dm.Sample]) -> list[dm.Sample]:
    return [s.model_copy(update={"labels": {k: v for k, v in s.labels.items() if k != "node"}})
            for s in samples]


def test_node_name_rules_on_lab_series() -> None:
    r = _results("prom-nodes.json")
    uname = r["node_uname"].samples
    kube = r["kube_node_info"].samples
    inst = uname[0].labels["instance"]
    # 1. the scrape config's node label
    assert dm.node_names(uname, kube) == {inst: "lab-host"}
    bare = _without_node_label(uname)
    # the lab's kwok nodes that report an internal_ip all report 127.0.0.1: ambiguous, so no
    # IP match, and the host name is not a node name: the instance itself is shown
    with_ip = [s for s in kube if "internal_ip" in s.labels]
    assert {s.labels["internal_ip"] for s in with_ip} == {"127.0.0.1"} and len(with_ip) > 1
    assert dm.node_names(bare, kube) == {inst: inst}
    # 2. a unique internal_ip match
    assert dm.node_names(bare, with_ip[:1]) == {inst: with_ip[0].labels["node"]}
    # 3. node-exporter's nodename equal to a node name
    renamed = [s.model_copy(update={"labels": {**s.labels, "node": uname[0].labels["nodename"]}})
               for s in kube]
    assert dm.node_names(bare, renamed) == {inst: uname[0].labels["nodename"]}


def test_failed_node_queries_leave_none() -> None:
    r = _results("prom-nodes.json")
    del r["node_cpu"], r["node_disk"]
    (n,) = dm.build_nodes(r)
    assert n.cpu_percent is None and n.disk_percent is None and n.filesystems == []
    assert n.memory_percent is not None


# --------------------------------------------------------------------------------------------
# Cluster


def test_cluster_from_the_lab() -> None:
    c = dm.build_cluster(_results("prom-cluster.json"))
    assert c.nodes_total == 6 and len(c.nodes) == 6
    assert c.nodes_ready == sum(1 for n in c.nodes if n.ready == "True")
    for n in c.nodes:
        assert n.cpu_allocatable_cores and n.memory_allocatable_bytes
        assert n.cpu_requested_cores is not None and n.cpu_requested_percent is not None
        assert math.isclose(n.cpu_requested_percent,
                            n.cpu_requested_cores / n.cpu_allocatable_cores * 100)
    assert c.apiserver.request_p99_seconds is not None and c.apiserver.request_p99_seconds > 0
    assert c.apiserver.error_5xx_share is not None and 0 <= c.apiserver.error_5xx_share <= 1
    (etcd,) = c.etcd
    assert etcd.has_leader is True
    assert etcd.db_size_bytes and etcd.quota_bytes and etcd.db_used_percent is not None
    assert math.isclose(etcd.db_used_percent, etcd.db_size_bytes / etcd.quota_bytes * 100)
    assert [r.restarts_1h for r in c.restarts] == sorted((r.restarts_1h for r in c.restarts),
                                                         reverse=True)
    assert all(r.restarts_1h > 0 for r in c.restarts)
    assert all(p.phase == "Failed" for p in c.failed_pods)
    assert all(p.phase == "Pending" for p in c.pending_pods)


def test_cluster_with_failed_queries() -> None:
    r = _results("prom-cluster.json")
    for name in ("node_ready", "node_requests", "apiserver_p99", "etcd_has_leader"):
        del r[name]
    c = dm.build_cluster(r)
    assert c.nodes_total == 6 and c.nodes_ready == 0
    assert all(n.ready is None and n.cpu_requested_cores is None for n in c.nodes)
    assert c.apiserver.request_p99_seconds is None
    assert c.etcd[0].has_leader is None and c.etcd[0].db_size_bytes is not None


# --------------------------------------------------------------------------------------------
# Apps


def test_apps_without_application_metrics_show_no_data() -> None:
    apps = dm.build_apps(_results("prom-apps.json"), AppMetrics())
    assert {a.namespace for a in apps} <= {"development", "staging", "production"}
    web = {a.namespace: a for a in apps if a.workload == "web"}
    assert set(web) == {"development", "staging", "production"}
    assert all(a.kind == "Deployment" and a.pods >= 1 for a in web.values())
    for a in apps:
        assert (a.request_rate, a.p95_seconds, a.rate_4xx, a.rate_5xx, a.cpu_cores,
                a.memory_bytes) == (None,) * 6


def test_apps_with_real_red_metrics() -> None:
    r = _results("prom-apps-red.json")
    apps = {(a.namespace, a.workload): a for a in dm.build_apps(r, RED)}
    prom = apps[("", "prometheus")]  # workload_labels [job]: no namespace label
    assert prom.kind is None and prom.pods == 0
    assert prom.request_rate is not None and prom.request_rate > 0
    assert prom.p95_seconds is not None and prom.p95_seconds > 0
    assert prom.rate_4xx is not None and prom.rate_5xx is None  # Prometheus sent no 5xx
    # per-pod vectors are summed into the pod's top-level workload
    cpu_by_pod = {(s.labels["namespace"], s.labels["pod"]): s.number
                  for s in r["app_cpu"].samples}
    owners = dm.workloads(r["pod_owner"].samples, r["replicaset_owner"].samples)
    for (ns, name), a in apps.items():
        if a.kind is None:
            continue
        pods = [p for (pns, p), (_, w) in owners.items() if pns == ns and w == name]
        assert a.pods == len(pods)
        want = sum(v or 0.0 for (pns, p), v in cpu_by_pod.items() if pns == ns and p in pods)
        assert a.cpu_cores is None or math.isclose(a.cpu_cores, want)


def test_workloads_follow_replicasets_to_deployments() -> None:
    r = _results("prom-apps-red.json")
    owners = dm.workloads(r["pod_owner"].samples, r["replicaset_owner"].samples)
    kinds = {kind for kind, _ in owners.values()}
    assert "ReplicaSet" not in kinds and "Deployment" in kinds and "DaemonSet" in kinds
    for (_ns, pod), (kind, name) in owners.items():
        if kind == "Deployment":
            assert pod.startswith(name + "-")


# --------------------------------------------------------------------------------------------
# Report


def test_report_lists_failed_queries_and_pins_the_schema() -> None:
    app = AppMetrics()
    queries = dm.catalogue(dm.SCOPES, app)
    answers: dict[str, dm.InstantResult | str] = {}
    for f in ("prom-nodes.json", "prom-cluster.json", "prom-apps.json"):
        answers.update(_results(f))
    answers["etcd_quota"] = "Prometheus at X: query failed (execution): boom"
    report = dm.build_report("http://prom", dm.SCOPES, queries, answers, app)
    assert [f.name for f in report.failed_queries] == ["etcd_quota"]
    assert report.failed_queries[0].expr == "etcd_server_quota_backend_bytes"
    assert report.cluster is not None and report.cluster.etcd[0].quota_bytes is None
    dumped = report.model_dump(mode="json")
    assert list(dumped) == ["prometheus", "scopes", "namespaces", "nodes", "cluster", "apps",
                            "failed_queries"]
    assert list(dumped["nodes"][0]) == [
        "node", "instance", "cpu_percent", "memory_percent", "disk_percent", "disk_mountpoint",
        "filesystems", "network_receive_bytes_per_second", "network_transmit_bytes_per_second"]
    assert list(dumped["cluster"]) == ["nodes_total", "nodes_ready", "nodes", "restarts",
                                       "failed_pods", "pending_pods", "apiserver", "etcd"]
    assert list(dumped["apps"][0]) == ["namespace", "workload", "kind", "pods", "request_rate",
                                       "p95_seconds", "rate_4xx", "rate_5xx", "cpu_cores",
                                       "memory_bytes"]
    json.dumps(dumped, allow_nan=False)  # no NaN/Inf ever reaches the JSON output


def test_query_report_sorts_rows() -> None:
    q = _load("prom-shapes.json")["vector"]
    rep = dm.query_report("p", q["expr"], dm.parse_result(q["body"]["data"]))
    # sorted by label set: same __name__, then instance 127.0.0.1:27381 (etcd) < :27443
    assert [r.labels["job"] for r in rep.rows] == ["etcd", "apiserver"]
    assert rep.result_type == "vector" and all(r.value == "1" for r in rep.rows)


# --------------------------------------------------------------------------------------------
# Service and CLI helpers (no network)


def test_service_endpoint_is_reached_through_the_api_server_proxy(tmp_path: Path) -> None:
    """Only the URL is built; nothing is sent (the lab's pods are not reachable by design)."""
    from k3sops.adapters.kube import KubeAdapter, KubeconfigSource

    kc = tmp_path / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443', "
        "insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: not-a-secret}}]\n"
        "contexts: [{name: t, context: {cluster: c, user: u}}]\n")
    kube = KubeAdapter(KubeconfigSource(kc, "test"))
    try:
        api = svc.prometheus_api(Endpoint(service="monitoring/prometheus-server:80"), kube)
        assert api.base_url == ("https://127.0.0.1:6443/api/v1/namespaces/monitoring/services/"
                                "http:prometheus-server:80/proxy")
        assert api.how == "service monitoring/prometheus-server:80 via https://127.0.0.1:6443"
        api.close()
        api = svc.prometheus_api(Endpoint(service="mon/prom:web", scheme="https"), kube)
        assert api.base_url.endswith("/namespaces/mon/services/https:prom:web/proxy")
        api.close()
    finally:
        kube.close()
    with pytest.raises(ConfigError):
        svc.prometheus_api(Endpoint(service="monitoring/prometheus-server:80"), None)


def test_default_endpoint_and_env_namespaces() -> None:
    bare = Settings(kubeconfig=None, context=None, platform=None)
    assert svc.prometheus_endpoint(bare).service == "monitoring/prometheus-server:80"
    with pytest.raises(UsageError):
        svc.env_namespaces(bare, "staging")
    platform = parse_platform(
        "name: p\nenvironments:\n  staging: {namespaces: [a, b]}\n  production: {}\n"
        "monitoring: {prometheus: {url: 'http://127.0.0.1:9090'}}\n")
    s = Settings(kubeconfig=None, context=None, platform=platform)
    assert svc.env_namespaces(s, None) == []
    assert svc.env_namespaces(s, "staging") == ["a", "b"]
    assert svc.env_namespaces(s, "production") == []
    with pytest.raises(UsageError) as e:
        svc.env_namespaces(s, "development")
    assert "production, staging" in str(e.value) and e.value.exit_code == ExitCode.USAGE
    assert svc.prometheus_endpoint(s).url == "http://127.0.0.1:9090"


def test_query_error_is_a_usage_error() -> None:
    assert QueryError("x").exit_code == ExitCode.USAGE


@pytest.mark.parametrize(("argv", "want"), [
    (["--watch"], ["--watch=5"]),
    (["--watch", "2"], ["--watch", "2"]),
    (["--watch=2", "nodes"], ["--watch=2", "nodes"]),
    (["--watch", "nodes"], ["--watch=5", "nodes"]),
    (["-w", "--count", "2"], ["--watch=5", "--count", "2"]),
    (["--watch", "0.5", "--count", "1"], ["--watch", "0.5", "--count", "1"]),
    (["--query", "x", "--", "--watch"], ["--query", "x", "--", "--watch"]),
])
def test_optional_watch_value(argv: list[str], want: list[str]) -> None:
    assert optional_watch(argv) == want
