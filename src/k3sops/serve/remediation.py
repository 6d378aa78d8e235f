"""Remediation by policy: a firing alert or a new finding -> an audited plan, under a rate.

platform.yaml's ``serve.remediation`` lists policies ``{id, when: {alert|check}, plan,
environments, max_per_hour}``. For each newly stored firing alert (the intake's ``on_stored``
hook) and each new finding of a scheduled run, every policy whose trigger matches (the
``alertname``, or the check id) and whose ``environments`` hold the object's namespace (the
environment whose ``namespaces`` list it, as everywhere in k3sops) is acted on:

* only on the leader: a remediation is a write, and the follower's copy of the same alert
  must not act twice;
* only in the policy's ``environments``: an object elsewhere (or in no environment, e.g. a
  node) is recorded ``refused`` with the environment it is in, and nothing is planned;
* under the policy's rate: at most ``max_per_hour`` in the last hour, reserved in the store
  (:meth:`HistoryStore.reserve_remediation`: count and insert in one locked step, so two
  replicas cannot both take the last slot); over it the remediation is recorded ``refused``;
* ``remediation.enabled: false`` (the default): the plan is built from the cluster as
  `k3sops remediate` builds it without ``--apply`` and recorded ``dry-run`` with its steps;
  nothing changes;
* enabled: the plan is applied through the same service functions as `k3sops remediate
  ... --apply` (:mod:`k3sops.services.remediate`), so every step is audited in the same log.
  The reservation is one row, ``reserved`` while the plan runs, then finished in place
  (:meth:`HistoryStore.finish_remediation`): ``applied``; ``failed`` when the plan could not
  be built or a step failed (a refused write: the API server's 403, naming verb and
  resource); ``refused`` when a guard below refused it. It counts in the rate whatever its
  outcome: a failing remediation is not retried in a loop.

Plans: ``restart`` (a pod's Deployment/StatefulSet, found through its owners, or the workload
itself: `k3sops remediate rollout restart`), ``clean-pods`` (Failed/Evicted pods of the
object's namespace) and ``cordon`` (the node, or the node the pod runs on).

Guard on ``cordon``: a policy never leaves more than half of the cluster's nodes cordoned
(:func:`cordon_refusal`). ``max_per_hour`` caps the rate, not the total, and nothing uncordons
a node by itself: a flapping alert at one cordon an hour would otherwise cordon every node in a
day, and the pod's node may also run other environments' workloads. A person can still cordon
more with `k3sops node cordon`.

A replica killed while it applied a plan (``kill -9``, a lost node) leaves its reservation
``reserved``: SIGTERM lets the plan finish, but nothing can finish it after a SIGKILL. The next
leader finishes such rows ``failed`` as interrupted (:meth:`Remediator.close_interrupted`) once
they are older than :data:`INTERRUPTED_AFTER` — far longer than any plan takes, so a replica
that lost the Lease while still applying is not overtaken — and the record tells the reader to
look at the target and the audit log (a step may or may not have been applied).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k3sops.adapters.store import RemediationRecord
from k3sops.config.schema.fields import ENVIRONMENT_NAMES
from k3sops.domain.snapshot import plural_of
from k3sops.errors import GuardRefused, K3sopsError

if TYPE_CHECKING:
    from k3sops.adapters.store import FinalMode, HistoryStore, RemediationMode
    from k3sops.config.schema import Platform
    from k3sops.config.schema.serve import Remediation, RemediationPolicy
    from k3sops.domain.findings import Finding
    from k3sops.services.context import Settings
    from k3sops.services.remediate import RemediationReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """The object a trigger is about."""

    plural: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.plural}/{ns}{self.name}"


PLAN_RIGHTS: dict[str, list[dict[str, list[str]]]] = {
    "restart": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"],
         "verbs": ["get", "patch"]}],
    "clean-pods": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "get", "delete"]}],
    "cordon": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "get", "patch"]}],
}
"""The RBAC rules each plan needs, as the README lists them: the owners walked and objects
re-read (get), the plan's listing (list), the change (patch or delete). Only ``patch``/
``delete`` are writes: a dry run needs the reads alone. Beyond the watch cache's list/watch."""


Execute = Callable[[str, Target, bool], "RemediationReport"]
"""Build (and with True apply) the named plan for a target; raises K3sopsError (GuardRefused:
a guard refused it)."""


def cordon_refusal(nodes: Iterable[Mapping[str, Any]], node: str) -> str | None:
    """Why a policy may not cordon ``node`` (None: it may): not over half the nodes cordoned.

    A node already cordoned is no change (the plan has no step), so it is never refused.
    """
    names = {str((n.get("metadata") or {}).get("name")): bool(
        (n.get("spec") or {}).get("unschedulable")) for n in nodes}
    if names.get(node):
        return None
    after = sum(names.values()) + 1
    if 2 * after > len(names):
        return (f"cordon {node} would leave {after} of {len(names)} nodes cordoned; a policy "
                f"cordons at most half of them (cordon by hand: k3sops node cordon {node})")
    return None


def environment_of(platform: Platform | None, namespace: str | None) -> str | None:
    """The environment whose ``namespaces`` include ``namespace`` (None: none does)."""
    if platform is None or namespace is None:
        return None
    for name in ENVIRONMENT_NAMES:
        env = platform.environments.get(name)  # type: ignore[call-overload]
        if env is not None and namespace in env.namespaces:
            return str(name)
    return None


def _describe(report: RemediationReport) -> str:
    steps = "; ".join(f"{s.step.action} {s.step.target}: {s.result}"
                      + (f" ({s.error})" if s.error else "") for s in report.steps)
    notes = "; ".join(report.notes)
    return f"{report.title}: " + (steps or "no steps") + (f" [{notes}]" if notes else "")


class Remediator:
    """Applies ``serve.remediation``'s policies to alerts and findings.

    Args:
        cfg: ``serve.remediation``.
        platform: platform.yaml (its environments' namespaces).
        store: the history store (rate reservations and the records).
        is_leader: whether this replica leads.
        execute: builds/applies a plan (:func:`cluster_executor`).
        count: called with (policy, mode) for every record (``/metrics``).
        submit: runs a job; default inline (the service passes a worker thread's queue, so
            Alertmanager's webhook is not held while a plan runs).
        clock: now, timezone-aware.
    """

    def __init__(self, cfg: Remediation, platform: Platform | None, store: HistoryStore,
                 is_leader: Callable[[], bool], execute: Execute, *,
                 count: Callable[[str, str], None] | None = None,
                 submit: Callable[[Callable[[], Any]], Any] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.cfg = cfg
        self.platform = platform
        self.store = store
        self.is_leader = is_leader
        self.execute = execute
        self.count = count
        self.submit = submit or (lambda job: job())
        self.clock = clock
        self._lock = threading.Lock()

    def close_interrupted(self) -> list[RemediationRecord]:
        """On becoming leader: reservations a killed replica left, finished ``failed``."""
        closed = close_interrupted(self.store, self.clock())
        for rec in closed:
            log.warning("remediation %s: %s", rec.policy_id, rec.detail)
            if self.count is not None:
                self.count(rec.policy_id, "failed")
        return closed

    # -- triggers --------------------------------------------------------------------------

    def on_alert(self, record: Mapping[str, Any]) -> None:
        """The intake's hook: a firing alert was stored (its enriched record)."""
        name = str(record.get("alertname") or "")
        obj = record.get("object") or {}
        if not name or not obj.get("plural") or not obj.get("name"):
            return
        target = Target(str(obj["plural"]), obj.get("namespace"), str(obj["name"]))
        policies = [p for p in self.cfg.policies if p.when.alert == name]
        if policies:
            self.submit(lambda: self.handle(policies, f"alert:{name}", target))

    def on_findings(self, findings: Iterable[Finding]) -> None:
        """A scheduled run's findings: the new ones trigger the policies of their check."""
        jobs = []
        for f in findings:
            if not f.new:
                continue
            policies = [p for p in self.cfg.policies if p.when.check == f.check]
            plural = plural_of(f.resource.kind)
            if policies and plural is not None:
                jobs.append((policies, f"check:{f.check}",
                             Target(plural, f.resource.namespace, f.resource.name)))
        for policies, trigger, target in jobs:
            self.submit(functools.partial(self.handle, policies, trigger, target))

    # -- one trigger -----------------------------------------------------------------------

    def handle(self, policies: list[RemediationPolicy], trigger: str,
               target: Target) -> list[RemediationRecord]:
        """Act on ``target`` by each policy; the records stored (none on a follower)."""
        if not self.is_leader():
            return []
        namespace = target.namespace or (target.name if target.plural == "namespaces" else None)
        env = environment_of(self.platform, namespace)
        out = []
        # one trigger at a time: the dry-run rate below is a count then an insert
        with self._lock:
            for policy in policies:
                if env is None or env not in policy.environments:
                    # Recorded (not only logged): who looks at the records sees why a policy
                    # did not act. It takes no slot of the rate.
                    where = f"environment {env}" if env else "no environment"
                    out.append(self._record(
                        policy, trigger, target, "refused",
                        f"{target} is in {where}; the policy acts in "
                        f"{', '.join(policy.environments)} only"))
                    continue
                out += self._one(policy, trigger, target)
        return out

    def _record(self, policy: RemediationPolicy, trigger: str, target: Target,
                mode: RemediationMode, detail: str) -> RemediationRecord:
        rec = RemediationRecord(policy_id=policy.id, trigger=trigger, target=str(target),
                                plan=policy.plan, mode=mode, at=self.clock(), detail=detail)
        rec.id = self.store.record_remediation(rec)
        self._counted(policy, mode)
        return rec

    def _counted(self, policy: RemediationPolicy, mode: str) -> None:
        log.info("remediation %s: %s", policy.id, mode)
        if self.count is not None:
            self.count(policy.id, mode)

    def _one(self, policy: RemediationPolicy, trigger: str,
             target: Target) -> list[RemediationRecord]:
        return (self._apply if self.cfg.enabled else self._dry_run)(policy, trigger, target)

    def _dry_run(self, policy: RemediationPolicy, trigger: str,
                 target: Target) -> list[RemediationRecord]:
        # A dry run shows what would happen, refusals by the rate included; it never counts
        # against the applied remediations' rate.
        since = self.clock() - timedelta(hours=1)
        if self.store.remediation_count(policy.id, since, ("dry-run",)) >= policy.max_per_hour:
            return [self._record(policy, trigger, target, "refused",
                                 f"rate: {policy.max_per_hour} per hour used")]
        try:
            report = self.execute(policy.plan, target, False)
        except GuardRefused as e:
            return [self._record(policy, trigger, target, "refused", e.message)]
        except K3sopsError as e:
            return [self._record(policy, trigger, target, "failed", e.message)]
        return [self._record(policy, trigger, target, "dry-run", _describe(report))]

    def _apply(self, policy: RemediationPolicy, trigger: str,
               target: Target) -> list[RemediationRecord]:
        now = self.clock()
        rec = RemediationRecord(policy_id=policy.id, trigger=trigger, target=str(target),
                                plan=policy.plan, mode="reserved", at=now,
                                detail=f"plan {policy.plan} on {target}")
        rid = self.store.reserve_remediation(rec, policy.max_per_hour, now - timedelta(hours=1))
        if rid is None:
            return [self._record(policy, trigger, target, "refused",
                                 f"rate: {policy.max_per_hour} per hour used")]
        rec.id = rid
        mode: FinalMode = "failed"
        detail = "the remediation stopped on an unexpected error (see the service's log)"
        try:
            report = self.execute(policy.plan, target, True)
            mode = "failed" if report.failures else "applied"
            detail = _describe(report)
        except GuardRefused as e:
            mode, detail = "refused", e.message
        except K3sopsError as e:
            detail = e.message
        finally:
            # Also on an unexpected error: the row must not stay "reserved" (that means the
            # replica stopped mid-apply), and the attempt keeps its slot of the rate.
            self.store.finish_remediation(rid, mode, detail)
            rec.mode, rec.detail = mode, detail
            self._counted(policy, mode)
        (log.info if mode == "applied" else log.warning)("remediation %s %s: %s", policy.id,
                                                         mode, detail)
        return [rec]


INTERRUPTED_AFTER = timedelta(minutes=10)
"""A reservation older than this is no longer being applied by anyone (plans take seconds)."""


def close_interrupted(store: HistoryStore, now: datetime,
                      older_than: timedelta = INTERRUPTED_AFTER,
                      ) -> list[RemediationRecord]:
    """Finish ``failed`` the reservations a stopped replica left ``reserved``; the rows closed.

    Only rows reserved before ``now - older_than``; each is finished once whichever replica
    gets there first (:meth:`HistoryStore.finish_remediation` changes only a ``reserved`` row).
    """
    cutoff = now - older_than
    closed = []
    for rec in store.remediations(limit=1000):
        if rec.mode != "reserved" or rec.id is None or rec.at > cutoff:
            continue
        detail = (f"interrupted: the replica applying plan {rec.plan} on {rec.target} stopped "
                  f"before it finished (reserved {rec.at.isoformat(timespec='seconds')}); "
                  "look at the target and the audit log: a step may have been applied")
        if store.finish_remediation(rec.id, "failed", detail):
            closed.append(rec.model_copy(update={"mode": "failed", "detail": detail}))
    return closed


# -- the cluster -------------------------------------------------------------------------


def cluster_executor(settings: Settings, env: Mapping[str, str], home: Path,
                     state: Path | None = None) -> Execute:
    """Plans built and applied by :mod:`k3sops.services.remediate`, as `k3sops remediate`."""
    from k3sops.errors import UsageError
    from k3sops.services import remediate

    def execute(plan: str, target: Target, apply: bool) -> RemediationReport:
        runner = remediate.Runner(settings, env, home, apply=apply, state=state)
        try:
            if plan == "clean-pods":
                ns = target.name if target.plural == "namespaces" else target.namespace
                return remediate.clean_pods(runner, ns)
            if plan == "cordon":
                node = _node_of(runner, target)
                why = cordon_refusal(runner.actions.kube.list("v1", "nodes"), node)
                if why is not None:
                    raise GuardRefused(why, hint="nothing changed")
                return remediate.cordon(runner, node)
            if plan == "restart":
                ref = _workload_of(runner, target)
                return remediate.restart(runner, ref, target.namespace or "")
            raise UsageError(f"unknown plan {plan!r}", hint="restart, clean-pods or cordon")
        finally:
            runner.actions.close()  # run() closes it too; a refusal before run() does not

    return execute


def _node_of(runner: Any, target: Target) -> str:
    from k3sops.errors import PlanRejected

    if target.plural == "nodes":
        return target.name
    if target.plural == "pods":
        pod = runner.actions.kube.get("v1", "pods", target.name, target.namespace)
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            return str(node)
    raise PlanRejected(f"plan cordon needs a node; {target} has none", hint="nothing changed")


def _workload_of(runner: Any, target: Target) -> str:
    """``deployment/NAME`` or ``statefulset/NAME`` of the target (a pod: through its owners)."""
    from k3sops.errors import PlanRejected

    if target.plural in ("deployments", "statefulsets"):
        return f"{target.plural[:-1]}/{target.name}"
    if target.plural == "pods":
        kube = runner.actions.kube
        pod = kube.get("v1", "pods", target.name, target.namespace)
        for owner in (pod.get("metadata") or {}).get("ownerReferences") or []:
            if owner.get("kind") == "StatefulSet":
                return f"statefulset/{owner['name']}"
            if owner.get("kind") == "ReplicaSet":
                rs = kube.get("apps/v1", "replicasets", owner["name"], target.namespace)
                for up in (rs.get("metadata") or {}).get("ownerReferences") or []:
                    if up.get("kind") == "Deployment":
                        return f"deployment/{up['name']}"
    raise PlanRejected(f"plan restart needs a Deployment or StatefulSet; {target} has none",
                       hint="nothing changed")
