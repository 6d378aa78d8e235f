"""Remediations as plans: dry-run by default, applied step by step with ``apply=True``.

Each command builds a :class:`~k3sops.domain.remediate.Plan` from the current state. Without
``apply`` the plan is returned and nothing changes. With ``apply`` every step re-reads the
state of its object first (skipped when no longer needed: the plan is idempotent), is then
executed, and is written to the audit log (who, when, what, result). A refused action (401/403)
stops the run: the remaining steps are reported as ``not-run``. Other failures (an eviction
blocked by a PodDisruptionBudget until the timeout) are reported and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import BaseModel, Field

from k3sops.adapters.audit import AuditLog, current_user, state_dir
from k3sops.adapters.kube import WORKLOADS, KubeActions
from k3sops.domain import remediate as plans
from k3sops.domain.remediate import Outcome, Plan, Step
from k3sops.errors import AdapterError, Timeout, Unauthorized
from k3sops.services import context

log = logging.getLogger(__name__)


class StepResult(BaseModel):
    """A planned step and what became of it (``planned`` in a dry run)."""

    step: Step
    result: Outcome
    error: str | None = None


class RemediationReport(BaseModel):
    """The plan, and for an applied run the result of every step."""

    title: str
    applied: bool
    steps: list[StepResult] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    audit_log: str | None = None

    @property
    def failures(self) -> list[StepResult]:
        """The steps that failed."""
        return [s for s in self.steps if s.result == "failed"]


class Runner:
    """Where a remediation runs: the cluster, the audit log, apply or not, the deadline."""

    def __init__(self, settings: context.Settings, env: Mapping[str, str], home: Path, *,
                 apply: bool, state: Path | None = None, timeout: float = 120.0) -> None:
        self.actions = KubeActions(context.kube(settings, env, home))
        self.apply = apply
        self.audit = AuditLog(state_dir(state, env, home) / "audit.jsonl")
        self.timeout = timeout
        self.context = self.actions.kube.context

    def run(self, what: str, build: Callable[[KubeActions], Plan]) -> RemediationReport:
        """Build the plan from current state; apply it when asked."""
        try:
            try:
                plan = build(self.actions)
            except AdapterError as e:
                # Reading the state was refused or failed: nothing was changed, but an --apply
                # attempt is still worth a record (who tried what, and why it did not happen).
                if self.apply:
                    self._record(Step(action="plan", kind="", name=what), "failed", e.message)
                raise
            report = RemediationReport(title=plan.title, applied=self.apply, notes=plan.notes,
                                       audit_log=str(self.audit.path) if self.apply else None)
            if not self.apply:
                report.steps = [StepResult(step=s, result="planned") for s in plan.steps]
                return report
            deadline = time.monotonic() + self.timeout
            stopped = False
            for step in plan.steps:
                if stopped:
                    report.steps.append(StepResult(step=step, result="not-run"))
                    continue
                result, stopped = self._apply_one(step, deadline)
                report.steps.append(result)
            return report
        finally:
            self.actions.close()

    def _apply_one(self, step: Step, deadline: float) -> tuple[StepResult, bool]:
        """Run one step and audit it; the flag says whether to stop (the action was refused)."""
        refused = False
        try:
            outcome: Outcome = "ok" if _execute(self.actions, step, deadline) else "skipped"
            result = StepResult(step=step, result=outcome)
        except Unauthorized as e:
            refused = True
            result = StepResult(step=step, result="failed", error=e.message)
        except AdapterError as e:
            result = StepResult(step=step, result="failed", error=e.message)
        self._record(step, result.result, result.error)
        return result, refused

    def _record(self, step: Step, result: str, error: str | None) -> None:
        self.audit.append({"who": current_user(), "context": self.context,
                           "what": {"action": step.action, "target": step.target,
                                    "detail": step.detail},
                           "result": result, "error": error})


def _execute(actions: KubeActions, step: Step, deadline: float) -> bool:
    """Re-read the object, then make the change; False when it was no longer needed."""
    if step.action in ("cordon", "uncordon"):
        node = actions.kube.get("v1", "nodes", step.name)
        cordoned = bool((node.get("spec") or {}).get("unschedulable"))
        if cordoned == (step.action == "cordon"):
            return False
        actions.set_unschedulable(step.name, step.action == "cordon")
        return True
    if step.action in ("evict", "delete"):
        return _remove_pod(actions, step, deadline)
    ns = step.namespace or ""
    if step.action == "restart":
        actions.restart(step.kind, ns, step.name, plans.RESTARTED_AT, step.value or "")
        return True
    desired = int(step.value or 0)
    if actions.replicas(step.kind, ns, step.name) == desired:
        return False
    actions.scale(step.kind, ns, step.name, desired)
    return True


def _remove_pod(actions: KubeActions, step: Step, deadline: float) -> bool:
    """Evict or delete a pod, unless it is gone or was replaced since the plan was made."""
    ns = step.namespace or ""
    pod = actions.kube.find("v1", "pods", step.name, ns)
    meta = (pod or {}).get("metadata") or {}
    if pod is None or (step.uid and meta.get("uid") != step.uid):
        return False  # gone, or replaced by a new pod of the same name
    if step.action == "delete":
        return actions.delete_pod(ns, step.name, step.uid)
    remaining = max(0.0, deadline - time.monotonic())
    if not actions.evict(ns, step.name, remaining,
                         on_blocked=lambda why: log.warning("eviction of %s blocked: %s",
                                                            step.target, why)):
        return False
    if not actions.wait_gone(ns, step.name, step.uid or "",
                             max(0.0, deadline - time.monotonic())):
        raise Timeout(f"pod {step.target} was evicted but still exists at the timeout",
                      hint="its termination grace period may exceed --timeout")
    return True


def _node_cordoned(actions: KubeActions, node: str) -> bool:
    return bool((actions.kube.get("v1", "nodes", node).get("spec") or {}).get("unschedulable"))


def cordon(runner: Runner, node: str) -> RemediationReport:
    """Plan (and apply) ``node cordon``."""
    return runner.run(f"node cordon {node}",
                      lambda a: plans.plan_cordon(node, _node_cordoned(a, node)))


def uncordon(runner: Runner, node: str) -> RemediationReport:
    """Plan (and apply) ``node uncordon``."""
    return runner.run(f"node uncordon {node}",
                      lambda a: plans.plan_uncordon(node, _node_cordoned(a, node)))


def drain(runner: Runner, node: str, *, ignore_daemonsets: bool = True,
          delete_emptydir_data: bool = False,
          selector: Mapping[str, str] | None = None) -> RemediationReport:
    """Plan (and apply) ``node drain``: cordon, then evict the node's pods."""
    def build(a: KubeActions) -> Plan:
        cordoned = _node_cordoned(a, node)
        pods = [plans.pod_info(p) for p in a.pods(node=node)]
        return plans.plan_drain(node, cordoned, pods, ignore_daemonsets=ignore_daemonsets,
                                   delete_emptydir_data=delete_emptydir_data, selector=selector)
    return runner.run(f"node drain {node}", build)


def restart(runner: Runner, ref: str, namespace: str) -> RemediationReport:
    """Plan (and apply) ``rollout restart``; always one step, like kubectl."""
    plural, name = plans.parse_workload(ref)

    def build(a: KubeActions) -> Plan:
        # A missing workload fails in the plan, not the apply.
        a.kube.get(WORKLOADS, plural, name, namespace)
        at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return plans.plan_restart(plural, namespace, name, at)
    return runner.run(f"rollout restart {ref} -n {namespace}", build)


def scale(runner: Runner, ref: str, namespace: str, replicas: int) -> RemediationReport:
    """Plan (and apply) ``scale``; nothing to do at the current replica count."""
    plural, name = plans.parse_workload(ref)
    return runner.run(f"scale {ref} -n {namespace}", lambda a: plans.plan_scale(
        plural, namespace, name, a.replicas(plural, namespace, name), replicas))


def clean_pods(runner: Runner, namespace: str | None) -> RemediationReport:
    """Plan (and apply) deleting Failed and Evicted pods in a namespace (all when None)."""
    scope = f"namespace {namespace}" if namespace else "all namespaces"
    return runner.run(f"pods clean {scope}", lambda a: plans.plan_clean(
        [plans.pod_info(p) for p in a.pods(namespace)], scope))
