"""Fault scenarios that look real to any client: real objects, real controllers, kwok stages.

Object status is never written by hand here: the scheduler, the deployment, endpoint-slice and
persistent-volume controllers, and kwok's stages (its own NotReady/failed-pod stages and the
k3sops CrashLoopBackOff/OOMKilled stages) produce every status a client sees.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k3sops.errors import LabError
from k3sops.lab.build import installed_binaries
from k3sops.lab.layout import LabLayout
from k3sops.lab.shape import SCENARIO_NAMESPACE, apply, kubectl, service, workload
from k3sops.lab.stages import FAULT_LABEL

SCENARIO_LABEL = "k3sops.io/scenario"
NOT_READY_NODE = "k3s-agent-3"
KWOK_NODE_NOT_READY = "node-not-ready.stage.kwok.x-k8s.io"
KWOK_POD_FAILED = "pod-container-running-failed.stage.kwok.x-k8s.io"


@dataclass(frozen=True)
class Scenario:
    """One fault: the objects it creates (labelled with its name) and what a client will see."""

    name: str
    description: str
    objects: list[dict[str, Any]] = field(default_factory=list)


def _label(obj: dict[str, Any], name: str) -> dict[str, Any]:
    obj.setdefault("metadata", {}).setdefault("labels", {})[SCENARIO_LABEL] = name
    obj["metadata"].setdefault("namespace", SCENARIO_NAMESPACE)
    return obj


def _deploy(name: str, scenario: str, pod_labels: dict[str, str] | None = None,
            **extra: Any) -> dict[str, Any]:
    d = workload("Deployment", name, SCENARIO_NAMESPACE, f"registry.example/{name}:1.0", 8080,
                 labels={SCENARIO_LABEL: scenario, **(pod_labels or {})}, **extra)
    return _label(d, scenario)


def _scenarios() -> dict[str, Scenario]:
    ns = SCENARIO_NAMESPACE
    oom = _deploy("cache", "oomkilled", {FAULT_LABEL: "oomkilled"})
    oom["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}}
    big = _deploy("batch-big", "pending")
    big["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "64", "memory": "256Gi"}}
    failed_pod = _label({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "report-generator", "labels": {KWOK_POD_FAILED: "true"},
                     "annotations": {f"{KWOK_POD_FAILED}/reason": "Error",
                                     f"{KWOK_POD_FAILED}/message": "report query failed",
                                     f"{KWOK_POD_FAILED}/exit-code": "2"}},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "report", "image": "registry.example/report:1.0"}]},
    }, "failed-pod")
    pvc = _label({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-orders"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "longhorn",
                 "resources": {"requests": {"storage": "5Gi"}}},
    }, "pvc-pending")
    no_ep = _label(service("payments", ns, 80, 8080, {"app.kubernetes.io/name": "payments"}),
                   "svc-no-endpoints")
    ingress = _label({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop"},
        "spec": {"ingressClassName": "traefik", "rules": [{
            "host": "shop.dev.example", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "shop-frontend", "port": {"number": 80}}}}]}}]},
    }, "ingress-missing-svc")
    lb = _label(service("public-gateway", ns, 443, 8443, {"app.kubernetes.io/name": "web"},
                        svc_type="LoadBalancer"), "lb-no-ip")
    return {s.name: s for s in [
        Scenario("node-notready", f"node {NOT_READY_NODE} goes NotReady (kwok chaos stage); "
                 "the node controller taints it"),
        Scenario("crashloop", "Deployment checkout: its pod crashes and restarts, "
                 "CrashLoopBackOff with a rising restart count",
                 [_deploy("checkout", "crashloop", {FAULT_LABEL: "crashloop"})]),
        Scenario("pending", "Deployment batch-big requests 64 CPUs: the scheduler cannot place it "
                 "(FailedScheduling)", [big]),
        Scenario("failed-pod", "Pod report-generator fails (phase Failed, exit code 2)",
                 [failed_pod]),
        Scenario("oomkilled", "Deployment cache: its container is OOMKilled (exit 137) "
                 "again and again", [oom]),
        Scenario("stuck-rollout", "Deployment api: an update whose new pods never become ready; "
                 "the rollout passes its progress deadline", []),
        Scenario("pvc-pending", "PVC data-orders on StorageClass longhorn stays Pending "
                 "(no provisioner answers)", [pvc]),
        Scenario("svc-no-endpoints", "Service payments selects no pods: no ready endpoints",
                 [no_ep]),
        Scenario("ingress-missing-svc", "Ingress shop points at Service shop-frontend, "
                 "which does not exist", [ingress]),
        Scenario("lb-no-ip", "LoadBalancer Service public-gateway gets no external IP", [lb]),
    ]}


SCENARIOS = _scenarios()


def _stuck_rollout(layout: LabLayout, b: Mapping[str, Path]) -> None:
    # minReadySeconds: a new pod must stay ready 30s to count; the crashing ones never do, so
    # the rollout cannot progress and passes its 45s deadline (ProgressDeadlineExceeded).
    api = _deploy("api", "stuck-rollout", progressDeadlineSeconds=45, minReadySeconds=30,
                  strategy={"type": "RollingUpdate",
                            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    api["spec"]["replicas"] = 2
    apply(layout, b, [api])
    kubectl(layout, b, "-n", SCENARIO_NAMESPACE, "rollout", "status", "deployment/api",
            "--timeout=90s", timeout=120)
    # The update: a new image whose containers crash; maxUnavailable 0 keeps the old pods.
    api["spec"]["template"]["metadata"]["labels"][FAULT_LABEL] = "crashloop"
    api["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example/api:2.0-broken"
    apply(layout, b, [api])


def apply_scenarios(layout: LabLayout, env: Mapping[str, str], names: list[str]) -> None:
    """Inject the named scenarios into the running lab."""
    b = installed_binaries(layout, env)
    if not (layout.run_dir / "admin.kubeconfig").is_file():
        raise LabError("the lab is not up", hint="run `k3sops lab up` first")
    for name in names:
        sc = SCENARIOS[name]
        if name == "node-notready":
            kubectl(layout, b, "label", "node", NOT_READY_NODE, f"{KWOK_NODE_NOT_READY}=true",
                    f"{SCENARIO_LABEL}={name}", "--overwrite")
        elif name == "stuck-rollout":
            _stuck_rollout(layout, b)
        else:
            apply(layout, b, sc.objects)


def reset(layout: LabLayout, env: Mapping[str, str], wait: bool = True) -> None:
    """Remove every scenario object and bring the NotReady node back."""
    b = installed_binaries(layout, env)
    kubectl(layout, b, "delete", "deployment,pod,pvc,service,ingress", "-A",
            "-l", SCENARIO_LABEL, "--ignore-not-found", "--wait=false")
    kubectl(layout, b, "label", "node", NOT_READY_NODE, f"{KWOK_NODE_NOT_READY}-",
            f"{SCENARIO_LABEL}-")
    if wait:
        kubectl(layout, b, "wait", "--for=condition=Ready", f"node/{NOT_READY_NODE}",
                "--timeout=90s", timeout=120)
        # kwok's node-not-ready stage writes a status without addresses, and its heartbeat
        # stage then keeps them empty: without an address the API server cannot reach the
        # node's kubelet (kwok), so exec and logs of its pods fail ("no preferred addresses
        # found"). Give it back the address every lab node has.
        kubectl(layout, b, "patch", "node", NOT_READY_NODE, "--subresource=status",
                "--type=merge", "-p",
                '{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}]}}')
        deadline = time.monotonic() + 60
        left = ""
        while time.monotonic() < deadline:
            left = kubectl(layout, b, "get", "pods", "-A", "-l", SCENARIO_LABEL, "-o", "name")
            if not left.strip():
                return
            time.sleep(1)
        raise LabError("scenario pods still present after reset: " + " ".join(left.split()),
                       hint="check the kwok log in the lab's logs directory")
