"""HPA, PodDisruptionBudget, DaemonSet placement and node network rules on lab captures.

Data: tests/data/rules/autoscaling.json, captured (tests/data/rules/capture.py) four minutes
after applying tests/data/rules/autoscaling-lab.yaml (and, before it, the admission and pods
captures' objects) with the stand-in resource metrics API of tests/data/rules/metrics-api.py
serving: the aggregator (through an ExternalName Service), the HPA controller, the disruption
controller, the DaemonSet controller and the node lifecycle controller wrote every status.
Besides (tests/data/rules/nodes-lab.yaml): node ``r1-netless-1`` held
NetworkUnavailable/NotReady by kwok's node-not-ready stage (as the lab's fault matrix does),
node ``r1-edge-1`` given the taint maintenance=true:NoSchedule after DaemonSet ``edge-proxy``
ran on it (then an annotation on the DaemonSet made its controller recount: numberMisscheduled
1), and one pod of Deployment ``flaky`` written not ready through the status subresource (as a
kubelet with a failing probe would). The node ``r1-lost-1`` of the pods capture (no kubelet:
Unknown, unreachable taints) is there too and makes every lab DaemonSet count one misscheduled
pod.

autoscaling-down.json is the HPAs and APIServices 80 s after the metrics server was stopped:
the aggregator marks v1beta1.metrics.k8s.io Available=False (FailedDiscoveryCheck) and the HPA
controller ScalingActive=False (FailedGetResourceMetric), keeping the last ScalingLimited.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from labdata import (
    assert_uses_are_evidence_only,
    by_name,
    keys,
    load,
    not_evaluated_without,
    run,
    snapshot,
)

from k3sops.domain.checks import REGISTRY

pytestmark = pytest.mark.unit

DATA = load("autoscaling.json")
DOWN = load("autoscaling-down.json")
LATER = timedelta(minutes=7)  # past the 5-minute graces of the HPA rules
HPA, PDB, NS = "HorizontalPodAutoscaler", "PodDisruptionBudget", "r1-scale"
RULES = ["hpa-target-missing", "hpa-metrics-unavailable", "hpa-at-max", "pdb-blocks-eviction",
         "pdb-overlap", "pdb-no-pods", "daemonset-misscheduled", "node-network-unavailable"]


def test_hpa_target_missing() -> None:
    found = run("hpa-target-missing", snapshot(DATA))
    # Not: paused (its target is scaled to 0 on purpose), the HPAs whose targets exist.
    assert keys(found) == {(HPA, "web", NS, "warning")}
    web = found[0]
    assert web.message == "hpa r1-scale/web scales Deployment web-v2, which does not exist"
    assert web.evidence["cause_ref"] == {"kind": "Deployment", "namespace": NS,
                                         "name": "web-v2"}
    assert web.evidence["able_to_scale"]["reason"] == "FailedGetScale"


def test_hpa_metrics_unavailable() -> None:
    # the failures are 4 minutes old at capture time: within the grace
    assert run("hpa-metrics-unavailable", snapshot(DATA)) == []
    found = run("hpa-metrics-unavailable", snapshot(DATA, later=LATER))
    # Not: busy and calm (metrics read), paused (ScalingDisabled), web (no ScalingActive).
    assert keys(found) == {(HPA, "norequest", NS, "warning"), (HPA, "queue", NS, "warning")}
    queue = by_name(found, "queue")
    assert queue.evidence["cause_ref"] == [{"kind": "APIService", "namespace": None,
                                            "name": "v1beta1.custom.metrics.k8s.io"}]
    assert "does not exist" in queue.message
    norequest = by_name(found, "norequest")
    assert norequest.evidence["cause"] == "missing requests"
    assert "cause_ref" not in norequest.evidence  # the metrics API works; the pods lack requests


def test_hpa_metrics_api_down_is_the_cause() -> None:
    found = run("hpa-metrics-unavailable", snapshot(DOWN, later=LATER))
    assert {f.resource.name for f in found} == {"busy", "calm", "norequest", "queue"}
    busy = by_name(found, "busy")
    assert busy.evidence["cause_ref"] == [{"kind": "APIService", "namespace": None,
                                           "name": "v1beta1.metrics.k8s.io"}]
    assert "is not available: FailedDiscoveryCheck" in busy.message
    blind = run("hpa-metrics-unavailable", snapshot(DOWN, later=LATER, unread=["apiservices"]))
    assert keys(blind) == keys(found)
    assert "cause_ref" not in by_name(blind, "busy").evidence
    assert by_name(blind, "busy").evidence["metrics_apis"]["v1beta1.metrics.k8s.io"].startswith(
        "could not read apiservices")


def test_hpa_at_max() -> None:
    assert run("hpa-at-max", snapshot(DATA)) == []  # at its maximum for 3 minutes only
    found = run("hpa-at-max", snapshot(DATA, later=LATER))
    assert keys(found) == {(HPA, "busy", NS, "warning")}
    assert found[0].evidence["max_replicas"] == 3 and found[0].evidence["current_replicas"] == 3
    # metrics gone: the controller leaves ScalingLimited as it was; that is not judged
    assert run("hpa-at-max", snapshot(DOWN, later=LATER)) == []


def test_pdb_blocks_eviction() -> None:
    found = run("pdb-blocks-eviction", snapshot(DATA))
    # Not: flaky (0 allowed because a pod is not ready: the budget doing its job), calm and
    # cache-a (allow 1), search (no pods), cache-b (its status is stale: the disruption
    # controller counts shared pods for one budget only).
    assert keys(found) == {(PDB, "db-proxy", NS, "warning"), (PDB, "solo", NS, "warning")}
    assert by_name(found, "solo").message == (
        "poddisruptionbudget r1-scale/solo (minAvailable 1) allows no disruption although all "
        "1 of its pods are healthy: every eviction, so every drain of their nodes, hangs")


def test_pdb_overlap() -> None:
    found = run("pdb-overlap", snapshot(DATA))
    assert keys(found) == {(PDB, "cache-a", NS, "warning"), (PDB, "cache-b", NS, "warning")}
    a = by_name(found, "cache-a")
    assert a.evidence["overlaps_with"] == ["cache-b"] and a.evidence["pod_count"] == 2
    assert "cause_ref" not in a.evidence  # each would name the other: a circle, no root


def test_pdb_no_pods() -> None:
    assert REGISTRY["pdb-no-pods"].periods == ("weekly",)
    assert run("pdb-no-pods", snapshot(DATA)) == []  # 4 minutes old: within its grace
    found = run("pdb-no-pods", snapshot(DATA, later=timedelta(hours=2)))
    assert keys(found) == {(PDB, "search", NS, "info")}
    blind = run("pdb-no-pods", snapshot(DATA, later=timedelta(hours=2), unread=["pods"]))
    assert keys(blind) == keys(found)
    assert "expectedPods" in blind[0].evidence["judged_from"]


def test_daemonset_misscheduled() -> None:
    found = run("daemonset-misscheduled", snapshot(DATA))
    # Not the lab's DaemonSets, whose one misscheduled pod each is for the down r1-lost-1
    assert keys(found) == {("DaemonSet", "edge-proxy", "r1-nodes", "warning")}
    assert found[0].evidence["pods"][0]["why"] == (
        "taint maintenance=true:NoSchedule is not tolerated")
    for kind in ("pods", "nodes"):
        assert not_evaluated_without("daemonset-misscheduled", DATA, kind)


def test_daemonsets_placed_on_no_node() -> None:
    found = [f for f in run("daemonset-unavailable", snapshot(DATA, later=LATER))
             if f.resource.namespace == "r1-nodes"]
    # gpu-plugin and log-agent pick nodes that do not exist (info); edge-proxy's desired 0
    # comes with a misscheduled pod (daemonset-misscheduled's finding)
    assert keys(found) == {("DaemonSet", "gpu-plugin", "r1-nodes", "info"),
                           ("DaemonSet", "log-agent", "r1-nodes", "info")}
    blind = [f for f in run("daemonset-unavailable", snapshot(DATA, later=LATER,
                                                              unread=["nodes"]))
             if f.resource.namespace == "r1-nodes"]
    assert blind == []  # without nodes, "nodes exist" is not known


def test_daemonsets_that_cannot_create_pods_say_why() -> None:
    found = run("daemonset-unavailable", snapshot(DATA))
    collector = by_name(found, "collector")
    assert collector.message == (
        "daemonset r1-refs/collector has 6 of 6 pods unavailable; its pods cannot be created: "
        "ServiceAccount r1-refs/collector-sa does not exist")


def test_node_network_unavailable() -> None:
    found = run("node-network-unavailable", snapshot(DATA))
    assert keys(found) == {("Node", "r1-netless-1", None, "critical")}
    assert found[0].message == ("node r1-netless-1 reports NetworkUnavailable: NoRouteCreated "
                                "(Node created without a route)")


@pytest.mark.parametrize("rule", RULES)
def test_reads_and_uses(rule: str) -> None:
    for kind in REGISTRY[rule].reads:
        assert not_evaluated_without(rule, DATA, kind, later=LATER), kind
    assert_uses_are_evidence_only(rule, DATA, later=LATER)


@pytest.mark.parametrize("rule", RULES)
def test_the_healthy_lab_part_is_silent(rule: str) -> None:
    found = run(rule, snapshot(DATA, later=timedelta(hours=2)))
    assert all((f.resource.namespace or f.resource.name).startswith("r1-") for f in found)
