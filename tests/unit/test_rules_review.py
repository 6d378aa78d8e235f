"""Existing pod rules after review: stale OOM kills, pods in phase Unknown, pods not ready
because their node is down.

Data: tests/data/rules/review.json, captured (tests/data/rules/capture.py) after applying
tests/data/rules/review-lab.yaml (healthy lab plus namespace r1-review). kwok ran the pods;
then, through the status subresource, what the components write in those situations:

* ``old-oom`` / ``recent-oom``: the kubelet's status of a container OOM-killed (exit 137) 3 days
  / 20 minutes before the capture and running (ready) since, restartCount 1;
* ``limbo``: phase Unknown, reason NodeLost (as the node controller wrote it for pods of an
  unresponsive node);
* ``stranded-web`` on node ``r1-edge-1``, which kwok's node-not-ready stage holds NotReady: its
  Ready condition False, as the node lifecycle controller's MarkPodsNotReady leaves it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from labdata import by_name, keys, load, run, snapshot

pytestmark = pytest.mark.unit

DATA = load("review.json")
LATER = timedelta(minutes=6)  # past pod-not-ready's grace
R = "r1-review"


def mine(rule: str, **kw):  # type: ignore[no-untyped-def]
    return [f for f in run(rule, snapshot(DATA, later=LATER, **kw))
            if f.resource.namespace == R]


def test_an_oom_kill_recovered_from_is_not_critical() -> None:
    found = mine("pod-oomkilled")
    assert keys(found) == {("Pod", "recent-oom", R, "warning"), ("Pod", "old-oom", R, "info")}
    assert "26 min ago and has run since" in by_name(found, "recent-oom").message


def test_a_pod_in_phase_unknown_is_reported() -> None:
    found = mine("pod-failed")
    assert keys(found) == {("Pod", "limbo", R, "warning")}
    assert found[0].evidence["cause_ref"] == {"kind": "Node", "namespace": None,
                                              "name": "k3s-agent-3"}


def test_pods_of_a_down_node_are_the_nodes_finding() -> None:
    assert mine("pod-not-ready") == []
    assert {f.resource.name for f in run("node-not-ready", snapshot(DATA))} >= {"r1-edge-1"}
    # without nodes nothing says the node is down: the pod is reported
    blind = mine("pod-not-ready", unread=["nodes"])
    assert keys(blind) == {("Pod", "stranded-web", R, "warning")}
