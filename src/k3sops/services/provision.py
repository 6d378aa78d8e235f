"""`scale nodes add|remove` and `provision`: the inventory, the playbooks and the API together.

Flow of ``add`` (dry-run unless ``apply``): read the inventory and the cluster's Nodes, validate
(:mod:`k3sops.domain.provision`: unknown host, duplicate name, odd server count), print the
plan. With ``apply``: SSH-check the new hosts through Ansible (a copy of the inventory with them
added, beside the real one so group_vars apply), only then edit the inventory (round-trip,
comments kept), run ``scale-cluster`` with ``new_nodes``, wait until the new Nodes are Ready
through the API, and run the node checks on them. ``remove``: validate (etcd quorum), SSH-check
the host, drain (the remediation drain: Eviction API, PDBs respected), for a server annotate
``etcd.k3s.cattle.io/remove=true`` (K3s removes the etcd member) before deleting the Node,
uninstall k3s with ``remove-node`` (``kube_steps=false``: the Kubernetes side was done through
the API), remove the host from the inventory. ``provision`` runs ``site`` over the inventory.
Every applied step is written to the audit log. The K3s token comes from ``ansible.token_env``
or ``ansible.token_file`` and reaches Ansible only through a 0600 vars file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from k3sops.adapters import ansible
from k3sops.adapters.audit import AuditLog, current_user, state_dir
from k3sops.adapters.inventory import InventoryFile, resolve_host
from k3sops.adapters.kube import KubeActions
from k3sops.config import Ansible
from k3sops.domain import checks as registry
from k3sops.domain import provision as prov
from k3sops.domain.findings import Finding
from k3sops.domain.provision import ProvisionPlan, ProvisionStep, Role
from k3sops.domain.snapshot import ClusterSnapshot, Obj
from k3sops.errors import AdapterError, ConfigError, K3sopsError, PlanRejected, Timeout
from k3sops.services import context, remediate

log = logging.getLogger(__name__)

NODE_CHECKS = ("node-not-ready", "node-pressure", "node-cordoned")
"""The checks run on nodes after they join (`k3sops check`'s node checks)."""

StepOutcome = Literal["planned", "ok", "skipped", "failed", "not-run"]


class StepResult(BaseModel):
    """A planned step and what became of it."""

    step: ProvisionStep
    result: StepOutcome
    error: str | None = None


class ProvisionReport(BaseModel):
    """The plan, and for an applied run what each step did (stable ``-o json`` schema)."""

    title: str
    applied: bool
    inventory: str
    steps: list[StepResult] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    nodes: list[str] = Field(default_factory=list, description="nodes added or removed")
    ready: dict[str, bool] = Field(default_factory=dict)
    changed: int | None = Field(default=None, description="tasks Ansible changed")
    findings: list[Finding] = Field(default_factory=list)
    audit_log: str | None = None

    @property
    def failures(self) -> list[StepResult]:
        """Steps that failed."""
        return [s for s in self.steps if s.result == "failed"]


Progress = Callable[[str], None]


def _token(cfg: Ansible, env: Mapping[str, str]) -> SecretStr:
    if cfg.token_env:
        value = env.get(cfg.token_env)
        if not value:
            raise ConfigError(f"ansible.token_env names {cfg.token_env}, which is not set",
                              hint=f"export {cfg.token_env}=... (the K3s cluster token)")
        return SecretStr(value)
    if cfg.token_file:
        try:
            value = cfg.token_file.read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read ansible.token_file {cfg.token_file}: {e.strerror}",
                              hint="create it (mode 0600) with the K3s cluster token") from e
        if not value:
            raise ConfigError(f"ansible.token_file {cfg.token_file} is empty")
        return SecretStr(value)
    raise ConfigError("platform.yaml has no ansible.token_env or ansible.token_file",
                      hint="the playbooks need the K3s cluster token to install or join nodes")


class Provisioner:
    """Where provisioning runs: inventory, Ansible settings, cluster, audit log, apply or not."""

    def __init__(self, settings: context.Settings, env: Mapping[str, str], home: Path, *,
                 apply: bool, state: Path | None = None, progress: Progress | None = None,
                 drain_timeout: float = 120.0) -> None:
        if settings.platform is None or settings.platform.ansible is None:
            raise ConfigError("platform.yaml has no ansible section",
                              hint="add ansible: {inventory: inventory/production/hosts.yaml}")
        self.settings = settings
        self.cfg = settings.platform.ansible
        self.env = env
        self.home = home
        self.apply = apply
        self.state = state
        self.progress = progress or (lambda m: log.info("%s", m))
        self.drain_timeout = drain_timeout
        self.audit = AuditLog(state_dir(state, env, home) / "audit.jsonl")
        self.inventory = InventoryFile(self.cfg.inventory)
        self._api: KubeActions | None = None

    @property
    def api(self) -> KubeActions:
        """The cluster's Node API (opened on first use)."""
        if self._api is None:
            self._api = KubeActions(context.kube(self.settings, self.env, self.home))
        return self._api

    def close(self) -> None:
        """Release the API connection."""
        if self._api is not None:
            self._api.close()

    # -- helpers ---------------------------------------------------------------------------

    def _record(self, step: ProvisionStep, result: str, error: str | None) -> None:
        self.audit.append({"who": current_user(), "inventory": str(self.inventory.path),
                           "what": {"action": step.action, "target": step.target,
                                    "detail": step.detail},
                           "result": result, "error": error})

    def _on_event(self, event: ansible.AnsibleEvent) -> None:
        if event.kind == "play":
            self.progress(f"play: {event.play}")
        elif event.kind in ("changed", "failed", "unreachable"):
            extra = " (ignored)" if event.ignored else ""
            self.progress(f"  {event.host}: {event.kind}{extra}  {event.task}")

    def _playbook(self, name: str, *, extravars: Mapping[str, object] | None = None,
                  limit: str | None = None, token: bool = True,
                  inventory: Path | None = None) -> ansible.RunResult:
        secrets = {"token": _token(self.cfg, self.env)} if token else None
        return ansible.run_playbook(
            name, inventory or self.inventory.path, extravars=extravars, secrets=secrets,
            limit=limit, private_key_file=self.cfg.private_key_file, user=self.cfg.user,
            on_event=self._on_event, timeout=self.cfg.timeout_seconds)

    def _reachable(self, hosts: list[str], inventory: Path) -> None:
        """Raise HostUnreachable (naming the hosts) unless Ansible can log in to all."""
        ansible.run_command(inventory, ",".join(hosts), "", module="ping",
                            private_key_file=self.cfg.private_key_file, user=self.cfg.user,
                            timeout=120)

    @contextlib.contextmanager
    def _candidate(self, inv: InventoryFile) -> Iterator[Path]:
        """A copy of the edited inventory beside the real one (group_vars still apply)."""
        path = self.inventory.path.with_name(f".{self.inventory.path.name}.k3sops-check.yaml")
        inv.save(path)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                path.unlink()

    def _run_steps(self, report: ProvisionReport, plan: ProvisionPlan,
                   do: Callable[[ProvisionStep], bool]) -> None:
        """Apply steps in order; stop at the first failure (the rest: not-run)."""
        stopped: K3sopsError | None = None
        for step in plan.steps:
            if stopped is not None:
                report.steps.append(StepResult(step=step, result="not-run"))
                continue
            self.progress(f"{step.action} {step.target}")
            try:
                outcome: StepOutcome = "ok" if do(step) else "skipped"
                report.steps.append(StepResult(step=step, result=outcome))
                self._record(step, outcome, None)
            except K3sopsError as e:
                report.steps.append(StepResult(step=step, result="failed", error=e.message))
                self._record(step, "failed", e.message)
                stopped = e
        if stopped is not None:
            raise stopped

    def _node_findings(self, names: list[str]) -> list[Finding]:
        nodes: list[Obj] = [n for n in self.api.nodes()
                            if (n.get("metadata") or {}).get("name") in names]
        snap = ClusterSnapshot(now=dt.datetime.now(dt.UTC), objects={"nodes": nodes})
        ctx = registry.CheckContext(snapshot=snap, platform=self.settings.platform,
                                    period="daily")
        out: list[Finding] = []
        for spec in registry.selected("daily"):
            if spec.id in NODE_CHECKS:
                out.extend(spec.fn(ctx))
        return out

    def _wait_ready(self, report: ProvisionReport, names: list[str]) -> bool:
        state = self.api.wait_ready(names, self.cfg.node_ready_timeout_seconds)
        report.ready.update(state)
        late = [n for n, ok in state.items() if not ok]
        if late:
            raise Timeout(f"node(s) {', '.join(late)} not Ready after "
                          f"{self.cfg.node_ready_timeout_seconds:g}s",
                          hint="`k3sops diagnose node NAME`; on the host: journalctl -u k3s")
        return True

    # -- add -------------------------------------------------------------------------------

    def add(self, names: list[str], role: Role, addresses: Mapping[str, str]) -> ProvisionReport:
        """Plan (and with ``apply`` run) adding nodes to the cluster."""
        where = str(self.inventory.path)
        inv = prov.parse_inventory(self.inventory.data(), where)
        cluster = {str((n.get("metadata") or {}).get("name")) for n in self.api.nodes()}
        resolved = {n: resolve_host(n) for n in names
                    if n not in addresses and inv.other(n) is None}
        new = prov.validate_add(inv, names, role, addresses, cluster, resolved)
        plan = prov.plan_add(new, where, self.cfg.node_ready_timeout_seconds)
        report = ProvisionReport(title=plan.title, applied=self.apply, inventory=where,
                                 notes=plan.notes, nodes=[n.name for n in new],
                                 audit_log=str(self.audit.path) if self.apply else None)
        if not self.apply:
            report.steps = [StepResult(step=s, result="planned") for s in plan.steps]
            return report
        _token(self.cfg, self.env)  # a missing token fails before anything changes
        for n in new:
            if not n.pending:
                self.inventory.add_host(n.role, n.name, n.address)
        new_names = [n.name for n in new]
        last_edit = next((s.target for s in reversed(plan.steps)
                          if s.action == "inventory-add"), None)

        def do(step: ProvisionStep) -> bool:
            if step.action == "check-reachable":
                with self._candidate(self.inventory) as candidate:
                    self._reachable(new_names, candidate)
                return True
            if step.action == "inventory-add":
                if step.target == last_edit:
                    self.inventory.save()  # one write for all of them, after the check
                return True
            if step.action == "playbook":
                result = self._playbook("scale-cluster", extravars={"new_nodes": new_names})
                report.changed = result.changed
                return True
            if step.action == "wait-ready":
                return self._wait_ready(report, [step.target.split("/", 1)[1]])
            report.findings = self._node_findings(new_names)
            return True

        try:
            self._run_steps(report, plan, do)
        finally:
            self.close()
        return report

    # -- remove ----------------------------------------------------------------------------

    def remove(self, name: str, *, skip_host: bool = False) -> ProvisionReport:
        """Plan (and with ``apply`` run) removing a node, keeping etcd quorum."""
        where = str(self.inventory.path)
        inv = prov.parse_inventory(self.inventory.data(), where)
        nodes = self.api.nodes()
        by_name = {str((n.get("metadata") or {}).get("name")): n for n in nodes}
        servers = {k: prov.server_ready(v) for k, v in by_name.items()
                   if "node-role.kubernetes.io/control-plane"
                   in ((v.get("metadata") or {}).get("labels") or {})}
        node = by_name.get(name)
        role = prov.validate_remove(inv, name, node, servers)
        members = set(servers) | {h.name for h in inv.servers}
        plan = prov.plan_remove(name, role, inv.member(name) is not None, node is not None,
                                not skip_host, len(members - {name}))
        report = ProvisionReport(title=plan.title, applied=self.apply, inventory=where,
                                 notes=plan.notes, nodes=[name],
                                 audit_log=str(self.audit.path) if self.apply else None)
        if not self.apply:
            report.steps = [StepResult(step=s, result="planned") for s in plan.steps]
            return report

        def do(step: ProvisionStep) -> bool:
            if step.action == "check-reachable":
                self._reachable([name], self.inventory.path)
                return True
            if step.action == "drain":
                return self._drain(name)
            if step.action == "etcd-remove":
                return self.api.annotate(name, prov.ETCD_REMOVE_ANNOTATION, "true")
            if step.action == "delete-node":
                return self.api.delete_node(name)
            if step.action == "playbook":
                result = self._playbook("remove-node", token=False,
                                        extravars={"remove_nodes": [name],
                                                   "kube_steps": False})
                report.changed = result.changed
                return True
            removed = self.inventory.remove_host(name)
            if removed:
                self.inventory.save()
            return removed

        try:
            self._run_steps(report, plan, do)
        finally:
            self.close()
        return report

    def _drain(self, name: str) -> bool:
        runner = remediate.Runner(self.settings, self.env, self.home, apply=True,
                                  state=self.state, timeout=self.drain_timeout)
        drained = remediate.drain(runner, name)
        failed = drained.failures
        if failed:
            raise AdapterError(f"drain of {name} left {len(failed)} pod(s): "
                               + "; ".join(f"{s.step.target}: {s.error}" for s in failed),
                               hint="fix what blocks the eviction (PDB), then run the same "
                                    "command again")
        return any(s.result == "ok" for s in drained.steps)

    # -- provision -------------------------------------------------------------------------

    def provision(self) -> ProvisionReport:
        """Plan (and with ``apply`` run) ``site`` over the whole inventory."""
        where = str(self.inventory.path)
        inv = prov.parse_inventory(self.inventory.data(), where)
        problem = prov.odd_servers_problem(len(inv.servers))
        if problem:
            raise PlanRejected(f"{where}: {problem}",
                                    hint="list 1, 3 or 5 servers under k3s_cluster.server")
        names = [h.name for h in inv.members]
        steps = [ProvisionStep(action="check-reachable", target=", ".join(names),
                               detail="SSH to every host through Ansible (ping module)")]
        order = ([f"{inv.servers[0].name} (cluster-init)"]
                 + [f"{h.name} (join, one at a time)" for h in inv.servers[1:]]
                 + [f"{h.name} (agent)" for h in inv.agents])
        steps.append(ProvisionStep(action="playbook", target="site",
                                   detail="install K3s: " + ", ".join(order)))
        steps += [ProvisionStep(action="wait-ready", target=f"nodes/{n}",
                                detail="until Ready through the API") for n in names]
        steps.append(ProvisionStep(action="check-nodes", target=", ".join(names),
                                   detail="node checks: Ready, pressure, cordoned"))
        plan = ProvisionPlan(title="provision", steps=steps)
        report = ProvisionReport(title=plan.title, applied=self.apply, inventory=where,
                                 nodes=names,
                                 audit_log=str(self.audit.path) if self.apply else None)
        if not self.apply:
            report.steps = [StepResult(step=s, result="planned") for s in plan.steps]
            return report
        _token(self.cfg, self.env)

        def do(step: ProvisionStep) -> bool:
            if step.action == "check-reachable":
                self._reachable(names, self.inventory.path)
                return True
            if step.action == "playbook":
                result = self._playbook("site")
                report.changed = result.changed
                return result.changed > 0
            if step.action == "wait-ready":
                return self._wait_ready(report, [step.target.split("/", 1)[1]])
            report.findings = self._node_findings(names)
            return True

        try:
            self._run_steps(report, plan, do)
        finally:
            self.close()
        return report
