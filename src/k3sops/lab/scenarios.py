"""Fault scenarios that look real to any client: real objects, real controllers, kwok stages.

Object status is never written by hand here: the scheduler, the deployment, endpoint-slice and
persistent-volume controllers, and kwok's stages (its own NotReady/failed-pod stages and the
k3sops CrashLoopBackOff/OOMKilled stages) produce every status a client sees.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from k3sops.errors import LabError
from k3sops.lab.build import installed_binaries
from k3sops.lab.layout import LabLayout
from k3sops.lab.shape import SCENARIO_NAMESPACE, apply, kubectl, service, workload
from k3sops.lab.stages import FAULT_LABEL
from k3sops.timeparse import parse_time

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


_AWAY_FROM_NOT_READY: dict[str, Any] = {"nodeAffinity": {
    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
        "matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn",
                              "values": [NOT_READY_NODE]}]}]}}}


def _label(obj: dict[str, Any], name: str) -> dict[str, Any]:
    obj.setdefault("metadata", {}).setdefault("labels", {})[SCENARIO_LABEL] = name
    obj["metadata"].setdefault("namespace", SCENARIO_NAMESPACE)
    return obj


def _deploy(name: str, scenario: str, pod_labels: dict[str, str] | None = None,
            **extra: Any) -> dict[str, Any]:
    d = workload("Deployment", name, SCENARIO_NAMESPACE, f"registry.example/{name}:1.0", 8080,
                 labels={SCENARIO_LABEL: scenario, **(pod_labels or {})}, **extra)
    # Never on the node the node-notready scenario takes down: a pod placed there before it
    # went NotReady would have two roots (its own fault and its node), by chance of scheduling.
    d["spec"]["template"]["spec"]["affinity"] = _AWAY_FROM_NOT_READY
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
                 "affinity": _AWAY_FROM_NOT_READY,
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


# --- waiting until a fault can be seen ----------------------------------------------------
#
# Applying a scenario only creates objects: the controllers, the scheduler and kwok's stages
# make the fault appear seconds (or, for a progress deadline, a minute) later, and `k3sops
# check` deliberately ignores objects younger than their grace (a Service still being wired is
# not an outage). `lab scenario apply` therefore waits, by default, until every fault is in
# the state the check reports, read through the API like any client reads it.

WAIT_TIMEOUT_SECONDS = 180.0
CRASHLOOP_WINDOW_SECONDS = 10.0
"""A fresh CrashLoopBackOff: the lab's back-off lasts 20 s or more (see stages.py), so one that
began at most this long ago is still there when the next command looks."""
RECENT_CRASH_SECONDS = 600.0
"""As pod-crashloop: a container that restarted often and died within this long is looping."""

Objects = dict[str, list[dict[str, Any]]]
Probe = Callable[[Objects, datetime], str | None]


def _grace() -> dict[str, float]:
    # The checks' own grace periods: the wait must outlast them, or the fault is applied
    # but not reported yet. Imported late: the domain's check modules are many.
    from k3sops.domain.checks.network import INGRESS_GRACE_SECONDS, SERVICE_GRACE_SECONDS
    from k3sops.domain.checks.pods import CRASHLOOP_MIN_RESTARTS
    from k3sops.domain.checks.storage import PVC_GRACE_SECONDS

    return {"service": SERVICE_GRACE_SECONDS, "ingress": INGRESS_GRACE_SECONDS,
            "pvc": PVC_GRACE_SECONDS, "restarts": CRASHLOOP_MIN_RESTARTS}


def _age(obj: Mapping[str, Any], now: datetime) -> float:
    created = parse_time(obj.get("metadata", {}).get("creationTimestamp"))
    return (now - created).total_seconds() if created is not None else 0.0


def _of(objs: Objects, kind: str, scenario: str) -> list[dict[str, Any]]:
    return [o for o in objs.get(kind, [])
            if (o.get("metadata", {}).get("labels") or {}).get(SCENARIO_LABEL) == scenario
            and not o.get("metadata", {}).get("deletionTimestamp")]


def _named(objs: Objects, kind: str, name: str) -> dict[str, Any] | None:
    return next((o for o in objs.get(kind, []) if o.get("metadata", {}).get("name") == name),
                None)


def _cond(obj: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions") or []
                 if c.get("type") == kind), {})


def _statuses(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    st = pod.get("status", {})
    return [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]


def _old_enough(obj: Mapping[str, Any] | None, what: str, grace: float, now: datetime
                ) -> str | None:
    if obj is None:
        return f"{what} does not exist yet"
    age = _age(obj, now)
    if age < grace:
        return f"{what} is {age:.0f}s old; the check reports it from {grace:.0f}s"
    return None


def _node_notready(objs: Objects, now: datetime) -> str | None:
    node = _named(objs, "Node", NOT_READY_NODE)
    if node is None:
        return f"node {NOT_READY_NODE} not found"
    status = _cond(node, "Ready").get("status")
    return None if status != "True" else f"node {NOT_READY_NODE} is still Ready"


def _crashloop(objs: Objects, now: datetime) -> str | None:
    restarts = int(_grace()["restarts"])
    pods = _of(objs, "Pod", "crashloop")
    for pod in pods:
        for cs in _statuses(pod):
            finished = parse_time(cs.get("lastState", {}).get("terminated", {}).get("finishedAt"))
            since = (now - finished).total_seconds() if finished is not None else None
            waiting = cs.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
            # Either phase of the loop is reported once restarts pile up; before that only the
            # back-off is, so take one that has just begun (it outlasts the next command).
            if since is not None and not cs.get("ready") and (
                    (waiting and since <= CRASHLOOP_WINDOW_SECONDS)
                    or (int(cs.get("restartCount") or 0) >= restarts
                        and since < RECENT_CRASH_SECONDS)):
                return None
    if not pods:
        return "no pod of deployment checkout yet"
    counts = [int(cs.get("restartCount") or 0) for p in pods for cs in _statuses(p)]
    return f"pod not in a fresh CrashLoopBackOff yet ({max(counts, default=0)} restarts)"


def _pending(objs: Objects, now: datetime) -> str | None:
    for pod in _of(objs, "Pod", "pending"):
        if (pod.get("status", {}).get("phase") == "Pending"
                and _cond(pod, "PodScheduled").get("status") == "False"):
            return None
    return "no pod of batch-big is marked unschedulable yet"


def _failed_pod(objs: Objects, now: datetime) -> str | None:
    pods = _of(objs, "Pod", "failed-pod")
    if any(p.get("status", {}).get("phase") == "Failed" for p in pods):
        return None
    return "pod report-generator has not failed yet"


def _oomkilled(objs: Objects, now: datetime) -> str | None:
    for pod in _of(objs, "Pod", "oomkilled"):
        for cs in _statuses(pod):
            term = (cs.get("lastState", {}).get("terminated")
                    or cs.get("state", {}).get("terminated") or {})
            if term.get("reason") == "OOMKilled":
                return None
    return "no container of deployment cache was OOMKilled yet"


def _stuck_rollout_seen(objs: Objects, now: datetime) -> str | None:
    for dep in _of(objs, "Deployment", "stuck-rollout"):
        if _cond(dep, "Progressing").get("reason") == "ProgressDeadlineExceeded":
            return None
    return "deployment api has not passed its progress deadline yet"


def _pvc_pending(objs: Objects, now: datetime) -> str | None:
    pvc = next(iter(_of(objs, "PersistentVolumeClaim", "pvc-pending")), None)
    if pvc is not None and pvc.get("status", {}).get("phase") != "Pending":
        return f"PVC data-orders is {pvc.get('status', {}).get('phase')}, not Pending"
    if young := _old_enough(pvc, "PVC data-orders", _grace()["pvc"], now):
        return young
    seen = any(e.get("involvedObject", {}).get("kind") == "PersistentVolumeClaim"
               and e.get("involvedObject", {}).get("name") == "data-orders"
               for e in objs.get("Event", []))
    return None if seen else "no event about PVC data-orders yet"


def _svc_no_endpoints(objs: Objects, now: datetime) -> str | None:
    # With pods read (as here) the check judges a Service matching no pod at once; its
    # SERVICE_GRACE_SECONDS is for Services whose pods could not be read.
    if not _of(objs, "Service", "svc-no-endpoints"):
        return "Service payments does not exist yet"
    slices = [es for es in objs.get("EndpointSlice", [])
              if (es.get("metadata", {}).get("labels") or {}).get(
                  "kubernetes.io/service-name") == "payments"]
    if not slices:
        return "no EndpointSlice for Service payments yet"
    ready = [ep for es in slices for ep in es.get("endpoints") or []
             if (ep.get("conditions") or {}).get("ready") is not False]
    return None if not ready else "Service payments has ready endpoints"


def _ingress_missing_svc(objs: Objects, now: datetime) -> str | None:
    ing = next(iter(_of(objs, "Ingress", "ingress-missing-svc")), None)
    return _old_enough(ing, "Ingress shop", _grace()["ingress"], now)


def _lb_no_ip(objs: Objects, now: datetime) -> str | None:
    svc = next(iter(_of(objs, "Service", "lb-no-ip")), None)
    if young := _old_enough(svc, "Service public-gateway", _grace()["service"], now):
        return young
    if svc is not None and svc.get("status", {}).get("loadBalancer", {}).get("ingress"):
        return "Service public-gateway got an external IP"
    return None


PROBES: dict[str, Probe] = {
    "node-notready": _node_notready, "crashloop": _crashloop, "pending": _pending,
    "failed-pod": _failed_pod, "oomkilled": _oomkilled, "stuck-rollout": _stuck_rollout_seen,
    "pvc-pending": _pvc_pending, "svc-no-endpoints": _svc_no_endpoints,
    "ingress-missing-svc": _ingress_missing_svc, "lb-no-ip": _lb_no_ip,
}
"""Per scenario: None when `k3sops check` can see its fault now, else what is still missing."""

_KINDS = "pods,deployments,services,endpointslices,persistentvolumeclaims,ingresses,events"


def _read(layout: LabLayout, b: Mapping[str, Path], names: list[str]) -> Objects:
    out: Objects = {}
    docs = [json.loads(kubectl(layout, b, "get", _KINDS, "-n", SCENARIO_NAMESPACE,
                               "-o", "json", timeout=60))]
    if "node-notready" in names:
        docs.append({"items": [json.loads(kubectl(layout, b, "get", "node", NOT_READY_NODE,
                                                  "-o", "json", timeout=60))]})
    for doc in docs:
        for item in doc.get("items", []):
            out.setdefault(str(item.get("kind")), []).append(item)
    return out


def not_visible(objs: Objects, names: list[str], now: datetime) -> dict[str, str]:
    """The scenarios among ``names`` whose fault the check cannot report yet, and why."""
    return {n: why for n in names if (why := PROBES[n](objs, now)) is not None}


def wait_visible(layout: LabLayout, env: Mapping[str, str], names: list[str],
                 timeout: float = WAIT_TIMEOUT_SECONDS,
                 progress: Callable[[str], None] | None = None, every: float = 2.0) -> None:
    """Return once every named scenario's fault can be observed through the API, all at once.

    Raises:
        LabError: ``timeout`` seconds passed; the message names the scenarios not visible yet
            and what is missing for each.
    """
    b = installed_binaries(layout, env)
    say = progress or (lambda _msg: None)
    deadline = time.monotonic() + timeout
    shown: dict[str, str | None] = {}
    told = time.monotonic()
    while True:
        missing = not_visible(_read(layout, b, names), names, datetime.now(UTC))
        for n in names:
            state = missing.get(n)
            if n not in shown or (state is None) != (shown[n] is None):
                say(f"{n}: visible" if state is None else f"{n}: waiting ({state})")
            shown[n] = state
        if not missing:
            return
        if time.monotonic() - told >= 15:
            told = time.monotonic()
            say("still waiting: " + "; ".join(f"{n} ({why})" for n, why in missing.items()))
        if time.monotonic() >= deadline:
            raise LabError(
                f"after {timeout:g}s the check cannot see these scenarios yet: "
                + "; ".join(f"{n} ({why})" for n, why in missing.items()),
                hint="run `k3sops lab scenario apply --timeout LONGER ...`, or look at "
                     f"`kubectl -n {SCENARIO_NAMESPACE} get events` and the kwok log in the "
                     "lab's logs directory")
        time.sleep(every)
