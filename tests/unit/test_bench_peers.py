"""bench/peers.py: Popeye's JSON report flattened into issues, on real recorded reports.

tests/data/popeye/healthy-lab.json: `popeye --kubeconfig <lab>/kubeconfig -A -o json
--force-exit-zero` (Popeye v0.22.1) on a freshly started default lab; faults-lab.json: the same
on that lab with every fault type of `k3sops lab fault apply all` (4 minutes after applying).
Both are Popeye's stdout byte for byte.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import peers  # noqa: E402

pytestmark = pytest.mark.unit
DATA = ROOT / "tests" / "data" / "popeye"


def _raw(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


@pytest.fixture(scope="module")
def healthy() -> list[peers.Issue]:
    return peers.parse_popeye((DATA / "healthy-lab.json").read_bytes())


@pytest.fixture(scope="module")
def faults() -> list[peers.Issue]:
    return peers.parse_popeye((DATA / "faults-lab.json").read_text())


def _on(issues: list[peers.Issue], kind: str, ns: str | None, name: str) -> set[tuple[Any, ...]]:
    return {(i["level"], i["code"], i["container"]) for i in issues
            if i["kind"] == kind and i["namespace"] == ns and i["name"] == name}


def test_every_issue_has_the_flat_shape_and_a_kubernetes_kind(healthy, faults):
    for issues in (healthy, faults):
        assert issues
        for i in issues:
            assert set(i) == {"tool", "kind", "namespace", "name", "level", "code", "message",
                              "container"}
            assert i["tool"] == "popeye"
            assert i["kind"] in peers.KINDS.values()
            assert i["level"] in ("info", "warning", "error")
            assert i["code"] is not None and i["code"].startswith("POP-")
            assert not i["message"].startswith("[POP-")
            assert i["name"] and "/" not in i["name"]


def test_ok_entries_are_not_issues(healthy):
    # The cluster section lists "[POP-406] K8s version OK" at level 0.
    raw = _raw("healthy-lab.json")["popeye"]["sections"]
    cluster = next(s for s in raw if s["linter"] == "cluster")
    assert cluster["issues"]["Version"][0]["level"] == 0
    assert not [i for i in healthy if i["code"] == "POP-406" or i["kind"] == "Cluster"]


def test_objects_with_issues_agree_with_popeyes_own_tally(healthy, faults):
    # Popeye's tally counts objects by their worst level: the parsed issues must give the same.
    for name, issues in (("healthy-lab.json", healthy), ("faults-lab.json", faults)):
        for section in _raw(name)["popeye"]["sections"]:
            kind = peers.KINDS[section["gvr"]]
            worst: dict[tuple[str | None, str], str] = {}
            rank = {"info": 1, "warning": 2, "error": 3}
            for i in issues:
                if i["kind"] == kind:
                    key = (i["namespace"], i["name"])
                    if rank[i["level"]] > rank.get(worst.get(key, ""), 0):
                        worst[key] = i["level"]
            tally = Counter(worst.values())
            t = section["tally"]
            assert (tally["info"], tally["warning"], tally["error"]) == (
                t["info"], t["warning"], t["error"]), (name, section["linter"])


def test_namespaced_and_cluster_scoped_keys(healthy):
    crb = [i for i in healthy if i["kind"] == "ClusterRoleBinding"]
    assert crb and all(i["namespace"] is None for i in crb)
    assert ("warning", "POP-1300", None) in _on(
        healthy, "ClusterRoleBinding", None, "system:controller:endpoint-controller")
    nodes = [i for i in healthy if i["kind"] == "Node"]
    assert {i["code"] for i in nodes} == {"POP-708"}  # no metrics-server on the lab: info only
    assert all(i["namespace"] is None and i["level"] == "info" for i in nodes)
    assert ("info", "POP-400", None) in _on(
        healthy, "ConfigMap", "kube-system", "extension-apiserver-authentication")


def test_container_issues_stay_on_their_pod_or_workload(healthy, faults):
    web = _on(healthy, "Pod", "development", "web-5889b4d89f-ks5k8")
    assert ("warning", "POP-102", "web") in web           # a container's: no probes
    assert ("warning", "POP-1204", None) in web           # the pod's own: no NetworkPolicy
    assert ("warning", "POP-101", "tools") in _on(faults, "Deployment", "fault-image-latest",
                                                  "tools")  # a template's container
    assert ("error", "POP-203", "worker") in _on(faults, "Pod", "fault-crashloop", "worker-0")


def test_faults_on_the_recorded_lab(faults):
    assert ("error", "POP-1100", None) in _on(faults, "Service", "fault-webhook-no-endpoints",
                                              "validator")
    assert ("error", "POP-501", None) in _on(faults, "StatefulSet", "fault-crashloop", "worker")
    assert ("warning", "POP-1500", None) in _on(faults, "CronJob", "fault-cronjob-suspended",
                                                "cleanup")
    assert ("warning", "POP-711", None) in _on(faults, "Node", None, "fault-cordoned-1")
    assert ("error", "POP-707", None) in _on(faults, "Node", None, "fault-netless-1")
    # Two issues with the same code and different messages are both kept.
    taints = [i for i in faults if i["name"] == "fault-netless-1" and i["code"] == "POP-700"]
    assert len(taints) == 2


def test_repeats_are_dropped_and_unknown_sections_get_a_kind():
    item = {"group": "__root__", "gvr": "example.io/v1/widgets", "level": 2,
            "message": "[POP-999] odd"}
    doc = {"popeye": {"sections": [
        {"linter": "widgets", "gvr": "example.io/v1/widgets",
         "issues": {"ns1/w": [item, dict(item)], "ns1/v": [{**item, "message": "no code"}]}}]}}
    issues = peers.parse_popeye(doc)
    assert [(i["kind"], i["namespace"], i["name"], i["code"], i["message"]) for i in issues] == [
        ("Widget", "ns1", "w", "POP-999", "odd"), ("Widget", "ns1", "v", None, "no code")]


@pytest.mark.parametrize(("payload", "words"), [
    ("Popeye banner, not JSON", "not JSON"),
    (b"[]", "not a Popeye JSON report"),
    ({"score": 1}, "not a Popeye JSON report"),
    ({"popeye": {"sections": {}}}, "not a Popeye JSON report"),
    ({"popeye": {"sections": [{"gvr": "v1/pods", "issues": {"a/b": [{"message": "x"}]}}]}},
     "no integer level"),
])
def test_bad_reports_are_refused_with_the_reason(payload, words):
    with pytest.raises(peers.PeerError, match=words):
        peers.parse_popeye(payload)


def test_summary_of_a_recorded_report():
    s = peers.popeye_summary(_raw("healthy-lab.json"))
    assert s == {"score": 89, "grade": "B", "sections": 24, "errors": []}


def test_no_binary_is_a_clear_error(tmp_path):
    assert peers.find_popeye(tmp_path) is None
    with pytest.raises(peers.PeerError, match=r"cannot run .*missing"):
        peers.run_popeye(tmp_path / "kubeconfig", binary=tmp_path / "missing")


@pytest.mark.skipif(peers.find_popeye() is None, reason="Popeye not built (bench/README.md)")
def test_a_failed_scan_is_reported_with_popeyes_reason(tmp_path):
    # The real binary, on a kubeconfig that is not there: Popeye exits 1, its reason on stdout.
    with pytest.raises(peers.PeerError, match=r"popeye exited 1: Boom!.*no such file"):
        peers.run_popeye(tmp_path / "no-such-kubeconfig")


def test_argv_scans_every_namespace_as_json():
    argv = peers.popeye_argv(Path("/x/popeye"), Path("/lab/kubeconfig"), Path("/t/p.log"))
    assert argv == ["/x/popeye", "--kubeconfig", "/lab/kubeconfig", "-A", "-o", "json",
                    "--force-exit-zero", "--logs", "/t/p.log"]
    assert os.path.basename(argv[0]) == "popeye"
