"""The walk along dependency links: engine findings per object, explained faults, chains, roots."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from k3sops.config.schema import Platform
from k3sops.domain import checks as registry
from k3sops.domain import engine
from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext
from k3sops.domain.diagnose.model import Diagnosis, RootCause
from k3sops.domain.findings import (
    SEVERITY_RANK,
    Finding,
    NotEvaluated,
    ResourceRef,
)
from k3sops.domain.graph import Link, cause_links, links
from k3sops.domain.snapshot import (
    CLUSTER_SCOPED,
    KIND_NAMES,
    ClusterSnapshot,
    Obj,
    conditions,
    get,
    meta,
)

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


def fault_findings(findings: Iterable[Finding]) -> list[Finding]:
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


def node_label(key: NodeKey) -> str:
    """How an object is named in steps and paths: ``Pod ns/name``."""
    kind, ns, name = key
    return f"{KIND_NAMES.get(kind, kind)} {ns + '/' if ns else ''}{name}"


def node_ref(key: NodeKey) -> ResourceRef:
    """The object as a finding's resource reference."""
    return ResourceRef(kind=KIND_NAMES.get(key[0], key[0]), namespace=key[1], name=key[2])


@dataclass
class Walker:
    """Follows links from start objects, remembering what it saw (shared across starts)."""

    snapshot: ClusterSnapshot
    result: engine.EngineResult
    by_obj: Mapping[tuple[str, str | None, str], list[Finding]] = field(default_factory=dict)
    edges: dict[NodeKey, list[tuple[Link, NodeKey, str]]] = field(default_factory=dict)
    """object -> [(link, target, state)], state: ok | missing | unread | absent-optional."""

    def findings_of(self, key: NodeKey) -> list[Finding]:
        """The engine's findings about the object."""
        kind, ns, name = key
        return self.by_obj.get((KIND_NAMES.get(kind, kind), ns, name), [])

    def obj(self, key: NodeKey) -> Obj | None:
        """The object in the snapshot, or None when it is not there (or its kind unread)."""
        kind, ns, name = key
        return ix.by_name(self.snapshot, kind).get((ns, name)) \
            if kind in self.snapshot.objects else None

    def expand(self, key: NodeKey) -> list[tuple[Link, NodeKey, str]]:
        """The links out of the object (and its findings' cause links), each with its state."""
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
        """Whether a link's target is there: ok, missing, unread (why) or absent-optional."""
        why = self.snapshot.unread(target[0])
        if why:
            return f"unread: could not read {target[0]} ({why})"
        if self.obj(target) is not None:
            return "ok"
        if target[0] not in self.snapshot.objects:
            return "absent-optional"  # a custom kind whose CRD is not installed
        return "missing" if link.required else "absent-optional"

    def severity(self, key: NodeKey) -> int:
        """The rank of the object's worst fault (-1: none)."""
        faults = fault_findings(self.findings_of(key))
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
        stack: list[tuple[NodeKey, list[str]]] = [(start, [node_label(start)])]
        visited: set[NodeKey] = set()
        while stack:
            key, path = stack.pop()
            if key in visited or len(path) > limit_depth:
                continue
            visited.add(key)
            faults = fault_findings(self.findings_of(key))
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
                        resource=node_ref(target), message=(
                            f"{node_label(target)} does not exist ({node_label(key)} "
                            f"{link.relation} it)"), path=[*path, node_label(target)]))
                elif state.startswith("unread") and ((key == start and not faults) or any(
                        "could not read" in f.message or "could not read" in str(f.evidence)
                        for f in faults)):
                    # only where the rule itself could not tell (or nothing was found at all):
                    # an unread ConfigMap says nothing about a pod that crashes on its own
                    out.append(RootCause(
                        resource=node_ref(key), determined=False, missing=state[len("unread: "):],
                        message=(f"the cause behind {node_label(key)} could not be determined: "
                                 f"{state[len('unread: '):]} ({link.relation} "
                                 f"{node_label(target)})"), path=path))
            for link, target, state in children:
                if state == "ok" and link.explains != "never":
                    stack.append((target, [*path, node_label(target)]))
        return out

    def chain(self, d: Diagnosis, start: NodeKey, depth: int = 0,
              seen: set[NodeKey] | None = None, relation: str | None = None) -> None:
        """Record the chain below ``start`` as steps: broken links in full, healthy counted."""
        seen = seen if seen is not None else set()
        if start in seen or depth > MAX_DEPTH:
            return
        seen.add(start)
        faults = sorted(fault_findings(self.findings_of(start)), key=_priority)
        label = f"{relation} {node_label(start)}" if relation else node_label(start)
        d.step(label, not faults, faults[0].message if faults else healthy_summary(
            self.snapshot, start, self.obj(start)), depth, node_ref(start))
        healthy = 0
        for link, target, state in self.expand(start):
            if state == "absent-optional" or link.explains == "never":
                continue
            if state == "missing":
                d.step(f"{link.relation} {node_label(target)}", False, "does not exist", depth + 1,
                       node_ref(target))
                continue
            if state.startswith("unread"):
                d.step(f"{link.relation} {node_label(target)}", False, state[len("unread: "):],
                       depth + 1, node_ref(target))
                continue
            if not self.subtree_failing(target, set()):
                healthy += 1
                if healthy <= HEALTHY_SHOWN:
                    d.step(f"{link.relation} {node_label(target)}", True,
                           healthy_summary(self.snapshot, target, self.obj(target)), depth + 1,
                           node_ref(target))
                continue
            self.chain(d, target, depth + 1, seen, link.relation)
        if healthy > HEALTHY_SHOWN:
            d.step(f"… {healthy - HEALTHY_SHOWN} more", True, "healthy", depth + 1)

    def subtree_failing(self, key: NodeKey, seen: set[NodeKey], depth: int = 0) -> bool:
        """Whether the object or anything it depends on has a fault or a broken link."""
        if key in seen or depth > MAX_DEPTH:
            return False
        seen.add(key)
        if fault_findings(self.findings_of(key)):
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


def healthy_summary(snapshot: ClusterSnapshot, key: NodeKey, obj: Obj | None) -> str:  # noqa: PLR0911
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


def walker_for(snapshot: ClusterSnapshot, platform: Platform | None = None) -> Walker:
    """A walker over the engine's findings on the snapshot."""
    result = analyse(snapshot, platform)
    return Walker(snapshot, result, engine.by_object(result.findings))


def relevant_not_evaluated(w: Walker, starts: Sequence[NodeKey]) -> list[NotEvaluated]:
    """The rules not evaluated that read a kind the diagnosis touched."""
    kinds = {k[0] for k in starts} | {t[0] for e in w.edges.values() for _, t, _ in e}
    out = []
    for ne in w.result.not_evaluated:
        spec = registry.REGISTRY.get(ne.check)
        if spec is None or set(spec.reads) & kinds or not spec.reads:
            out.append(ne)
    return out
