"""Weekly hygiene rules on objects captured from the lab: RBAC and unused objects.

Data: tests/data/rules/hygiene.json, captured after applying tests/data/rules/hygiene-lab.yaml
(and the network/storage ones, see README.md there) — plain API objects; the lab's own
bootstrap RBAC (``kubernetes.io/bootstrapping=rbac-defaults``, whose bindings name controller
ServiceAccounts that do not all exist) and a binding shaped like the one K3s' helm-controller
makes for Traefik (``helm-kube-system-traefik`` → cluster-admin for ``kube-system/helm-traefik``)
are in it and must stay silent. The unused-object rules have a five-minute grace: the tests
look at the capture two hours later (``later``), and at the capture itself for the grace.
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

DATA = load("hygiene.json")
LATER = timedelta(hours=2)
RULES = ["rbac-cluster-admin", "rbac-secrets-wildcard", "rbac-binding-role-missing",
         "rbac-binding-subject-missing", "configmap-unused", "secret-unused", "pvc-unused",
         "networkpolicy-no-pods"]


def snap(**kw):  # type: ignore[no-untyped-def]
    return snapshot(DATA, later=kw.pop("later", LATER), **kw)


def test_rules_are_weekly_hygiene() -> None:
    for rule in RULES:
        assert REGISTRY[rule].periods == ("weekly",), rule
        assert REGISTRY[rule].category == "hygiene", rule


def test_cluster_admin_bindings() -> None:
    found = run("rbac-cluster-admin", snap())
    # not: cluster-admin for system:masters (bootstrap), helm-kube-system-traefik (K3s' own)
    assert keys(found) == {("ClusterRoleBinding", "r2-ci-admin", None, "warning"),
                           ("ClusterRoleBinding", "r2-devs-admin", None, "warning")}
    assert by_name(found, "r2-ci-admin").message == (
        "ClusterRoleBinding r2-ci-admin grants cluster-admin to ServiceAccount r2-hyg/ci")


def test_roles_reading_secrets() -> None:
    found = run("rbac-secrets-wildcard", snap())
    # not: the bootstrap roles (admin, edit, cluster-admin, system:*), r2-configmaps-only
    # (secrets only by resourceNames)
    assert keys(found) == {("ClusterRole", "r2-everything", None, "warning"),
                           ("ClusterRole", "r2-secrets-admin", None, "warning"),
                           ("Role", "secret-reader", "r2-hyg", "info")}
    reader = by_name(found, "secret-reader")
    assert reader.evidence["bound_by"] == ["RoleBinding r2-hyg/ci-secret-reader"]
    assert reader.evidence["rules"][0]["verbs"] == ["get", "list", "watch"]
    # bindings unread: the same findings, without who is bound
    blind = run("rbac-secrets-wildcard", snap(unread=["rolebindings"]))
    assert keys(blind) == keys(found)
    assert by_name(blind, "secret-reader").evidence["bound_by"] == []
    assert "bindings_unread" in by_name(blind, "secret-reader").evidence


def test_bindings_to_missing_roles_and_accounts() -> None:
    roles = run("rbac-binding-role-missing", snap())
    assert keys(roles) == {("RoleBinding", "deployer", "r2-hyg", "warning"),
                           ("ClusterRoleBinding", "r2-monitoring", None, "warning")}
    assert by_name(roles, "deployer").evidence["cause_ref"] == {
        "kind": "Role", "namespace": "r2-hyg", "name": "deployer"}
    assert by_name(roles, "r2-monitoring").evidence["cause_ref"] == {
        "kind": "ClusterRole", "namespace": None, "name": "r2-monitoring-reader"}
    subjects = run("rbac-binding-subject-missing", snap())
    # the bootstrap bindings (system:controller:*, system:kube-dns) name accounts that do
    # not all exist in a cluster: not reported
    assert keys(subjects) == {("RoleBinding", "ghost-reader", "r2-hyg", "info")}
    assert subjects[0].evidence["missing_service_accounts"] == ["r2-hyg/ghost"]


def test_unused_configmaps_and_secrets() -> None:
    cms = run("configmap-unused", snap())
    # used: app-env (envFrom), app-files (volume), projected-conf (projected volume),
    # idle-conf (template of a Deployment scaled to 0), report-conf (CronJob template);
    # skipped: kube-root-ca.crt everywhere, dashboard-web (a Grafana dashboard), kube-system
    assert keys(cms) == {("ConfigMap", "forgotten", "r2-hyg", "info")}
    secrets = run("secret-unused", snap())
    # used: app-secret (secretKeyRef), db-creds (CronJob envFrom), regcred (ServiceAccount
    # imagePullSecrets), the r2-net TLS secrets (Ingresses); skipped: the ServiceAccount
    # token, the Helm release
    assert keys(secrets) == {("Secret", "old-token", "r2-hyg", "info")}
    assert secrets[0].evidence["keys"] == ["token"]


def test_unused_grace() -> None:
    # four minutes after they were created nothing is unused yet
    from k3sops.domain.snapshot import parse_time
    created = max(o["metadata"]["creationTimestamp"]
                  for kind in ("configmaps", "secrets", "persistentvolumeclaims",
                               "networkpolicies")
                  for o in DATA["objects"][kind] if o["metadata"]["namespace"].startswith("r2-"))
    age = parse_time(DATA["captured_at"]) - parse_time(created)  # type: ignore[operator]
    now = snapshot(DATA, later=timedelta(minutes=4) - age)
    for rule in ("configmap-unused", "secret-unused", "pvc-unused", "networkpolicy-no-pods"):
        assert run(rule, now) == [], rule


def test_unused_claims() -> None:
    found = run("pvc-unused", snap())
    # used: data-used (a running pod), data-pinned (a pending pod), data-idle (the template
    # of a Deployment scaled to 0); pending claims are pvc-pending's
    assert keys(found) == {("PersistentVolumeClaim", "data-unused", "r2-sto", "info"),
                           ("PersistentVolumeClaim", "grow-failed", "r2-sto", "info"),
                           ("PersistentVolumeClaim", "grow-fs", "r2-sto", "info")}


def test_network_policy_selecting_nothing() -> None:
    found = run("networkpolicy-no-pods", snap())
    # app-ingress selects the app pod, default-deny ({}) every pod
    assert keys(found) == {("NetworkPolicy", "legacy-api", "r2-hyg", "info")}
    assert "app=legacy-api" in found[0].message


def test_scoped_to_an_environment() -> None:
    from checkkit import platform
    for rule in ("configmap-unused", "secret-unused", "rbac-secrets-wildcard"):
        found = run(rule, snap(), platform(), environment="production")
        assert all(f.resource.namespace in (None, "production") for f in found), rule


@pytest.mark.parametrize("rule", RULES)
def test_unread_inputs(rule: str) -> None:
    for kind in REGISTRY[rule].reads:
        assert not_evaluated_without(rule, DATA, kind, LATER), (rule, kind)
    assert_uses_are_evidence_only(rule, DATA, LATER)


def test_platform_components_settings_are_not_unused() -> None:
    """platform.json (platform-lab.yaml, namespace r2-plat only): ConfigMaps labelled as Argo
    CD's and Longhorn's, which those read through the API, and a leftover."""
    found = run("configmap-unused", snapshot(load("platform.json"), later=LATER))
    assert keys(found) == {("ConfigMap", "leftover", "r2-plat", "info")}
