"""Network rules on objects captured from the lab: Services, Ingresses, webhooks, APIs.

Data: tests/data/rules/network.json, captured (``kubectl get KIND -A -o json``, secrets
projected as the collector does) from a lab after applying tests/data/rules/network-lab.yaml
and cluster-lab.yaml, with status from the real controllers: EndpointSlices from the
EndpointSlice controller (a named targetPort the pods lack gives a slice with ``ports: null``
and *ready* endpoints), pods from kwok (``orders`` crash-loops through the lab's kwok stage),
APIService conditions from kube-aggregator (ServiceNotFound, MissingEndpoints), the namespace
``r2-doomed`` held in Terminating by a ConfigMap finalizer (namespace controller's
conditions). TLS secrets hold self-signed certificates made for the capture (valid, 2 days
left, 10 days left, expired 5 days ago); only their projection is stored. The healthy lab
(development/staging/production/monitoring/...) is in the same capture: it must stay silent.
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

DATA = load("network.json")
RULES = ["service-no-endpoints", "service-port-mismatch", "ingress-backend-missing",
         "ingress-class-missing", "ingress-tls-secret-missing", "ingress-tls-expiring",
         "ingress-tls-host-mismatch",
         "ingress-host-conflict", "webhook-unavailable", "apiservice-unavailable",
         "namespace-stuck-terminating", "loadbalancer-no-ip", "servicelb-metallb-conflict",
         "dns-coredns-unavailable", "metallb-pool-exhausted"]
FAULTY_NAMESPACES = {"r2-net", "r2-net2", "r2-doomed"}


def snap(**kw):  # type: ignore[no-untyped-def]
    return snapshot(DATA, **kw)


# --- Services ----------------------------------------------------------------------------


def test_service_no_endpoints_causes_and_severity() -> None:
    found = run("service-no-endpoints", snap())
    assert keys(found) == {
        # routed to by a ValidatingWebhookConfiguration / an Ingress: critical
        ("Service", "hook", "r2-net", "critical"), ("Service", "shop", "r2-net", "critical"),
        ("Service", "web", "r2-net2", "critical"), ("Service", "web-admin", "r2-net", "critical"),
        # not routed: warning
        ("Service", "typo", "r2-net", "warning"), ("Service", "orders", "r2-net", "warning"),
        ("Service", "legacy-db", "r2-net", "warning"),
        # ready pods that lack the named target port (or its protocol): the slices carry them
        # without any port, so nothing is served (service-port-mismatch names the port)
        ("Service", "web-metrics", "r2-net", "warning"),
        ("Service", "web-udp", "r2-net", "warning")}
    shop = by_name(found, "shop")
    assert shop.evidence["routed_by"] == ["Ingress r2-net/shop"]
    assert shop.evidence["cause"] == "no pod matches its selector"
    assert by_name(found, "hook").evidence["routed_by"] == [
        "ValidatingWebhookConfiguration r2-policy"]
    orders = next(f for f in found if f.resource.name == "orders")
    assert orders.evidence["not_ready_pods"][0].startswith("orders-")
    assert "none of its 1 matching pods is ready: orders-" in orders.message
    legacy = by_name(found, "legacy-db")
    assert (legacy.evidence["endpoints"], legacy.evidence["ready_endpoints"]) == (2, 0)
    assert legacy.evidence["managed_by"] == ["by hand"]
    admin = by_name(found, "web-admin")
    assert admin.evidence["ports_missing_on_pods"] == ["admin/TCP"]
    assert "do not declare its target port admin/TCP" in admin.message
    assert admin.evidence["routed_by"] == ["Ingress r2-net/admin"]


def test_service_no_endpoints_false_alarms_avoided() -> None:
    names = {f.resource.name for f in run("service-no-endpoints", snap())
             if f.resource.namespace != "r2-net2"}
    # idle: Deployment scaled to 0; migrate: its Job's pod Completed; partner: ExternalName;
    # legacy-cache: hand-made slice with a ready endpoint; placeholder: no selector, no slice;
    # web-headless: headless without ports; web: healthy; kube-dns: the DNS rule's
    assert not names & {"idle", "migrate", "partner", "legacy-cache", "placeholder",
                        "web-headless", "web", "kube-dns"}


def test_service_no_endpoints_without_pods_says_so() -> None:
    found = run("service-no-endpoints", snap(unread=["pods"]))
    typo = by_name(found, "typo")
    assert typo.evidence["pods_unread"].startswith("forbidden")
    assert "could not read pods" in typo.message and "cause unknown" in typo.message
    # nothing invented: every finding is one the full run makes
    assert objects(found) <= objects(run("service-no-endpoints", snap()))


def test_service_no_endpoints_without_ingresses_is_a_warning_with_unknown_impact() -> None:
    found = run("service-no-endpoints", snap(unread=["ingresses"]))
    shop = by_name(found, "shop")
    assert shop.severity == "warning"
    assert any("could not read ingresses" in u for u in shop.evidence["impact_unknown"])
    # the webhook's Service stays critical: webhook configurations were read
    assert by_name(found, "hook").severity == "critical"


def test_service_no_endpoints_workloads_unread_no_scaled_to_zero_guess() -> None:
    # without Deployments nobody can tell whether a selector matching nothing is idle on
    # purpose: the rule stays silent about those instead of guessing
    found = run("service-no-endpoints", snap(unread=["deployments"]))
    assert "typo" not in {f.resource.name for f in found}
    assert "idle" not in {f.resource.name for f in found}
    assert "orders" in {f.resource.name for f in found}  # pods not ready: a fact either way


def test_service_port_mismatch() -> None:
    found = run("service-port-mismatch", snap())
    # the mistake is a warning; its impact (an Ingress routing to a dead port) is
    # service-no-endpoints' (critical)
    assert keys(found) == {("Service", "web-admin", "r2-net", "warning"),
                           ("Service", "web-metrics", "r2-net", "warning"),
                           ("Service", "web-udp", "r2-net", "warning")}
    admin = by_name(found, "web-admin")
    port = admin.evidence["ports"][0]
    assert (port["target_port"], port["pods_without_count"], port["selected_pods"]) == (
        "admin", 2, 2)
    assert port["declared_by_first"] == ["http=8080/TCP"]
    assert admin.evidence["routed_by"] == ["Ingress r2-net/admin"]
    assert "(Ingress r2-net/admin routes to it)" in admin.message
    udp = by_name(found, "web-udp").evidence["ports"][0]
    assert (udp["target_port"], udp["protocol"]) == ("http", "UDP")
    # the healthy web Service targets "http", which the pods declare
    assert "web" not in {f.resource.name for f in found}


def test_the_issues_ingress_to_a_port_the_service_lacks_is_critical() -> None:
    found = run("ingress-backend-missing", snap())
    assert keys(found) == {("Ingress", "web-9999", "r2-net", "critical"),
                           ("Ingress", "fallback", "r2-net", "critical")}
    web = by_name(found, "web-9999")
    assert web.evidence["broken_backends"] == [
        {"host": "web9999.r2.example", "path": "/", "service": "web", "port": "9999",
         "problem": "port 9999 is not a port of the service (it has http)"}]
    assert by_name(found, "fallback").evidence["broken_backends"][0]["problem"] == \
        "service does not exist"
    # assets (resource backend), partner (ExternalName without ports), web (port by name),
    # admin (port 80 exists; the targetPort is service-port-mismatch's) are fine
    assert not {f.resource.name for f in found} & {"assets", "partner", "web", "admin"}


# --- Ingresses -----------------------------------------------------------------------------


def test_ingress_class_missing() -> None:
    found = run("ingress-class-missing", snap())
    assert keys(found) == {("Ingress", "nginx-class", "r2-net", "warning"),
                           ("Ingress", "haproxy-annotation", "r2-net", "info")}
    nginx = by_name(found, "nginx-class")
    assert nginx.evidence["existing_classes"] == ["traefik"]
    assert nginx.evidence["cause_ref"] == {"kind": "IngressClass", "namespace": None,
                                           "name": "nginx"}


def test_ingress_class_missing_without_default_class() -> None:
    def no_default(kind: str, obj: dict) -> bool:  # type: ignore[type-arg]
        return kind != "ingressclasses"
    found = run("ingress-class-missing", snap(keep=no_default))
    # no IngressClass at all: the spec-named ones warn, the class-less ones are only info
    assert ("Ingress", "web", "r2-net", "warning") in keys(found)
    assert all(f.severity == "info" for f in found if f.evidence["named_in"] != "spec")


def test_ingress_tls_secret_missing() -> None:
    found = run("ingress-tls-secret-missing", snap())
    assert keys(found) == {("Ingress", "tls-missing", "r2-net", "warning"),
                           ("Ingress", "tls-opaque", "r2-net", "warning"),
                           ("Ingress", "tls-issuing", "r2-net", "warning")}
    opaque = by_name(found, "tls-opaque").evidence["broken_tls"][0]
    assert opaque["problem"] == "has no tls.crt and no tls.key (type Opaque, keys: cert)"
    issuing = by_name(found, "tls-issuing")
    assert "cert-manager has not issued it" in issuing.message
    # within cert-manager's grace (10 min after the Ingress appeared) it is not reported
    created = next(i for i in DATA["objects"]["ingresses"]
                   if i["metadata"]["name"] == "tls-issuing")["metadata"]["creationTimestamp"]
    from k3sops.domain.snapshot import parse_time
    age = parse_time(DATA["captured_at"]) - parse_time(created)  # type: ignore[operator]
    early = run("ingress-tls-secret-missing",
                snap(later=timedelta(minutes=5) - age))
    assert "tls-issuing" not in {f.resource.name for f in early}


def test_ingress_tls_expiring() -> None:
    found = run("ingress-tls-expiring", snap())
    assert keys(found) == {("Secret", "expired-tls", "r2-net", "critical"),
                           ("Secret", "soon-tls", "r2-net", "critical"),
                           ("Secret", "later-tls", "r2-net", "warning")}
    later = by_name(found, "later-tls").evidence
    assert later["ingresses"] == ["tls-expiring"] and later["hosts"] == ["later.r2.example"]
    assert 9.9 < later["days_left"] < 10.1
    assert by_name(found, "expired-tls").evidence["days_left"] < -4.9
    # web-tls (89 days left) is fine; eleven days later it is inside the 14-day window
    assert "web-tls" not in {f.resource.name for f in found}
    aged = run("ingress-tls-expiring", snap(later=timedelta(days=80)))
    assert ("Secret", "web-tls", "r2-net", "warning") in keys(aged)


def test_ingress_host_conflict() -> None:
    found = run("ingress-host-conflict", snap())
    assert keys(found) == {("Ingress", "blog-copy", "r2-net2", "warning"),
                           ("Ingress", "fallback", "r2-net", "warning")}
    copy = by_name(found, "blog-copy").evidence["conflicts"]
    assert copy == [{"class": "traefik", "host": "blog.r2.example", "path": "/api",
                     "also_claimed_by": ["r2-net/blog"]}]
    # blog-api (another path of the same host) and blog-canary (a canary) are no conflicts
    assert not {f.resource.name for f in found} & {"blog-api", "blog-canary", "blog"}


# --- webhooks, aggregated APIs, namespaces --------------------------------------------------


def test_webhook_unavailable() -> None:
    found = run("webhook-unavailable", snap())
    assert keys(found) == {
        ("ValidatingWebhookConfiguration", "r2-policy", None, "critical"),
        ("ValidatingWebhookConfiguration", "r2-wrong-port", None, "critical"),
        ("MutatingWebhookConfiguration", "r2-inject", None, "warning")}
    policy = by_name(found, "r2-policy")
    assert policy.evidence["webhooks"][0]["problem"] == "service r2-net/hook has no ready endpoint"
    assert policy.evidence["cause_ref"] == [{"kind": "Service", "namespace": "r2-net",
                                             "name": "hook"}]
    assert "(configmaps)" in policy.message
    assert by_name(found, "r2-wrong-port").evidence["webhooks"][0]["problem"] == \
        "service r2-net/web has no port 8443 (it has 80)"
    assert "does not exist" in by_name(found, "r2-inject").message
    # r2-fine calls a healthy Service (and a URL, not judged)
    assert "r2-fine" not in {f.resource.name for f in found}


def test_apiservice_unavailable() -> None:
    found = run("apiservice-unavailable", snap())
    assert keys(found) == {("APIService", "v1beta1.metrics.k8s.io", None, "critical"),
                           ("APIService", "v1alpha1.r2.example.com", None, "critical")}
    metrics = by_name(found, "v1beta1.metrics.k8s.io")
    assert metrics.evidence["reason"] == "ServiceNotFound"
    assert metrics.evidence["service_exists"] is False
    assert "kubectl top" in metrics.message
    r2 = by_name(found, "v1alpha1.r2.example.com").evidence
    assert (r2["reason"], r2["service_exists"]) == ("MissingEndpoints", True)
    assert r2["cause_ref"] == {"kind": "Service", "namespace": "r2-net", "name": "hook"}
    # the API server's own (Local) APIServices are never judged
    without_services = run("apiservice-unavailable", snap(unread=["services"]))
    assert objects(without_services) == objects(found)
    assert all(f.evidence["service_exists"] is None for f in without_services)


def test_namespace_stuck_terminating() -> None:
    found = run("namespace-stuck-terminating", snap())
    assert keys(found) == {("Namespace", "r2-doomed", None, "warning")}
    ev = found[0].evidence
    assert ev["unavailable_apiservices"] == ["v1alpha1.r2.example.com", "v1beta1.metrics.k8s.io"]
    assert {r["name"] for r in ev["cause_ref"]} == set(ev["unavailable_apiservices"])
    assert "r2.example.com/hold" in found[0].message
    # within its grace (5 min after the deletion) nothing is reported
    minutes = ev["minutes"]
    assert run("namespace-stuck-terminating",
               snap(later=timedelta(minutes=4 - minutes))) == []
    # APIServices unreadable: the finalizer is still named, no APIService is guessed
    blind = run("namespace-stuck-terminating", snap(unread=["apiservices"]))[0]
    assert "cause_ref" not in blind.evidence and "r2.example.com/hold" in blind.message


# --- LoadBalancers -------------------------------------------------------------------------


def test_loadbalancer_no_ip_and_servicelb_conflict() -> None:
    lb = run("loadbalancer-no-ip", snap())
    assert keys(lb) == {("Service", "gateway", "r2-net", "warning")}
    assert lb[0].evidence["servicelb"] == ["kube-system/svclb-gateway-5f3b2c1a"]
    assert any("servicelb" in c for c in lb[0].evidence["likely_causes"])
    conflict = run("servicelb-metallb-conflict", snap())
    assert keys(conflict) == {("DaemonSet", "svclb-gateway-5f3b2c1a", "kube-system", "warning")}
    ev = conflict[0].evidence
    assert ev["servicelb_daemonsets"] == ["kube-system/svclb-gateway-5f3b2c1a"]
    assert ev["services"] == ["r2-net/gateway"]
    assert ev["metallb_pools"] == ["metallb-system/default"]


def test_loadbalancer_causes_never_come_from_unread_kinds() -> None:
    blind = run("loadbalancer-no-ip", snap(unread=["daemonsets", "pods",
                                                    "ipaddresspools.metallb.io",
                                                    "l2advertisements.metallb.io"]))
    ev = blind[0].evidence
    assert not any("no LoadBalancer implementation" in c for c in ev["likely_causes"])
    assert not any("servicelb" in c or "L2Advertisement" in c or "IPAddressPool" in c
                   for c in ev["likely_causes"])
    assert any("could not read daemonsets nor pods" in u for u in ev["unknown"])
    # daemonsets unread, pods read: servicelb's pods still tell
    pods_only = run("loadbalancer-no-ip", snap(unread=["daemonsets"]))[0].evidence
    assert pods_only["servicelb"] and pods_only["servicelb"][0].startswith(
        "kube-system/svclb-gateway-5f3b2c1a-")


def test_no_servicelb_conflict_without_metallb_or_without_servicelb() -> None:
    def no_svclb(kind: str, obj: dict) -> bool:  # type: ignore[type-arg]
        return not obj["metadata"]["name"].startswith("svclb-")
    assert run("servicelb-metallb-conflict", snap(keep=no_svclb)) == []
    no_metallb = snapshot({**DATA, "objects": {
        k: v for k, v in DATA["objects"].items() if not k.endswith("metallb.io")}})
    assert run("servicelb-metallb-conflict", no_metallb) == []  # CRD absent: K3s' own LB


# --- the whole set -------------------------------------------------------------------------


def test_healthy_part_of_the_lab_gives_no_warning_or_critical() -> None:
    def healthy(kind: str, obj: dict) -> bool:  # type: ignore[type-arg]
        meta = obj["metadata"]
        name = meta["name"]
        return (meta.get("namespace") not in FAULTY_NAMESPACES and not name.startswith(
            ("r2-", "svclb-", "v1beta1.metrics", "v1alpha1.r2")))
    s = snap(keep=healthy)
    for rule in RULES:
        bad = [f.message for f in run(rule, s) if SEVERITY_RANK[f.severity] >= 1]
        assert bad == [], (rule, bad)


@pytest.mark.parametrize("rule", RULES)
def test_unread_inputs(rule: str) -> None:
    later = timedelta(0)
    for kind in REGISTRY[rule].reads:
        if kind.endswith("metallb.io") and not rule.startswith(("metallb", "servicelb")):
            continue
        assert not_evaluated_without(rule, DATA, kind, later), (rule, kind)
    assert_uses_are_evidence_only(rule, DATA, later)


def test_namespace_held_by_a_finalizer_only() -> None:
    """cluster-b.json: the APIServices deleted, the namespace controller's conditions now say
    only that a finalizer holds the namespace."""
    found = run("namespace-stuck-terminating", snapshot(load("cluster-b.json")))
    assert keys(found) == {("Namespace", "r2-doomed", None, "warning")}
    assert "cause_ref" not in found[0].evidence
    assert "discovery" not in found[0].message
    assert ("Some content in the namespace has finalizers remaining: r2.example.com/hold"
            in found[0].message)
    assert run("apiservice-unavailable", snapshot(load("cluster-b.json"))) == []


def test_service_of_a_workload_that_cannot_create_pods() -> None:
    """more.json (more-lab.yaml): Deployment blocked cannot create its pod (ResourceQuota
    pods: 0); its Service (behind two Ingresses) names the workload instead of a selector
    typo."""
    more = load("more.json")
    found = run("service-no-endpoints", snapshot(more))
    assert keys(found) == {("Service", "blocked", "r2-more", "critical")}
    assert found[0].evidence["cause"] == (
        "no pod exists for it: deployment blocked (wants 1) has none")
    assert found[0].evidence["cause_ref"] == [
        {"kind": "Deployment", "namespace": "r2-more", "name": "blocked"}]
    # while the Deployment is younger than its grace its pods may be on their way
    from k3sops.domain.snapshot import parse_time
    created = next(d for d in more["objects"]["deployments"]
                   if d["metadata"]["name"] == "blocked")["metadata"]["creationTimestamp"]
    age = parse_time(more["captured_at"]) - parse_time(created)  # type: ignore[operator]
    assert run("service-no-endpoints",
               snapshot(more, later=timedelta(seconds=30) - age)) == []


def test_ingress_tls_host_mismatch() -> None:
    """more.json: shop-tls names shop.r2.example only, wild-tls *.r2.example (one label)."""
    more = load("more.json")
    found = run("ingress-tls-host-mismatch", snapshot(more))
    assert keys(found) == {("Ingress", "shop-www", "r2-more", "warning"),
                           ("Ingress", "wild", "r2-more", "warning")}
    assert by_name(found, "shop-www").evidence["uncovered"] == [
        {"secret": "shop-tls", "hosts": ["www.shop.r2.example"], "names": ["shop.r2.example"]}]
    # a.r2.example is covered by the wildcard, a.b.r2.example is not
    assert by_name(found, "wild").evidence["uncovered"][0]["hosts"] == ["a.b.r2.example"]
    # every certificate of the network capture names its hosts
    assert run("ingress-tls-host-mismatch", snap()) == []
    for kind in REGISTRY["ingress-tls-host-mismatch"].reads:
        assert not_evaluated_without("ingress-tls-host-mismatch", more, kind)
