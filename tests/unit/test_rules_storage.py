"""Storage rules on objects captured from the lab: claims, volumes, classes, attachments.

Data: tests/data/rules/storage.json, captured after applying tests/data/rules/storage-lab.yaml
(see README.md there): binding, phases (Released, Failed with the hostPath deleter's own
message), the scheduler's view of a pod whose volume is pinned to the absent node
``k3s-agent-9`` and the provisioning events are the real controllers'; PVC resize conditions
and VolumeAttachment errors were written through the status subresource with the values the
CSI external-resizer/attacher write (no CSI driver runs in the lab). cluster-b.json is the
same lab without any default StorageClass, with a class-less claim and a StatefulSet whose
claim template names no class.
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
from k3sops.domain.findings import SEVERITY_RANK

pytestmark = pytest.mark.unit

DATA = load("storage.json")
LATER = load("cluster-b.json")
RULES = ["pvc-pending", "pvc-lost", "storageclass-missing", "pvc-resize-failed", "pv-failed",
         "pv-node-missing", "volumeattachment-error", "storageclass-default-conflict",
         "storageclass-no-default", "pv-released"]
PVC = "PersistentVolumeClaim"


def snap(**kw):  # type: ignore[no-untyped-def]
    return snapshot(DATA, **kw)


def test_pvc_pending_causes() -> None:
    found = run("pvc-pending", snap())
    assert keys(found) == {(PVC, "slow", "r2-sto", "warning"), (PVC, "clone", "r2-sto", "warning"),
                           (PVC, "prebound", "r2-sto", "warning"),
                           # waits for its pod, which cannot be scheduled: the pod's problem
                           # (pod-pending), so only info here
                           (PVC, "wffc-waiting", "r2-sto", "info"),
                           (PVC, "wffc-idle", "r2-sto", "info")}
    prebound = by_name(found, "prebound")
    assert "pre-bound to PersistentVolume r2-vanished, which does not exist" in prebound.message
    assert prebound.evidence["cause_ref"] == {"kind": "PersistentVolume", "namespace": None,
                                              "name": "r2-vanished"}
    clone = by_name(found, "clone")
    assert clone.evidence["data_source"] == {"kind": "PersistentVolumeClaim",
                                             "name": "nonexistent"}
    assert clone.message.endswith("from PersistentVolumeClaim nonexistent, which does not exist")
    waiting = by_name(found, "wffc-waiting")
    assert waiting.evidence["consumers"] == ["waiting"]
    assert "binds once its pod waiting is scheduled, which it is not yet" in waiting.message
    assert by_name(found, "slow").evidence["provisioner"] == "driver.longhorn.io"
    # fast names a class that does not exist: storageclass-missing's, not this rule's
    assert "fast" not in {f.resource.name for f in found}


def test_pvc_pending_grace_and_unread_pods() -> None:
    # two minutes of grace: a claim being provisioned is not stuck
    created = min(p["metadata"]["creationTimestamp"]
                  for p in DATA["objects"]["persistentvolumeclaims"]
                  if p["metadata"]["namespace"] == "r2-sto")
    from k3sops.domain.snapshot import parse_time
    age = parse_time(DATA["captured_at"]) - parse_time(created)  # type: ignore[operator]
    assert run("pvc-pending", snap(later=timedelta(seconds=60) - age)) == []
    blind = run("pvc-pending", snap(unread=["pods"]))
    waiting = by_name(blind, "wffc-waiting")
    assert waiting.severity == "info" and waiting.evidence["consumers"] is None
    assert "could not read pods" in waiting.message


def test_storageclass_missing_only_where_a_class_is_needed() -> None:
    found = run("storageclass-missing", snap())
    # data-used, data-unused... are bound to pre-created PVs of class "manual": no
    # StorageClass object has to exist for that; prebound waits for its volume, not a class
    assert keys(found) == {(PVC, "fast", "r2-sto", "critical")}
    assert found[0].evidence["cause_ref"] == {"kind": "StorageClass", "namespace": None,
                                              "name": "fast-ssd"}


def test_pvc_resize() -> None:
    found = run("pvc-resize-failed", snap())
    assert keys(found) == {(PVC, "grow-failed", "r2-sto", "warning"),
                           (PVC, "grow-fs", "r2-sto", "info")}
    failed = by_name(found, "grow-failed")
    assert "expansion to 2Gi failed" in failed.message
    assert "not enough disk space" in failed.message
    assert failed.evidence["allocated_status"] == "ControllerResizeInfeasible"


def test_pv_failed_and_released() -> None:
    failed = run("pv-failed", snap())
    assert keys(failed) == {("PersistentVolume", "r2-undeletable", None, "warning")}
    assert "host_path deleter only supports /tmp" in failed[0].message
    assert failed[0].evidence["claim"] == "r2-sto/scratch-data"
    released = run("pv-released", snap())
    assert keys(released) == {("PersistentVolume", "r2-retained", None, "info")}
    assert released[0].evidence["reclaim_policy"] == "Retain"


def test_pv_node_missing() -> None:
    found = run("pv-node-missing", snap())
    # r2-local-ok is pinned to k3s-agent-1, which exists
    assert keys(found) == {("PersistentVolume", "r2-local-gone", None, "critical")}
    ev = found[0].evidence
    assert (ev["nodes"], ev["pending_pods"], ev["claim"]) == (
        ["k3s-agent-9"], ["pinned-0"], "r2-sto/data-pinned")
    # without pods the volume is still pinned to a missing node; the pod's state is unknown
    blind = run("pv-node-missing", snap(unread=["pods"]))
    assert keys(blind) == {("PersistentVolume", "r2-local-gone", None, "warning")}
    assert blind[0].evidence["pods"] is None


def test_volumeattachment_error() -> None:
    found = run("volumeattachment-error", snap())
    assert keys(found) == {("VolumeAttachment", "csi-r2-attach-failed", None, "warning"),
                           ("VolumeAttachment", "csi-r2-detach-failed", None, "warning")}
    attach = by_name(found, "csi-r2-attach-failed")
    assert (attach.evidence["node"], attach.evidence["persistent_volume"]) == (
        "k3s-agent-2", "r2-static-used")
    assert "cannot attach to node k3s-agent-2" in attach.message
    assert "cannot detach from node k3s-agent-1" in by_name(found, "csi-r2-detach-failed").message


def test_default_storageclass_conflict_and_absence() -> None:
    conflict = run("storageclass-default-conflict", snap())
    assert keys(conflict) == {("StorageClass", "r2-nfs", None, "warning")}
    assert conflict[0].evidence["defaults"] == ["longhorn", "r2-nfs"]
    assert conflict[0].evidence["used_for_new_claims"] == "r2-nfs"
    assert run("storageclass-no-default", snap()) == []
    # later: no default at all, a class-less claim waits, a claim template would too
    later = snapshot(LATER)
    assert run("storageclass-default-conflict", later) == []
    none = run("storageclass-no-default", later)
    assert keys(none) == {("Cluster", "default-storageclass", None, "info")}
    assert none[0].evidence["claims"] == ["r2-sto/no-class"]
    assert none[0].evidence["statefulsets"] == ["r2-sto/cache"]
    pending = by_name(run("pvc-pending", later), "no-class")
    assert "no StorageClass is the default" in pending.message


def test_healthy_part_of_the_lab_gives_no_warning_or_critical() -> None:
    def healthy(kind: str, obj: dict) -> bool:  # type: ignore[type-arg]
        meta = obj["metadata"]
        return meta.get("namespace") != "r2-sto" and not meta["name"].startswith(
            ("r2-", "csi-r2-"))
    s = snap(keep=healthy)
    for rule in RULES:
        bad = [f.message for f in run(rule, s) if SEVERITY_RANK[f.severity] >= 1]
        assert bad == [], (rule, bad)


def test_claims_scoped_by_environment() -> None:
    from checkkit import platform
    plat = platform()
    assert run("pvc-pending", snap(), plat, environment="production") == []
    assert objects(run("pvc-pending", snap(), plat)) == objects(run("pvc-pending", snap()))


@pytest.mark.parametrize("rule", RULES)
def test_unread_inputs(rule: str) -> None:
    for kind in REGISTRY[rule].reads:
        assert not_evaluated_without(rule, DATA, kind), (rule, kind)
    assert_uses_are_evidence_only(rule, DATA)
    if set(REGISTRY[rule].reads) <= set(LATER["objects"]):
        assert_uses_are_evidence_only(rule, LATER)


def test_wait_for_first_consumer_with_a_scheduled_pod_and_an_unclaimed_orphan_volume() -> None:
    """more.json (more-lab.yaml): the scheduler placed local-data's pod and wrote
    volume.kubernetes.io/selected-node; the local-path provisioner does not run in the lab.
    r2-orphan-local is a local PV of a removed node that nothing claims."""
    more = snapshot(load("more.json"))
    pending = run("pvc-pending", more)
    assert keys(pending) == {(PVC, "local-data", "r2-more2", "warning")}
    assert pending[0].evidence["selected_node"] == "k3s-agent-3"
    assert "rancher.io/local-path has not created the volume" in pending[0].message
    assert [e["reason"] for e in pending[0].evidence["events"]][:1] == ["ExternalProvisioning"]
    orphan = run("pv-node-missing", more)
    assert keys(orphan) == {("PersistentVolume", "r2-orphan-local", None, "info")}
