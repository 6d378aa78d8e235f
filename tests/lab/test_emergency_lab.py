"""Emergency procedures and the DNS probe against the lab, end to end through the CLI.

Everything is changed in a scratch namespace (deleted afterwards); the DNS probe pod is watched
while it exists and must be gone afterwards. The CLI runs without a terminal here, so without
``--yes`` changes are only proposed. kwok runs no containers: the DNS probe is inconclusive.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Lab, wait_for
from k3sops.domain.dnsprobe import PROBE_LABEL
from k3sops.domain.runbooks import by_id
from k3sops.lab.stages import FAULT_LABEL

pytestmark = pytest.mark.lab


@pytest.fixture
def scratch(lab: Lab) -> Iterator[str]:
    """A throwaway namespace, deleted afterwards."""
    ns = f"k3sops-emergency-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", ns)
    try:
        yield ns
    finally:
        lab.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _app(lab: Lab, ns: str, name: str, replicas: int, labels: dict[str, str] | None = None,
         ) -> None:
    """A Deployment and the Service selecting its pods."""
    sel = {"app": name}
    lab.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"replicas": replicas, "selector": {"matchLabels": sel},
                  "template": {"metadata": {"labels": {**sel, **(labels or {})}},
                               "spec": {"terminationGracePeriodSeconds": 0,
                                        "containers": [{"name": "c", "image": "busybox"}]}}}}))
    lab.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
         "spec": {"selector": sel, "ports": [{"port": 80, "targetPort": 8080}]}}))


def _deploy(lab: Lab, ns: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(lab.kubectl("get", "deployment", name, "-n", ns, "-o",
                                                 "json").stdout)
    return out


def _available(lab: Lab, ns: str, name: str, n: int) -> bool:
    st = _deploy(lab, ns, name).get("status") or {}
    return int(st.get("availableReplicas") or 0) == n


def test_app_down_scaled_to_zero_is_proposed_then_repaired_with_yes(
        lab: Lab, scratch: str, tmp_path: Path) -> None:
    _app(lab, scratch, "shop", 2)
    assert wait_for(lambda: _available(lab, scratch, "shop", 2), timeout=90)
    lab.kubectl("scale", "deployment/shop", "-n", scratch, "--replicas=0")
    assert wait_for(lambda: _available(lab, scratch, "shop", 0), timeout=60)
    state = tmp_path / "state"

    refused = lab.k3sops("-o", "json", "emergency", "app-down", "shop", "-n", scratch,
                         "--state-dir", str(state))
    assert refused.returncode == 3, refused.stderr
    report = json.loads(refused.stdout)
    assert [(a["proposal"]["action"], a["decision"]) for a in report["actions"]] \
        == [("scale", "proposed")]
    assert "only proposed" in report["actions"][0]["why"]
    assert {c["step"]: c["status"] for c in report["checks"]}["workload"] == "fail"
    assert _deploy(lab, scratch, "shop")["spec"]["replicas"] == 0  # nothing changed
    assert not (state / "audit.jsonl").exists()
    assert "[emergency]" in refused.stderr and "workload rollout and replicas: fail" \
        in refused.stderr  # each check shown as it ran, on stderr

    timeline = tmp_path / "incident.md"
    fixed = lab.k3sops("-o", "json", "emergency", "app-down", "shop", "-n", scratch, "--yes",
                       "--state-dir", str(state), "--timeline", str(timeline), "--wait", "90s",
                       timeout=180)
    assert fixed.returncode == 0, fixed.stderr
    report = json.loads(fixed.stdout)
    action = report["actions"][0]
    assert (action["decision"], action["result"]) == ("applied", "ok")
    assert _deploy(lab, scratch, "shop")["spec"]["replicas"] == 1
    assert {v["step"]: v["status"] for v in report["verification"]} == {
        "workload": "ok", "pods": "ok", "service-chain": "ok"}
    audit = [json.loads(x) for x in (state / "audit.jsonl").read_text().splitlines()]
    assert [(a["what"]["action"], a["result"]) for a in audit] == [("scale", "ok")]
    md = timeline.read_text()
    assert md == report["timeline_markdown"]
    assert md.startswith(f"# Incident timeline: app-down ({scratch}/shop)")
    kinds = [e["kind"] for e in report["timeline"]]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert {"check", "decision", "action", "verify"} <= set(kinds)
    assert "| decision | scale deployment/shop" in md and "| applied |" in md
    assert all(r in by_id() for r in report["runbooks"])


def test_app_down_crashloop_restart_goes_through_the_audited_plan(
        lab: Lab, scratch: str, tmp_path: Path) -> None:
    """kwok's crash stage follows the pod label, so a restart cannot cure it: the restart is
    made and audited, and the verification honestly still fails (exit 3)."""
    _app(lab, scratch, "worker", 1, {FAULT_LABEL: "crashloop"})

    def crashing() -> bool:
        pods = json.loads(lab.kubectl("get", "pods", "-n", scratch, "-o", "json").stdout)
        return any(cs.get("restartCount", 0) > 0 for p in pods["items"]
                   for cs in p["status"].get("containerStatuses") or [])
    assert wait_for(crashing, timeout=90)
    before = _deploy(lab, scratch, "worker")["metadata"]["generation"]
    r = lab.k3sops("-o", "json", "emergency", "app-down", "worker", "-n", scratch, "--yes",
                   "--state-dir", str(tmp_path), "--wait", "5s",
                   # kwok's crash stage fires 20-45 s after a pod starts: the restarted pod
                   # looks healthy until then, so verification must watch longer than that.
                   "--settle", "60s", timeout=240)
    assert r.returncode == 3, r.stderr
    report = json.loads(r.stdout)
    pods = next(c for c in report["checks"] if c["step"] == "pods")
    assert pods["status"] == "fail"
    assert {f["check"] for f in pods["findings"]} & {"pod-crashloop", "pod-not-ready"}
    restart = next(a for a in report["actions"] if a["proposal"]["action"] == "restart")
    assert (restart["decision"], restart["result"]) == ("applied", "ok")
    dep = _deploy(lab, scratch, "worker")
    assert dep["metadata"]["generation"] > before
    assert "kubectl.kubernetes.io/restartedAt" in dep["spec"]["template"]["metadata"][
        "annotations"]
    audit = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(a["what"]["action"], a["result"]) for a in audit] == [("restart", "ok")]
    logs = next(c for c in report["checks"] if c["step"] == "logs")
    assert logs["status"] in ("ok", "warn") and logs["evidence"]["logs"]


def test_app_down_unknown_app_is_a_clear_error_before_anything(lab: Lab) -> None:
    r = lab.k3sops("emergency", "app-down", "webb", "-n", "production")
    assert r.returncode == 1, r.stderr
    assert "no Deployment or StatefulSet named webb in namespace production" in r.stderr
    assert "similar: web" in r.stderr and "Traceback" not in r.stderr
    amb = lab.k3sops("emergency", "app-down", "web")
    assert amb.returncode == 2 and "ambiguous" in amb.stderr


def test_cluster_unresponsive_on_a_healthy_lab(lab: Lab) -> None:
    r = lab.k3sops("-o", "json", "emergency", "cluster-unresponsive")
    assert r.returncode == 0, r.stderr
    checks = {c["step"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["api-livez"]["status"] == "ok"
    assert checks["api-readyz"]["status"] == "ok"
    assert checks["etcd"]["status"] == "ok"
    assert checks["etcd"]["evidence"]["members"][0]["has_leader"] is True
    assert checks["control-plane-nodes"]["evidence"]["ready"] == 3
    assert checks["certificates"]["evidence"]["days_left"] > 300


def test_cluster_unresponsive_with_the_api_server_unreachable(lab: Lab,
                                                              tmp_path: Path) -> None:
    """A kubeconfig pointing at a closed port: the procedure runs, says so, exits 3."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kc = tmp_path / "dead.kubeconfig"
    text = lab.layout.kubeconfig.read_text()
    server = next(ln.split("server:", 1)[1].strip() for ln in text.splitlines()
                  if "server:" in ln)
    kc.write_text(text.replace(server, f"https://127.0.0.1:{port}"))
    r = lab.k3sops("-o", "json", "--kubeconfig", str(kc), "emergency", "cluster-unresponsive")
    assert r.returncode == 3, r.stderr
    report = json.loads(r.stdout)
    checks = {c["step"]: c for c in report["checks"]}
    assert checks["api-livez"]["status"] == "fail"
    assert checks["api-livez"]["runbook"] == "emergency-cluster-down"
    assert checks["control-plane-nodes"]["status"] == "unknown"
    assert checks["etcd"]["status"] == "ok"  # read from Prometheus, not through the API
    assert report["runbooks"][0] == "emergency-cluster-down"
    assert any("systemctl status k3s" in s for s in report["next_steps"])


def _watch_probe_pods(lab: Lab) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(lab.binaries["kubectl"]), "--kubeconfig", str(lab.layout.kubeconfig), "get",
         "pods", "-A", "-l", f"{PROBE_LABEL}=dns", "--watch", "--output-watch-events",
         "-o", "json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _events(text: str) -> list[dict[str, Any]]:
    dec, out, i = json.JSONDecoder(), [], 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        obj, i = dec.raw_decode(text, i)
        out.append(obj)
    return out


def _probe_pods(lab: Lab) -> list[Any]:
    r = lab.kubectl("get", "pods", "-A", "-l", f"{PROBE_LABEL}=dns", "-o", "json")
    return list(json.loads(r.stdout)["items"])


def test_diagnose_network_dns_probe_is_created_deleted_and_inconclusive(lab: Lab) -> None:
    watch = _watch_probe_pods(lab)
    try:
        time.sleep(1.5)  # the watch is established before the pod is created
        r = lab.k3sops("-o", "json", "diagnose", "network", "--probe-dns", "--probe-timeout",
                       "30s")
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: not _probe_pods(lab), timeout=30), "probe pod left behind"
        time.sleep(1.0)
    finally:
        watch.terminate()
        out, _ = watch.communicate(timeout=10)
    events = _events(out)
    added = [e["object"] for e in events if e["type"] == "ADDED"]
    assert len(added) == 1
    pod = added[0]
    assert pod["metadata"]["namespace"] == "kube-system"
    assert pod["metadata"]["name"].startswith("k3sops-dns-probe-")
    c = pod["spec"]["containers"][0]
    assert c["command"] == ["nslookup", "kubernetes.default"] and "busybox" in c["image"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert "DELETED" in {e["type"] for e in events}

    report = json.loads(r.stdout)
    step = next(s for s in report["chain"] if s["step"].startswith("DNS probe"))
    assert step["ok"] is False and step["detail"].startswith("inconclusive:")
    assert "kwok fake node" in step["detail"]
    f = next(f for f in report["findings"] if f["check"] == "dns-probe-inconclusive")
    assert f["severity"] == "info" and f["evidence"]["deleted"] is True
    assert f["evidence"]["outcome"] == "inconclusive"


def test_network_lost_runs_every_step_and_leaves_no_probe_pod(lab: Lab) -> None:
    r = lab.k3sops("-o", "json", "emergency", "network-lost", "--probe-dns",
                   "--probe-timeout", "30s")
    assert r.returncode in (0, 3), r.stderr
    checks = {c["step"]: c for c in json.loads(r.stdout)["checks"]}
    assert list(checks) == ["nodes", "coredns", "ingress-controller", "metallb",
                            "kube-proxy-flannel", "dns-probe"]
    assert checks["coredns"]["status"] == "ok"
    assert checks["ingress-controller"]["evidence"]["name"] == "traefik"
    assert checks["dns-probe"]["status"] == "unknown"
    assert wait_for(lambda: not _probe_pods(lab), timeout=30)


def test_diagnose_performance_names_every_missing_source(lab: Lab) -> None:
    r = lab.k3sops("-o", "json", "diagnose", "performance")
    report = json.loads(r.stdout)
    steps = {c["step"] for c in report["chain"]}
    missing = {f["resource"]["name"] for f in report["findings"]
               if f["check"] == "perf-source-missing"}
    assert r.returncode == (4 if missing else 0), r.stderr
    # Never an empty section: either the ranking or the name of the missing source.
    assert "top pods by cpu (prometheus)" in steps or "container_cpu" in missing
    assert "top pods by memory (prometheus)" in steps or "container_memory" in missing
    assert "throttling" in missing  # the lab has no cAdvisor CFS series
    assert "top nodes by cpu" in steps and any(s.startswith("disk ") for s in steps)
    top = next(f for f in report["findings"] if f["check"] == "performance-top")
    assert top["evidence"]["filesystems"]


def test_diagnose_node_shows_the_servers_etcd_membership(lab: Lab) -> None:
    r = lab.k3sops("-o", "json", "diagnose", "node", "k3s-server-1")
    assert r.returncode == 0, r.stderr
    steps = {c["step"]: c for c in json.loads(r.stdout)["chain"]}
    k3s = steps["etcd member (K3s)"]
    assert k3s["ok"] and "voter (MemberNotLearner" in k3s["detail"]
    assert "k3s-server-1-1a2b3c4d" in k3s["detail"]
    assert steps["etcd member (etcd metrics)"]["ok"]
    agent = lab.k3sops("-o", "json", "diagnose", "node", "k3s-agent-1")
    assert "etcd member (K3s)" not in {c["step"] for c in json.loads(agent.stdout)["chain"]}


def test_confirmation_decides_each_change_and_no_secret_is_shown(
        lab: Lab, scratch: str, tmp_path: Path) -> None:
    """The terminal path, through the service: a declined change is not made, a confirmed one
    is; neither the report nor the timeline carries the kubeconfig's credentials."""
    from k3sops.services import context
    from k3sops.services import emergency as emergency_service

    _app(lab, scratch, "cart", 1)
    assert wait_for(lambda: _available(lab, scratch, "cart", 1), timeout=90)
    lab.kubectl("scale", "deployment/cart", "-n", scratch, "--replicas=0")
    settings = context.resolve(None, None, lab.layout.platform_file, lab.env, tmp_path)
    asked: list[str] = []

    def no(p: Any) -> bool:
        asked.append(p.text)
        return False
    r = emergency_service.run(settings, lab.env, Path.home(), "app-down", app="cart",
                              namespace=scratch, mode="ask", confirm=no, state=tmp_path)
    assert asked == [f"scale deployment/cart -n {scratch} --replicas 1 (scaled to 0)"]
    assert [(a.decision, a.why) for a in r.actions] == [("declined", "declined at the prompt")]
    assert _deploy(lab, scratch, "cart")["spec"]["replicas"] == 0
    assert not (tmp_path / "audit.jsonl").exists()
    assert any("rerun with --yes" in s for s in r.next_steps)

    def ctrl_c(p: Any) -> bool:
        raise KeyboardInterrupt
    r = emergency_service.run(settings, lab.env, Path.home(), "app-down", app="cart",
                              namespace=scratch, mode="ask", confirm=ctrl_c, state=tmp_path)
    assert r.interrupted and r.actions == [] and len(r.checks) == 6
    assert r.timeline[-1].result == "interrupted" and "INTERRUPTED" in r.timeline_markdown
    assert _deploy(lab, scratch, "cart")["spec"]["replicas"] == 0

    r = emergency_service.run(settings, lab.env, Path.home(), "app-down", app="cart",
                              namespace=scratch, mode="ask", confirm=lambda p: True,
                              state=tmp_path, wait=90)
    assert [(a.decision, a.result) for a in r.actions] == [("applied", "ok")]
    assert _deploy(lab, scratch, "cart")["spec"]["replicas"] == 1
    assert not r.unresolved
    shown = r.model_dump_json() + r.timeline_markdown
    kubeconfig = lab.layout.kubeconfig.read_text()
    secrets = [ln.split(":", 1)[1].strip() for ln in kubeconfig.splitlines()
               if ln.strip().startswith(("client-key-data", "token", "client-certificate-data"))]
    assert secrets and not any(s[:40] in shown for s in secrets)
    assert "PRIVATE KEY" not in shown
