"""Emergency procedures, DNS probe reading, etcd membership and performance, on real data.

Objects: ``tests/data/check-dev-lab.json`` (raw LISTs captured read-only from a lab with the
crashloop, pending, failed-pod, oomkilled, stuck-rollout, node-notready and svc-no-endpoints
scenarios). Health endpoints, nodes and Prometheus answers (etcd, node-exporter, container
series): ``tests/data/emergency-lab.json``, captured read-only from a fresh lab. Where a test
needs a broken state the data lacks (etcd without leader, an expired certificate), it edits a
copy of the captured data and says so.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from k3sops.domain import diagnose as dg
from k3sops.domain import dnsprobe as dp
from k3sops.domain import emergency as em
from k3sops.domain import etcdmember
from k3sops.domain import performance as perf
from k3sops.domain.checks.base import CheckContext
from k3sops.domain.findings import Source
from k3sops.domain.metrics import InstantResult, parse_result
from k3sops.domain.runbooks import by_id
from k3sops.domain.snapshot import ClusterSnapshot, meta

pytestmark = pytest.mark.unit
DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="module")
def dev() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "check-dev-lab.json").read_text())
    return data


@pytest.fixture(scope="module")
def lab() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "emergency-lab.json").read_text())
    return data


def _time(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def _snap(dev: dict[str, Any], edit: Any = None) -> ClusterSnapshot:
    objects = copy.deepcopy(dev["objects"])
    if edit is not None:
        edit(objects)
    return ClusterSnapshot(now=_time(dev["captured_at"]), objects=objects)


def _facts(dev: dict[str, Any], edit: Any = None, **kw: Any) -> em.Facts:
    snap = _snap(dev, edit)
    return em.Facts(now=snap.now, snapshot=snap, sources=[
        Source(name="kubernetes", ok=True, endpoint="https://127.0.0.1:6443")], **kw)


def _prom(lab: dict[str, Any], prefix: str = "") -> dict[str, InstantResult]:
    return {k[len(prefix):]: parse_result(v) for k, v in lab["prometheus"].items()
            if k.startswith(prefix)}


def _emitted_runbooks(results: list[em.CheckResult]) -> set[str]:
    out = {r.runbook for r in results if r.runbook}
    out |= {p.runbook for r in results for p in r.proposals if p.runbook}
    out |= {f.runbook for r in results for f in r.findings}
    return out


# --- cluster-unresponsive ---------------------------------------------------------------------

def test_live_and_ready_api_server_passes(lab: dict[str, Any], dev: dict[str, Any]) -> None:
    facts = _facts(dev)
    for key, path in (("livez", "/livez"), ("readyz", "/readyz?verbose")):
        facts.probes[key] = em.Probe(path=path, reachable=True, status=lab[key]["status"],
                                     seconds=0.02, body=lab[key]["body"])
    assert em.check_livez(facts).status == "ok"
    ready = em.check_readyz(facts)
    assert ready.status == "ok" and ready.evidence["failed_checks"] == []


def test_unreachable_api_server_fails_with_the_cluster_down_runbook(dev: dict[str, Any]) -> None:
    facts = _facts(dev)
    facts.probes["livez"] = em.Probe(path="/livez", reachable=False,
                                     error="cannot reach the API server: connection refused")
    r = em.check_livez(facts)
    assert r.status == "fail" and r.runbook == "emergency-cluster-down"
    assert "connection refused" in r.detail
    assert r.proposals[0].action == "manual" and "systemctl status k3s" in str(
        r.proposals[0].command)


def test_readyz_names_the_failing_etcd_check(lab: dict[str, Any], dev: dict[str, Any]) -> None:
    # The captured body with its etcd line turned into the apiserver's failure format.
    body = lab["readyz"]["body"].replace("[+]etcd ok", "[-]etcd failed: reason withheld")
    assert "[-]etcd failed" in body
    facts = _facts(dev)
    facts.probes["readyz"] = em.Probe(path="/readyz?verbose", reachable=True, status=500,
                                      seconds=0.1, body=body)
    r = em.check_readyz(facts)
    assert r.status == "fail" and r.runbook == "etcd-no-leader"
    assert r.evidence["failed_checks"] == ["etcd failed: reason withheld"]


def test_slow_livez_is_a_warning(dev: dict[str, Any]) -> None:
    facts = _facts(dev)
    facts.probes["livez"] = em.Probe(path="/livez", reachable=True, status=200, seconds=2.5,
                                     body="ok")
    r = em.check_livez(facts)
    assert r.status == "warn" and r.runbook == "apiserver-latency"


def test_etcd_from_captured_metrics(lab: dict[str, Any], dev: dict[str, Any]) -> None:
    facts = _facts(dev, etcd=_prom(lab, "etcd_"))
    r = em.check_etcd(facts)
    assert r.status == "ok"
    member = r.evidence["members"][0]
    assert member["has_leader"] is True and member["is_learner"] is False
    assert member["db_size_bytes"] > 0 and member["quota_bytes"] > member["db_size_bytes"]


def test_etcd_without_leader_fails(lab: dict[str, Any], dev: dict[str, Any]) -> None:
    etcd = _prom(lab, "etcd_")
    lost = etcd["has_leader"].samples[0].model_copy(update={"value": "0"})
    etcd["has_leader"] = etcd["has_leader"].model_copy(update={"samples": [lost]})
    r = em.check_etcd(_facts(dev, etcd=etcd))
    assert r.status == "fail" and r.runbook == "etcd-no-leader"


def test_etcd_not_scraped_is_skipped_not_failed(dev: dict[str, Any]) -> None:
    assert em.check_etcd(_facts(dev, etcd_enabled=False)).status == "skipped"


def test_quorum_lost_when_two_of_three_servers_are_not_ready(dev: dict[str, Any]) -> None:
    def down(objects: dict[str, Any]) -> None:
        for n in objects["nodes"]:
            if meta(n)[1] in ("k3s-server-1", "k3s-server-2"):
                for c in n["status"]["conditions"]:
                    if c["type"] == "Ready":
                        c["status"] = "Unknown"
    r = em.check_control_plane_nodes(_facts(dev, down))
    assert r.status == "fail" and r.runbook == "etcd-insufficient-members"
    assert r.evidence["ready"] == 1 and r.evidence["quorum"] == 2
    assert {p.target for p in r.proposals} == {"k3s-server-1", "k3s-server-2"}


def test_healthy_servers_pass_and_a_learner_is_reported(lab: dict[str, Any],
                                                        dev: dict[str, Any]) -> None:
    server = lab["nodes"][0]
    assert em.check_control_plane_nodes(_facts(dev)).status == "ok"

    def learner(objects: dict[str, Any]) -> None:
        objects["nodes"] = [n for n in objects["nodes"] if meta(n)[1] != "k3s-server-1"]
        node = copy.deepcopy(server)
        for c in node["status"]["conditions"]:
            if c["type"] == "EtcdIsVoter":
                c.update(status="False", reason="MemberIsLearner",
                         message="Node has not been promoted to voting member of the etcd "
                                 "cluster")
        objects["nodes"].append(node)
    r = em.check_control_plane_nodes(_facts(dev, learner))
    assert r.status == "warn" and "MemberIsLearner" in r.detail


def test_expired_serving_certificate_fails(dev: dict[str, Any]) -> None:
    facts = _facts(dev)
    facts.cert = em.CertInfo(subject="kube-apiserver", issuer="k3s-server-ca",
                             not_after=facts.now - timedelta(days=1))
    r = em.check_certificates(facts)
    assert r.status == "fail" and r.runbook == "emergency-certificate-expired"
    facts.cert = facts.cert.model_copy(update={"not_after": facts.now + timedelta(days=300)})
    assert em.check_certificates(facts).status == "ok"


def test_kube_unreadable_makes_object_checks_unknown(dev: dict[str, Any]) -> None:
    facts = em.Facts(now=_time(dev["captured_at"]), snapshot=ClusterSnapshot(
        now=_time(dev["captured_at"])), sources=[Source(
            name="kubernetes", ok=False, endpoint="https://127.0.0.1:6443",
            error="connection refused")])
    for fn in (em.check_control_plane_nodes, em.check_recent_events, em.check_workload,
               em.check_nodes_pattern, em.check_coredns):
        r = fn(facts)
        assert r.status == "unknown" and "connection refused" in r.detail


# --- app-down ---------------------------------------------------------------------------------

def test_stuck_rollout_proposes_a_rollback_by_hand(dev: dict[str, Any]) -> None:
    facts = _facts(dev, app="api", namespace="development")
    r = em.check_workload(facts)
    assert r.status == "fail" and r.runbook == "deployment-rollout-stuck"
    assert r.proposals[0].action == "manual"
    assert r.proposals[0].command == "kubectl -n development rollout undo deployment/api"


def test_crashlooping_app_proposes_a_restart_with_the_pod_chain(dev: dict[str, Any]) -> None:
    facts = _facts(dev, app="checkout", namespace="development")
    pods = em.check_pods(facts)
    assert pods.status == "fail"
    assert {f.check for f in pods.findings} & {"pod-crashloop", "pod-oomkilled"}
    assert [p.action for p in pods.proposals] == ["restart"]
    assert pods.proposals[0].target == "deployment/checkout"


def test_scaled_to_zero_proposes_scaling_up(dev: dict[str, Any]) -> None:
    r = em.check_workload(_facts(dev, app="idle", namespace="t-checks"))
    assert r.status == "fail"
    assert r.proposals == [em.Proposal(action="scale", target="deployment/idle",
                                       namespace="t-checks", replicas=1, reason="scaled to 0",
                                       runbook="deployment-unavailable")]


def test_service_chain_of_a_healthy_app(dev: dict[str, Any]) -> None:
    r = em.check_service_chain(_facts(dev, app="web", namespace="production"))
    assert r.status == "ok" and "Service web → 3 ready endpoint(s)" in r.detail


def test_app_workload_lookup_is_by_name_and_namespace(dev: dict[str, Any]) -> None:
    snap = _snap(dev)
    assert len(em.find_workload(snap, "web", None)) == 4
    assert [meta(o)[0] for _, o in em.find_workload(snap, "web", "staging")] == ["staging"]
    assert em.find_workload(snap, "postgres", None)[0][0] == "statefulset"


def test_logs_with_an_error_line_are_a_warning(dev: dict[str, Any]) -> None:
    facts = _facts(dev, logs={"checkout-x/checkout (previous)": [
        'level=info msg="starting"', "panic: dial tcp: connection refused"]})
    r = em.check_logs(facts)
    assert r.status == "warn" and "connection refused" in r.detail


# --- network-lost -----------------------------------------------------------------------------

def test_one_node_not_ready_pattern(dev: dict[str, Any]) -> None:
    r = em.check_nodes_pattern(_facts(dev))
    assert r.status == "fail" and r.evidence["pattern"] == "one-node"
    assert r.evidence["not_ready"] == ["k3s-agent-3"]


def test_all_agents_not_ready_pattern(dev: dict[str, Any]) -> None:
    def agents_down(objects: dict[str, Any]) -> None:
        for n in objects["nodes"]:
            if dg.node_role(n) == "agent":
                for c in n["status"]["conditions"]:
                    if c["type"] == "Ready":
                        c["status"] = "Unknown"
    p = em.not_ready_pattern(_snap(dev, agents_down))
    assert p["pattern"] == "all-agents" and len(p["not_ready"]) == 3


def test_coredns_down_proposes_its_restart(dev: dict[str, Any]) -> None:
    def dns_down(objects: dict[str, Any]) -> None:
        for d in objects["deployments"]:
            if meta(d)[1] == "coredns":
                d["status"]["availableReplicas"] = 0
    assert em.check_coredns(_facts(dev)).status == "ok"
    r = em.check_coredns(_facts(dev, dns_down))
    assert r.status == "fail" and r.runbook == "dns-coredns-unavailable"
    assert r.proposals[0].target == "deployment/coredns"
    assert r.proposals[0].namespace == "kube-system"


def test_ingress_controller_and_metallb_in_the_captured_lab(dev: dict[str, Any]) -> None:
    facts = _facts(dev)
    assert em.check_ingress_controller(facts).status == "ok"
    assert em.check_metallb(facts).status in ("ok", "fail")
    assert em.check_dns_probe(facts).status == "skipped"


def test_inconclusive_dns_probe_is_unknown_never_ok(dev: dict[str, Any]) -> None:
    facts = _facts(dev, dns_requested=True, dns=dp.DnsProbeResult(
        outcome="inconclusive", namespace="kube-system", pod="k3sops-dns-probe-1",
        node="k3s-agent-1", detail="scheduled on k3s-agent-1, a kwok fake node"))
    r = em.check_dns_probe(facts)
    assert r.status == "unknown" and r.detail.startswith("inconclusive:")


# --- every procedure, end to end over the captured data ---------------------------------------

def test_every_emitted_runbook_exists(lab: dict[str, Any], dev: dict[str, Any]) -> None:
    known = set(by_id())
    results: list[em.CheckResult] = []
    for app, ns in (("api", "development"), ("checkout", "development"), ("idle", "t-checks"),
                    ("web", "production")):
        facts = _facts(dev, app=app, namespace=ns, etcd=_prom(lab, "etcd_"))
        for proc in em.PROCEDURES:
            results += [s.fn(facts) for s in em.PROCEDURE_STEPS[proc]]
    facts = _facts(dev)
    facts.probes["livez"] = em.Probe(path="/livez", reachable=False, error="refused")
    facts.probes["readyz"] = em.Probe(path="/readyz", reachable=True, status=500,
                                      body="[-]etcd failed: reason withheld")
    results += [em.check_livez(facts), em.check_readyz(facts)]
    emitted = _emitted_runbooks(results) | set(em.PROCEDURE_RUNBOOK.values())
    assert emitted - known == set()
    assert len(emitted) >= 8


def test_timeline_markdown_lists_checks_decisions_and_next_steps(dev: dict[str, Any]) -> None:
    facts = _facts(dev, app="idle", namespace="t-checks")
    t0 = facts.now
    checks = [s.fn(facts) for s in em.PROCEDURE_STEPS["app-down"]]
    prop = em.proposals(checks)[0]
    actions = [em.ActionRecord(proposal=prop, decision="proposed",
                               why="no terminal and no --yes: only proposed")]
    steps, runbooks = em.next_steps("app-down", checks, actions)
    report = em.EmergencyReport(
        procedure="app-down", target="t-checks/idle", started_at=t0,
        finished_at=t0 + timedelta(seconds=3), checks=checks, actions=actions,
        next_steps=steps, runbooks=runbooks,
        timeline=[em.TimelineEntry(at=t0, kind="start", step="app-down", result="started"),
                  em.TimelineEntry(at=t0 + timedelta(seconds=1), kind="check",
                                   step=checks[0].title, result=checks[0].status,
                                   detail=checks[0].detail),
                  em.TimelineEntry(at=t0 + timedelta(seconds=2), kind="decision",
                                   step=prop.text, result="proposed", detail="no | terminal")])
    md = em.timeline_markdown(report)
    assert md.startswith("# Incident timeline: app-down (t-checks/idle)")
    assert f"- Started: {t0:%Y-%m-%d %H:%M:%S} UTC" in md
    assert "| time (UTC) | kind | step | result | detail |" in md
    assert f"| {t0 + timedelta(seconds=2):%H:%M:%S} | decision |" in md
    assert "no \\| terminal" in md  # table cells escape pipes
    assert "rerun with --yes" in md
    assert runbooks[0] == "emergency-app-down" and "deployment-unavailable" in runbooks


# --- DNS probe --------------------------------------------------------------------------------

def test_probe_pod_spec() -> None:
    pod = dp.probe_pod("kube-system", "k3sops-dns-probe-ab12", 90)
    c = pod["spec"]["containers"][0]
    assert c["command"] == ["nslookup", "kubernetes.default"]
    assert c["image"].startswith("busybox")
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["labels"][dp.PROBE_LABEL] == "dns"
    assert pod["spec"]["activeDeadlineSeconds"] == 90


def test_nslookup_outputs() -> None:
    ok = ["Server:\t\t10.43.0.10", "Address:\t10.43.0.10:53", "",
          "Name:\tkubernetes.default.svc.cluster.local", "Address: 10.43.0.1", ""]
    assert dp.parse_nslookup(ok) == ("success", ["10.43.0.1"],
                                     "kubernetes.default resolves to 10.43.0.1")
    nx = ["Server:\t\t10.43.0.10", "Address:\t10.43.0.10:53", "",
          "** server can't find kubernetes.default: NXDOMAIN", ""]
    assert dp.parse_nslookup(nx)[0] == "failure"
    down = [";; connection timed out; no servers could be reached"]
    assert dp.parse_nslookup(down)[0] == "failure"
    assert dp.parse_nslookup([])[0] == "inconclusive"


def test_inconclusive_probe_in_a_network_diagnosis(dev: dict[str, Any]) -> None:
    d = dg.diagnose_network(_snap(dev))
    dp.record(d, dp.DnsProbeResult(outcome="inconclusive", namespace="kube-system",
                                   pod="k3sops-dns-probe-1", detail="never ran", deleted=True))
    step = d.chain[-1]
    assert step.ok is False and step.detail.startswith("inconclusive: never ran")
    f = next(f for f in d.findings if f.check == "dns-probe-inconclusive")
    assert f.severity == "info" and f.runbook in by_id()


# --- etcd membership --------------------------------------------------------------------------

def test_etcd_member_views_on_a_lab_server(lab: dict[str, Any]) -> None:
    server, agent = lab["nodes"]
    view = etcdmember.member_view(server)
    assert view["voter"] is True and view["reason"] == "MemberNotLearner"
    assert view["member_name"] == "k3s-server-1-1a2b3c4d"
    assert view["member_address"] == "192.0.2.11"
    assert etcdmember.member_view(agent)["voter"] is None
    snap = ClusterSnapshot(now=_time(lab["captured_at"]), objects={"nodes": [server, agent]})
    d = dg.diagnose_node(snap, "k3s-server-1")
    etcdmember.record(d, server, _prom(lab, "etcd_"))
    steps = {c.step: c for c in d.chain}
    assert steps["etcd member (K3s)"].ok and "voter" in steps["etcd member (K3s)"].detail
    metrics_step = steps["etcd member (etcd metrics)"]
    assert metrics_step.ok and "leader yes" in metrics_step.detail


def test_non_voter_server_is_a_finding(lab: dict[str, Any]) -> None:
    server = copy.deepcopy(lab["nodes"][0])
    for c in server["status"]["conditions"]:
        if c["type"] == "EtcdIsVoter":
            c.update(status="False", reason="NotAMember",
                     message="Node is not a member of the etcd cluster")
    snap = ClusterSnapshot(now=_time(lab["captured_at"]), objects={"nodes": [server]})
    d = dg.diagnose_node(snap, "k3s-server-1")
    etcdmember.record(d, server, None, "Prometheus unreachable")
    f = next(f for f in d.findings if f.check == "etcd-member-not-voter")
    assert "NotAMember" in f.message and f.runbook in by_id()
    assert any(c.step == "etcd member (etcd metrics)" and "not read" in c.detail
               for c in d.chain)


# --- performance ------------------------------------------------------------------------------

def test_performance_ranks_pods_and_names_the_missing_throttling_source(
        lab: dict[str, Any], dev: dict[str, Any]) -> None:
    results = {k: v for k, v in _prom(lab).items() if not k.startswith("etcd_")}
    ctx = CheckContext(snapshot=_snap(dev), platform=None, period="daily")
    d, missing = perf.analyse(ctx, results, None, "http://127.0.0.1:9090")
    report = d.report("performance", missing)
    steps = {c.step: c for c in report.chain}
    assert steps["top pods by cpu (prometheus)"].ok
    assert "/" in steps["top pods by memory (prometheus)"].detail
    assert [s.name for s in missing] == ["metrics:throttling"]
    top = next(f for f in report.findings if f.check == "performance-top")
    assert len(top.evidence["pods_memory_bytes"]) == perf.TOP
    assert top.evidence["filesystems"]
    assert any(f.check == "pod-oomkilled" for f in report.findings)
    assert {f.runbook for f in report.findings} <= set(by_id())


def test_performance_nodes_from_metrics_api_without_node_exporter(dev: dict[str, Any]) -> None:
    ctx = CheckContext(snapshot=_snap(dev), platform=None, period="daily")
    # The shape metrics-server serves for metrics.k8s.io/v1beta1 NodeMetrics.
    nodes = [{"metadata": {"name": "k3s-agent-1"}, "usage": {"cpu": "7", "memory": "2Gi"}},
             {"metadata": {"name": "k3s-server-1"}, "usage": {"cpu": "500m",
                                                               "memory": "7Gi"}}]
    d, missing = perf.analyse(ctx, {}, [], "prom", nodes)
    assert "metrics:node_exporter" not in {s.name for s in missing}
    steps = {c.step: c for c in d.chain}
    assert steps["top nodes by cpu"].detail.startswith("k3s-agent-1 87.5%")
    assert not steps["top nodes by memory"].ok
    assert {(f.check, f.resource.name) for f in d.findings} >= {
        ("node-high-cpu", "k3s-agent-1"), ("node-high-memory", "k3s-server-1")}


def test_performance_without_container_series_uses_metrics_api_else_says_so(
        lab: dict[str, Any], dev: dict[str, Any]) -> None:
    results = {k: v for k, v in _prom(lab).items()
               if not k.startswith(("etcd_", "pod_", "has_container"))}
    ctx = CheckContext(snapshot=_snap(dev), platform=None, period="daily")
    _, missing = perf.analyse(ctx, results, None, "prom")
    assert {s.name for s in missing} == {"metrics:container_cpu", "metrics:container_memory",
                                        "metrics:throttling"}
    # The shape metrics-server serves for metrics.k8s.io/v1beta1 PodMetrics.
    pods = [{"metadata": {"namespace": "shop", "name": "api-1"},
             "containers": [{"name": "api", "usage": {"cpu": "250m", "memory": "300Mi"}}]},
            {"metadata": {"namespace": "shop", "name": "db-0"},
             "containers": [{"name": "db", "usage": {"cpu": "1200000n", "memory": "1Gi"}}]}]
    d, missing = perf.analyse(ctx, results, pods, "prom")
    assert {s.name for s in missing} == {"metrics:throttling"}
    steps = {c.step: c.detail for c in d.chain}
    assert steps["top pods by cpu (metrics.k8s.io)"].startswith("shop/api-1 250.0m")
    assert steps["top pods by memory (metrics.k8s.io)"].startswith("shop/db-0 1024Mi")


def test_low_disk_names_what_fills_the_node(lab: dict[str, Any], dev: dict[str, Any]) -> None:
    results = _prom(lab)
    avail = results["fs_avail"].samples[0]
    size = results["fs_size"].samples[0].number or 1.0
    full = avail.model_copy(update={"value": str(size * 0.03)})
    results["fs_avail"] = results["fs_avail"].model_copy(update={"samples": [full]})
    ctx = CheckContext(snapshot=_snap(dev), platform=None, period="daily")
    d, _ = perf.analyse(ctx, results, None, "prom")
    f = next(f for f in d.findings if f.check == "node-disk-space-low")
    assert f.severity == "critical" and "biggest filesystems by use" in f.message
    assert f.evidence["filesystems"][0]["mountpoint"] == avail.labels["mountpoint"]


def test_report_json_schema_is_pinned() -> None:
    props = em.EmergencyReport.model_json_schema()["properties"]
    assert set(props) == {"procedure", "target", "started_at", "finished_at", "checks",
                          "actions", "verification", "next_steps", "runbooks", "sources",
                          "timeline", "timeline_markdown", "interrupted"}
    check = em.CheckResult.model_json_schema()["properties"]
    assert set(check) == {"step", "title", "status", "detail", "evidence", "runbook",
                          "next_step", "proposals", "findings"}
    entry = em.TimelineEntry.model_json_schema()["properties"]
    assert set(entry) == {"at", "kind", "step", "result", "detail"}
