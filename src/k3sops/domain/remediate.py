"""Remediation plans: pure planners that return only the steps still needed.

A planner looks at the current state of the objects it is given and returns a :class:`Plan`
of :class:`Step` s. Each planner is idempotent by construction: run it again on the state the
applied plan produced and it returns an empty plan (cordon an already cordoned node, scale to
the current replica count, drain a node with nothing left to evict: no steps).

The one exception is :func:`plan_restart`: a rollout restart, like ``kubectl rollout restart``,
always restarts (it stamps the pod template with a new ``restartedAt`` value), so it always
plans one step.

Nothing here does I/O or reads a clock: timestamps are passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.errors import PlanRejected, UsageError

Action = Literal["cordon", "uncordon", "evict", "delete", "restart", "scale", "plan"]
Outcome = Literal["ok", "skipped", "failed", "not-run", "planned"]

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
"""The pod template annotation ``kubectl rollout restart`` sets; we set the same one."""

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
"""Set on mirror pods (static pods seen through the API): they cannot be evicted."""

WORKLOAD_KINDS = {"deployment": "deployments", "deploy": "deployments",
                  "statefulset": "statefulsets", "sts": "statefulsets"}


class Step(BaseModel):
    """One change to make: an action on one object."""

    action: Action
    kind: str = Field(description="resource plural, e.g. nodes, pods, deployments")
    name: str
    namespace: str | None = None
    detail: str = ""
    uid: str | None = Field(default=None, description="the pod's uid, to skip a replaced pod")
    value: str | None = Field(default=None, description="replicas for scale, time for restart")

    @property
    def target(self) -> str:
        """``kind/name`` with the namespace in front when there is one."""
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{ns}{self.kind}/{self.name}"


class Plan(BaseModel):
    """What a remediation would change, in order; empty when there is nothing to do."""

    title: str
    steps: list[Step] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="what was left out, and why")


class PodInfo(BaseModel):
    """What the planners need to know about a pod."""

    namespace: str
    name: str
    uid: str = ""
    node: str | None = None
    phase: str = ""
    reason: str = ""
    owner_kinds: list[str] = Field(default_factory=list)
    mirror: bool = False
    emptydir: bool = False
    deleting: bool = False
    labels: dict[str, str] = Field(default_factory=dict)


def pod_info(raw: Mapping[str, Any]) -> PodInfo:
    """Reduce a pod as the API returns it (plain JSON) to a :class:`PodInfo`."""
    meta = raw.get("metadata") or {}
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    return PodInfo(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        node=spec.get("nodeName"),
        phase=str(status.get("phase", "")),
        reason=str(status.get("reason", "")),
        owner_kinds=[str(o.get("kind", "")) for o in meta.get("ownerReferences") or []],
        mirror=MIRROR_ANNOTATION in (meta.get("annotations") or {}),
        emptydir=any("emptyDir" in v for v in spec.get("volumes") or []),
        deleting=meta.get("deletionTimestamp") is not None,
        labels=dict(meta.get("labels") or {}),
    )


def parse_workload(ref: str) -> tuple[str, str]:
    """Split ``deployment/NAME`` into (plural, name).

    Raises:
        UsageError: the reference is not ``KIND/NAME`` with a supported kind.
    """
    kind, sep, name = ref.partition("/")
    plural = WORKLOAD_KINDS.get(kind.lower())
    if not sep or not name or plural is None:
        raise UsageError(f"{ref!r} is not a workload reference",
                         hint="write deployment/NAME or statefulset/NAME")
    return plural, name


def plan_cordon(node: str, unschedulable: bool) -> Plan:
    """Mark a node unschedulable, unless it already is."""
    plan = Plan(title=f"cordon node {node}")
    if unschedulable:
        plan.notes.append(f"node {node} is already cordoned")
    else:
        plan.steps.append(Step(action="cordon", kind="nodes", name=node,
                               detail="set spec.unschedulable=true"))
    return plan


def plan_uncordon(node: str, unschedulable: bool) -> Plan:
    """Make a node schedulable again, unless it already is."""
    plan = Plan(title=f"uncordon node {node}")
    if unschedulable:
        plan.steps.append(Step(action="uncordon", kind="nodes", name=node,
                               detail="set spec.unschedulable=false"))
    else:
        plan.notes.append(f"node {node} is already schedulable")
    return plan


def plan_drain(node: str, unschedulable: bool, pods: Iterable[PodInfo], *,
               ignore_daemonsets: bool = True, delete_emptydir_data: bool = False,
               selector: Mapping[str, str] | None = None) -> Plan:
    """Cordon a node and evict its pods, as ``kubectl drain`` does.

    Left out (and noted): DaemonSet pods (their controller ignores cordons and would put them
    straight back), mirror pods (the kubelet owns them), pods already terminating or finished,
    and pods not matching ``selector``.

    Raises:
        PlanRejected: DaemonSet pods are present and ``ignore_daemonsets`` is off, or pods use
            emptyDir data and ``delete_emptydir_data`` is off (kubectl refuses the same).
    """
    plan = plan_cordon(node, unschedulable)
    plan.title = f"drain node {node}"
    blocked: list[str] = []
    for p in sorted(pods, key=lambda x: (x.namespace, x.name)):
        if p.node != node:
            continue
        ref = f"{p.namespace}/{p.name}"
        if selector and any(p.labels.get(k) != v for k, v in selector.items()):
            continue
        if p.mirror:
            plan.notes.append(f"{ref}: mirror pod, not evictable")
            continue
        if "DaemonSet" in p.owner_kinds:
            if not ignore_daemonsets:
                blocked.append(f"{ref} is managed by a DaemonSet (use --ignore-daemonsets)")
            else:
                plan.notes.append(f"{ref}: DaemonSet pod, ignored")
            continue
        if p.deleting or p.phase in ("Succeeded", "Failed"):
            plan.notes.append(f"{ref}: already {'terminating' if p.deleting else p.phase}")
            continue
        if p.emptydir and not delete_emptydir_data:
            blocked.append(f"{ref} uses emptyDir data (use --delete-emptydir-data)")
            continue
        plan.steps.append(Step(action="evict", kind="pods", name=p.name, namespace=p.namespace,
                               uid=p.uid, detail=f"evict from {node} (Eviction API)"))
    if blocked:
        raise PlanRejected(f"cannot drain node {node}: " + "; ".join(blocked),
                           hint="nothing was changed")
    return plan


def plan_restart(plural: str, namespace: str, name: str, at: str) -> Plan:
    """Restart a workload's pods by stamping its template; always one step (like kubectl)."""
    return Plan(title=f"rollout restart {plural}/{name} in {namespace}",
                steps=[Step(action="restart", kind=plural, name=name, namespace=namespace,
                            value=at, detail=f"set template annotation {RESTARTED_AT}={at}")])


def plan_scale(plural: str, namespace: str, name: str, current: int, desired: int) -> Plan:
    """Scale a workload, unless it already has ``desired`` replicas.

    Raises:
        UsageError: ``desired`` is negative.
    """
    if desired < 0:
        raise UsageError(f"--replicas {desired} is negative", hint="pass 0 or more")
    plan = Plan(title=f"scale {plural}/{name} in {namespace} to {desired}")
    if current == desired:
        plan.notes.append(f"{plural}/{name} already has {desired} replicas")
    else:
        plan.steps.append(Step(action="scale", kind=plural, name=name, namespace=namespace,
                               value=str(desired), detail=f"replicas {current} -> {desired}"))
    return plan


def plan_clean(pods: Iterable[PodInfo], scope: str) -> Plan:
    """Delete pods that ended Failed (Evicted pods are Failed with reason Evicted)."""
    plan = Plan(title=f"delete Failed and Evicted pods ({scope})")
    for p in sorted(pods, key=lambda x: (x.namespace, x.name)):
        if p.phase == "Failed" and not p.deleting:
            why = f"phase Failed, reason {p.reason}" if p.reason else "phase Failed"
            plan.steps.append(Step(action="delete", kind="pods", name=p.name,
                                   namespace=p.namespace, uid=p.uid, detail=why))
    return plan
