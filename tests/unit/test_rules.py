"""The alert rule catalogue: scoping per environment, K3s awareness, rendering, and the
generated promtool unit tests run by the real promtool (a local binary, no lab needed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from k3sops.adapters.promtool import Promtool
from k3sops.config import Platform, parse_platform
from k3sops.domain.rules import (
    CATALOGUE,
    build_rules,
    prometheus_rules,
    promtool_tests,
    rule_file,
    to_yaml,
)
from k3sops.domain.rules.templates import (
    expand,
    humanize,
    humanize_duration,
    humanize_percentage,
)
from k3sops.services import alerts as service

pytestmark = pytest.mark.unit

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool not installed (Debian: prometheus)")

# The shape of the lab's platform.yaml: three environments on one context, one namespace each.
LAB = """
name: k3sops-lab
environments:
  development: {context: lab, namespaces: [development]}
  staging: {context: lab, namespaces: [staging]}
  production: {context: lab, namespaces: [production]}
"""

# Distinct thresholds per environment, so tests can tell whose thresholds a rule uses.
TUNED = """
name: tuned
environments:
  development:
    context: lab
    namespaces: [dev-a, dev-b]
    thresholds: {cpu_percent: 95, restarts_per_hour: 10, p95_latency_seconds: 2, for: 15m}
  staging:
    context: lab
    namespaces: [staging]
    thresholds: {cpu_percent: 90, restarts_per_hour: 5}
  production:
    context: lab
    namespaces: [shop, payments]
    thresholds:
      cpu_percent: 72.5
      memory_percent: 66
      disk_free_percent: 15
      for: 2m
      restarts_per_hour: 1
      http_error_rate_percent: 1.5
      p95_latency_seconds: 0.25
      cert_expiry_days: 30
"""

# Everything switched the other way: separate control plane, no etcd metrics, backups,
# runbook URLs, custom application metric names, awkward thresholds, separate clusters.
ODD = """
name: odd
environments:
  production:
    context: prod
    namespaces: [shop]
    thresholds: {cpu_percent: 99.9, memory_percent: 1.5, disk_free_percent: 2,
                 for: 1h30m, restarts_per_hour: 0, http_error_rate_percent: 0.3,
                 p95_latency_seconds: 0.333, cert_expiry_days: 1}
  staging:
    namespaces: [s1, s2]
    thresholds: {for: "0", p95_latency_seconds: 75}
  development:
    thresholds: {cpu_percent: 0.01, for: 0s, disk_free_percent: 99.9}
monitoring:
  embedded_control_plane: false
  etcd_metrics: false
  runbook_base_url: https://runbooks.example.com/k3sops/
  app_metrics:
    requests_total: req_total
    duration_seconds: req_seconds
    status_label: status
    workload_labels: [namespace, service]
backup: {repository: /srv/restic, password_env: RESTIC_PASSWORD}
"""

PLATFORMS = {"lab": LAB, "tuned": TUNED, "odd": ODD}


def platform(text: str) -> Platform:
    return parse_platform(text, "test.yaml")


def instances(p: Platform, rule_id: str) -> list:
    return [i for i in build_rules(p).instances if i.rule.id == rule_id]


# --------------------------------------------------------------------------------------------
# The catalogue itself


def test_rule_ids_and_runbook_ids_are_unique_and_well_formed() -> None:
    ids = [r.id for r in CATALOGUE]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9]+", i) for i in ids)
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", r.runbook_id) for r in CATALOGUE)
    assert {"NodeCPUHighUsage", "KubeNodeNotReady", "KubePodCrashLooping", "etcdNoLeader",
            "TargetDown", "K3sopsBackupTooOld"} <= set(ids)
    assert next(r for r in CATALOGUE if r.id == "KubeNodeNotReady").runbook_id == "node-not-ready"


def test_catalogue_covers_every_area_the_issue_asks_for() -> None:
    exprs = " ".join(r.expr(build_rules(platform(ODD)).instances[0].inputs) for r in CATALOGUE)
    for metric in ("node_cpu_seconds_total", "node_memory_MemAvailable_bytes",
                   "node_filesystem_avail_bytes", "predict_linear",
                   "kube_pod_container_status_waiting_reason",
                   "kube_pod_container_status_restarts_total", "kube_node_status_condition",
                   "node.kubernetes.io/unreachable", "apiserver_client_certificate_expiration",
                   "kubelet_certificate_manager_client_ttl_seconds",
                   "kubelet_certificate_manager_server_ttl_seconds",
                   "certmanager_certificate_expiration_timestamp_seconds",
                   "etcd_server_has_leader", "etcd_disk_wal_fsync_duration_seconds",
                   "etcd_disk_backend_commit_duration_seconds", "etcd_mvcc_db_total_size_in_bytes",
                   "apiserver_request_total", "apiserver_request_duration_seconds_bucket",
                   "k3sops_backup_last_success_timestamp_seconds"):
        assert metric in exprs, metric


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_every_rule_has_a_firing_and_a_quiet_case(name: str) -> None:
    rules = build_rules(platform(PLATFORMS[name]))
    assert rules.instances
    for inst in rules.instances:
        cases = inst.cases()
        assert cases.firing.alerts, inst.rule.id
        assert cases.firing.series and cases.quiet.series, inst.rule.id
        assert cases.quiet.alerts == (), inst.rule.id


# --------------------------------------------------------------------------------------------
# Thresholds and environments


def test_thresholds_flow_into_expressions_and_annotations() -> None:
    p = platform(TUNED)
    [cpu] = instances(p, "NodeCPUHighUsage")
    assert cpu.expr.endswith("> 72.5") and cpu.hold == "2m"
    assert "72.5%" in cpu.annotations()["description"]
    assert instances(p, "NodeMemoryHighUtilization")[0].expr.endswith("> 66")
    assert "< 15 and" in instances(p, "NodeFilesystemAlmostOutOfSpace")[0].expr
    assert "< 2592000 " in instances(p, "KubeClientCertificateExpiration")[0].expr  # 30 days
    assert instances(p, "KubeletServerCertificateExpiration")[0].expr.endswith("< 2592000")
    assert instances(p, "KubeAPIErrorsHigh")[0].expr.endswith("> 1.5")
    restarts = {i.environment: i for i in instances(p, "KubePodFrequentRestarts")}
    assert restarts["development"].expr.endswith("> 10")
    assert restarts["development"].hold == "15m"
    assert restarts["staging"].expr.endswith("> 5") and restarts["staging"].hold == "5m"
    assert restarts["production"].expr.endswith("> 1")
    latency = {i.environment: i.expr for i in instances(p, "ApplicationHighLatency")}
    assert latency["development"].endswith("> 2") and latency["production"].endswith("> 0.25")
    # Upstream's fixed values stay fixed.
    assert instances(p, "KubeNodeNotReady")[0].hold == "15m"
    assert instances(p, "etcdHighFsyncDurations")[0].expr.endswith("> 0.5")


def test_namespace_rules_once_per_environment_with_its_namespaces() -> None:
    p = platform(TUNED)
    crash = {i.environment: i for i in instances(p, "KubePodCrashLooping")}
    assert set(crash) == {"development", "staging", "production"}
    assert 'namespace=~"dev-a|dev-b"' in crash["development"].expr
    assert 'namespace=~"staging"' in crash["staging"].expr
    assert 'namespace=~"shop|payments"' in crash["production"].expr
    for env, inst in crash.items():
        assert inst.labels == {"environment": env, "severity": "warning"}
        assert inst.group == f"k3sops-pods-{env}"
    errors = {i.environment: i.expr for i in instances(p, "ApplicationHighErrorRate")}
    assert errors["production"].count('namespace=~"shop|payments"') == 2


def test_cluster_rules_once_per_context_with_the_most_production_like_thresholds() -> None:
    p = platform(TUNED)
    for rule in ("NodeCPUHighUsage", "KubeNodeNotReady", "etcdNoLeader", "TargetDown"):
        [inst] = instances(p, rule)
        assert inst.environment == "production"
        assert inst.labels["environment"] == "production"
        assert "namespace" not in inst.expr


def test_separate_contexts_get_their_own_cluster_rules_and_unset_is_one_context() -> None:
    p = platform(ODD)  # production: context prod; staging and development: unset (shared)
    cpu = {i.environment: i for i in instances(p, "NodeCPUHighUsage")}
    assert set(cpu) == {"production", "staging"}
    assert cpu["production"].context == "prod" and cpu["staging"].context is None
    assert cpu["production"].expr.endswith("> 99.9")
    assert cpu["staging"].expr.endswith("> 80")  # staging's thresholds, not development's 0.01


def test_environment_without_namespaces_takes_the_rest_of_its_cluster() -> None:
    p = platform(ODD)
    crash = {i.environment: i.expr for i in instances(p, "KubePodCrashLooping")}
    assert 'namespace=~"shop"' in crash["production"]
    assert 'namespace=~"s1|s2"' in crash["staging"]
    # development lists none and shares its context with staging: all but staging's.
    assert 'namespace!~"s1|s2"' in crash["development"]


def test_environments_claiming_everything_on_one_context_do_not_duplicate_alerts() -> None:
    p = platform("name: x\nenvironments: {development: {}, staging: {}, production: {}}")
    rules = build_rules(p)
    crash = [i for i in rules.instances if i.rule.id == "KubePodCrashLooping"]
    assert [i.environment for i in crash] == ["production"]
    assert "namespace" not in crash[0].expr
    assert len(rules.notes) == 2 and all("lists no namespaces" in n for n in rules.notes)


def test_every_alert_has_environment_severity_and_runbook() -> None:
    for text in PLATFORMS.values():
        p = platform(text)
        for inst in build_rules(p).instances:
            rule = inst.to_rule()
            assert set(rule["labels"]) == {"environment", "severity"}
            ann = rule["annotations"]
            assert ann["runbook_id"] == inst.rule.runbook_id
            assert ann["summary"] and ann["description"]
            assert "${" not in ann["summary"] + ann["description"]
            if p.monitoring.runbook_base_url:
                assert ann["runbook_url"] == ("https://runbooks.example.com/k3sops/"
                                              + inst.rule.runbook_id)
            else:
                assert "runbook_url" not in ann


def test_environment_filter_keeps_its_namespace_rules_and_its_clusters_rules() -> None:
    p = platform(TUNED)
    staging = build_rules(p).for_environment("staging", p)
    envs = {(i.rule.scope, i.environment) for i in staging.instances}
    assert envs == {("namespace", "staging"), ("cluster", "production")}


# --------------------------------------------------------------------------------------------
# K3s awareness, etcd, backups


def ids(p: Platform) -> set[str]:
    return {i.rule.id for i in build_rules(p).instances}


def test_k3s_embedded_control_plane_has_no_scheduler_or_controller_manager_alarms() -> None:
    p = platform(LAB)
    assert p.monitoring.embedded_control_plane
    assert not ids(p) & {"KubeSchedulerDown", "KubeControllerManagerDown"}
    [target] = instances(p, "TargetDown")
    assert "kube-scheduler" in target.expr and "kube-controller-manager" in target.expr
    assert "job!~" in target.expr
    quiet = " ".join(s.series for s in target.cases().quiet.series)
    assert 'job="kube-scheduler"' in quiet  # down, and proven not to alert


def test_separate_control_plane_gets_scheduler_and_controller_manager_rules() -> None:
    p = platform(ODD)
    assert {"KubeSchedulerDown", "KubeControllerManagerDown"} <= ids(p)
    target = instances(p, "TargetDown")[0]
    assert "kube-scheduler" not in target.expr


def test_etcd_rules_only_with_etcd_metrics() -> None:
    etcd = {r.id for r in CATALOGUE if r.category == "etcd"}
    assert len(etcd) == 5
    assert etcd <= ids(platform(LAB))
    assert not etcd & ids(platform(ODD))


def test_backup_missing_rule_only_with_a_backup_section() -> None:
    assert "K3sopsBackupMissing" not in ids(platform(LAB))
    assert "K3sopsBackupTooOld" in ids(platform(LAB))
    assert {"K3sopsBackupMissing", "K3sopsBackupTooOld"} <= ids(platform(ODD))
    [old] = instances(platform(LAB), "K3sopsBackupTooOld")
    # one series per (kind, target) though the service and the textfile both export it
    assert old.expr == ("time() - max by (kind, target) "
                        "(k3sops_backup_last_success_timestamp_seconds) > 93600")


# --------------------------------------------------------------------------------------------
# Rendering


def test_rule_file_is_deterministic_yaml_with_unique_groups() -> None:
    p = platform(TUNED)
    a, b = to_yaml(rule_file(build_rules(p))), to_yaml(rule_file(build_rules(p)))
    assert a == b
    doc = yaml.safe_load(a)
    names = [g["name"] for g in doc["groups"]]
    assert len(names) == len(set(names))
    assert all(set(r) == {"alert", "expr", "for", "labels", "annotations"}
               for g in doc["groups"] for r in g["rules"])
    assert "k3sops-nodes-production" in names and "k3sops-pods-development" in names


def test_prometheus_rule_objects() -> None:
    p = platform(ODD)
    objs = prometheus_rules(build_rules(p), "monitoring")
    assert [o.name for o in objs] == ["k3sops-production", "k3sops-staging",
                                      "k3sops-development"]
    for o in objs:
        assert o.body["apiVersion"] == "monitoring.coreos.com/v1"
        assert o.body["kind"] == "PrometheusRule"
        assert o.body["metadata"]["namespace"] == "monitoring"
        assert o.body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "k3sops"
        envs = {r["labels"]["environment"] for g in o.body["spec"]["groups"]
                for r in g["rules"]}
        assert envs == {o.environment}
    assert {o.environment: o.context for o in objs} == {
        "production": "prod", "staging": None, "development": None}


def test_render_service_formats_and_unknown_environment() -> None:
    p = platform(LAB)
    r = service.render(p, "prometheusrule")
    docs = [d for d in yaml.safe_load_all(r.text) if d]
    assert len(docs) == 3 and docs == r.document
    assert r.rules == len(build_rules(p).instances) == 33
    from k3sops.errors import UsageError
    with pytest.raises(UsageError, match="not in the platform"):
        service.render(platform("name: x\nenvironments: {production: {}}"), "rules",
                       "development")


# --------------------------------------------------------------------------------------------
# Prometheus template functions (expected annotations must match Prometheus' own output)


def test_humanize_functions_match_prometheus() -> None:
    # Values from Prometheus' template_test.go.
    assert humanize(0) == "0"
    assert humanize(1234567) == "1.235M"
    assert humanize(0.001234) == "1.234m"
    assert humanize(12.5) == "12.5"
    assert humanize_duration(0) == "0s"
    assert humanize_duration(3661) == "1h 1m 1s"
    assert humanize_duration(90061) == "1d 1h 1m 1s"
    assert humanize_duration(0.5) == "500ms"
    assert humanize_duration(1.5) == "1.5s"
    assert humanize_percentage(0.1234) == "12.34%"
    assert expand("{{ $labels.a }} at {{ $value | humanize }}", {"a": "x"}, 90) == "x at 90"
    with pytest.raises(ValueError, match="not supported"):
        expand("{{ $value }}", {}, 1)


# --------------------------------------------------------------------------------------------
# promtool: the generated unit tests pass, and a wrong expectation is caught


@needs_promtool
@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_promtool_passes_every_generated_case(name: str) -> None:
    report = service.run_tests(platform(PLATFORMS[name]))
    failures = {f"{r.rule}/{r.environment}": r.output for r in report.results if not r.passed}
    assert failures == {}
    assert report.check.passed, report.check.output
    assert report.check.rules_found == len(report.results) > 20


@needs_promtool
def test_promtool_catches_a_wrong_expectation() -> None:
    tests = promtool_tests(build_rules(platform(LAB)))
    t = next(x for x in tests if x.rule_id == "NodeCPUHighUsage")
    broken = t.test_file_text.replace("environment: production", "environment: staging", 1)
    assert broken != t.test_file_text
    runs = Promtool.find().test_rules({t.rule_file_name: t.rule_file_text,
                                       "broken.test.yml": broken,
                                       t.test_file_name: t.test_file_text},
                                      ["broken.test.yml", t.test_file_name])
    assert not runs["broken.test.yml"].ok
    assert 'environment="staging"' in runs["broken.test.yml"].output
    assert runs[t.test_file_name].ok


def test_missing_promtool_says_how_to_install_it(tmp_path: Path) -> None:
    from k3sops.errors import NotFound
    with pytest.raises(NotFound) as e:
        Promtool.find(str(tmp_path))
    assert "apt-get install prometheus" in str(e.value)


# --------------------------------------------------------------------------------------------
# The CLI (no cluster needed: render and test read only platform.yaml)


def k3sops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "k3sops", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def test_cli_render_json_and_file(tmp_path: Path) -> None:
    (tmp_path / "platform.yaml").write_text(TUNED)
    r = k3sops("-o", "json", "alerts", "render", "--env", "production", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    envs = {rule["labels"]["environment"] for g in doc["groups"] for rule in g["rules"]}
    assert envs == {"production"}
    r = k3sops("alerts", "render", "--format", "prometheusrule", "-f", "out.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    kinds = {d["kind"] for d in yaml.safe_load_all((tmp_path / "out.yaml").read_text()) if d}
    assert kinds == {"PrometheusRule"}


def test_cli_render_without_platform_uses_defaults_and_says_so(tmp_path: Path) -> None:
    r = k3sops("alerts", "render", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "default platform" in r.stderr
    doc = yaml.safe_load(r.stdout)
    assert any(g["name"] == "k3sops-nodes-production" for g in doc["groups"])


@needs_promtool
def test_cli_test_reports_every_rule_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "platform.yaml").write_text(LAB)
    r = k3sops("-o", "json", "alerts", "test", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["failed"] == 0 and data["passed"] == len(data["results"]) == 33
    assert data["check"]["passed"] and data["promtool"].startswith("promtool")


@needs_promtool
def test_cli_test_exits_1_and_shows_promtool_output_when_a_rule_cannot_fire(
        tmp_path: Path) -> None:
    # cpu_percent 100: usage can never exceed it, so the firing case fails (a useless rule).
    (tmp_path / "platform.yaml").write_text(
        LAB.replace("production: {context: lab, namespaces: [production]}",
                    "production: {context: lab, namespaces: [production], "
                    "thresholds: {cpu_percent: 100}}"))
    r = k3sops("alerts", "test", cwd=tmp_path)
    assert r.returncode == 1
    assert "NodeCPUHighUsage" in r.stderr and "1 of 33 rule tests failed" in r.stderr
    assert "FAILED" in r.stdout and "got:[]" in r.stdout.replace(" ", "")
