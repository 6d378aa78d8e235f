"""`k3sops upgrade apply`: the rolling upgrade, one batch at a time, stopping at trouble.

Flow: ``upgrade plan``'s gathering and preflight (any refusal raises UpgradeRefused, exit 3,
before anything changes); then, unless ``yes``, only the planned steps. With ``yes``, for each
batch of the order (:func:`k3sops.domain.upgrade_apply.work`): cordon + mark, drain (the
remediation drain: Eviction API, PodDisruptionBudgets respected, ``drain_timeout``), the
packaged ``upgrade`` playbook limited to those hosts (``k3s_version`` = target,
``kube_steps=false``: the Kubernetes side is done here through the API), wait for the target
``kubeletVersion`` and Ready, uncordon + unmark, then the node and pod checks on the node.

After every step the progress file (``upgrade-<target>.json`` in the state directory) is
rewritten atomically and an audit record appended. The first failure stops the run: the report
names the node, the step, the reason, whether the node is left cordoned, the resume command and
the commands that put the node back in service.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from k3sops.adapters.audit import current_user, state_dir
from k3sops.domain import checks as registry
from k3sops.domain import upgrade as up
from k3sops.domain import upgrade_apply as ua
from k3sops.domain.checks.nodes import UPGRADE_ANNOTATION
from k3sops.domain.snapshot import ClusterSnapshot
from k3sops.errors import (
    AdapterError,
    K3sopsError,
    PlanRejected,
    Timeout,
    UpgradeRefused,
    UpgradeStopped,
    UsageError,
)
from k3sops.services import context, remediate
from k3sops.services import upgrade as plan_service
from k3sops.services.provision import Provisioner

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def refusal(plan: up.UpgradePlan) -> UpgradeRefused | None:
    """The error for a plan a preflight rule refused (None: the plan may run)."""
    refused = plan.refused
    if not refused:
        return None
    first = refused[0]
    more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
    return UpgradeRefused(
        f"upgrade to {plan.target} refused by preflight {first.rule}: {first.reason}{more}",
        hint=f"run: {first.command}" if first.command else None)


def progress_path(state: Path, target: str) -> Path:
    """Where the progress of the upgrade to ``target`` is recorded."""
    return state / f"upgrade-{target}.json"


def load_progress(path: Path) -> ua.Progress | None:
    """The recorded progress, or None when there is none.

    Raises:
        UsageError: the file is not a progress record (names it).
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise AdapterError(f"cannot read {path}: {e.strerror}") from e
    try:
        return ua.Progress.model_validate_json(text)
    except ValueError as e:
        raise UsageError(f"{path} is not an upgrade progress record",
                         hint="move it away (the cluster's own state is checked again)") from e


def save_progress(path: Path, progress: ua.Progress) -> None:
    """Write the record atomically (temp file, fsync, rename): a crash leaves old or new."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(progress.model_dump_json(indent=2))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise AdapterError(f"cannot write {path}: {e.strerror}",
                           hint="pass --state-dir DIR pointing at a writable directory") from e


class Upgrader:
    """One run of ``upgrade apply`` with ``--yes``."""

    def __init__(self, settings: context.Settings, env: Mapping[str, str], home: Path, *,
                 plan: up.UpgradePlan, progress: ua.Progress, path: Path,
                 state: Path | None, drain_timeout: float, ready_timeout: float,
                 report: ua.ApplyReport, say: Progress) -> None:
        self.settings, self.env, self.home = settings, env, home
        self.plan = plan
        self.target = plan.target
        self.progress = progress
        self.path = path
        self.state = state
        self.drain_timeout = drain_timeout
        self.ready_timeout = ready_timeout
        self.report = report
        self.say = say
        self.prov = Provisioner(settings, env, home, apply=True, state=state, progress=say,
                                drain_timeout=drain_timeout)
        self.versions = {s.name: s.version for s in plan.nodes}

    def close(self) -> None:
        """Release the API connection."""
        self.prov.close()

    # -- steps ----------------------------------------------------------------------------

    def _node(self, name: str) -> dict[str, Any] | None:
        return self.prov.api.kube.find("v1", "nodes", name)

    def cordon(self, nodes: list[str]) -> bool:
        """Cordon the nodes and mark them with the target; True when something changed."""
        changed = False
        for n in nodes:
            node = self._node(n)
            if node is None:
                raise AdapterError(f"node {n} no longer exists",
                                   hint="`kubectl get nodes`; remove it from the inventory")
            if not (node.get("spec") or {}).get("unschedulable"):
                self.prov.api.set_unschedulable(n, True)
                changed = True
            changed = self.prov.api.annotate(n, UPGRADE_ANNOTATION, self.target) or changed
        return changed

    def drain(self, nodes: list[str]) -> bool:
        """Evict every pod (PDBs respected); a pod left names its budgets and stops the run."""
        changed = False
        for n in nodes:
            runner = remediate.Runner(self.settings, self.env, self.home, apply=True,
                                      state=self.state, timeout=self.drain_timeout)
            drained = remediate.drain(runner, n)
            failed = drained.failures
            if failed:
                raise AdapterError(self._drain_blocked(n, failed),
                                   hint="let the budget allow the eviction (more replicas, or "
                                        "relax it), then resume")
            changed = changed or any(s.result == "ok" for s in drained.steps)
        return changed

    def _drain_blocked(self, node: str, failed: list[Any]) -> str:
        """The drain failure, naming the PodDisruptionBudgets of the pods left."""
        kube = self.prov.api.kube
        pods = []
        for s in failed:
            pod = kube.find("v1", "pods", s.step.name, s.step.namespace) or {}
            pods.append((s.step.namespace or "", (pod.get("metadata") or {}).get("labels")
                         or {}))
        try:
            budgets = ua.blocking_budgets(pods, kube.list("policy/v1", "poddisruptionbudgets"))
        except AdapterError as e:
            budgets = [f"(budgets not read: {e.message})"]
        left = "; ".join(f"{s.step.target}: {s.error}" for s in failed)
        by = (f" by poddisruptionbudget {', '.join(budgets)}" if budgets else "")
        return (f"drain of {node} blocked{by}: {len(failed)} pod(s) not evicted ({left}); "
                "the node's host was not touched")

    def upgrade(self, nodes: list[str]) -> bool:
        """The upgrade playbook on these hosts only; skipped when they report the target."""
        if all(ua.node_at(self._node(n), self.target)[0] for n in nodes):
            return False  # an earlier run upgraded them: nothing twice
        self.prov._playbook("upgrade", limit=",".join(nodes),
                            extravars={"k3s_version": self.target, "kube_steps": False})
        return True

    def wait(self, nodes: list[str]) -> bool:
        """Poll until every node reports the target kubeletVersion and Ready, or time out."""
        deadline = time.monotonic() + self.ready_timeout
        while True:
            seen = {n: self._node(n) for n in nodes}
            state = {n: ua.node_at(node, self.target) for n, node in seen.items()}
            if all(v and r for v, r in state.values()):
                return True
            if time.monotonic() >= deadline:
                late = [f"{n} (reports {self._version(seen[n])}, "
                        f"{'Ready' if r else 'not Ready'})"
                        for n, (v, r) in state.items() if not (v and r)]
                raise Timeout(f"after {self.ready_timeout:g}s not at {self.target} and Ready: "
                              f"{', '.join(late)}",
                              hint="on the host: journalctl -u k3s (k3s-agent on agents); "
                                   "`k3sops diagnose node NAME`")
            time.sleep(2.0)

    @staticmethod
    def _version(node: Mapping[str, Any] | None) -> str:
        if node is None:
            return "no Node"
        return str(((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion"))

    def uncordon(self, nodes: list[str]) -> bool:
        """Uncordon the nodes and remove the mark."""
        changed = False
        for n in nodes:
            node = self._node(n) or {}
            if (node.get("spec") or {}).get("unschedulable"):
                self.prov.api.set_unschedulable(n, False)
                changed = True
            if UPGRADE_ANNOTATION in ((node.get("metadata") or {}).get("annotations") or {}):
                self.prov.api.kube.patch("v1", "nodes", n, None,
                                         {"metadata": {"annotations": {UPGRADE_ANNOTATION: None}}})
                changed = True
        return changed

    def checks(self, nodes: list[str]) -> bool:
        """The node and pod checks on these nodes; a critical finding stops the run."""
        api = self.prov.api
        objects: dict[str, list[Any]] = {"nodes": api.nodes(),
                                         "pods": [p for n in nodes for p in api.pods(node=n)]}
        snap = ClusterSnapshot(now=dt.datetime.now(dt.UTC), objects=objects)
        ctx = registry.CheckContext(snapshot=snap, platform=self.settings.platform,
                                    period="daily")
        found = []
        for spec in registry.selected("daily"):
            if spec.id in (*ua.NODE_CHECKS, *ua.POD_CHECKS):
                found.extend(spec.fn(ctx))
        critical = [f for n in nodes for f in ua.node_findings(found, n, objects["pods"])
                    if f.severity == "critical"]
        for f in (f for n in nodes for f in ua.node_findings(found, n, objects["pods"])):
            if f.severity != "critical":
                self.say(f"  {f.severity}: {f.message}")
        if critical:
            raise PlanRejected(f"critical finding after the upgrade: {critical[0].check}: "
                               f"{critical[0].message}",
                               hint=f"k3sops runbook show {critical[0].runbook}")
        return False

    # -- the run --------------------------------------------------------------------------

    def _save(self) -> None:
        save_progress(self.path, self.progress)

    def _audit(self, step: str, nodes: list[str], result: str, error: str | None) -> None:
        self.prov.audit.append({
            "who": current_user(), "inventory": str(self.prov.inventory.path),
            "what": {"action": f"upgrade-{step}", "target": ",".join(nodes),
                     "detail": f"k3s upgrade to {self.target}"},
            "result": result, "error": error})

    def run(self, batches: list[ua.Batch]) -> None:
        """Run every batch; on the first failure record the stop and raise UpgradeStopped."""
        do: dict[ua.StepName, Callable[[list[str]], bool]] = {
            "cordon": self.cordon, "drain": self.drain, "upgrade": self.upgrade,
            "wait": self.wait, "uncordon": self.uncordon, "checks": self.checks}
        for b in batches:
            for n in b.nodes:
                rec = self.progress.nodes.setdefault(n, ua.NodeProgress(
                    role=b.role, from_version=self.versions.get(n, "unknown")))
                rec.status, rec.error = "running", None
            self.say(f"step {b.step}/{len(batches)}: {b.role} {', '.join(b.nodes)}")
            for step in ua.steps_from(b.start):
                what = ua.describe(step, b.nodes, self.target, annotation=UPGRADE_ANNOTATION,
                                   drain_timeout=self.drain_timeout,
                                   ready_timeout=self.ready_timeout)
                self.say(f"  {', '.join(b.nodes)}: {step}: {what}")
                try:
                    changed = do[step](b.nodes)
                except K3sopsError as e:
                    self._fail(b, step, what, e)
                result: ua.Result = "ok" if changed or step in ("wait", "checks") else "skipped"
                for n in b.nodes:
                    self.report.steps.append(ua.StepLine(batch=b.step, node=n, step=step,
                                                         what=what, result=result))
                    self.progress.nodes[n].done.append(step)
                self._audit(step, b.nodes, result, None)
                self._save()
            for n in b.nodes:
                self.progress.nodes[n].status = "done"
            self._save()
        self.progress.status, self.progress.stopped = "done", None
        self._save()

    def _fail(self, b: ua.Batch, step: ua.StepName, what: str, e: K3sopsError) -> None:
        reason = e.message + (f" ({e.hint})" if e.hint else "")
        for n in b.nodes:
            self.report.steps.append(ua.StepLine(batch=b.step, node=n, step=step, what=what,
                                                 result="failed", error=e.message))
            self.progress.nodes[n].status = "failed"
            self.progress.nodes[n].error = f"{step}: {e.message}"
        self._audit(step, b.nodes, "failed", e.message)
        node = b.nodes[0]
        try:
            cordoned = bool((self._node(node) or {}).get("spec", {}).get("unschedulable"))
        except K3sopsError:
            cordoned = step not in ("cordon",)
        stop = ua.stop(node if len(b.nodes) == 1 else ",".join(b.nodes), step, reason,
                       target=self.target, cordoned=cordoned,
                       from_version=self.progress.nodes[node].from_version,
                       inventory=str(self.prov.inventory.path), annotation=UPGRADE_ANNOTATION,
                       max_unavailable=self.plan.max_unavailable)
        self.progress.status, self.progress.stopped = "stopped", stop
        self.report.stopped = stop
        self._save()
        raise UpgradeStopped(
            f"upgrade to {self.target} stopped at node {stop.node}, step {step}: {e.message}",
            self.report, hint=f"resume: {stop.resume}") from e


def apply(settings: context.Settings, env: Mapping[str, str], home: Path, *, to: str,
          max_unavailable: int = 1, yes: bool = False, resume: bool = False,
          drain_timeout: float = 120.0, ready_timeout: float = 300.0,
          backup_max_age: float = up.DEFAULT_BACKUP_MAX_AGE, state: Path | None = None,
          progress: Progress | None = None) -> ua.ApplyReport:
    """Plan, preflight, then (with ``yes``) run the upgrade (see the module docstring).

    The report is returned on success and dry-run; a stopped run raises UpgradeStopped
    carrying the report (its ``stopped`` says where and what to do); so does the progress file.

    Raises:
        UpgradeRefused: a preflight rule refused the plan (nothing changed).
        UsageError: an earlier run stopped and ``resume`` was not given, or bad options.
        UpgradeStopped: a step failed (the message names node, step and the resume command).
    """
    say = progress or (lambda m: log.info("%s", m))
    if drain_timeout <= 0 or ready_timeout <= 0:
        raise UsageError("--drain-timeout and --ready-timeout must be positive",
                         hint="e.g. --drain-timeout 120s --ready-timeout 5m")
    plan = plan_service.plan(settings, env, home, to=to, max_unavailable=max_unavailable,
                             backup_max_age=backup_max_age, state=state)
    refused = refusal(plan)
    if refused is not None:
        raise refused
    sdir = state_dir(state, env, home)
    path = progress_path(sdir, plan.target)
    recorded = load_progress(path)
    marked = [s for s in plan.nodes if s.in_progress is not None]
    other = [s for s in marked if s.in_progress != plan.target]
    if other:
        s = other[0]
        raise UsageError(f"node {s.name} is marked for an upgrade to {s.in_progress}, not "
                         f"{plan.target}: finish that one first",
                         hint=f"k3sops upgrade apply --to {s.in_progress} --resume --yes")
    if not resume and ((recorded is not None and recorded.status == "stopped") or marked):
        where = (f"node {recorded.stopped.node}, step {recorded.stopped.step}"
                 if recorded is not None and recorded.stopped is not None
                 else f"node {marked[0].name}")
        raise UsageError(f"an upgrade to {plan.target} stopped at {where}: continue it "
                         "with --resume (nothing is done twice)",
                         hint=f"k3sops upgrade apply --to {plan.target} --resume --yes")
    batches = ua.work(plan, recorded if resume else None)
    report = ua.ApplyReport(
        target=plan.target, applied=yes, plan=plan,
        skipped=[s.name for s in plan.nodes if not s.upgrade and s.in_progress is None],
        state_file=str(path),
        steps=ua.planned(batches, plan.target, annotation=UPGRADE_ANNOTATION,
                         drain_timeout=drain_timeout, ready_timeout=ready_timeout))
    if not yes or not batches:
        return report
    report.steps = []
    current = recorded if (resume and recorded is not None) else ua.Progress(target=plan.target)
    current.status, current.stopped = "running", None
    upgrader = Upgrader(settings, env, home, plan=plan, progress=current, path=path,
                        state=state, drain_timeout=drain_timeout, ready_timeout=ready_timeout,
                        report=report, say=say)
    report.audit_log = str(upgrader.prov.audit.path)
    try:
        upgrader.run(batches)
    finally:
        upgrader.close()
    return report

