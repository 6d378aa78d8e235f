"""workload-create-failed and quota-exhausted on objects captured from the lab.

Data: tests/data/rules/admission.json, captured (tests/data/rules/capture.py) three minutes
after applying tests/data/rules/admission-lab.yaml to a lab, with the validating webhook of
tests/data/rules/admission-webhook.py running, then ``kubectl -n r1-refs create sa late-sa``
(StatefulSet ``recovered`` and Deployment ``late`` recover) and ``kubectl -n r1-vap delete pod
-l app=probe`` (the ValidatingAdmissionPolicy was not yet in force when the first pod was
made). Every refusal is the real API server's, written by the real controllers: ReplicaFailure
conditions of ReplicaSets and Deployments, FailedCreate events of StatefulSets, DaemonSets,
Jobs and CronJobs. The rest of the lab (its healthy platform) is in the capture.
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
from k3sops.domain.checks.admission import refusal
from k3sops.domain.snapshot import conditions

pytestmark = pytest.mark.unit

DATA = load("admission.json")
RULES = ["workload-create-failed", "quota-exhausted"]

EXPECTED = {
    ("Deployment", "web", "r1-quota", "warning"),  # 1 of 3 ready
    ("StatefulSet", "db", "r1-compute", "critical"),
    ("DaemonSet", "agent", "r1-compute", "critical"),
    ("CronJob", "report", "r1-compute", "warning"),
    ("Job", "export", "r1-limits", "warning"),
    ("Deployment", "encoder", "r1-limits", "critical"),
    ("Deployment", "agent", "r1-refs", "critical"),
    ("DaemonSet", "collector", "r1-refs", "critical"),
    ("Deployment", "indexer", "r1-refs", "critical"),
    ("StatefulSet", "sandbox", "r1-refs", "critical"),
    ("ReplicaSet", "legacy", "r1-refs", "critical"),
    ("Job", "sync-29941123", "r1-refs", "warning"),
    ("Deployment", "node-tuner", "r1-psa", "critical"),
    ("Deployment", "mirror", "r1-hook", "critical"),
    ("StatefulSet", "cache", "r1-hookdown", "critical"),
    ("Deployment", "probe", "r1-vap", "critical"),
}


def test_every_refused_workload_is_reported_on_its_top_object() -> None:
    found = run("workload-create-failed", snapshot(DATA))
    # Not: late/recovered (created after their ServiceAccount appeared), idle (0 replicas),
    # approved (the webhook lets it in), the CronJob sync (its Job is the one refused), the
    # ReplicaSets behind the Deployments (reported on the Deployment), the healthy lab.
    assert keys(found) == EXPECTED


@pytest.mark.parametrize(("name", "ns", "cause", "ref", "message"), [
    ("web", "r1-quota", "quota", ("ResourceQuota", "r1-quota", "pod-count"),
     "deployment r1-quota/web cannot create pods: exceeded quota pod-count "
     "(pods: 1/1 used, 1 requested)"),
    ("db", "r1-compute", "quota", ("ResourceQuota", "r1-compute", "compute"),
     "statefulset r1-compute/db cannot create pods: exceeded quota compute "
     "(requests.cpu: 0/100m used, 200m requested)"),
    ("agent", "r1-compute", "quota-unspecified", ("ResourceQuota", "r1-compute", "compute"),
     "daemonset r1-compute/agent cannot create pods: quota compute requires limits.memory, "
     "which container agent does not set"),
    ("report", "r1-compute", "quota", ("ResourceQuota", "r1-compute", "compute"),
     "cronjob r1-compute/report cannot create jobs: exceeded quota compute "
     "(count/jobs.batch: 0/0 used, 1 requested)"),
    ("agent", "r1-refs", "serviceaccount", ("ServiceAccount", "r1-refs", "agent-sa"),
     "deployment r1-refs/agent cannot create pods: ServiceAccount r1-refs/agent-sa does not "
     "exist"),
    ("collector", "r1-refs", "serviceaccount", ("ServiceAccount", "r1-refs", "collector-sa"),
     "daemonset r1-refs/collector cannot create pods: ServiceAccount r1-refs/collector-sa does "
     "not exist"),
    ("sync-29941123", "r1-refs", "serviceaccount", ("ServiceAccount", "r1-refs", "sync-sa"),
     "job r1-refs/sync-29941123 cannot create pods: ServiceAccount r1-refs/sync-sa does not "
     "exist"),
    ("indexer", "r1-refs", "priorityclass", ("PriorityClass", None, "critical-batch"),
     "deployment r1-refs/indexer cannot create pods: PriorityClass critical-batch does not "
     "exist"),
    ("sandbox", "r1-refs", "runtimeclass", ("RuntimeClass", None, "gvisor"),
     "statefulset r1-refs/sandbox cannot create pods: RuntimeClass gvisor does not exist"),
    ("node-tuner", "r1-psa", "podsecurity", ("Namespace", None, "r1-psa"),
     "deployment r1-psa/node-tuner cannot create pods: violates the namespace's PodSecurity "
     'level "restricted:latest": privileged (container "tuner" must not set '
     "securityContext.privileged=true)"),
    ("mirror", "r1-hook", "webhook-denied",
     ("ValidatingWebhookConfiguration", None, "r1-registry-policy"),
     "deployment r1-hook/mirror cannot create pods: admission webhook "
     "images.registry-policy.example denied it: image example/mirror:2.1 is not from an "
     "approved registry"),
    ("cache", "r1-hookdown", "webhook-unreachable",
     ("MutatingWebhookConfiguration", None, "r1-sidecar-injector"), None),
    ("probe", "r1-vap", "policy", ("ValidatingAdmissionPolicy", None, "r1-no-host-network"),
     "deployment r1-vap/probe cannot create pods: ValidatingAdmissionPolicy r1-no-host-network "
     "denied it: pods may not use the host network"),
    ("encoder", "r1-limits", "limitrange", None,
     "deployment r1-limits/encoder cannot create pods: a LimitRange of namespace r1-limits "
     "forbids it: maximum cpu usage per Container is 500m, but limit is 2"),
])
def test_the_refusing_object_is_the_cause(name: str, ns: str, cause: str,
                                          ref: tuple[str, str | None, str] | None,
                                          message: str | None) -> None:
    found = [f for f in run("workload-create-failed", snapshot(DATA))
             if f.resource.name == name and f.resource.namespace == ns]
    assert len(found) == 1
    f = found[0]
    assert f.evidence["cause"] == cause
    if ref is None:
        assert "cause_ref" not in f.evidence  # a LimitRange is not named by the refusal
    else:
        assert f.evidence["cause_ref"] == {"kind": ref[0], "namespace": ref[1], "name": ref[2]}
    if message is not None:
        assert f.message == message


def test_deployments_name_their_replicaset_and_events() -> None:
    found = run("workload-create-failed", snapshot(DATA))
    web = next(f for f in found if f.resource.name == "web")
    assert web.evidence["replicaset"].startswith("web-")
    assert web.evidence["ready"] == 1
    assert web.evidence["resources"] == [{"resource": "pods", "requested": "1", "used": "1",
                                          "hard": "1"}]
    db = by_name(found, "db")
    assert db.evidence["events"][0]["reason"] == "FailedCreate"
    assert db.evidence["since"] is not None


def test_every_refusal_in_the_capture_has_a_known_cause() -> None:
    """The texts the real controllers wrote, as they appear in events and conditions."""
    texts = [(e["metadata"]["namespace"], e["message"]) for e in DATA["objects"]["events"]
             if e.get("reason") == "FailedCreate"]
    for kind in ("deployments", "replicasets"):
        for o in DATA["objects"][kind]:
            cond = conditions(o).get("ReplicaFailure")
            if cond:
                texts.append((o["metadata"]["namespace"], cond["message"]))
    assert len(texts) > 40
    for ns, text in texts:
        assert refusal(text, ns).cause != "other", text


def test_a_namespace_being_deleted_is_not_the_workloads_fault() -> None:
    # What the API server answered in the lab for a pod created in a Terminating namespace
    # (kubectl -n r1-doomed run ...), with the controller's prefix.
    text = ('Error creating: pods "x" is forbidden: unable to create new content in namespace '
            "r1-doomed because it is being terminated")
    assert refusal(text, "r1-doomed").cause == "namespace-terminating"


def test_without_events_only_replica_failures_are_judged() -> None:
    found = run("workload-create-failed", snapshot(DATA, unread=["events"]))
    assert {(k, n) for k, n, _, _ in keys(found)} == {
        ("Deployment", n) for n in ("web", "encoder", "agent", "indexer", "node-tuner",
                                    "mirror", "probe")} | {("ReplicaSet", "legacy")}
    assert all(f.evidence["events"].startswith("could not read events") for f in found)


def test_without_webhook_configurations_the_webhook_is_named_not_its_configuration() -> None:
    found = run("workload-create-failed",
                snapshot(DATA, unread=["validatingwebhookconfigurations"]))
    mirror = by_name(found, "mirror")
    assert "cause_ref" not in mirror.evidence
    assert mirror.evidence["webhook"] == "images.registry-policy.example"
    assert mirror.evidence["webhook_configurations"].startswith("could not read")
    # the mutating one is still found in the configurations that were read
    assert by_name(found, "cache").evidence["cause_ref"]["name"] == "r1-sidecar-injector"


def test_quota_exhausted() -> None:
    found = run("quota-exhausted", snapshot(DATA))
    # compute: count/jobs.batch hard 0 is a prohibition; requests.cpu 0 of 100m used.
    # mem-limits: nothing used.
    assert keys(found) == {("ResourceQuota", "pod-count", "r1-quota", "warning")}
    f = found[0]
    assert f.message == ("resourcequota r1-quota/pod-count is used up (pods 1/1): new pods or "
                         "objects it counts are refused")
    assert f.evidence["used_up"] == [{"resource": "pods", "used": "1", "hard": "1",
                                      "share": 1.0}]


def test_rules_declare_their_reads() -> None:
    for rule in RULES:
        assert REGISTRY[rule].periods == ("daily",)
        for kind in REGISTRY[rule].reads:
            assert not_evaluated_without(rule, DATA, kind), (rule, kind)
    assert_uses_are_evidence_only("quota-exhausted", DATA)
    assert_uses_are_evidence_only("workload-create-failed", DATA)


def test_nothing_on_the_healthy_lab_part() -> None:
    found = run("workload-create-failed", snapshot(DATA, later=timedelta(hours=1)))
    assert not [f for f in objects(found) if not (f[1] or "").startswith("r1-")]
