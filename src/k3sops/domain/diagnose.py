"""Diagnosis: causal chains over a ClusterSnapshot (pure; the service gathers the data).

`k3sops check` says *what* is wrong; a diagnosis follows one object (a pod, a node, a
deployment, the network, the storage) down the chain of causes and names the broken link.
The registered checks are reused where they already find the problem; the chain adds the
deeper evidence (scheduler causes, requests against allocatable, previous logs, rollout
state). ``-o json`` prints :class:`DiagnosisReport`, whose findings use the check schema.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from k3sops.domain import checks as registry
from k3sops.domain.checks.base import CheckContext
from k3sops.domain.checks.capacity import pod_request, quantity
from k3sops.domain.checks.nodes import PRESSURES as PRESSURE_RUNBOOKS
from k3sops.domain.findings import Finding, Severity, Source, sort_findings
from k3sops.domain.snapshot import (
    ClusterSnapshot,
    Obj,
    conditions,
    events_for,
    get,
    meta,
    parse_time,
)

K3S_ROLE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master",
                   "node-role.kubernetes.io/etcd")


class ChainStep(BaseModel):
    """One link of a causal chain: what was looked at, whether it holds, and what was seen."""

    model_config = ConfigDict(extra="forbid")

    step: str
    ok: bool
    detail: str


class DiagnosisReport(BaseModel):
    """What `k3sops diagnose` prints: the target, its chain, the findings and the sources."""

    model_config = ConfigDict(extra="forbid")

    target: str
    chain: list[ChainStep] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)


class Diagnosis:
    """Accumulates chain steps and findings while one target is examined."""

    def __init__(self, ctx: CheckContext) -> None:
        """Start an empty diagnosis over ``ctx``'s snapshot."""
        self.ctx = ctx
        self.chain: list[ChainStep] = []
        self.findings: list[Finding] = []

    def step(self, step: str, ok: bool, detail: str) -> None:
        """Record a link of the chain."""
        self.chain.append(ChainStep(step=step, ok=ok, detail=detail))

    def add(self, check: str, severity: Severity, kind: str, namespace: str | None, name: str,
            message: str, runbook: str, evidence: dict[str, Any]) -> None:
        """Record a finding (same schema as `k3sops check`)."""
        self.findings.append(self.ctx.finding(check, severity, kind, namespace, name, message,
                                              runbook, evidence))

    def report(self, target: str, sources: list[Source] | None = None) -> DiagnosisReport:
        """The report, findings de-duplicated by identity and sorted most severe first."""
        seen: dict[str, Finding] = {}
        for f in self.findings:
            prev = seen.get(f.key)
            # A check and the chain may report the same thing: keep one finding with the
            # evidence of both and the more specific (longer) message.
            seen[f.key] = f if prev is None else prev.model_copy(update={
                "evidence": {**prev.evidence, **f.evidence},
                "message": max(prev.message, f.message, key=len)})
        return DiagnosisReport(target=target, chain=self.chain,
                               findings=sort_findings(list(seen.values())),
                               sources=sources or [])


def context(snapshot: ClusterSnapshot) -> CheckContext:
    """A check context over the snapshot (no platform scoping: diagnose looks at everything)."""
    return CheckContext(snapshot=snapshot, platform=None, period="daily")


def _check_findings(ctx: CheckContext, ids: tuple[str, ...]) -> list[Finding]:
    out: list[Finding] = []
    for cid in ids:
        spec = registry.REGISTRY.get(cid)
        if spec is not None:
            out.extend(spec.fn(ctx))
    return out


def similar(snapshot: ClusterSnapshot, kind: str, name: str,
            namespace: str | None = None) -> list[str]:
    """Names of ``kind`` close to ``name`` (for a NotFound hint)."""
    names = [meta(o)[1] for o in snapshot.get(kind)
             if namespace is None or meta(o)[0] == namespace]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    return close or [n for n in names if n.startswith(name[:3])][:5]


def find(snapshot: ClusterSnapshot, kind: str, name: str, namespace: str | None) -> Obj | None:
    """The object of ``kind`` with that name (and namespace for namespaced kinds)."""
    for o in snapshot.get(kind):
        ns, n = meta(o)
        if n == name and (namespace is None or ns == namespace):
            return o
    return None


# --- pods -------------------------------------------------------------------------------------

_SCHED_ITEM = re.compile(r"^\s*(\d+)\s+(.*?)\s*$")


def parse_failed_scheduling(message: str) -> list[dict[str, Any]]:
    """The scheduler's ``0/6 nodes are available: ...`` message as (count, reason) items."""
    _, sep, rest = message.partition("nodes are available:")
    if not sep:
        return [{"nodes": None, "reason": message.strip()}] if message.strip() else []
    rest = rest.split("preemption:")[0]
    head = rest.split(". ")[0].rstrip(". ")
    out = []
    for part in head.split(", "):
        m = _SCHED_ITEM.match(part)
        if m:
            out.append({"nodes": int(m[1]), "reason": m[2]})
    return out


def _tolerates(pod: Obj, taint: Mapping[str, Any]) -> bool:
    for tol in get(pod, "spec", "tolerations", default=[]) or []:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists" and not tol.get("key"):
            return True
        if tol.get("key") != taint.get("key"):
            continue
        if tol.get("operator") == "Exists" or tol.get("value") == taint.get("value"):
            return True
    return False


def _node_free(snapshot: ClusterSnapshot, node: Obj, resource: str) -> tuple[float, float]:
    name = meta(node)[1]
    alloc = quantity(get(node, "status", "allocatable", resource)) or 0.0
    used = sum(pod_request(p, resource) for p in snapshot.get("pods")
               if get(p, "spec", "nodeName") == name
               and get(p, "status", "phase") not in ("Succeeded", "Failed"))
    return alloc, alloc - used


def _fmt(resource: str, value: float) -> str:
    if resource == "cpu":
        return f"{value * 1000:.0f}m"
    return f"{value / 2**20:.0f}Mi"


def scheduling_causes(snapshot: ClusterSnapshot, pod: Obj, message: str) -> list[dict[str, Any]]:
    """The FailedScheduling message turned into causes with the facts behind each."""
    causes: list[dict[str, Any]] = []
    nodes = snapshot.get("nodes")
    ns = meta(pod)[0]
    for item in parse_failed_scheduling(message):
        reason = str(item["reason"])
        low = reason.lower()
        cause: dict[str, Any] = {"nodes": item["nodes"], "reason": reason}
        if low.startswith("insufficient "):
            resource = reason.split(" ", 1)[1]
            requested = pod_request(pod, resource)
            frees = [(meta(n)[1], *_node_free(snapshot, n, resource)) for n in nodes]
            best = max(frees, key=lambda t: t[1], default=None)
            most_free = max(frees, key=lambda t: t[2], default=None)
            cause.update(cause=f"insufficient-{resource}", resource=resource,
                         requested=_fmt(resource, requested))
            if best is not None and most_free is not None:
                cause.update(largest_allocatable=_fmt(resource, best[1]),
                             largest_allocatable_node=best[0],
                             most_free=_fmt(resource, most_free[2]),
                             most_free_node=most_free[0])
                cause["detail"] = (f"requests {_fmt(resource, requested)} {resource}; the "
                                   f"largest allocatable is {_fmt(resource, best[1])} "
                                   f"({best[0]}), the most free {_fmt(resource, most_free[2])} "
                                   f"({most_free[0]})")
        elif "affinity" in low or "selector" in low:
            sel = get(pod, "spec", "nodeSelector", default={}) or {}
            aff = get(pod, "spec", "affinity", "nodeAffinity", default=None)
            cause.update(cause="node-selector", node_selector=sel, node_affinity=aff,
                         detail=f"no node matches nodeSelector {sel}"
                         + (" / nodeAffinity" if aff else ""))
        elif "taint" in low:
            untolerated = sorted({f"{t.get('key')}={t.get('value') or ''}:{t.get('effect')}"
                                  f" ({meta(n)[1]})"
                                  for n in nodes for t in get(n, "spec", "taints",
                                                               default=[]) or []
                                  if t.get("effect") in ("NoSchedule", "NoExecute")
                                  and not _tolerates(pod, t)})
            cause.update(cause="untolerated-taints", taints=untolerated,
                         detail="untolerated taints: " + ", ".join(untolerated))
        elif "persistentvolumeclaim" in low or "volume" in low:
            claims = [v["persistentVolumeClaim"]["claimName"]
                      for v in get(pod, "spec", "volumes", default=[]) or []
                      if isinstance(v.get("persistentVolumeClaim"), Mapping)]
            unbound = [c for c in claims
                       if get(find(snapshot, "persistentvolumeclaims", c, ns), "status",
                              "phase") != "Bound"]
            cause.update(cause="pvc-unbound", claims=unbound,
                         detail="unbound PVCs: " + (", ".join(unbound) or "?"))
        elif "unschedulable" in low:
            cordoned = [meta(n)[1] for n in nodes if get(n, "spec", "unschedulable")]
            cause.update(cause="nodes-cordoned", nodes_cordoned=cordoned,
                         detail="cordoned: " + ", ".join(cordoned))
        else:
            cause.update(cause="other", detail=reason)
        causes.append(cause)
    return causes


def _owner_chain(snapshot: ClusterSnapshot, pod: Obj) -> tuple[str, str] | None:
    """The owning workload (kind, name), following a ReplicaSet up to its Deployment."""
    ns = meta(pod)[0]
    refs = get(pod, "metadata", "ownerReferences", default=[]) or []
    if not refs:
        return None
    kind, name = str(refs[0].get("kind")), str(refs[0].get("name"))
    if kind == "ReplicaSet":
        rs = find(snapshot, "replicasets", name, ns)
        up = get(rs, "metadata", "ownerReferences", default=[]) or []
        if up:
            return str(up[0].get("kind")), str(up[0].get("name"))
    return kind, name


def rollout_state(dep: Obj) -> dict[str, Any]:
    """A Deployment's rollout: replicas by kind and its Progressing/Available conditions."""
    st = get(dep, "status", default={}) or {}
    conds = conditions(dep)
    prog = conds.get("Progressing") or {}
    avail = conds.get("Available") or {}
    desired = int(get(dep, "spec", "replicas", default=1) or 0)
    stuck = prog.get("reason") == "ProgressDeadlineExceeded"
    done = (not stuck and int(st.get("updatedReplicas") or 0) == desired
            and int(st.get("availableReplicas") or 0) >= desired)
    return {"desired": desired, "updated": st.get("updatedReplicas", 0),
            "ready": st.get("readyReplicas", 0), "available": st.get("availableReplicas", 0),
            "unavailable": st.get("unavailableReplicas", 0),
            "progressing": prog.get("reason"), "progressing_message": prog.get("message"),
            "available_condition": avail.get("status"),
            "state": "stuck" if stuck else ("complete" if done else "progressing")}


def diagnose_pod(snapshot: ClusterSnapshot, namespace: str, name: str,
                 previous_logs: Mapping[str, list[str]] | None = None,
                 d: Diagnosis | None = None) -> Diagnosis:
    """A pod's causal chain: scheduling, containers (crash, OOM, image, readiness), owner.

    ``previous_logs`` maps container name to the tail of its previous instance's log.
    """
    ctx = context(snapshot)
    d = d or Diagnosis(ctx)
    pod = find(snapshot, "pods", name, namespace)
    if pod is None:
        d.step("pod exists", False, f"pod {namespace}/{name} not found")
        return d
    where = f"{namespace}/{name}"
    phase = get(pod, "status", "phase")
    d.findings.extend(f for f in _check_findings(ctx, ("pod-crashloop", "pod-oomkilled",
                                                       "pod-image-pull", "pod-pending",
                                                       "pod-failed"))
                      if f.resource.namespace == namespace and f.resource.name == name)
    events = events_for(snapshot, "Pod", namespace, name, limit=8)
    sched = conditions(pod).get("PodScheduled") or {}
    if sched.get("status") == "False":
        msg = str(sched.get("message") or "")
        fs = next((e for e in events if e.get("reason") == "FailedScheduling"), None)
        if fs and fs.get("message"):
            msg = str(fs["message"])
        causes = scheduling_causes(snapshot, pod, msg)
        d.step("scheduled", False, msg or str(sched.get("reason")))
        for c in causes:
            d.step(f"cause: {c['cause']}", False, str(c.get("detail") or c["reason"]))
        d.add("pod-pending", "warning", "Pod", namespace, name,
              f"pod {where} cannot be scheduled: "
              + "; ".join(str(c.get("detail") or c["reason"]) for c in causes),
              "pod-pending", {"message": msg, "causes": causes, "events": events,
                              "since": sched.get("lastTransitionTime")})
    else:
        d.step("scheduled", True, f"on node {get(pod, 'spec', 'nodeName')}")
        node = find(snapshot, "nodes", str(get(pod, "spec", "nodeName", default="")), None)
        if node is not None:
            ready = str((conditions(node).get("Ready") or {}).get("status", "Unknown"))
            d.step("node ready", ready == "True", f"node {meta(node)[1]} Ready={ready}")
    if phase == "Failed":
        reason = get(pod, "status", "reason") or "Failed"
        d.step("phase", False, f"Failed: {reason} {get(pod, 'status', 'message') or ''}".strip())
        if reason == "Evicted":
            d.add("pod-evicted", "warning", "Pod", namespace, name,
                  f"pod {where} was evicted: {get(pod, 'status', 'message')}", "pod-evicted",
                  {"reason": reason, "message": get(pod, "status", "message")})
    specs = {c.get("name"): c for c in get(pod, "spec", "containers", default=[]) or []}
    statuses = [*(get(pod, "status", "initContainerStatuses", default=[]) or []),
                *(get(pod, "status", "containerStatuses", default=[]) or [])]
    for cs in statuses:
        _container_chain(d, snapshot, pod, cs, specs.get(cs.get("name"), {}),
                         (previous_logs or {}).get(str(cs.get("name"))), events)
    _owner_step(d, snapshot, pod)
    return d


def _owner_step(d: Diagnosis, snapshot: ClusterSnapshot, pod: Obj) -> None:
    namespace = meta(pod)[0]
    owner = _owner_chain(snapshot, pod)
    if owner is not None:
        kind, oname = owner
        if kind == "Deployment":
            dep = find(snapshot, "deployments", oname, namespace)
            if dep is not None:
                r = rollout_state(dep)
                d.step("owner rollout", r["state"] != "stuck",
                       f"Deployment {oname}: {r['state']}, {r['available']}/{r['desired']} "
                       f"available, {r['updated']} updated"
                       + (f" ({r['progressing']})" if r["progressing"] else ""))
        else:
            d.step("owner", True, f"{kind} {oname}")


def _container_chain(d: Diagnosis, snapshot: ClusterSnapshot, pod: Obj, cs: Mapping[str, Any],
                     spec: Mapping[str, Any], logs: list[str] | None,
                     events: list[dict[str, Any]]) -> None:
    ns, name = meta(pod)
    where = f"{ns}/{name}"
    cname = cs.get("name")
    waiting = get(cs, "state", "waiting", default={}) or {}
    last = get(cs, "lastState", "terminated", default={}) or {}
    term = last or get(cs, "state", "terminated", default={}) or {}
    restarts = int(cs.get("restartCount") or 0)
    started = get(pod, "status", "startTime")
    t0 = parse_time(started)
    hours = (snapshot.now - t0).total_seconds() / 3600 if t0 else None
    rate = round(restarts / hours, 1) if hours and hours > 0 else None
    reason = waiting.get("reason")
    if reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
        d.step(f"container {cname} image", False,
               f"{reason}: {cs.get('image')}: {waiting.get('message') or ''}".strip())
        d.add("pod-image-pull", "critical", "Pod", ns, name,
              f"container {cname} of {where} cannot pull {cs.get('image')}: {reason}",
              "pod-image-pull", {"image": cs.get("image"), "reason": reason,
                                 "message": waiting.get("message"),
                                 "events": [e for e in events if "ull" in str(e.get("reason"))
                                            or "mage" in str(e.get("message"))]})
        return
    if term.get("reason") == "OOMKilled":
        res = spec.get("resources", {}) or {}
        limit = get(res, "limits", "memory")
        request = get(res, "requests", "memory")
        d.step(f"container {cname} memory", False,
               f"OOMKilled (exit {term.get('exitCode')}); memory limit {limit or 'none'}, "
               f"request {request or 'none'}; {restarts} restarts")
        d.add("pod-oomkilled", "critical", "Pod", ns, name,
              f"container {cname} of {where} was OOMKilled: memory limit {limit or 'none'} "
              f"vs request {request or 'none'}", "pod-oomkilled",
              {"container": cname, "memory_limit": limit, "memory_request": request,
               "exit_code": term.get("exitCode"), "restarts": restarts,
               "restarts_per_hour": rate})
        return
    if reason == "CrashLoopBackOff" or (last and restarts > 0 and not cs.get("ready")):
        detail = (f"last termination {last.get('reason')} exit code {last.get('exitCode')}"
                  f"{': ' + str(last.get('message')) if last.get('message') else ''}; "
                  f"{restarts} restarts" + (f" ({rate}/h)" if rate is not None else ""))
        d.step(f"container {cname} running", False, detail)
        if logs:
            d.step(f"container {cname} previous logs", False, " | ".join(logs[-5:]))
        d.add("pod-crashloop", "critical", "Pod", ns, name,
              f"container {cname} of {where} is crash-looping: exit code "
              f"{last.get('exitCode')} ({last.get('reason')}), {restarts} restarts",
              "pod-crashloop",
              {"container": cname, "exit_code": last.get("exitCode"),
               "reason": last.get("reason"), "termination_message": last.get("message"),
               "restarts": restarts, "restarts_per_hour": rate,
               "previous_logs": logs or [], "events": events})
        return
    if get(cs, "state", "running") and not cs.get("ready"):
        probe = spec.get("readinessProbe")
        unhealthy = [e for e in events if e.get("reason") == "Unhealthy"]
        d.step(f"container {cname} ready", False,
               "running but not ready" + (f": {unhealthy[0].get('message')}" if unhealthy
                                          else ""))
        d.add("pod-not-ready", "warning", "Pod", ns, name,
              f"container {cname} of {where} is running but not ready", "pod-not-ready",
              {"container": cname, "readiness_probe": probe, "events": unhealthy})
        return
    if get(cs, "state", "running"):
        d.step(f"container {cname} running", True,
               f"ready, {restarts} restarts")


# --- nodes ------------------------------------------------------------------------------------

def node_role(node: Obj) -> str:
    """K3s role: server (control plane / etcd labels) or agent."""
    labels = get(node, "metadata", "labels", default={}) or {}
    return "server" if any(labels.get(k) in ("true", "") for k in K3S_ROLE_LABELS) else "agent"


def diagnose_node(snapshot: ClusterSnapshot, name: str,
                  d: Diagnosis | None = None) -> Diagnosis:
    """A node: readiness since when, pressure, cordon, taints, requests vs capacity, skew."""
    ctx = context(snapshot)
    d = d or Diagnosis(ctx)
    node = find(snapshot, "nodes", name, None)
    if node is None:
        d.step("node exists", False, f"node {name} not found")
        return d
    conds = conditions(node)
    ready = conds.get("Ready") or {}
    status = str(ready.get("status", "Unknown"))
    state = {"True": "Ready", "False": "NotReady"}.get(status, "Unknown")
    taints = [{"key": t.get("key"), "value": t.get("value"), "effect": t.get("effect")}
              for t in get(node, "spec", "taints", default=[]) or []]
    role = node_role(node)
    d.step("role", True, f"{role} ({'control plane' if role == 'server' else 'worker'})")
    d.step("ready", status == "True",
           f"{state} since {ready.get('lastTransitionTime')}"
           + (f": {ready.get('reason')} {ready.get('message') or ''}".rstrip()
              if status != "True" else ""))
    events = events_for(snapshot, "Node", None, name, limit=8)
    if status != "True":
        d.add("node-not-ready", "critical", "Node", None, name,
              f"node {name} ({role}) is {state} since {ready.get('lastTransitionTime')}; "
              f"taints: {', '.join(str(t['key']) + ':' + str(t['effect']) for t in taints)}",
              "node-not-ready",
              {"ready": status, "since": ready.get("lastTransitionTime"),
               "reason": ready.get("reason"), "message": ready.get("message"),
               "taints": taints, "role": role, "events": events})
    pressure = [t for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
                if (conds.get(t) or {}).get("status") == "True"]
    d.step("pressure", not pressure, ", ".join(pressure) or "none")
    for p in pressure:
        d.add("node-pressure", "warning", "Node", None, name, f"node {name} has {p}",
              PRESSURE_RUNBOOKS[p], {"condition": dict(conds[p])})
    cordoned = bool(get(node, "spec", "unschedulable"))
    d.step("schedulable", not cordoned, "cordoned" if cordoned else "schedulable")
    d.step("taints", not taints, ", ".join(f"{t['key']}:{t['effect']}" for t in taints)
           or "none")
    usage: dict[str, Any] = {}
    for res in ("cpu", "memory"):
        alloc, free = _node_free(snapshot, node, res)
        used = alloc - free
        pct = round(100 * used / alloc) if alloc else None
        usage[res] = {"allocatable": _fmt(res, alloc), "requested": _fmt(res, used),
                      "percent": pct}
        d.step(f"{res} requests", pct is None or pct <= 100,
               f"{_fmt(res, used)} of {_fmt(res, alloc)} allocatable ({pct}%)")
    version = str(get(node, "status", "nodeInfo", "kubeletVersion", default=""))
    others = sorted({str(get(n, "status", "nodeInfo", "kubeletVersion", default=""))
                     for n in snapshot.get("nodes")} - {version, ""})
    skew = _minor(version) is not None and any(
        _minor(o) is not None and _minor(o) != _minor(version) for o in others)
    d.step("kubelet version", not skew,
           f"{version}" + (f"; other nodes run {', '.join(others)}" if others else
                           " (same on every node)"))
    if skew:
        d.add("node-version-skew", "warning", "Node", None, name,
              f"node {name} runs {version} while other nodes run {', '.join(others)}",
              "version-drift", {"version": version, "others": others})
    d.findings.append(ctx.finding("node-summary", "info", "Node", None, name,
                                  f"node {name}: {state}, {role}", "node-not-ready",
                                  {"role": role, "version": version, "usage": usage,
                                   "taints": taints, "cordoned": cordoned,
                                   "events": events}))
    return d


def _minor(version: str) -> tuple[int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)", version)
    return (int(m[1]), int(m[2])) if m else None


# --- deployments ------------------------------------------------------------------------------

def diagnose_deployment(snapshot: ClusterSnapshot, namespace: str, name: str,
                        previous_logs: Mapping[str, Mapping[str, list[str]]] | None = None,
                        ) -> Diagnosis:
    """A Deployment's rollout state, then the chain of each of its pods that is not healthy."""
    d = Diagnosis(context(snapshot))
    dep = find(snapshot, "deployments", name, namespace)
    if dep is None:
        d.step("deployment exists", False, f"deployment {namespace}/{name} not found")
        return d
    r = rollout_state(dep)
    d.step("rollout", r["state"] != "stuck",
           f"{r['state']}: {r['available']}/{r['desired']} available, {r['updated']} updated"
           + (f"; {r['progressing']}: {r['progressing_message']}" if r["progressing"] else ""))
    if r["state"] == "stuck":
        d.add("deployment-rollout-stuck", "critical", "Deployment", namespace, name,
              f"deployment {namespace}/{name} rollout is stuck: {r['progressing_message']}",
              "deployment-rollout-stuck", {"rollout": r})
    for pod in pods_of_deployment(snapshot, namespace, name):
        pname = meta(pod)[1]
        diagnose_pod(snapshot, namespace, pname, (previous_logs or {}).get(pname), d)
    return d


def pods_of_deployment(snapshot: ClusterSnapshot, namespace: str, name: str) -> list[Obj]:
    """Pods whose owner chain leads to the Deployment."""
    return [p for p in snapshot.get("pods") if meta(p)[0] == namespace
            and _owner_chain(snapshot, p) == ("Deployment", name)]


def unhealthy_pods(snapshot: ClusterSnapshot, namespace: str | None = None) -> list[Obj]:
    """Pods worth a chain: not Running/Succeeded, or with a container not ready."""
    out = []
    for p in snapshot.get("pods"):
        if namespace is not None and meta(p)[0] != namespace:
            continue
        phase = get(p, "status", "phase")
        statuses = get(p, "status", "containerStatuses", default=[]) or []
        if phase == "Succeeded":
            continue
        if phase != "Running" or any(not cs.get("ready") for cs in statuses):
            out.append(p)
    return out


def crashlooping(pod: Obj) -> list[str]:
    """Containers of a pod that have a previous instance worth reading logs of."""
    return [str(cs.get("name")) for cs in get(pod, "status", "containerStatuses",
                                               default=[]) or []
            if get(cs, "lastState", "terminated") and int(cs.get("restartCount") or 0) > 0
            and get(cs, "lastState", "terminated", "reason") != "OOMKilled"]


# --- network ----------------------------------------------------------------------------------

def _ready_pod_names(slices: list[Obj]) -> list[str]:
    return [str(get(e, "targetRef", "name", default="?")) for s in slices
            for e in s.get("endpoints") or []
            if get(e, "conditions", "ready") is not False]


def diagnose_network(snapshot: ClusterSnapshot, namespace: str | None = None) -> Diagnosis:
    """Ingress → Service → EndpointSlices → ready pods; LoadBalancers; DNS; servicelb."""
    ctx = context(snapshot)
    d = Diagnosis(ctx)
    slices: dict[tuple[str | None, str], list[Obj]] = {}
    for s in snapshot.get("endpointslices"):
        owner = get(s, "metadata", "labels", "kubernetes.io/service-name")
        if owner:
            slices.setdefault((meta(s)[0], str(owner)), []).append(s)
    _ingress_chains(d, snapshot, slices, namespace)
    d.findings.extend(f for f in _check_findings(
        ctx, ("service-no-endpoints", "loadbalancer-no-ip", "metallb-pool-exhausted",
              "dns-coredns-unavailable"))
        if namespace is None or f.resource.namespace in (None, namespace))
    lbs = [s for s in snapshot.get("services") if get(s, "spec", "type") == "LoadBalancer"
           and (namespace is None or meta(s)[0] == namespace)]
    for s in lbs:
        ns, sname = meta(s)
        ips = [i.get("ip") or i.get("hostname")
               for i in get(s, "status", "loadBalancer", "ingress", default=[]) or []]
        d.step(f"LoadBalancer {ns}/{sname}", bool(ips), ", ".join(map(str, ips)) or
               "no external IP")
    pools = snapshot.get("ipaddresspools.metallb.io")
    l2 = snapshot.get("l2advertisements.metallb.io")
    if snapshot.has("ipaddresspools.metallb.io"):
        d.step("MetalLB pools", bool(pools),
               ", ".join(f"{meta(p)[1]} {get(p, 'spec', 'addresses')}" for p in pools)
               or "no IPAddressPool")
        d.step("MetalLB L2Advertisements", bool(l2),
               ", ".join(meta(a)[1] for a in l2) or "no L2Advertisement")
    svclb = [meta(p)[1] for p in snapshot.get("pods") if meta(p)[1].startswith("svclb-")]
    conflict = bool(svclb) and bool(pools)
    d.step("servicelb vs MetalLB", not conflict,
           f"servicelb pods {', '.join(svclb[:5])} while MetalLB pools exist" if conflict
           else ("servicelb" if svclb else "no servicelb pods"))
    if conflict:
        d.add("servicelb-metallb-conflict", "warning", "Service", None, "servicelb",
              "K3s servicelb (svclb-* pods) runs alongside MetalLB: both answer for "
              "LoadBalancer Services", "loadbalancer-no-ip",
              {"svclb_pods": svclb, "pools": [meta(p)[1] for p in pools]})
    dns = find(snapshot, "deployments", "coredns", "kube-system")
    if dns is None:
        d.step("CoreDNS", False, "deployment kube-system/coredns not found")
    else:
        r = rollout_state(dns)
        d.step("CoreDNS", int(r["available"] or 0) > 0,
               f"{r['available']}/{r['desired']} available")
    eps = _ready_pod_names(slices.get(("kube-system", "kube-dns"), []))
    d.step("kube-dns endpoints", bool(eps), f"{len(eps)} ready")
    return d


def _ingress_chains(d: Diagnosis, snapshot: ClusterSnapshot,
                    slices: Mapping[tuple[str | None, str], list[Obj]],
                    namespace: str | None) -> None:
    services = {meta(s): s for s in snapshot.get("services")}
    for ing in snapshot.get("ingresses"):
        ns, iname = meta(ing)
        if namespace is not None and ns != namespace:
            continue
        for rule in get(ing, "spec", "rules", default=[]) or [{}]:
            for path in get(rule, "http", "paths", default=[]) or []:
                svc_name = get(path, "backend", "service", "name")
                if not svc_name:
                    continue
                link = f"Ingress {ns}/{iname} {rule.get('host', '*')}{path.get('path', '/')}"
                svc = services.get((ns, svc_name))
                if svc is None:
                    d.step(link, False, f"→ Service {svc_name}: missing")
                    d.add("ingress-backend-missing", "critical", "Ingress", ns, iname,
                          f"ingress {ns}/{iname} routes {rule.get('host', '*')}"
                          f"{path.get('path', '/')} to Service {svc_name}, which does not exist",
                          "ingress-backend-missing",
                          {"broken_link": "service", "service": svc_name,
                           "host": rule.get("host"), "path": path.get("path")})
                    continue
                ready = _ready_pod_names(slices.get((ns, svc_name), []))
                if not ready:
                    d.step(link, False, f"→ Service {svc_name} → EndpointSlices: no ready "
                                        "endpoint")
                    d.add("service-no-endpoints", "critical", "Service", ns, svc_name,
                          f"service {ns}/{svc_name} (behind ingress {iname}) has no ready "
                          f"endpoints; selector {get(svc, 'spec', 'selector')}",
                          "service-no-endpoints",
                          {"broken_link": "endpoints", "ingress": iname,
                           "selector": get(svc, "spec", "selector")})
                else:
                    d.step(link, True, f"→ Service {svc_name} → {len(ready)} ready pod(s): "
                                       + ", ".join(ready[:5]))


# --- storage ----------------------------------------------------------------------------------

def diagnose_storage(snapshot: ClusterSnapshot, namespace: str | None = None) -> Diagnosis:
    """PVCs Pending with their reason, StorageClass problems, Longhorn volume health."""
    ctx = context(snapshot)
    d = Diagnosis(ctx)
    classes = {meta(c)[1]: c for c in snapshot.get("storageclasses")}
    default = [n for n, c in classes.items() if get(c, "metadata", "annotations",
                                                    "storageclass.kubernetes.io/is-default-class")
               == "true"]
    d.step("StorageClasses", bool(classes) and len(default) <= 1,
           ", ".join(classes) + f"; default: {', '.join(default) or 'none'}")
    for pvc in snapshot.get("persistentvolumeclaims"):
        ns, name = meta(pvc)
        if namespace is not None and ns != namespace:
            continue
        phase = get(pvc, "status", "phase")
        sc = get(pvc, "spec", "storageClassName") or (default[0] if default else None)
        if phase != "Pending":
            continue  # Lost claims are the pvc-lost check's
        events = events_for(snapshot, "PersistentVolumeClaim", ns, name, limit=5)
        reason = events[0].get("message") if events else None
        if events and events[0].get("reason") == "WaitForFirstConsumer":
            d.step(f"PVC {ns}/{name}", True, f"Pending until a pod uses it (class {sc})")
            continue
        d.step(f"PVC {ns}/{name}", False,
               f"{phase}; class {sc}" + ("" if sc in classes else " (missing)")
               + (f"; {reason}" if reason else ""))
        d.add("pvc-pending", "warning", "PersistentVolumeClaim", ns, name,
              f"PVC {ns}/{name} is {phase}: {reason or 'no event'}", "pvc-pending",
              {"phase": phase, "storage_class": sc, "class_exists": sc in classes,
               "provisioner": get(classes.get(sc or ""), "provisioner"), "events": events})
    d.findings.extend(f for f in _check_findings(
        ctx, ("storageclass-missing", "pvc-lost", "longhorn-volume-degraded",
              "longhorn-volume-faulted"))
        if namespace is None or f.resource.namespace in (None, namespace))
    if snapshot.has("volumes.longhorn.io"):
        vols = snapshot.get("volumes.longhorn.io")
        bad = [f"{meta(v)[1]} {get(v, 'status', 'robustness')}" for v in vols
               if get(v, "status", "robustness") in ("degraded", "faulted")]
        d.step("Longhorn volumes", not bad, ", ".join(bad) or f"{len(vols)} healthy")
    return d


# --- cluster ----------------------------------------------------------------------------------

def diagnose_cluster(snapshot: ClusterSnapshot, namespace: str | None = None,
                     previous_logs: Mapping[str, Mapping[str, list[str]]] | None = None,
                     ) -> Diagnosis:
    """Every unhealthy node and pod's chain, then the network and storage diagnoses."""
    d = Diagnosis(context(snapshot))
    if namespace is None:
        for node in snapshot.get("nodes"):
            ready = (conditions(node).get("Ready") or {}).get("status")
            if ready != "True" or get(node, "spec", "unschedulable"):
                diagnose_node(snapshot, meta(node)[1], d)
    for pod in unhealthy_pods(snapshot, namespace):
        ns, name = meta(pod)
        diagnose_pod(snapshot, str(ns), name, (previous_logs or {}).get(name), d)
    for sub in (diagnose_network(snapshot, namespace), diagnose_storage(snapshot, namespace)):
        d.chain.extend(s for s in sub.chain if not s.ok)
        d.findings.extend(sub.findings)
    d.findings = [f for f in d.findings if f.check != "node-summary"]
    return d
