"""`k3sops upgrade apply`, pure: the per-node steps, the recorded progress and the stop report.

The service (:mod:`k3sops.services.upgrade_apply`) runs, for each batch of the plan's order
(servers one at a time, then agents ``max_unavailable`` at a time), these steps:

``cordon``   cordon the node and mark it ``k3sops.io/upgrade-in-progress=<target>``;
``drain``    evict its pods through the Eviction API (PodDisruptionBudgets respected, timeout);
``upgrade``  run the packaged ``upgrade`` playbook on that host only (``k3s_version`` = target);
``wait``     wait until the Node reports the target ``kubeletVersion`` and is Ready (timeout);
``uncordon`` uncordon it and remove the mark;
``checks``   run the node checks and the pod checks on that node; a critical finding stops.

Progress is a JSON document per target version (:class:`Progress`), rewritten after every step:
what ``--resume`` continues from. Every step is idempotent against the cluster's own state
(cordon of a cordoned node, drain of an empty node, a node already at the target), so a node
that stopped half way is finished by running the same steps again, minus ``upgrade`` when the
Node already reports the target. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.domain.findings import Finding
from k3sops.domain.index import selector_matches
from k3sops.domain.snapshot import get
from k3sops.domain.upgrade import Role, UpgradePlan, parse_version

StepName = Literal["cordon", "drain", "upgrade", "wait", "uncordon", "checks"]
STEPS: tuple[StepName, ...] = ("cordon", "drain", "upgrade", "wait", "uncordon", "checks")
Result = Literal["planned", "ok", "skipped", "failed", "not-run"]

NODE_CHECKS = ("node-not-ready", "node-pressure", "node-upgrade-interrupted",
               "node-network-unavailable")
"""Checks judged on the upgraded Node itself."""
POD_CHECKS = ("pod-crashloop", "pod-image-pull", "pod-pending", "pod-failed", "pod-not-ready",
              "pod-container-error", "pod-stuck-starting", "pod-oomkilled")
"""Checks judged on the pods bound to the upgraded Node (its DaemonSet pods after a drain)."""

_WHAT: dict[StepName, str] = {
    "cordon": "cordon and mark {ann}={target}",
    "drain": "drain through the Eviction API (PodDisruptionBudgets respected, {drain:g}s)",
    "upgrade": "ansible-playbook upgrade.yml --limit {nodes} -e k3s_version={target}",
    "wait": "wait for kubeletVersion {target} and Ready ({ready:g}s)",
    "uncordon": "uncordon and remove {ann}",
    "checks": "node and pod checks on the node (a critical finding stops)",
}


class NodeProgress(BaseModel):
    """One node's recorded progress."""

    role: Role
    from_version: str
    done: list[StepName] = Field(default_factory=list, description="steps completed, in order")
    status: Literal["pending", "running", "done", "failed"] = "pending"
    error: str | None = None


class Stop(BaseModel):
    """Where and why a run stopped, and what to do about it."""

    node: str
    step: StepName
    reason: str
    cordoned: bool = Field(description="the node is left cordoned (and marked)")
    resume: str = Field(description="the command that continues the upgrade")
    rollback: list[str] = Field(description="the commands that put the node back in service")


class Progress(BaseModel):
    """The state file of one upgrade (``upgrade-<target>.json`` in the state directory)."""

    target: str
    status: Literal["running", "stopped", "done"] = "running"
    nodes: dict[str, NodeProgress] = Field(default_factory=dict)
    stopped: Stop | None = None


class StepLine(BaseModel):
    """One step of the run (dry-run: planned)."""

    batch: int
    node: str
    step: StepName
    what: str
    result: Result
    error: str | None = None


class ApplyReport(BaseModel):
    """``k3sops upgrade apply``: the plan, the steps (planned or run) and where it stopped."""

    target: str
    applied: bool
    plan: UpgradePlan
    steps: list[StepLine] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list,
                               description="nodes already at the target, left alone")
    stopped: Stop | None = None
    state_file: str | None = None
    audit_log: str | None = None


class Batch(BaseModel):
    """Nodes worked on together, with the first step each needs."""

    step: int
    role: Role
    nodes: list[str]
    start: StepName = "cordon"


def work(plan: UpgradePlan, progress: Progress | None) -> list[Batch]:
    """The batches to run: nodes an interrupted run left at the target first, then the order.

    A node already reporting the target but still marked for it (the run stopped after its
    ``upgrade``) only needs ``wait`` onwards; a node the progress records as done is skipped.
    """
    target = parse_version(plan.target)
    done = {n for n, p in (progress.nodes if progress else {}).items() if p.status == "done"}
    out: list[Batch] = []
    for s in plan.nodes:
        if (s.in_progress == plan.target and parse_version(s.version) == target
                and s.name not in done):
            out.append(Batch(step=0, role=s.role, nodes=[s.name], start="wait"))
    for planned_batch in plan.order:
        names = [n for n in planned_batch.nodes if n not in done]
        if names:
            out.append(Batch(step=0, role=planned_batch.role, nodes=names))
    # Servers before agents, whatever the source (the resume batches come first per role).
    out.sort(key=lambda b: b.role != "server")
    for i, b in enumerate(out, start=1):
        b.step = i
    return out


def steps_from(start: StepName) -> list[StepName]:
    """The steps from ``start`` to the end."""
    return list(STEPS[STEPS.index(start):])


def describe(step: StepName, nodes: Sequence[str], target: str, *, annotation: str,
             drain_timeout: float, ready_timeout: float) -> str:
    """The one-line description of a step (dry-run and progress)."""
    return _WHAT[step].format(ann=annotation, target=target, nodes=",".join(nodes),
                              drain=drain_timeout, ready=ready_timeout)


def planned(batches: Sequence[Batch], target: str, *, annotation: str, drain_timeout: float,
            ready_timeout: float) -> list[StepLine]:
    """Every step a run would take, as ``planned`` lines."""
    return [StepLine(batch=b.step, node=n, step=s, result="planned",
                     what=describe(s, [n], target, annotation=annotation,
                                   drain_timeout=drain_timeout, ready_timeout=ready_timeout))
            for b in batches for n in b.nodes for s in steps_from(b.start)]


def node_at(node: Mapping[str, Any] | None, target: str) -> tuple[bool, bool]:
    """(reports the target kubeletVersion, Ready) for a Node object (None: gone)."""
    if node is None:
        return False, False
    version = str(get(node, "status", "nodeInfo", "kubeletVersion", default="") or "")
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in (get(node, "status", "conditions", default=[]) or []))
    return parse_version(version) == parse_version(target), ready


def node_findings(findings: Iterable[Finding], node: str,
                  pods: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """The findings about ``node`` itself or about a pod bound to it."""
    on_node = {(get(p, "metadata", "namespace"), get(p, "metadata", "name")) for p in pods
               if get(p, "spec", "nodeName") == node}
    out = []
    for f in findings:
        r = f.resource
        if (r.kind == "Node" and r.name == node) or (
                r.kind == "Pod" and (r.namespace, r.name) in on_node):
            out.append(f)
    return out


def blocking_budgets(pods: Iterable[tuple[str, Mapping[str, str]]],
                     pdbs: Iterable[Mapping[str, Any]]) -> list[str]:
    """``ns/name`` of every PodDisruptionBudget selecting one of ``pods`` (namespace, labels)."""
    out: list[str] = []
    for pdb in pdbs:
        ns = get(pdb, "metadata", "namespace")
        sel = get(pdb, "spec", "selector")
        if not isinstance(sel, Mapping):
            continue
        for pns, labels in pods:
            if pns == ns and selector_matches(sel, labels):
                name = f"{ns}/{get(pdb, 'metadata', 'name')}"
                if name not in out:
                    out.append(name)
                break
    return out


def stop(node: str, step: StepName, reason: str, *, target: str, cordoned: bool,
         from_version: str, inventory: str, annotation: str,
         max_unavailable: int = 1) -> Stop:
    """The stop report: the resume command and how to put the node back in service."""
    extra = f" --max-unavailable {max_unavailable}" if max_unavailable != 1 else ""
    resume = f"k3sops upgrade apply --to {target}{extra} --resume --yes"
    back = []
    if step in ("upgrade", "wait", "uncordon", "checks"):
        # The binary may already be the new one: the same playbook with the old version puts
        # the old one back (a patch release within a minor; across minors only an etcd restore).
        back.append(f"ansible-playbook -i {inventory} <k3sops>/ansible/upgrade.yml --limit "
                    f"{node} -e k3s_version={from_version} -e kube_steps=false")
    if cordoned:
        back.append(f"k3sops node uncordon {node} --apply")
        back.append(f"kubectl annotate node {node} {annotation}-")
    return Stop(node=node, step=step, reason=reason, cordoned=cordoned, resume=resume,
                rollback=back)
