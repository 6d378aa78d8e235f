"""Diagnosis: the findings of the one engine, followed along the dependency chain to a root.

`k3sops check` judges every object with the registered rules; a diagnosis runs the *same*
rules (:func:`analyse`, every period) and then walks from one object (or an area: the network,
the storage, a namespace, the cluster) along what it depends on (:mod:`k3sops.domain.graph`):
Ingress → Service → pods → Node; Pod → PVC → StorageClass/PV; Deployment → ReplicaSet → pods;
HPA → target and metrics API; webhook → Service. Every finding about an object on the way is
part of the diagnosis, so a diagnosis always contains what `check` says about the object and
its dependencies. The walk ends at root causes: problems not explained by a problem further
down, a reference to an object that does not exist, or — named plainly — a link that could not
be read. ``-o json`` prints :class:`DiagnosisReport`, whose findings use the check schema.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from k3sops.config.schema import Platform
from k3sops.domain import checks as registry
from k3sops.domain import engine
from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext
from k3sops.domain.checks.capacity import pod_request, quantity
from k3sops.domain.checks.scheduling import fmt, parse_failed_scheduling
from k3sops.domain.checks.scheduling import scheduling_causes as _causes
from k3sops.domain.findings import (
    SEVERITY_RANK,
    Finding,
    NotEvaluated,
    ResourceRef,
    Severity,
    Source,
    sort_findings,
)
from k3sops.domain.graph import Link, cause_links, links
from k3sops.domain.snapshot import (
    CLUSTER_SCOPED,
    KIND_NAMES,
    PLURALS,
    ClusterSnapshot,
    Obj,
    conditions,
    events_for,
    get,
    meta,
)

__all__ = ["ChainStep", "Diagnosis", "DiagnosisReport", "RootCause", "analyse",
           "diagnose_cluster", "diagnose_deployment", "diagnose_network", "diagnose_node",
           "diagnose_object", "diagnose_pod", "diagnose_storage", "parse_failed_scheduling"]

K3S_ROLE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master",
                   "node-role.kubernetes.io/etcd")
MAX_DEPTH = 8
HEALTHY_SHOWN = 3
"""Healthy dependencies shown per object; the rest are counted."""
ROOT_PRIORITY = ("pod-configmap-missing", "pod-secret-missing", "pod-pvc-missing",
                 "storageclass-missing", "workload-create-failed", "pv-node-missing",
                 "ingress-backend-missing", "service-port-mismatch", "webhook-unavailable",
                 "apiservice-unavailable", "node-network-unavailable", "node-pressure",
                 "pod-image-pull", "pod-container-error", "pod-oomkilled", "pod-crashloop",
                 "pod-pending")
"""When one object has several findings, the one most likely to be the cause comes first."""
REFERENCE_CHECKS = frozenset({
    "pod-configmap-missing", "pod-secret-missing", "pod-pvc-missing", "storageclass-missing",
    "ingress-backend-missing", "ingress-class-missing", "ingress-tls-secret-missing",
    "service-port-mismatch", "hpa-target-missing", "pv-node-missing",
    "rbac-binding-role-missing", "namespace-stuck-terminating"})
"""Findings that say a reference itself is wrong (a missing object, a port that is not
there): a root cause in their own right, whatever the state of what lies below."""


class ChainStep(BaseModel):
    """One link of a causal chain: what was looked at, whether it holds, and what was seen."""

    model_config = ConfigDict(extra="forbid")

    step: str
    ok: bool
    detail: str
    depth: int = 0
    """How far down the dependency chain (0: the target itself)."""
    resource: ResourceRef | None = None


class RootCause(BaseModel):
    """Where a chain ends: a finding nothing below explains, or a fact that could not be read.

    Attributes:
        resource: the object at the root (or the one whose link could not be followed).
        check: the finding's check id (None for a missing object no rule names, or an
            undetermined root).
        severity, message, runbook: of that finding (or a sentence saying what is missing).
        path: the objects from the diagnosed target down to the root.
        determined: False when the root could not be determined because a fact was missing.
        missing: the fact that was missing (``could not read storageclasses: forbidden``).
    """

    model_config = ConfigDict(extra="forbid")

    resource: ResourceRef
    check: str | None = None
    severity: Severity | None = None
    message: str
    runbook: str | None = None
    path: list[str] = Field(default_factory=list)
    determined: bool = True
    missing: str | None = None


class DiagnosisReport(BaseModel):
    """What `k3sops diagnose` prints: the target, its chain, roots, findings and sources."""

    model_config = ConfigDict(extra="forbid")

    target: str
    chain: list[ChainStep] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    root_causes: list[RootCause] = Field(default_factory=list)
    not_evaluated: list[NotEvaluated] = Field(default_factory=list)


class Diagnosis:
    """Accumulates chain steps, findings and roots while a target is examined."""

    def __init__(self, ctx: CheckContext) -> None:
        """Start an empty diagnosis over ``ctx``'s snapshot."""
        self.ctx = ctx
        self.chain: list[ChainStep] = []
        self.findings: list[Finding] = []
        self.roots: list[RootCause] = []
        self.not_evaluated: list[NotEvaluated] = []

    def step(self, step: str, ok: bool, detail: str, depth: int = 0,
             resource: ResourceRef | None = None) -> None:
        """Record a link of the chain."""
        self.chain.append(ChainStep(step=step, ok=ok, detail=detail, depth=depth,
                                    resource=resource))

    def add(self, check: str, severity: Severity, kind: str, namespace: str | None, name: str,
            message: str, runbook: str, evidence: dict[str, Any]) -> None:
        """Record a finding that is not a check's (a probe's result: DNS, etcd, performance)."""
        self.findings.append(self.ctx.finding(check, severity, kind, namespace, name, message,
                                              runbook, evidence))

    def report(self, target: str, sources: list[Source] | None = None) -> DiagnosisReport:
        """The report, findings de-duplicated by identity and sorted most severe first."""
        seen: dict[str, Finding] = {}
        for f in self.findings:
            prev = seen.get(f.key)
            seen[f.key] = f if prev is None else prev.model_copy(update={
                "evidence": {**prev.evidence, **f.evidence},
                "message": max(prev.message, f.message, key=len)})
        roots: dict[tuple[str, str, str | None, str], RootCause] = {}
        for r in self.roots:
            roots.setdefault((r.check or r.message, r.resource.kind, r.resource.namespace,
                              r.resource.name), r)
        ordered = sorted(roots.values(), key=lambda r: (
            not r.determined, -SEVERITY_RANK.get(r.severity or "info", 0), len(r.path)))
        return DiagnosisReport(target=target, chain=self.chain,
                               findings=sort_findings(list(seen.values())),
                               sources=sources or [], root_causes=ordered,
                               not_evaluated=self.not_evaluated)


# --- the engine's view ------------------------------------------------------------------------

def context(snapshot: ClusterSnapshot, platform: Platform | None = None) -> CheckContext:
    """A check context over the snapshot (every period: a diagnosis looks at everything)."""
    return CheckContext(snapshot=snapshot, platform=platform, period="monthly")


def analyse(snapshot: ClusterSnapshot, platform: Platform | None = None,
            down: Iterable[str] = ()) -> engine.EngineResult:
    """Every rule on the snapshot, once per snapshot (the result is cached on it)."""
    key = "diagnose:engine"
    if key not in snapshot.cache:
        snapshot.cache[key] = engine.evaluate(context(snapshot, platform),
                                              registry.selected("monthly"), down)
    result: engine.EngineResult = snapshot.cache[key]
    return result


def _faults(findings: Iterable[Finding]) -> list[Finding]:
    """Findings that can be a cause: fault checks at warning or above (and probe findings)."""
    out = []
    for f in findings:
        spec = registry.REGISTRY.get(f.check)
        if SEVERITY_RANK[f.severity] >= 1 and (spec is None or spec.category == "fault"):
            out.append(f)
    return out


def _priority(f: Finding) -> tuple[int, int]:
    rank = ROOT_PRIORITY.index(f.check) if f.check in ROOT_PRIORITY else len(ROOT_PRIORITY)
    return rank, -SEVERITY_RANK[f.severity]


NodeKey = tuple[str, str | None, str]
"""(plural kind, namespace, name)"""


def _label(key: NodeKey) -> str:
    kind, ns, name = key
    return f"{KIND_NAMES.get(kind, kind)} {ns + '/' if ns else ''}{name}"


def _ref(key: NodeKey) -> ResourceRef:
    return ResourceRef(kind=KIND_NAMES.get(key[0], key[0]), namespace=key[1], name=key[2])


@dataclass
class _Walker:
    """Follows links from start objects, remembering what it saw (shared across starts)."""

    snapshot: ClusterSnapshot
    result: engine.EngineResult
    by_obj: Mapping[tuple[str, str | None, str], list[Finding]] = field(default_factory=dict)
    edges: dict[NodeKey, list[tuple[Link, NodeKey, str]]] = field(default_factory=dict)
    """object -> [(link, target, state)], state: ok | missing | unread | absent-optional."""

    def findings_of(self, key: NodeKey) -> list[Finding]:
        kind, ns, name = key
        return self.by_obj.get((KIND_NAMES.get(kind, kind), ns, name), [])

    def obj(self, key: NodeKey) -> Obj | None:
        kind, ns, name = key
        return ix.by_name(self.snapshot, kind).get((ns, name)) \
            if kind in self.snapshot.objects else None

    def expand(self, key: NodeKey) -> list[tuple[Link, NodeKey, str]]:
        if key in self.edges:
            return self.edges[key]
        o = self.obj(key)
        out: list[tuple[Link, NodeKey, str]] = []
        if o is not None:
            found = links(self.snapshot, key[0], o)
            for f in self.findings_of(key):
                found += cause_links(f.evidence)
            seen: set[NodeKey] = set()
            for link in found:
                ns = None if link.kind in CLUSTER_SCOPED else link.namespace
                target = (link.kind, ns, link.name)
                if target in seen or target == key:
                    continue
                seen.add(target)
                out.append((link, target, self.state(link, target)))
        self.edges[key] = out
        return out

    def state(self, link: Link, target: NodeKey) -> str:
        why = self.snapshot.unread(target[0])
        if why:
            return f"unread: could not read {target[0]} ({why})"
        if self.obj(target) is not None:
            return "ok"
        if target[0] not in self.snapshot.objects:
            return "absent-optional"  # a custom kind whose CRD is not installed
        return "missing" if link.required else "absent-optional"

    def severity(self, key: NodeKey) -> int:
        faults = _faults(self.findings_of(key))
        return max((SEVERITY_RANK[f.severity] for f in faults), default=-1)

    def explained(self, key: NodeKey, mine: int | None = None,
                  seen: set[NodeKey] | None = None) -> bool:
        """Whether a problem below ``key`` explains its own.

        Healthy objects in between are passed through when ``key`` is made of them (a
        Deployment's ReplicaSet stands between it and the crashing pod).
        """
        mine = self.severity(key) if mine is None else mine
        seen = seen if seen is not None else {key}
        for link, target, state in self.expand(key):
            if state != "ok" or link.explains == "never" or target in seen:
                continue
            seen.add(target)
            theirs = self.severity(target)
            if theirs >= 1 and (link.explains == "always" or theirs >= mine):
                return True
            if theirs < 1 and link.explains == "always" and self.explained(target, mine, seen):
                return True
        return False

    def reachable(self, key: NodeKey) -> set[NodeKey]:
        """Everything below ``key`` along links that can explain it."""
        out: set[NodeKey] = set()
        stack = [key]
        while stack:
            for link, target, state in self.expand(stack.pop()):
                if state == "ok" and link.explains != "never" and target not in out:
                    out.add(target)
                    stack.append(target)
        return out

    def roots_from(self, start: NodeKey, limit_depth: int = MAX_DEPTH,
                   ) -> list[RootCause]:
        """Root causes reachable from ``start`` (depth-first, each object once per path)."""
        out: list[RootCause] = []
        stack: list[tuple[NodeKey, list[str]]] = [(start, [_label(start)])]
        visited: set[NodeKey] = set()
        while stack:
            key, path = stack.pop()
            if key in visited or len(path) > limit_depth:
                continue
            visited.add(key)
            faults = _faults(self.findings_of(key))
            children = self.expand(key)
            problem_links = [(lk, t, s) for lk, t, s in children
                             if s == "missing" or s.startswith("unread")]
            own = [f for f in faults if f.check in REFERENCE_CHECKS]
            if faults and not self.explained(key):
                own = own or sorted(faults, key=_priority)[:1]
            for top in sorted(own, key=_priority):
                out.append(RootCause(resource=top.resource, check=top.check,
                                     severity=top.severity, message=top.message,
                                     runbook=top.runbook, path=path))
            for link, target, state in problem_links:
                if state == "missing" and not faults:
                    out.append(RootCause(
                        resource=_ref(target), message=(
                            f"{_label(target)} does not exist ({_label(key)} {link.relation} "
                            "it)"), path=[*path, _label(target)]))
                elif state.startswith("unread") and ((key == start and not faults) or any(
                        "could not read" in f.message or "could not read" in str(f.evidence)
                        for f in faults)):
                    # only where the rule itself could not tell (or nothing was found at all):
                    # an unread ConfigMap says nothing about a pod that crashes on its own
                    out.append(RootCause(
                        resource=_ref(key), determined=False, missing=state[len("unread: "):],
                        message=(f"the cause behind {_label(key)} could not be determined: "
                                 f"{state[len('unread: '):]} ({link.relation} "
                                 f"{_label(target)})"), path=path))
            for link, target, state in children:
                if state == "ok" and link.explains != "never":
                    stack.append((target, [*path, _label(target)]))
        return out

    def chain(self, d: Diagnosis, start: NodeKey, depth: int = 0,
              seen: set[NodeKey] | None = None, relation: str | None = None) -> None:
        """Record the chain below ``start`` as steps: broken links in full, healthy counted."""
        seen = seen if seen is not None else set()
        if start in seen or depth > MAX_DEPTH:
            return
        seen.add(start)
        faults = sorted(_faults(self.findings_of(start)), key=_priority)
        label = f"{relation} {_label(start)}" if relation else _label(start)
        d.step(label, not faults, faults[0].message if faults else _summary(
            self.snapshot, start, self.obj(start)), depth, _ref(start))
        healthy = 0
        for link, target, state in self.expand(start):
            if state == "absent-optional" or link.explains == "never":
                continue
            if state == "missing":
                d.step(f"{link.relation} {_label(target)}", False, "does not exist", depth + 1,
                       _ref(target))
                continue
            if state.startswith("unread"):
                d.step(f"{link.relation} {_label(target)}", False, state[len("unread: "):],
                       depth + 1, _ref(target))
                continue
            if not self.subtree_failing(target, set()):
                healthy += 1
                if healthy <= HEALTHY_SHOWN:
                    d.step(f"{link.relation} {_label(target)}", True,
                           _summary(self.snapshot, target, self.obj(target)), depth + 1,
                           _ref(target))
                continue
            self.chain(d, target, depth + 1, seen, link.relation)
        if healthy > HEALTHY_SHOWN:
            d.step(f"… {healthy - HEALTHY_SHOWN} more", True, "healthy", depth + 1)

    def subtree_failing(self, key: NodeKey, seen: set[NodeKey], depth: int = 0) -> bool:
        if key in seen or depth > MAX_DEPTH:
            return False
        seen.add(key)
        if _faults(self.findings_of(key)):
            return True
        for link, target, state in self.expand(key):
            if link.explains == "never" or state == "absent-optional":
                continue
            if state != "ok":
                return True
            if self.subtree_failing(target, seen, depth + 1):
                return True
        return False

    def collect(self, d: Diagnosis, start: NodeKey) -> None:
        """Every finding about ``start`` and everything it depends on, transitively."""
        stack = [start]
        seen: set[NodeKey] = set()
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            d.findings.extend(self.findings_of(key))
            stack += [t for lk, t, s in self.expand(key) if s == "ok" and lk.explains != "never"]


def _summary(snapshot: ClusterSnapshot, key: NodeKey, obj: Obj | None) -> str:  # noqa: PLR0911
    """A short state of a healthy object."""
    if obj is None:
        return "ok"
    kind = key[0]
    if kind == "pods":
        phase = get(obj, "status", "phase")
        return f"{phase}, {'ready' if ix.pod_ready(obj) else 'not ready'}" + (
            f", on {get(obj, 'spec', 'nodeName')}" if get(obj, "spec", "nodeName") else "")
    if kind == "nodes":
        ready = (conditions(obj).get("Ready") or {}).get("status")
        return "Ready" if ready == "True" else f"Ready={ready}"
    if kind in ("persistentvolumeclaims", "persistentvolumes"):
        return str(get(obj, "status", "phase", default="?"))
    if kind in ("deployments", "statefulsets", "replicasets"):
        return (f"{get(obj, 'status', 'readyReplicas', default=0)}/"
                f"{get(obj, 'spec', 'replicas', default=1)} ready")
    if kind == "services":
        slices = ix.slices_by_service(snapshot).get(meta(obj)) if \
            "endpointslices" in snapshot.objects else None
        if slices is not None:
            return f"{len(ix.ready_endpoints(slices))} ready endpoint(s)"
    return "exists"


def _walker(snapshot: ClusterSnapshot, platform: Platform | None = None) -> _Walker:
    result = analyse(snapshot, platform)
    return _Walker(snapshot, result, engine.by_object(result.findings))


def diagnose_object(snapshot: ClusterSnapshot, kind: str, namespace: str | None, name: str,
                    d: Diagnosis | None = None, platform: Platform | None = None) -> Diagnosis:
    """Any object's chain: its findings, its dependencies' findings, the roots.

    ``kind`` is the plural name (``ingresses``).
    """
    d = d or Diagnosis(context(snapshot, platform))
    w = _walker(snapshot, platform)
    ns = None if kind in CLUSTER_SCOPED else namespace
    key: NodeKey = (kind, ns, name)
    why = snapshot.unread(kind)
    if why:
        d.step(_label(key), False, f"could not read {kind} ({why})")
        d.roots.append(RootCause(resource=_ref(key), determined=False,
                                 missing=f"could not read {kind} ({why})",
                                 message=f"{_label(key)} could not be read: {why}"))
        return d
    if w.obj(key) is None:
        d.step(_label(key), False, "not found")
        return d
    w.chain(d, key)
    w.collect(d, key)
    d.roots += w.roots_from(key)
    d.not_evaluated = _relevant_not_evaluated(w, [key])
    return d


def _relevant_not_evaluated(w: _Walker, starts: Sequence[NodeKey]) -> list[NotEvaluated]:
    """The rules not evaluated that read a kind the diagnosis touched."""
    kinds = {k[0] for k in starts} | {t[0] for e in w.edges.values() for _, t, _ in e}
    out = []
    for ne in w.result.not_evaluated:
        spec = registry.REGISTRY.get(ne.check)
        if spec is None or set(spec.reads) & kinds or not spec.reads:
            out.append(ne)
    return out


# --- the classic targets ----------------------------------------------------------------------

def find(snapshot: ClusterSnapshot, kind: str, name: str, namespace: str | None) -> Obj | None:
    """The object of ``kind`` with that name (and namespace for namespaced kinds)."""
    for o in snapshot.get(kind):
        ns, n = meta(o)
        if n == name and (namespace is None or ns == namespace):
            return o
    return None


def similar(snapshot: ClusterSnapshot, kind: str, name: str,
            namespace: str | None = None) -> list[str]:
    """Names of ``kind`` close to ``name`` (for a NotFound hint)."""
    names = [meta(o)[1] for o in snapshot.get(kind)
             if namespace is None or meta(o)[0] == namespace]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    return close or [n for n in names if n.startswith(name[:3])][:5]


def scheduling_causes(snapshot: ClusterSnapshot, pod: Obj, message: str) -> list[dict[str, Any]]:
    """The FailedScheduling message turned into causes (see :mod:`.checks.scheduling`)."""
    return _causes(context(snapshot), pod, message)


def diagnose_pod(snapshot: ClusterSnapshot, namespace: str, name: str,
                 previous_logs: Mapping[str, list[str]] | None = None,
                 d: Diagnosis | None = None, platform: Platform | None = None) -> Diagnosis:
    """A pod's chain (node, claims, config) and its owner's state.

    ``previous_logs`` maps container name to the tail of its previous instance's log; it is
    attached to the pod's crash-loop finding as evidence.
    """
    d = d or Diagnosis(context(snapshot, platform))
    start = len(d.findings)
    diagnose_object(snapshot, "pods", namespace, name, d, platform)
    pod = ix.find(snapshot, "pods", namespace, name) if "pods" in snapshot.objects else None
    if pod is not None:
        _owner_step(d, snapshot, pod)
    if previous_logs:
        for i in range(start, len(d.findings)):
            f = d.findings[i]
            container = f.evidence.get("container")
            if f.check == "pod-crashloop" and f.resource.name == name and \
                    str(container) in previous_logs:
                d.findings[i] = f.model_copy(update={"evidence": {
                    **f.evidence, "previous_logs": list(previous_logs[str(container)])}})
                d.step(f"container {container} previous logs", False,
                       " | ".join(previous_logs[str(container)][-5:]), 1)
    return d


def _owner_chain(snapshot: ClusterSnapshot, pod: Obj) -> tuple[str, str] | None:
    """The owning workload (kind, name), following a ReplicaSet up to its Deployment."""
    return ix.top_owner(snapshot, pod)


def _owner_step(d: Diagnosis, snapshot: ClusterSnapshot, pod: Obj) -> None:
    namespace = meta(pod)[0]
    owner = _owner_chain(snapshot, pod)
    if owner is None:
        d.step("owner", True, "none: nothing recreates this pod if it is deleted")
        return
    kind, oname = owner
    plural = PLURALS.get(kind)
    obj = ix.find(snapshot, plural, namespace, oname) if plural and \
        plural in snapshot.objects else None
    if kind == "Deployment" and obj is not None:
        r = rollout_state(obj)
        d.step("owner rollout", r["state"] != "stuck",
               f"Deployment {oname}: {r['state']}, {r['available']}/{r['desired']} "
               f"available, {r['updated']} updated"
               + (f" ({r['progressing']})" if r["progressing"] else ""))
    else:
        d.step("owner", True, f"{kind} {oname}")


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


def diagnose_deployment(snapshot: ClusterSnapshot, namespace: str, name: str,
                        previous_logs: Mapping[str, Mapping[str, list[str]]] | None = None,
                        platform: Platform | None = None) -> Diagnosis:
    """A Deployment's rollout state, then the chain down its ReplicaSets and pods."""
    d = Diagnosis(context(snapshot, platform))
    dep = find(snapshot, "deployments", name, namespace)
    if dep is None:
        d.step("deployment exists", False, f"deployment {namespace}/{name} not found")
        return d
    r = rollout_state(dep)
    d.step("rollout", r["state"] != "stuck",
           f"{r['state']}: {r['available']}/{r['desired']} available, {r['updated']} updated"
           + (f"; {r['progressing']}: {r['progressing_message']}" if r["progressing"] else ""))
    diagnose_object(snapshot, "deployments", namespace, name, d, platform)
    _attach_logs(d, previous_logs)
    return d


def _attach_logs(d: Diagnosis, logs: Mapping[str, Mapping[str, list[str]]] | None) -> None:
    if not logs:
        return
    for i, f in enumerate(d.findings):
        lines = logs.get(f.resource.name, {}).get(str(f.evidence.get("container")))
        if f.check == "pod-crashloop" and lines:
            d.findings[i] = f.model_copy(update={"evidence": {**f.evidence,
                                                              "previous_logs": list(lines)}})


def pods_of_deployment(snapshot: ClusterSnapshot, namespace: str, name: str) -> list[Obj]:
    """Pods whose owner chain leads to the Deployment."""
    return [p for p in ix.in_namespace(snapshot, "pods", namespace)
            if _owner_chain(snapshot, p) == ("Deployment", name)]


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


# --- nodes ------------------------------------------------------------------------------------

def node_role(node: Obj) -> str:
    """K3s role: server (control plane / etcd labels) or agent."""
    labels = get(node, "metadata", "labels", default={}) or {}
    return "server" if any(labels.get(k) in ("true", "") for k in K3S_ROLE_LABELS) else "agent"


def _minor(version: str) -> tuple[int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)", version)
    return (int(m[1]), int(m[2])) if m else None


def diagnose_node(snapshot: ClusterSnapshot, name: str, d: Diagnosis | None = None,
                  platform: Platform | None = None) -> Diagnosis:
    """A node: its findings, then facts (role, readiness, pressure, requests, version)."""
    d = d or Diagnosis(context(snapshot, platform))
    node = find(snapshot, "nodes", name, None)
    if node is None:
        d.step("node exists", False, f"node {name} not found")
        return d
    diagnose_object(snapshot, "nodes", None, name, d, platform)
    conds = conditions(node)
    ready = conds.get("Ready") or {}
    status = str(ready.get("status", "Unknown"))
    role = node_role(node)
    d.step("role", True, f"{role} ({'control plane' if role == 'server' else 'worker'})")
    d.step("ready", status == "True",
           f"{ {'True': 'Ready', 'False': 'NotReady'}.get(status, 'Unknown')} since "
           f"{ready.get('lastTransitionTime')}"
           + (f": {ready.get('reason')} {ready.get('message') or ''}".rstrip()
              if status != "True" else ""))
    pressure = [t for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
                if (conds.get(t) or {}).get("status") == "True"]
    d.step("pressure", not pressure, ", ".join(pressure) or "none")
    cordoned = bool(get(node, "spec", "unschedulable"))
    d.step("schedulable", not cordoned, "cordoned" if cordoned else "schedulable")
    taints = [f"{t.get('key')}:{t.get('effect')}" for t in
              get(node, "spec", "taints", default=[]) or []]
    d.step("taints", not taints, ", ".join(taints) or "none")
    if "pods" in snapshot.objects:
        on_node = [p for p in ix.pods_on_node(snapshot).get(name, [])
                   if get(p, "status", "phase") not in ("Succeeded", "Failed")]
        for res in ("cpu", "memory"):
            alloc = quantity(get(node, "status", "allocatable", res)) or 0.0
            used = sum(pod_request(p, res) for p in on_node)
            pct = round(100 * used / alloc) if alloc else None
            d.step(f"{res} requests", pct is None or pct <= 100,
                   f"{fmt(res, used)} of {fmt(res, alloc)} allocatable ({pct}%)")
        bad = [meta(p)[1] for p in on_node if not ix.pod_healthy(p)]
        d.step("pods on the node", not bad, f"{len(on_node)} pods"
               + (f"; not healthy: {', '.join(bad[:8])}" if bad else ""))
    version = str(get(node, "status", "nodeInfo", "kubeletVersion", default=""))
    others = sorted({str(get(n, "status", "nodeInfo", "kubeletVersion", default=""))
                     for n in snapshot.get("nodes")} - {version, ""})
    skew = _minor(version) is not None and any(
        _minor(o) is not None and _minor(o) != _minor(version) for o in others)
    d.step("kubelet version", not skew,
           f"{version}" + (f"; other nodes run {', '.join(others)}" if others else
                           " (same on every node)"))
    events = events_for(snapshot, "Node", None, name, limit=5) \
        if "events" in snapshot.objects else []
    if events:
        d.step("recent events", not any(e.get("type") == "Warning" for e in events),
               "; ".join(f"{e.get('reason')}: {e.get('message')}" for e in events[:3]))
    return d


# --- areas ------------------------------------------------------------------------------------

def _area(snapshot: ClusterSnapshot, d: Diagnosis, starts: Sequence[NodeKey],
          platform: Platform | None) -> None:
    """Walk several start objects: chains of the broken ones, healthy ones counted."""
    w = _walker(snapshot, platform)
    healthy = 0
    for key in starts:
        w.collect(d, key)
        if w.subtree_failing(key, set()):
            w.chain(d, key)
            d.roots += w.roots_from(key)
        else:
            healthy += 1
            if healthy <= HEALTHY_SHOWN * 2:
                d.step(_label(key), True, _summary(snapshot, key, w.obj(key)), 0, _ref(key))
    if healthy > HEALTHY_SHOWN * 2:
        d.step(f"… {healthy - HEALTHY_SHOWN * 2} more", True, "healthy")
    d.not_evaluated = _relevant_not_evaluated(w, starts)


def _keys(snapshot: ClusterSnapshot, kind: str, namespace: str | None,
          keep: Any = None) -> list[NodeKey]:
    if kind not in snapshot.objects:
        return []
    out = []
    for o in snapshot.objects[kind]:
        ns, name = meta(o)
        if namespace is not None and kind not in CLUSTER_SCOPED and ns != namespace:
            continue
        if keep is None or keep(o):
            out.append((kind, None if kind in CLUSTER_SCOPED else ns, name))
    return out


def _unread_step(d: Diagnosis, snapshot: ClusterSnapshot, kinds: Iterable[str]) -> None:
    for kind in kinds:
        why = snapshot.unread(kind)
        if why:
            d.step(f"{kind}", False, f"could not read {kind} ({why}): not examined")
            d.roots.append(RootCause(resource=ResourceRef(kind=KIND_NAMES.get(kind, kind),
                                                          name="*"),
                                     determined=False, missing=f"could not read {kind} ({why})",
                                     message=f"{kind} could not be read ({why}): problems there "
                                             "could not be looked for"))


def diagnose_network(snapshot: ClusterSnapshot, namespace: str | None = None,
                     platform: Platform | None = None) -> Diagnosis:
    """Ingress → Service → EndpointSlices → pods; LoadBalancers; webhooks; DNS."""
    d = Diagnosis(context(snapshot, platform))
    _unread_step(d, snapshot, ("ingresses", "services", "endpointslices"))
    starts = [*_keys(snapshot, "ingresses", namespace),
              *_keys(snapshot, "services", namespace,
                     lambda s: get(s, "spec", "type") == "LoadBalancer"),
              *_keys(snapshot, "services", namespace),
              *(_keys(snapshot, "validatingwebhookconfigurations", None)
                + _keys(snapshot, "mutatingwebhookconfigurations", None)
                + _keys(snapshot, "apiservices", None,
                        lambda a: bool(get(a, "spec", "service")))
                if namespace is None else [])]
    if namespace is None or namespace == "kube-system":
        starts += [k for k in _keys(snapshot, "deployments", "kube-system")
                   if k[2] == "coredns"]
    _area(snapshot, d, list(dict.fromkeys(starts)), platform)
    _dns_steps(d, snapshot)
    return d


def _dns_steps(d: Diagnosis, snapshot: ClusterSnapshot) -> None:
    if "deployments" in snapshot.objects:
        dns = find(snapshot, "deployments", "coredns", "kube-system")
        if dns is None:
            d.step("CoreDNS", False, "deployment kube-system/coredns not found")
        else:
            r = rollout_state(dns)
            d.step("CoreDNS", int(r["available"] or 0) > 0,
                   f"{r['available']}/{r['desired']} available")
    if "endpointslices" in snapshot.objects:
        eps = ix.ready_endpoints(ix.slices_by_service(snapshot).get(
            ("kube-system", "kube-dns"), []))
        d.step("kube-dns endpoints", bool(eps), f"{len(eps)} ready")


def diagnose_storage(snapshot: ClusterSnapshot, namespace: str | None = None,
                     platform: Platform | None = None) -> Diagnosis:
    """PVCs → StorageClass/PV → Longhorn volume; PVs; attachments."""
    d = Diagnosis(context(snapshot, platform))
    _unread_step(d, snapshot, ("persistentvolumeclaims", "storageclasses"))
    if "storageclasses" in snapshot.objects:
        classes = {meta(c)[1]: c for c in snapshot.objects["storageclasses"]}
        defaults = [n for n, c in classes.items() if get(
            c, "metadata", "annotations", "storageclass.kubernetes.io/is-default-class")
            == "true"]
        d.step("StorageClasses", bool(classes) and len(defaults) <= 1,
               ", ".join(classes) + f"; default: {', '.join(defaults) or 'none'}")
    starts = [*_keys(snapshot, "persistentvolumeclaims", namespace)]
    if namespace is None:
        starts += _keys(snapshot, "persistentvolumes", None)
        starts += _keys(snapshot, "volumes.longhorn.io", None)
        starts += _keys(snapshot, "volumeattachments", None)
    else:
        starts += [k for k in _keys(snapshot, "volumes.longhorn.io", None)
                   if get(ix.find(snapshot, "volumes.longhorn.io", k[1], k[2]),
                          "status", "kubernetesStatus", "namespace") == namespace]
    _area(snapshot, d, starts, platform)
    return d


def diagnose_cluster(snapshot: ClusterSnapshot, namespace: str | None = None,
                     previous_logs: Mapping[str, Mapping[str, list[str]]] | None = None,
                     platform: Platform | None = None) -> Diagnosis:
    """Every object with a problem, grouped into chains that end at their roots."""
    d = Diagnosis(context(snapshot, platform))
    w = _walker(snapshot, platform)
    failing: list[NodeKey] = []
    for f in _faults(w.result.findings):
        r = f.resource
        plural = PLURALS.get(r.kind)
        if plural is None:
            continue
        if namespace is not None and r.namespace not in (namespace,) and not (
                r.namespace is None and plural == "namespaces" and r.name == namespace):
            continue
        failing.append((plural, None if plural in CLUSTER_SCOPED else r.namespace, r.name))
    failing = list(dict.fromkeys(failing))
    below: set[NodeKey] = set()
    for key in failing:
        below |= w.reachable(key)
    tops = [k for k in failing if k not in below] or failing
    for key in tops:
        w.chain(d, key)
        w.collect(d, key)
        d.roots += w.roots_from(key)
    d.findings.extend(f for f in w.result.findings
                      if namespace is None or f.resource.namespace in (None, namespace))
    _attach_logs(d, previous_logs)
    d.not_evaluated = list(w.result.not_evaluated)
    return d


def by_severity(findings: Iterable[Finding], at_least: Severity = "warning") -> list[Finding]:
    """Findings at or above a severity."""
    floor = SEVERITY_RANK[at_least]
    return [f for f in findings if SEVERITY_RANK[f.severity] >= floor]
