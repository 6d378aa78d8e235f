"""`k3sops upgrade apply` end to end: the lab's Nodes, test hosts over SSH, a stub k3s.

Real: the CLI and the service, the lab's API server (cordon, the mark annotation, drains
through the Eviction API with a PodDisruptionBudget computed by the real disruption controller,
the real scheduler moving the evicted pods), the preflight (with a verified etcd backup of the
lab in a real restic repository), ansible-core running the packaged ``upgrade`` playbook over
SSH on test hosts (tests/hosts.py), the progress file and the audit log.

Pairing: the lab's six kwok Nodes (k3s-server-1..3, k3s-agent-1..3) are the cluster; six test
hosts carry the same names in the inventory, so ``--limit NODE`` reaches the host of that Node.
The lab has three agents, so the upgrade covers 3 servers and 3 agents (the plan covers every
Node of the cluster: a Node without a host could not be upgraded).

Not real, because the test hosts cannot run it: the k3s binary. Each host gets a stub
``/usr/local/bin/k3s`` reporting the current version; the airgap directory holds the "new" stub,
which the playbook installs. Run as ``k3s --version`` (the playbook's check that the installed
binary is the target), the new stub does what a restarted K3s does for the API: its Node
reports the new ``kubeletVersion`` (a PATCH of the Node's status through the API, from inside
the host's network namespace, with a ServiceAccount token the test gives it that may patch
Nodes' status and nothing else), then prints the version. A real host instead restarts the
``k3s``/``k3s-agent`` unit (systemd) and its kubelet re-registers with the new version; the
stub cannot show a failed restart, image import or etcd rejoin.

Every Node is put back as it was at the end (version, schedulable, no mark).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kit.backup import Setup as BackupSetup
from kit.backup import make_setup

from conftest import Lab
from hosts import HostPool, TestHost
from k3sops.domain.checks.nodes import UPGRADE_ANNOTATION
from k3sops.errors import UpgradeStopped

pytestmark = pytest.mark.lab

VERSION = "v1.34.4+k3s1"
NEXT = "v1.35.0+k3s1"
NEXT2 = "v1.35.1+k3s1"
SERVERS = ["k3s-server-1", "k3s-server-2", "k3s-server-3"]
AGENTS = ["k3s-agent-1", "k3s-agent-2", "k3s-agent-3"]
NS = "k3sops-upgrade-apply-test"

STUB = '''#!/usr/bin/python3
"""Test stub of k3s: `--version` reports VERSION; a "new" stub first makes its Node report it."""
import json, ssl, sys, urllib.request

VERSION = "{version}"
PATCH = {patch}
cfg = json.load(open("/etc/k3s-stub/config.json"))
if cfg.get("fail"):
    print("k3s: this host is told to fail (test)", file=sys.stderr)
    sys.exit(1)
if PATCH and sys.argv[1:2] == ["--version"]:
    ctx = ssl.create_default_context(cafile="/etc/k3s-stub/ca.crt")
    ctx.check_hostname = False  # the API is reached through the bridge address, not its SAN
    body = json.dumps({{"status": {{"nodeInfo": {{"kubeletVersion": VERSION,
                                              "kubeProxyVersion": VERSION}}}}}}).encode()
    req = urllib.request.Request(
        cfg["server"] + "/api/v1/nodes/" + cfg["node"] + "/status", data=body, method="PATCH",
        headers={{"Content-Type": "application/merge-patch+json",
                 "Authorization": "Bearer " + open("/etc/k3s-stub/token").read().strip()}})
    urllib.request.urlopen(req, context=ctx, timeout=10).read()
print("k3s version " + VERSION + " (test stub)")
'''

RBAC = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: k3s-stub, namespace: {NS}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: k3sops-test-k3s-stub}}
rules:
- {{apiGroups: [""], resources: [nodes/status], verbs: [patch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: k3sops-test-k3s-stub}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: k3sops-test-k3s-stub}}
subjects:
- {{kind: ServiceAccount, name: k3s-stub, namespace: {NS}}}
"""


class Forwarder:
    """TCP from the hosts' bridge address to the lab's API server (it listens on loopback)."""

    def __init__(self, listen: str, target: tuple[str, int]) -> None:
        self.sock = socket.create_server((listen, 0))
        self.port = self.sock.getsockname()[1]
        self.target = target
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.sock.close()


@dataclass
class Cluster:
    lab: Lab
    hosts: dict[str, TestHost]
    airgap: Path
    backup: BackupSetup
    env: dict[str, str]
    state: Path

    def k3sops(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "k3sops", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def apply(self, *args: str) -> tuple[int, dict[str, Any], str]:
        r = self.k3sops("-o", "json", "upgrade", "apply", *args)
        return r.returncode, json.loads(r.stdout) if r.stdout.strip() else {}, r.stderr

    def node(self, name: str) -> dict[str, Any]:
        return json.loads(self.lab.kubectl("get", "node", name, "-o", "json").stdout)

    def version(self, name: str) -> str:
        return str(self.node(name)["status"]["nodeInfo"]["kubeletVersion"])

    def audit(self) -> list[dict[str, Any]]:
        path = self.state / "audit.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def upgrade_records(self) -> list[tuple[str, str, str]]:
        """(action, nodes, result) of the upgrade's own audit records, in order."""
        return [(r["what"]["action"], r["what"]["target"], r["result"]) for r in self.audit()
                if str(r["what"]["action"]).startswith("upgrade-")]

    def new_stub(self, version: str) -> None:
        (self.airgap / "k3s").write_text(STUB.format(version=version, patch=True))
        (self.airgap / "k3s").chmod(0o755)

    def host_config(self, node: str, **values: Any) -> None:
        cfg = json.loads(self.hosts[node].read("/etc/k3s-stub/config.json") or "{}")
        cfg.update(values)
        _write(self.hosts[node], "/etc/k3s-stub/config.json", json.dumps(cfg))

    def host_version(self, node: str) -> str:
        return self.hosts[node].run("/usr/local/bin/k3s --version").stdout.strip()


def _write(host: TestHost, path: str, text: str, mode: str = "0600") -> None:
    data = base64.b64encode(text.encode()).decode()
    r = host.run(f"mkdir -p $(dirname {path}) && echo {data} | base64 -d > {path} && "
                 f"chmod {mode} {path}")
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def cluster(lab: Lab, test_hosts: HostPool, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("upgrade-apply")
    backup = make_setup(lab, work / "backup", "unused")
    bid = backup.ok("backup", "etcd")["manifest"]["id"]
    (rec,) = backup.ok("backup", "verify", bid)["records"]
    assert rec["ok"] is True, rec

    # A namespace left terminating by an earlier run cannot take the ServiceAccount yet.
    lab.kubectl("delete", "namespace", NS, "--ignore-not-found", "--timeout=120s")
    lab.kubectl("apply", "-f", "-", input=RBAC)
    token = lab.kubectl("create", "token", "k3s-stub", "-n", NS, "--duration", "2h").stdout
    server = yaml.safe_load(lab.layout.kubeconfig.read_text())["clusters"][0]["cluster"]
    host, port = server["server"].removeprefix("https://").rsplit(":", 1)
    ca = base64.b64decode(server["certificate-authority-data"]).decode()
    fwd = Forwarder(f"192.168.{test_hosts.octet}.1", (host, int(port)))

    names = SERVERS + AGENTS
    pool = test_hosts.hosts(len(names))
    hosts = dict(zip(names, pool, strict=True))
    for name, h in hosts.items():
        _write(h, "/usr/local/bin/k3s", STUB.format(version=VERSION, patch=False), "0755")
        _write(h, "/etc/k3s-stub/ca.crt", ca)
        _write(h, "/etc/k3s-stub/token", token)
        _write(h, "/etc/k3s-stub/config.json", json.dumps(
            {"node": name, "server": f"https://192.168.{test_hosts.octet}.1:{fwd.port}"}))
    airgap = work / "airgap"
    airgap.mkdir()
    inv = work / "inventory" / "hosts.yaml"
    inv.parent.mkdir()
    test_hosts.inventory(inv, servers=[hosts[n] for n in SERVERS],
                         agents=[hosts[n] for n in AGENTS],
                         names={h.name: n for n, h in hosts.items()},
                         cluster_vars={"airgap_dir": str(airgap), "k3s_start_service": False})
    token_file = work / "k3s-token"
    token_file.write_text("K10" + os.urandom(16).hex() + "::server:" + os.urandom(16).hex())
    token_file.chmod(0o600)
    doc = yaml.safe_load(backup.config.read_text())
    doc["ansible"] = {"inventory": str(inv), "token_file": str(token_file)}
    backup.config.write_text(yaml.safe_dump(doc, sort_keys=False))
    state = work / "state"
    env = {**backup.env, "K3SOPS_STATE_DIR": str(state), "COLUMNS": "300"}
    c = Cluster(lab, hosts, airgap, backup, env, state)
    try:
        yield c
    finally:
        fwd.close()
        for n in names:
            lab.kubectl("patch", "node", n, "--subresource=status", "--type=merge", "-p",
                        json.dumps({"status": {"nodeInfo": {"kubeletVersion": VERSION,
                                                            "kubeProxyVersion": VERSION}}}),
                        check=False)
            lab.kubectl("uncordon", n, check=False)
            lab.kubectl("annotate", "node", n, f"{UPGRADE_ANNOTATION}-", check=False)
        lab.kubectl("delete", "namespace", NS, "--wait=false", "--ignore-not-found",
                    check=False)
        lab.kubectl("delete", "clusterrolebinding,clusterrole", "k3sops-test-k3s-stub",
                    "--ignore-not-found", check=False)


def test_dry_run_prints_the_steps_and_changes_nothing(cluster: Cluster) -> None:
    cluster.new_stub(NEXT)
    code, report, err = cluster.apply("--to", NEXT)
    assert code == 0, err
    assert report["applied"] is False
    assert [b["nodes"] for b in report["plan"]["order"]] == [[n] for n in SERVERS + AGENTS]
    steps = [(s["node"], s["step"], s["result"]) for s in report["steps"]]
    assert steps[:6] == [("k3s-server-1", s, "planned") for s in
                         ("cordon", "drain", "upgrade", "wait", "uncordon", "checks")]
    assert len(steps) == 36
    assert all(cluster.version(n) == VERSION for n in SERVERS + AGENTS)
    assert not any(cluster.node(n)["spec"].get("unschedulable") for n in SERVERS + AGENTS)
    assert cluster.upgrade_records() == []
    assert not (cluster.state / f"upgrade-{NEXT}.json").exists()


def test_rolling_upgrade_servers_first_one_at_a_time(cluster: Cluster) -> None:
    cluster.new_stub(NEXT)
    code, report, err = cluster.apply("--to", NEXT, "--yes", "--drain-timeout", "60s",
                                      "--ready-timeout", "60s")
    assert code == 0, err
    order = SERVERS + AGENTS
    assert all(cluster.version(n) == NEXT for n in order)
    assert all(NEXT in cluster.host_version(n) for n in order)
    for n in order:
        node = cluster.node(n)
        assert not node["spec"].get("unschedulable")
        assert UPGRADE_ANNOTATION not in (node["metadata"].get("annotations") or {})
    recs = cluster.upgrade_records()
    # One node at a time, in the plan's order: each node's six steps before the next begins.
    steps = ["upgrade-cordon", "upgrade-drain", "upgrade-upgrade", "upgrade-wait",
             "upgrade-uncordon", "upgrade-checks"]
    assert [(a, t) for a, t, _ in recs] == [(s, n) for n in order for s in steps]
    # Every step ok; a drain is "skipped" only on a node with nothing to evict, and the lab's
    # nodes run pods: the evictions really happened.
    assert all(r == "ok" or (a == "upgrade-drain" and r == "skipped") for a, _, r in recs), recs
    assert sum(a == "upgrade-drain" and r == "ok" for a, _, r in recs) >= 4, recs
    evictions = [r for r in cluster.audit() if r["what"]["action"] == "evict"]
    assert evictions and all(r["result"] in ("ok", "skipped") for r in evictions)
    progress = json.loads((cluster.state / f"upgrade-{NEXT}.json").read_text())
    assert progress["status"] == "done"
    assert all(p["status"] == "done" for p in progress["nodes"].values())
    # Progress was shown on stderr, step by step.
    assert "step 1/6: server k3s-server-1" in err and "step 6/6: agent k3s-agent-3" in err
    # Running it again upgrades nothing twice.
    code, report, err = cluster.apply("--to", NEXT, "--yes")
    assert code == 0, err
    assert report["steps"] == [] and sorted(report["skipped"]) == sorted(order)
    assert cluster.upgrade_records() == recs


GUARDED = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: guarded, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: guarded}}}}
  template:
    metadata: {{labels: {{app: guarded}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: k3s-server-1}}
      tolerations: [{{operator: Exists}}]
      containers: [{{name: app, image: example/app:1.0}}]
"""
BUDGET = f"""
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: guarded, namespace: {NS}}}
spec:
  minAvailable: 1
  selector: {{matchLabels: {{app: guarded}}}}
"""


def test_a_blocking_budget_stops_before_the_host_is_touched(cluster: Cluster) -> None:
    """The budget appears once the run has started (after its preflight passed, which would
    have refused it): the drain's own handling is what is under test. Run in-process to create
    it at the moment the progress says the drain of k3s-server-1 begins."""
    from k3sops.services import context, upgrade_apply

    lab = cluster.lab
    lab.kubectl("apply", "-f", "-", input=GUARDED)
    lab.kubectl("rollout", "status", "-n", NS, "deployment/guarded", "--timeout=60s")
    cluster.new_stub(NEXT2)
    before = len(cluster.upgrade_records())
    settings = context.resolve(None, None, cluster.backup.config, cluster.env, Path.cwd())
    said: list[str] = []

    def progress(msg: str) -> None:
        said.append(msg)
        if msg.strip().startswith("k3s-server-1: drain"):
            lab.kubectl("apply", "-f", "-", input=BUDGET)

    with pytest.raises(UpgradeStopped) as caught:
        upgrade_apply.apply(settings, cluster.env, Path.home(), to=NEXT2, yes=True,
                            drain_timeout=8.0, ready_timeout=60.0, progress=progress)
    stop = caught.value.report.stopped
    assert stop is not None
    assert (stop.node, stop.step, stop.cordoned) == ("k3s-server-1", "drain", True)
    assert f"poddisruptionbudget {NS}/guarded" in stop.reason
    assert "the node's host was not touched" in stop.reason
    assert stop.resume == f"k3sops upgrade apply --to {NEXT2} --resume --yes"
    assert "k3sops node uncordon k3s-server-1 --apply" in stop.rollback
    assert "stopped at node k3s-server-1, step drain" in caught.value.message
    # Nothing happened on the host: the playbook never ran there; the Node kept its version.
    assert NEXT in cluster.host_version("k3s-server-1")
    assert cluster.version("k3s-server-1") == NEXT
    recs = cluster.upgrade_records()[before:]
    assert [a for a, _, _ in recs] == ["upgrade-cordon", "upgrade-drain"]
    assert recs[-1][2] == "failed"
    node = cluster.node("k3s-server-1")
    assert node["spec"].get("unschedulable") is True
    assert node["metadata"]["annotations"][UPGRADE_ANNOTATION] == NEXT2
    # While the budget stands, a new run is refused by the preflight (exit 3, naming it).
    code, _, err = cluster.apply("--to", NEXT2, "--yes", "--resume")
    assert code == 3, err
    assert f"refused by preflight pdb-drain: poddisruptionbudget {NS}/guarded" in err
    lab.kubectl("delete", "-n", NS, "pdb/guarded", "deployment/guarded")
    # Without --resume a new run is refused (exit 2) and says how to continue.
    code, _, err = cluster.apply("--to", NEXT2, "--yes")
    assert code == 2, err
    assert "stopped at node k3s-server-1, step drain" in err and "--resume" in err
    assert len(cluster.upgrade_records()) == before + 2


def test_a_failing_node_stops_and_resume_finishes(cluster: Cluster) -> None:
    cluster.host_config("k3s-agent-1", fail=True)
    before = len(cluster.upgrade_records())
    code, report, err = cluster.apply("--to", NEXT2, "--yes", "--resume",
                                      "--ready-timeout", "60s")
    assert code == 1, err
    assert "stopped at node k3s-agent-1, step upgrade" in err
    assert f"resume: k3sops upgrade apply --to {NEXT2} --resume --yes" in err
    stop = report["stopped"]
    assert stop["node"] == "k3s-agent-1" and stop["cordoned"] is True
    assert "Check the installed k3s is the target version" in stop["reason"]
    assert any("upgrade.yml --limit k3s-agent-1" in c and f"k3s_version={NEXT}" in c
               for c in stop["rollback"])
    assert all(cluster.version(n) == NEXT2 for n in SERVERS)
    assert all(cluster.version(n) == NEXT for n in AGENTS)
    assert cluster.node("k3s-agent-1")["spec"].get("unschedulable") is True
    assert not cluster.node("k3s-agent-2")["spec"].get("unschedulable")
    progress = json.loads((cluster.state / f"upgrade-{NEXT2}.json").read_text())
    assert progress["status"] == "stopped"
    assert progress["stopped"]["node"] == "k3s-agent-1"
    assert progress["nodes"]["k3s-agent-1"]["status"] == "failed"
    assert all(progress["nodes"][n]["status"] == "done" for n in SERVERS)
    # The `check` names the interrupted upgrade on the node left cordoned.
    r = cluster.k3sops("-o", "json", "check")
    found = [f for f in json.loads(r.stdout)["findings"]
             if f["check"] == "node-upgrade-interrupted"]
    assert [f["resource"]["name"] for f in found] == ["k3s-agent-1"], r.stderr
    assert f"--to {NEXT2} --resume" in found[0]["message"]

    cluster.host_config("k3s-agent-1", fail=False)
    code, report, err = cluster.apply("--to", NEXT2, "--yes", "--resume",
                                      "--ready-timeout", "60s")
    assert code == 0, err
    assert all(cluster.version(n) == NEXT2 for n in SERVERS + AGENTS)
    assert not any(cluster.node(n)["spec"].get("unschedulable") for n in SERVERS + AGENTS)
    recs = cluster.upgrade_records()[before:]
    upgraded = [t for a, t, r in recs if a == "upgrade-upgrade" and r == "ok"]
    # Each node's host was upgraded once: the servers finished before were not redone.
    assert upgraded == ["k3s-server-1", "k3s-server-2", "k3s-server-3", "k3s-agent-1",
                        "k3s-agent-2", "k3s-agent-3"], recs
    assert ("upgrade-upgrade", "k3s-agent-1", "failed") in recs
    progress = json.loads((cluster.state / f"upgrade-{NEXT2}.json").read_text())
    assert progress["status"] == "done" and progress["stopped"] is None
