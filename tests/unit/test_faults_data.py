"""The fault matrix's data: every YAML file parses, follows the namespace rules, keeps off the
lab's own objects, and expects only check ids that exist or are planned (issue 12's rules)."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest
import yaml

from k3sops.domain.checks import REGISTRY
from k3sops.errors import LabError, UsageError
from k3sops.lab.faults import expected_rows, load_faults, select
from k3sops.lab.faults.model import CLUSTER_KINDS, NAMESPACE_PREFIX, Fault, parse
from k3sops.lab.faults.model import select as jsonpath
from k3sops.lab.faults.ops import materialize
from k3sops.lab.stages import FAULT_LABEL

pytestmark = pytest.mark.unit

# The rule catalogue of issue 12 (/tmp/briefs/rules.md): ids that may be expected before
# their rule is registered. Anything else must be registered already.
PLANNED = frozenset({
    "node-not-ready", "node-pressure", "node-cordoned", "pod-crashloop", "pod-oomkilled",
    "pod-image-pull", "pod-pending", "pod-failed", "deployment-rollout-stuck",
    "deployment-unavailable", "statefulset-unavailable", "daemonset-unavailable",
    "job-failed", "service-no-endpoints", "ingress-backend-missing", "loadbalancer-no-ip",
    "metallb-pool-exhausted", "dns-coredns-unavailable", "pvc-pending", "pvc-lost",
    "storageclass-missing", "longhorn-volume-degraded", "longhorn-volume-faulted",
    "pod-not-ready", "pod-container-error", "pod-stuck-starting", "pod-stuck-terminating",
    "pod-configmap-missing", "pod-secret-missing", "pod-pvc-missing",
    "workload-create-failed", "daemonset-misscheduled", "hpa-target-missing",
    "hpa-metrics-unavailable", "hpa-at-max", "pdb-blocks-eviction", "pdb-overlap",
    "job-stuck", "cronjob-failing", "cronjob-not-scheduling", "service-port-mismatch",
    "ingress-class-missing", "ingress-tls-secret-missing", "ingress-tls-expiring",
    "webhook-unavailable", "apiservice-unavailable", "namespace-stuck-terminating",
    "node-network-unavailable", "quota-exhausted", "pvc-resize-failed", "pv-failed",
    "pv-node-missing", "volumeattachment-error", "servicelb-metallb-conflict",
    "ingress-host-conflict", "storageclass-default-conflict", "container-no-requests",
    "container-no-limits", "container-no-probes", "image-latest", "single-replica",
    "pdb-no-pods", "pod-no-owner", "cronjob-suspended", "networkpolicy-no-pods",
    "pvc-unused", "pv-released", "configmap-unused", "secret-unused", "rbac-cluster-admin",
    "rbac-secrets-wildcard", "rbac-binding-role-missing", "rbac-binding-subject-missing",
    "storageclass-no-default",
})
LAB_NODES = ("k3s-server-1", "k3s-server-2", "k3s-server-3", "k3s-agent-1", "k3s-agent-2",
             "k3s-agent-3")
STAGE_LABEL_VALUES = {"crashloop", "oomkilled", "notready"}
"""Values of k3sops.io/fault on pod templates that select k3sops' kwok stages."""
FAULTS = load_faults()


def _all_objects() -> list[tuple[Fault, dict[str, Any]]]:
    return [(f, o) for f in FAULTS.values() for o in materialize([f])]


def _pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return [obj]
    if obj.get("kind") == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]]
    return [spec["template"]] if "template" in spec else []


def test_matrix_has_at_least_45_distinct_fault_types() -> None:
    assert len(FAULTS) >= 45
    # Distinct: no two faults expect the same set of findings on the same kinds of objects.
    shapes = {f.id: tuple(sorted((e.check, e.kind, e.severity) for e in f.findings))
              for f in FAULTS.values()}
    assert len(set(shapes.values())) >= 45


def test_every_check_id_is_registered_or_planned() -> None:
    used = {e.check for f in FAULTS.values() for e in f.findings}
    unknown = sorted(c for c in used if c not in REGISTRY and c not in PLANNED)
    assert not unknown, f"check ids neither registered nor in issue 12's catalogue: {unknown}"


def test_namespaced_objects_live_in_their_fault_namespace() -> None:
    for f, o in _all_objects():
        md = o["metadata"]
        if o["kind"] in CLUSTER_KINDS:
            assert "namespace" not in md, (f.id, o["kind"], md["name"])
        else:
            assert md["namespace"] == f"{NAMESPACE_PREFIX}{f.id}", (f.id, o["kind"], md["name"])


def test_cluster_objects_are_labelled_and_named_as_the_faults_own() -> None:
    names: dict[tuple[str, str], str] = {}
    for f, o in _all_objects():
        if o["kind"] not in CLUSTER_KINDS:
            continue
        md = o["metadata"]
        assert md["labels"][FAULT_LABEL] == f.id, (f.id, md["name"])
        # A fault- prefix (or pvc-fault-/v1alpha1.fault.) keeps clear of the lab's objects.
        assert "fault" in md["name"] and md["name"] not in LAB_NODES, (f.id, md["name"])
        key = (o["kind"], md["name"])
        assert key not in names, f"{key} made by both {names[key]} and {f.id}"
        names[key] = f.id


def test_steps_touch_only_the_faults_own_objects() -> None:
    """No step patches or deletes a lab object (its nodes above all)."""
    for f in FAULTS.values():
        own = set(f.cluster_objects()) | {("Namespace", f.namespace)}
        for step in f.after:
            if step.action == "wait" or step.namespace is not None:
                continue  # waits only read; namespaced steps stay in the fault's namespace
            assert (step.kind, step.name) in own, (f.id, step.action, step.kind, step.name)


def test_fail_closed_webhooks_only_see_their_own_namespace() -> None:
    for f, o in _all_objects():
        if o["kind"] not in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            continue
        for hook in o["webhooks"]:
            selector = hook.get("namespaceSelector") or {}
            assert selector.get("matchLabels") == {
                "kubernetes.io/metadata.name": f.namespace}, (f.id, hook["name"])
            assert not selector.get("matchExpressions"), (f.id, hook["name"])


def test_fault_nodes_keep_the_labs_daemonsets_off() -> None:
    """Every fault node has a NoSchedule taint that no lab DaemonSet tolerates."""
    for f, o in _all_objects():
        if o["kind"] != "Node":
            continue
        assert o["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        assert any(t["effect"] in ("NoSchedule", "NoExecute") for t in o["spec"]["taints"]), f.id


def test_stage_labels_name_existing_kwok_stages() -> None:
    for f, o in _all_objects():
        for tpl in _pod_templates(o):
            value = (tpl.get("metadata") or {}).get("labels", {}).get(FAULT_LABEL)
            assert value is None or value in STAGE_LABEL_VALUES, (f.id, value)


def test_expectations_name_objects_of_the_fault() -> None:
    """Each expected finding is on an object the fault makes, or a pod/job it generates."""
    for f in FAULTS.values():
        made = {(o["kind"], o["metadata"]["name"]) for o in materialize([f])}
        made |= {("Namespace", f.namespace)}
        for e in f.findings:
            if e.kind == "Cluster":
                continue  # a finding about the whole cluster (one setting fixes it)
            generated = e.kind in ("Pod", "Job") and any(
                e.name == f"{name}-0" or fnmatch.fnmatchcase(e.name, f"{name}-*")
                or e.name == name for _, name in made)
            pvc_of_template = e.kind == "PersistentVolumeClaim" and any(
                e.name.startswith(f"{t['metadata']['name']}-")
                for o in f.objects if o.get("kind") == "StatefulSet"
                for t in o["spec"].get("volumeClaimTemplates") or [])
            assert (e.kind, e.name) in made or generated or pvc_of_template, (f.id, e)


def test_expected_rows_are_what_the_scorer_reads() -> None:
    rows = expected_rows(list(FAULTS.values()))
    assert len(rows) == sum(len(f.findings) for f in FAULTS.values())
    for r in rows:
        assert set(r) == {"fault", "namespace", "kind", "name", "severity", "check", "due_after"}
        assert r["severity"] in ("critical", "warning", "info")
        assert (r["namespace"] is None) == (r["kind"] in CLUSTER_KINDS)
    json.dumps(rows)  # plain data
    assert any(r["name"] == "data-db-0" and r["check"] == "storageclass-missing" for r in rows)


def test_the_issues_two_examples_are_in_the_matrix() -> None:
    sc = FAULTS["pvc-storageclass-missing"]
    assert (sc.root.check, sc.root.kind, sc.root.name) == (
        "storageclass-missing", "PersistentVolumeClaim", "data-db-0")
    assert sc.diagnose == "pod/db-0"
    port = FAULTS["ingress-port-missing"]
    assert (port.root.check, port.root.kind) == ("ingress-backend-missing", "Ingress")
    assert port.diagnose == "ingress/shop"


def test_only_controllerless_kinds_get_a_written_status() -> None:
    faked = {f.id for f in FAULTS.values() if f.fake_status}
    assert faked == {"longhorn-degraded", "longhorn-faulted", "volumeattachment-error"}
    base = yaml.safe_load(_text("crashloop.yaml"))
    base["after"] = [{"patch": {"kind": "Pod", "name": "worker-0", "subresource": "status",
                                "patch": {"status": {"phase": "Failed"}}}}]
    base["fake_status"] = "no"
    with pytest.raises(LabError, match="real controller"):
        parse(base, "crashloop.yaml")


def _text(name: str) -> str:
    from importlib import resources

    return resources.files("k3sops.lab.faults").joinpath(name).read_text()


@pytest.mark.parametrize(("change", "message"), [
    ({"objects": [{"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "x", "namespace": "default"}}]}, "not default"),
    ({"objects": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}]},
     "namespace_labels"),
    ({"visible": [{"kind": "Pod", "name": "a", "jsonpath": "{.status.phase}"}]},
     "exactly one of"),
    ({"visible": [{"kind": "Pod", "name": "a", "jsonpath": "{.status[", "exists": True}]},
     "cannot parse JSONPath"),
    ({"expect": {"findings": [{"check": "pod-crashloop", "kind": "Pod", "name": "a",
                               "severity": "urgent"}],
                 "root": {"check": "pod-crashloop", "kind": "Pod", "name": "a"},
                 "diagnose": "pod/a"}}, "severity must be"),
    ({"expect": {"findings": [{"check": "pod-crashloop", "kind": "Pod", "name": "a",
                               "severity": "critical"}],
                 "root": {"check": "pod-failed", "kind": "Pod", "name": "a"},
                 "diagnose": "pod/a"}}, "root cause must be one of"),
    ({"surprise": 1}, "unknown field"),
    ({"environment": "qa"}, "environment"),
])
def test_bad_entries_are_refused_with_file_and_field(change: dict[str, Any],
                                                     message: str) -> None:
    doc = yaml.safe_load(_text("crashloop.yaml"))
    doc.update(change)
    with pytest.raises(LabError, match=message) as err:
        parse(doc, "crashloop.yaml")
    assert "crashloop.yaml" in str(err.value)


def test_unknown_fault_ids_are_named() -> None:
    with pytest.raises(UsageError, match="no-such-fault"):
        select(FAULTS, ["crashloop", "no-such-fault"])
    assert [f.id for f in select(FAULTS, ["crashloop", "crashloop"])] == ["crashloop"]
    assert len(select(FAULTS, ["all"])) == len(FAULTS)


def test_jsonpath_subset_reads_the_matrixs_own_manifests() -> None:
    sts = next(o for o in FAULTS["pvc-storageclass-missing"].objects
               if o.get("kind") == "StatefulSet")
    assert jsonpath(sts, "{.spec.volumeClaimTemplates[0].spec.storageClassName}") == [
        "fast-ssd"]
    assert jsonpath(sts, ".spec.template.spec.containers[*].name") == ["db"]
    pod_status = {"status": {"conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
        {"type": "Ready", "status": "False"}]}}
    assert jsonpath(pod_status, '{.status.conditions[?(@.type=="PodScheduled")].reason}') == [
        "Unschedulable"]
    assert jsonpath(pod_status, "{.status.conditions[?(@.type!='Ready')].status}") == ["False"]
    assert jsonpath(pod_status, "{.status.conditions[5].status}") == []
    cm = {"data": {"feature.flags": "beta=false", "log-level": "debug"}}
    # Dots in keys are escaped, as kubectl's JSONPath needs them (it splits ['a.b'] too).
    assert jsonpath(cm, r"{.data.feature\.flags}") == ["beta=false"]
    assert jsonpath(cm, r"{.data['feature\.flags']}") == ["beta=false"]
    assert jsonpath(cm, "{.data['log-level']}") == ["debug"]
    with pytest.raises(ValueError, match="escape the dots"):
        jsonpath(cm, "{.data['feature.flags']}")


def test_conditions_compare_like_kubectl_prints() -> None:
    """equals compares the text kubectl's JSONPath prints: numbers and booleans as JSON."""
    c = FAULTS["daemonset-misscheduled"].visible[0]
    ds = {"kind": "DaemonSet", "metadata": {"name": "edge-proxy",
                                            "namespace": "fault-daemonset-misscheduled"},
          "status": {"numberMisscheduled": 1}}
    assert c.holds([ds])
    ds["status"]["numberMisscheduled"] = 0
    assert not c.holds([ds])
    other_ns = {**ds, "metadata": {"name": "edge-proxy", "namespace": "default"},
                "status": {"numberMisscheduled": 1}}
    assert not c.holds([other_ns])


def test_tls_secret_is_generated_with_the_asked_validity() -> None:
    import base64
    import datetime as dt

    from cryptography import x509

    (secret,) = [o for o in materialize([FAULTS["ingress-tls-expiring"]])
                 if o["kind"] == "Secret"]
    assert secret["type"] == "kubernetes.io/tls"
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=1, hours=23) < left <= dt.timedelta(days=2)
    assert "tls.key" in secret["data"]
