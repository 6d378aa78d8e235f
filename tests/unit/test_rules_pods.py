"""Pod rules on objects captured from the lab: missing references, containers that cannot
start, pods stuck starting or terminating.

Data: tests/data/rules/pods.json, captured (tests/data/rules/capture.py) about 90 s after
applying tests/data/rules/pods-lab.yaml to a lab (the admission faults of admission-lab.yaml
were in it too). Scheduling (``persistentvolumeclaim "reports-data" not found``), the Job's
completion, finalizers, the node lifecycle controller's view of ``r1-lost-1`` (a Node no kubelet
runs: Unknown, unreachable taints) and the deletions are the real components'. kwok starts
containers whatever their references, as a kubelet would not; what a kubelet writes for a
container it cannot create was written through the status subresource
(``kubectl patch pod --subresource=status``), with the kubelet's own texts:

* ``rootless``: CreateContainerConfigError ``container has runAsNonRoot and image will run as
  root (pod: ..., container: rootless)``;
* ``starter``: RunContainerError (runc: ``exec: "/app/run": stat /app/run: no such file or
  directory``);
* ``local-image``: ErrImageNeverPull ``Container image "..." is not present with pull policy
  of Never``;
* ``vault-agent``: CreateContainerConfigError ``secret "vault-token" not found`` (it names
  that Secret, which does not exist);
* ``waiter``: its init container ``wait-for-db`` running (kwok's init stages delayed a day);

and one Warning event FailedCreatePodSandBox (count 14) from the kubelet of k3s-agent-2 about
``loader-0`` (flannel's ``/run/flannel/subnet.env`` missing, K3s' usual text). Then the
ConfigMap ``once-env`` (read by the completed Job's pod) was deleted and pods ``legacy``
(finalizer ``k3sops.io/block``) and ``stranded`` (on ``r1-lost-1``) were deleted.
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
    objects,
    run,
    snapshot,
)

from k3sops.domain.checks import REGISTRY
from k3sops.domain.snapshot import parse_time

pytestmark = pytest.mark.unit

DATA = load("pods.json")
LATER = timedelta(minutes=11)
RULES = ["pod-configmap-missing", "pod-secret-missing", "pod-pvc-missing",
         "pod-container-error", "pod-stuck-starting", "pod-stuck-terminating"]
NS = "r1-pods"


def test_rules_are_daily_faults() -> None:
    for rule in RULES:
        assert REGISTRY[rule].periods == ("daily",), rule
        assert REGISTRY[rule].category == "fault", rule


def test_configmaps_missing() -> None:
    found = run("pod-configmap-missing", snapshot(DATA))
    # Not: fine-* (all resolve), the optional app-extra / theme / migrate-secrets, the
    # completed Job pod whose ConfigMap was deleted, kube-root-ca.crt of every pod.
    assert keys(found) == {("Pod", "app-0", NS, "warning"), ("Pod", "web-0", NS, "warning")}
    app = by_name(found, "app-0")
    assert app.evidence["missing"] == [
        {"name": "app-settings", "key": "feature-flags", "used_by": "volume settings"},
        {"name": "app-bundle", "key": None, "used_by": "projected volume bundle"},
        {"name": "migrate-env", "key": None, "used_by": "envFrom of container migrate"},
        {"name": "app-settings", "key": "log-format",
         "used_by": "env LOG_LEVEL of container app"}]
    assert app.evidence["owner"] == {"kind": "StatefulSet", "name": "app"}
    web = by_name(found, "web-0")
    assert web.message == ("pod r1-pods/web-0 references configmap web-config, which does not "
                           "exist: it will not start again after a restart")
    assert web.evidence["cause_ref"] == [{"kind": "ConfigMap", "namespace": NS,
                                          "name": "web-config"}]


def test_secrets_missing() -> None:
    found = run("pod-secret-missing", snapshot(DATA))
    assert {(n, s) for _, n, _, s in keys(found)} == {
        ("app-0", "warning"), ("api-77f967944-9svzt", "warning"),
        ("gateway-5ffd75b878-bkdcv", "warning"), ("puller-0", "info"),
        ("vault-agent", "critical")}
    api = next(f for f in found if f.resource.name.startswith("api-"))
    assert api.message.endswith("references secret db-credentials and pull secret "
                                "registry-credentials, which do not exist: it will not start "
                                "again after a restart")
    assert by_name(found, "puller-0").message.endswith(
        "references pull secret registry-credentials, which does not exist: pulls of private "
        "images fail")
    assert by_name(found, "app-0").evidence["missing"] == [
        {"name": "app-credentials", "key": "token", "used_by": "projected volume bundle"}]
    vault = by_name(found, "vault-agent")
    assert vault.evidence["ready"] is False


def test_without_secrets_the_kubelets_word_is_judged() -> None:
    found = run("pod-secret-missing", snapshot(DATA, unread=["secrets"]))
    # only the pod whose kubelet said so; nothing is concluded from an unread kind
    assert keys(found) == {("Pod", "vault-agent", NS, "critical")}
    assert by_name(found, "vault-agent").evidence["missing"] == [
        {"name": "vault-token", "key": None, "used_by": "reported by the kubelet"}]
    assert "could not read" in by_name(found, "vault-agent").evidence["judged_from"]
    assert run("pod-configmap-missing", snapshot(DATA, unread=["configmaps"])) == []


def test_pvc_missing() -> None:
    found = run("pod-pvc-missing", snapshot(DATA))
    assert keys(found) == {("Pod", "reports-0", NS, "critical")}
    assert found[0].evidence["cause_ref"] == [{"kind": "PersistentVolumeClaim", "namespace": NS,
                                               "name": "reports-data"}]
    blind = run("pod-pvc-missing", snapshot(DATA, unread=["persistentvolumeclaims"]))
    assert keys(blind) == keys(found)
    assert "scheduler" in blind[0].evidence["judged_from"]


def test_container_errors() -> None:
    found = run("pod-container-error", snapshot(DATA))
    # Not vault-agent: its CreateContainerConfigError names a missing Secret
    # (pod-secret-missing's finding); not the pods in ContainerCreating.
    assert keys(found) == {("Pod", "rootless", NS, "critical"),
                           ("Pod", "starter", NS, "critical"),
                           ("Pod", "local-image", NS, "critical")}
    assert by_name(found, "local-image").message == (
        'container local of r1-pods/local-image cannot start: ErrImageNeverPull: Container '
        'image "registry.example/local:1.0" is not present with pull policy of Never')
    assert by_name(found, "starter").evidence["reason"] == "RunContainerError"


def test_container_errors_of_a_new_pod_wait_a_minute() -> None:
    created = parse_time(next(p for p in DATA["objects"]["pods"]
                              if p["metadata"]["name"] == "rootless")["metadata"][
                                  "creationTimestamp"])
    captured = parse_time(DATA["captured_at"])
    assert created is not None and captured is not None
    young = run("pod-container-error",
                snapshot(DATA, later=created - captured + timedelta(seconds=30)))
    assert "rootless" not in {f.resource.name for f in young}


def test_stuck_starting() -> None:
    assert run("pod-stuck-starting", snapshot(DATA)) == []  # scheduled 90 s ago
    found = run("pod-stuck-starting", snapshot(DATA, later=LATER))
    # Not: rootless/starter/local-image/vault-agent (their errors are other rules'),
    # reports-0 (not scheduled), stranded (being deleted).
    assert keys(found) == {("Pod", "loader-0", NS, "warning"), ("Pod", "waiter", NS, "warning")}
    loader = by_name(found, "loader-0")
    assert loader.evidence["events"][0]["reason"] == "FailedCreatePodSandBox"
    assert "subnet.env" in loader.message
    waiter = by_name(found, "waiter")
    assert "init container wait-for-db has been running since" in waiter.message
    blind = run("pod-stuck-starting", snapshot(DATA, later=LATER, unread=["events"]))
    assert keys(blind) == keys(found)
    assert by_name(blind, "loader-0").evidence["events"].startswith("could not read events")


def test_stuck_terminating() -> None:
    assert run("pod-stuck-terminating", snapshot(DATA)) == []  # just past their grace
    found = run("pod-stuck-terminating", snapshot(DATA, later=timedelta(minutes=6)))
    assert keys(found) == {("Pod", "legacy", NS, "warning"), ("Pod", "stranded", NS, "warning")}
    legacy = by_name(found, "legacy")
    assert legacy.evidence["finalizers"] == ["k3sops.io/block"]
    assert "finalizer k3sops.io/block is not removed" in legacy.message
    assert "cause_ref" not in legacy.evidence  # its node is Ready
    stranded = by_name(found, "stranded")
    assert stranded.evidence["cause_ref"] == {"kind": "Node", "namespace": None,
                                              "name": "r1-lost-1"}
    assert stranded.evidence["node_ready"] == "Unknown"
    blind = run("pod-stuck-terminating", snapshot(DATA, later=timedelta(minutes=6),
                                                  unread=["nodes"]))
    assert keys(blind) == keys(found)
    assert by_name(blind, "stranded").evidence["node_ready"].startswith("could not read nodes")


@pytest.mark.parametrize("rule", RULES)
def test_reads_and_uses(rule: str) -> None:
    assert not_evaluated_without(rule, DATA, "pods", later=LATER)
    assert_uses_are_evidence_only(rule, DATA, later=LATER)


@pytest.mark.parametrize("rule", RULES)
def test_the_healthy_lab_part_is_silent(rule: str) -> None:
    found = run(rule, snapshot(DATA, later=timedelta(hours=2)))
    assert all((ns or "").startswith("r1-") for _, ns, _ in objects(found)), rule
