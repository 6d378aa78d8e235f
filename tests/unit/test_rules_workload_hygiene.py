"""Weekly workload hygiene rules on a lab capture.

Data: tests/data/rules/workload-hygiene.json, captured (tests/data/rules/capture.py) after
applying tests/data/rules/workload-hygiene-lab.yaml; reduced to the healthy lab and namespace
r1-hyg (which the test's platform puts in production, beside the lab's own production
namespace). The mirror pod ``etcd-k3s-server-1`` carries the annotations a kubelet gives the
mirror of a static pod.
"""

from __future__ import annotations

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

from k3sops.config import Platform
from k3sops.domain.checks import REGISTRY
from k3sops.domain.checks.hygiene import image_tag_problem

pytestmark = pytest.mark.unit

DATA = load("workload-hygiene.json")
H = "r1-hyg"
RULES = ["container-no-requests", "container-no-limits", "container-no-probes", "image-latest",
         "single-replica", "pod-no-owner", "cronjob-suspended"]
PLATFORM = Platform.model_validate({"name": "lab", "environments": {
    "development": {"namespaces": ["development"]}, "staging": {"namespaces": ["staging"]},
    "production": {"namespaces": ["production", H]}}})


def mine(rule: str, **kw):  # type: ignore[no-untyped-def]
    return [f for f in run(rule, snapshot(DATA, **kw), PLATFORM) if f.resource.namespace == H]


def test_rules_are_weekly_info() -> None:
    for rule in RULES:
        assert REGISTRY[rule].periods == ("weekly",), rule
        assert REGISTRY[rule].category == "hygiene", rule
        assert {f.severity for f in run(rule, snapshot(DATA), PLATFORM)} <= {"info"}


def test_requests_and_limits() -> None:
    # crawler sets a cpu request only; retired (0 replicas) sets nothing but is not judged
    assert keys(mine("container-no-requests")) == {("Deployment", "crawler", H, "info")}
    assert mine("container-no-requests")[0].message == (
        "deployment r1-hyg/crawler has containers without resource requests "
        "(crawler: no memory request)")
    assert keys(mine("container-no-limits")) == {("Deployment", "crawler", H, "info")}


def test_probes() -> None:
    found = mine("container-no-probes")
    # catalog is behind a Service: readiness and liveness missing. The others have liveness
    # and no Service (readiness not required); the mirror pod and the CronJob are not judged.
    assert keys(found) == {("Deployment", "catalog", H, "info")}
    assert found[0].evidence["containers"] == [{"container": "catalog",
                                                "missing": "liveness and readiness"}]
    blind = [f for f in run("container-no-probes", snapshot(DATA, unread=["services"]),
                            PLATFORM) if f.resource.namespace == H]
    assert keys(blind) == keys(found)
    assert by_name(blind, "catalog").evidence["containers"] == [
        {"container": "catalog", "missing": "liveness"}]  # readiness is not guessed


def test_unpinned_images() -> None:
    found = mine("image-latest")
    assert keys(found) == {("Deployment", "tools", H, "info")}
    assert [c["container"] for c in found[0].evidence["containers"]] == ["fetch", "tools"]
    assert image_tag_problem("registry.example:5000/team/app") == "no tag (means latest)"
    assert image_tag_problem("registry.example:5000/team/app:1.2") is None
    assert image_tag_problem("registry.example/app@sha256:4b1d") is None


def test_single_replica() -> None:
    found = run("single-replica", snapshot(DATA), PLATFORM)
    # Not: cart (a budget covers it), search (an HPA may scale it to 5), tools/catalog/crawler
    # (2 replicas), development's single web (not staging/production).
    assert keys(found) == {("Deployment", "checkout", H, "info"), ("StatefulSet", "db", H, "info"),
                           ("StatefulSet", "postgres", "production", "info")}
    assert run("single-replica", snapshot(DATA)) == []  # no platform: no environments known


def test_pods_without_owner() -> None:
    # not the mirror pod of a static pod, not the lab's pods
    assert keys(run("pod-no-owner", snapshot(DATA), PLATFORM)) == {
        ("Pod", "debug-shell", H, "info")}


def test_suspended_cronjobs() -> None:
    assert keys(mine("cronjob-suspended")) == {("CronJob", "cleanup", H, "info")}


@pytest.mark.parametrize("rule", RULES)
def test_reads_and_uses(rule: str) -> None:
    for kind in REGISTRY[rule].reads:
        assert not_evaluated_without(rule, DATA, kind), kind
    assert_uses_are_evidence_only(rule, DATA)


def test_the_healthy_lab_gets_only_probe_and_replica_hygiene() -> None:
    """The lab's workloads set requests and limits, pin their images and have owners; they
    have no probes and production's postgres runs one replica (info)."""
    for rule in RULES:
        lab = [f for f in run(rule, snapshot(DATA), PLATFORM) if f.resource.namespace != H]
        if rule == "container-no-probes":
            assert len(lab) == 19
        elif rule == "single-replica":
            assert keys(lab) == {("StatefulSet", "postgres", "production", "info")}
        else:
            assert lab == [], rule
