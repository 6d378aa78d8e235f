"""Network and storage checks on real API objects captured from the dev lab.

Data (tests/data/, raw LISTs as `k3sops check` reads them, managedFields dropped):

* check-dev-lab.json: the dev lab (127.0.0.1:17000+) plus a scratch namespace ``t-checks``
  holding the objects the lab scenarios create (src/k3sops/lab/scenarios.py) with the status
  the real controllers wrote: Service ``payments`` selecting no pod, Ingress ``shop`` to the
  missing Service ``shop-frontend``, LoadBalancer Service ``public-gateway`` (no controller
  assigns it an IP), PVC ``data-orders`` on class ``longhorn`` (no provisioner answers:
  ExternalProvisioning events); and around them: Service ``orders`` whose only pod
  crash-loops, a headless Service without selector and an ExternalName Service, Ingress
  ``web-admin`` to a port name the Service lacks and a healthy Ingress ``web``, a PVC on the
  missing class ``fast-ssd`` (ProvisioningFailed), a WaitForFirstConsumer PVC ``scratch`` with
  no consumer, a statically bound PVC ``ledger`` and PVC ``audit`` made Lost by deleting its
  PersistentVolume (the PV controller wrote phase Lost and the ClaimLost event), and a K3s-style
  servicelb DaemonSet ``svclb-public-gateway-*``.
  MetalLB and the Longhorn manager cannot run here: the ``t-checks`` IPAddressPools ``edge``
  (1 assigned, 0 available) and ``internal`` (8 available) and the Longhorn Volumes/Replicas
  were created against the lab's real CRDs and their status written through the status
  subresource with the fields and values those controllers write (MetalLB 0.15 pool counters;
  Longhorn 1.9 ``state``/``robustness``/``kubernetesStatus``/replica ``currentState``):
  ``pvc-5b1e2f0a-orders`` attached and degraded (one replica failed on k3s-agent-3),
  ``pvc-9c04d7e3-ledger`` detached and faulted (every replica failed), ``pvc-2a77c1b9-postgres``
  healthy, ``pvc-0d3f4e11-detached`` detached with robustness unknown (not in use).
* check-dns-down.json: a Deployment ``coredns`` (crash-looping pods) and Service ``kube-dns``
  with their EndpointSlice (endpoints not ready), created in the scratch namespace
  ``t-checks-dns`` of the dev lab; the test moves them to kube-system, the only change made,
  because the shared dev lab's real DNS must not be broken.
* check-healthy-lab.json: the healthy test lab (127.0.0.1:27000+), read only.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from checkkit import by_name, found, platform, run

from k3sops.domain.checks import (
    REGISTRY,
    dns,
    endpoints,
    gitops,
    loadbalancers,
    storage,
    workloads,
)
from k3sops.domain.findings import SEVERITY_RANK
from k3sops.domain.snapshot import ClusterSnapshot, parse_time

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data"
MODULES = {m.__name__ for m in (workloads, endpoints, loadbalancers, dns, storage, gitops)}
MY_CHECKS = sorted(spec.id for spec in REGISTRY.values() if spec.fn.__module__ in MODULES)


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


DEV = load("check-dev-lab.json")
HEALTHY = load("check-healthy-lab.json")


def snapshot(data: dict[str, Any], drop: tuple[str, ...] = (),
             keep: Any = None) -> ClusterSnapshot:
    """The capture as the service builds it; ``keep(kind, obj)`` filters objects."""
    now = parse_time(data["captured_at"])
    assert now is not None
    objects = {k: [o for o in v if keep is None or keep(k, o)]
               for k, v in data["objects"].items() if k not in drop}
    return ClusterSnapshot(now=now, objects=objects)


def test_all_checks_registered() -> None:
    assert set(MY_CHECKS) == {
        "deployment-rollout-stuck", "deployment-unavailable", "statefulset-unavailable",
        "daemonset-unavailable", "job-failed", "service-no-endpoints", "ingress-backend-missing",
        "loadbalancer-no-ip", "metallb-pool-exhausted", "dns-coredns-unavailable", "pvc-pending",
        "pvc-lost", "storageclass-missing", "longhorn-volume-degraded", "longhorn-volume-faulted",
        "argocd-app-degraded", "argocd-app-out-of-sync"}


# --- network -------------------------------------------------------------------------------


def test_services_without_ready_endpoints() -> None:
    findings = run("service-no-endpoints", snapshot(DEV))
    # not web (ready), external-db (no selector), partner-api (ExternalName),
    # public-gateway (selects the ready web pods), nor any platform Service
    assert found(findings) == {("Service", "t-checks", "payments", "warning"),
                               ("Service", "t-checks", "orders", "warning")}
    payments = by_name(findings, "payments")
    assert payments.evidence["selector"] == {"app.kubernetes.io/name": "payments"}
    assert payments.evidence["matching_pods"] == 0
    assert "no pod matches its selector" in payments.message
    orders = by_name(findings, "orders").evidence
    assert (orders["matching_pods"], orders["ready_pods"], orders["endpoints"]) == (1, 0, 1)


def test_ingress_backends_missing_service_or_port() -> None:
    findings = run("ingress-backend-missing", snapshot(DEV))
    assert found(findings) == {("Ingress", "t-checks", "shop", "critical"),
                               ("Ingress", "t-checks", "web-admin", "critical")}
    shop = by_name(findings, "shop")
    assert shop.evidence["broken_backends"] == [
        {"host": "shop.dev.example", "path": "/", "service": "shop-frontend", "port": "80",
         "problem": "service does not exist"}]
    admin = by_name(findings, "web-admin").evidence["broken_backends"][0]
    assert (admin["service"], admin["port"]) == ("web", "admin")
    assert "not a port of the service (it has http)" in admin["problem"]


def test_loadbalancer_without_ip_names_servicelb_and_metallb() -> None:
    findings = run("loadbalancer-no-ip", snapshot(DEV))
    assert found(findings) == {("Service", "t-checks", "public-gateway", "warning")}
    ev = findings[0].evidence
    assert ev["servicelb"] == ["t-checks/svclb-public-gateway-5f3b2c1a"]
    assert any("servicelb" in c and "MetalLB" in c for c in ev["likely_causes"])
    pools = {p["name"]: p for p in ev["metallb_pools"]}
    assert (pools["edge"]["available"], pools["internal"]["available"]) == (0, 8)
    assert pools["default"]["available"] is None  # no status: MetalLB < 0.15 or not running
    assert [a["name"] for a in ev["l2advertisements"]] == ["default"]
    assert ev["metallb_controller"]["name"] == "metallb-system/controller"


def test_loadbalancer_causes_follow_what_exists() -> None:
    def no_svclb(kind: str, obj: Any) -> bool:
        return not obj["metadata"]["name"].startswith("svclb-")

    # the lb-no-ip scenario as it is in the lab: MetalLB objects, no servicelb
    plain = run("loadbalancer-no-ip", snapshot(DEV, keep=no_svclb))[0]
    assert plain.evidence["servicelb"] == []
    assert not any("servicelb" in c for c in plain.evidence["likely_causes"])
    assert plain.resource.name == "public-gateway"
    # without MetalLB's CRDs and without servicelb nothing can assign an IP
    bare = run("loadbalancer-no-ip", snapshot(
        DEV, drop=("ipaddresspools.metallb.io", "l2advertisements.metallb.io"), keep=no_svclb))
    assert bare[0].evidence["likely_causes"] == [
        "no LoadBalancer implementation found (neither MetalLB nor K3s servicelb)"]


def test_exhausted_metallb_pool() -> None:
    findings = run("metallb-pool-exhausted", snapshot(DEV))
    assert found(findings) == {("IPAddressPool", "t-checks", "edge", "warning")}
    assert findings[0].evidence["pool"]["assigned"] == 1


def _dns_down(drop_deployment: bool = False) -> ClusterSnapshot:
    data = copy.deepcopy(load("check-dns-down.json"))
    objects = data["objects"]
    for kind in ("deployments", "replicasets", "pods", "services", "endpointslices", "events"):
        for obj in objects.get(kind, []):
            if kind == "events":
                obj["involvedObject"]["namespace"] = "kube-system"
            obj["metadata"]["namespace"] = "kube-system"
    if drop_deployment:
        objects["deployments"] = []
    return snapshot(data)


def test_dns_down() -> None:
    findings = run("dns-coredns-unavailable", _dns_down())
    # one finding: the Deployment explains why the Service has no ready endpoint
    assert found(findings) == {("Deployment", "kube-system", "coredns", "critical")}
    assert findings[0].evidence["kube_dns_ready_endpoints"] == 0
    only_service = run("dns-coredns-unavailable", _dns_down(drop_deployment=True))
    assert found(only_service) == {("Service", "kube-system", "kube-dns", "critical")}
    assert only_service[0].evidence["endpoints"] == 2
    # DNS down is the DNS check's, never service-no-endpoints' or deployment-unavailable's
    assert run("service-no-endpoints", _dns_down()) == []
    assert run("deployment-unavailable", _dns_down()) == []


def test_dns_up_in_the_labs() -> None:
    assert run("dns-coredns-unavailable", snapshot(DEV)) == []
    assert run("dns-coredns-unavailable", snapshot(HEALTHY)) == []


# --- storage -------------------------------------------------------------------------------


def test_pending_claims() -> None:
    findings = run("pvc-pending", snapshot(DEV))
    # data-search (missing class) is storageclass-missing's; ledger is Bound; audit is Lost
    assert found(findings) == {("PersistentVolumeClaim", "t-checks", "data-orders", "warning"),
                               ("PersistentVolumeClaim", "t-checks", "scratch", "info")}
    ev = by_name(findings, "data-orders").evidence
    assert (ev["storage_class"], ev["class_exists"], ev["provisioner"]) == (
        "longhorn", True, "driver.longhorn.io")
    assert [e["reason"] for e in ev["events"]] == ["ExternalProvisioning"]
    scratch = by_name(findings, "scratch").evidence
    assert (scratch["volume_binding_mode"], scratch["consumers"]) == ("WaitForFirstConsumer", [])


def test_lost_claims() -> None:
    findings = run("pvc-lost", snapshot(DEV))
    assert found(findings) == {("PersistentVolumeClaim", "t-checks", "audit", "critical")}
    ev = findings[0].evidence
    assert (ev["volume_name"], ev["volume_exists"]) == ("t-checks-audit", False)
    assert ev["events"][0]["reason"] == "ClaimLost"


def test_claims_on_missing_storage_class() -> None:
    findings = run("storageclass-missing", snapshot(DEV))
    assert found(findings) == {("PersistentVolumeClaim", "t-checks", "data-search", "critical")}
    ev = findings[0].evidence
    assert ev["existing_classes"] == ["local-path", "longhorn"]
    assert ev["default_class"] == "longhorn"
    assert ev["events"][0]["reason"] == "ProvisioningFailed"


def test_longhorn_degraded_and_faulted_volumes() -> None:
    degraded = run("longhorn-volume-degraded", snapshot(DEV))
    faulted = run("longhorn-volume-faulted", snapshot(DEV))
    assert found(degraded) == {("Volume", "t-checks", "pvc-5b1e2f0a-orders", "warning")}
    assert found(faulted) == {("Volume", "t-checks", "pvc-9c04d7e3-ledger", "critical")}
    ev = degraded[0].evidence
    assert (ev["state"], ev["healthy_replicas"], ev["number_of_replicas"]) == ("attached", 2, 3)
    failed = [r["node"] for r in ev["replicas"] if r["failed_at"]]
    assert failed == ["k3s-agent-3"]
    assert ev["pvc"] == "development/data-orders"
    assert faulted[0].evidence["state"] == "detached"
    assert faulted[0].evidence["healthy_replicas"] == 0


def test_longhorn_without_replica_objects_and_scoped_by_claim_namespace() -> None:
    snap = snapshot(DEV, drop=("replicas.longhorn.io",))
    degraded = run("longhorn-volume-degraded", snap)
    assert degraded[0].evidence["replicas"] is None
    assert "healthy)" not in degraded[0].message
    plat = platform()
    assert run("longhorn-volume-faulted", snap, plat, environment="development") == []
    assert len(run("longhorn-volume-faulted", snap, plat, environment="production")) == 1


# --- the whole set -------------------------------------------------------------------------


def test_healthy_lab_gives_nothing() -> None:
    snap = snapshot(HEALTHY)
    for check_id in MY_CHECKS:
        assert run(check_id, snap, platform()) == [], check_id


def test_healthy_parts_of_the_dev_lab_give_no_warning_or_critical() -> None:
    """Everything outside the faulty namespaces, and the healthy objects next to the faults."""
    faulty = {"payments", "orders", "public-gateway", "svclb-public-gateway-5f3b2c1a", "shop",
              "web-admin", "data-orders", "data-search", "audit", "spread", "catalog", "queue",
              "log-shipper", "nightly-report", "edge", "pvc-5b1e2f0a-orders",
              "pvc-9c04d7e3-ledger", "shop-development", "shop-staging", "billing-production"}

    def keep(kind: str, obj: Any) -> bool:
        ns = obj.get("metadata", {}).get("namespace")
        if ns == "development":
            return False  # the scenarios live there
        if ns != "t-checks":
            return True
        # an object, or what it owns (pods, ReplicaSets, slices, events, replicas), is faulty
        names = {obj["metadata"]["name"], (obj.get("involvedObject") or {}).get("name", "")}
        names |= {r.get("name", "") for r in obj["metadata"].get("ownerReferences") or []}
        names |= set((obj["metadata"].get("labels") or {}).values())
        return not any(n == f or n.startswith(f"{f}-") for n in names for f in faulty)

    snap = snapshot(DEV, keep=keep)
    # sanity: the healthy objects are really in the snapshot
    assert {o["metadata"]["name"] for o in snap.get("deployments")
            if o["metadata"]["namespace"] == "t-checks"} == {"web", "idle"}
    assert {o["metadata"]["name"] for o in snap.get("persistentvolumeclaims")} == {
        "ledger", "scratch"}
    assert {o["metadata"]["name"] for o in snap.get("ingresses")} == {"web"}
    for check_id in MY_CHECKS:
        bad = [f for f in run(check_id, snap, platform())
               if SEVERITY_RANK[f.severity] >= SEVERITY_RANK["warning"]]
        assert bad == [], (check_id, [f.message for f in bad])
