"""Rolling K3s upgrades, pure: versions, the order of the nodes, and the preflight rules.

``k3sops upgrade plan --to VERSION`` is this module applied to what the service gathered:
every Node (its ``kubeletVersion``, which K3s reports as its own version, ``v1.34.4+k3s1``),
the pods and PodDisruptionBudgets, and the etcd backups of the repository. Nothing here does
I/O or reads a clock: ``now`` is passed in.

The order: servers first, one at a time (each takes an etcd member and an API server down);
then agents, ``max_unavailable`` at a time. Nodes already at the target are left out.

Preflight rules (each ``pass``, ``warn`` or ``fail`` with the reason and the command that
fixes it; any ``fail`` refuses the plan):

- ``version-format``: every node's version reads as ``vX.Y.Z+k3sN``;
- ``no-downgrade``: the target is not older than any node (K3s has no downgrade path but an
  etcd restore);
- ``minor-skew``: no minor version skipped between a node's version and the target (Kubernetes
  supports upgrades one minor at a time);
- ``agents-not-newer``: at no step of the order is an agent newer than a server (a kubelet must
  not be newer than the API server);
- ``nodes-ready``: every node Ready;
- ``etcd-quorum``: with embedded etcd (K3s' ``EtcdIsVoter`` condition on the servers), the
  healthy voting members minus the one being upgraded still make a quorum; without (kine or an
  external datastore) a single server means the API is down while it upgrades (a warning);
- ``etcd-health``: etcd's own view, judged by the check's ``etcd-health`` rule on the members
  Prometheus scrapes (the same rule, not a second implementation): a member without a leader
  refuses; a slow disk or a nearly full database warns; a view that could not be read (no
  Prometheus, no member scraped) warns and says so;
- ``etcd-backup``: a Completed etcd backup, verified, newer than ``backup_max_age``;
- ``pdb-drain``: no PodDisruptionBudget lets fewer of its pods go than one step would evict
  (``disruptionsAllowed``), naming the budget and the node;
- ``headroom``: the pods one step evicts fit, by requests, in the free allocatable of the
  schedulable nodes that stay (as ``capacity`` counts it; taints and affinity not considered).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.config.schema import Platform
from k3sops.domain import capacity
from k3sops.domain.checks.capacity import pod_request
from k3sops.domain.checks.nodes import UPGRADE_ANNOTATION
from k3sops.domain.findings import Finding
from k3sops.domain.index import selector_matches
from k3sops.domain.metrics import InstantResult
from k3sops.domain.remediate import MIRROR_ANNOTATION
from k3sops.domain.sizing import format_cpu, show_memory
from k3sops.domain.snapshot import ClusterSnapshot, conditions, get, meta

SERVER_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
VOTER_CONDITION = "EtcdIsVoter"
ETCD_NODE_ANNOTATION = "etcd.k3s.cattle.io/node-name"
DEFAULT_BACKUP_MAX_AGE = 24 * 3600.0

_VERSION = re.compile(r"^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\+k3s([1-9][0-9]*)$")

Role = Literal["server", "agent"]
Status = Literal["pass", "warn", "fail"]


class K3sVersion(BaseModel, frozen=True):
    """A K3s release, ``vMAJOR.MINOR.PATCH+k3sN``, ordered as releases are."""

    major: int
    minor: int
    patch: int
    k3s: int

    @property
    def key(self) -> tuple[int, int, int, int]:
        """The tuple releases sort by."""
        return (self.major, self.minor, self.patch, self.k3s)

    @property
    def minor_line(self) -> str:
        """``v1.34``."""
        return f"v{self.major}.{self.minor}"

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}+k3s{self.k3s}"


def parse_version(text: str) -> K3sVersion | None:
    """A K3s version (``v1.34.4+k3s1``), or None when ``text`` is not one."""
    m = _VERSION.match(text.strip())
    if m is None:
        return None
    return K3sVersion(major=int(m[1]), minor=int(m[2]), patch=int(m[3]), k3s=int(m[4]))


class NodeState(BaseModel):
    """One node as the plan sees it."""

    name: str
    role: Role
    version: str = Field(description="status.nodeInfo.kubeletVersion as reported")
    ready: bool
    schedulable: bool
    upgrade: bool = Field(description="False: already at the target (or unreadable version)")
    in_progress: str | None = Field(
        None, description=f"the target of an upgrade that stopped on this node "
                          f"({UPGRADE_ANNOTATION} annotation), when set")


class Batch(BaseModel):
    """One step of the rolling upgrade: the nodes drained and upgraded together."""

    step: int
    role: Role
    nodes: list[str]


class Preflight(BaseModel):
    """One preflight rule's verdict."""

    rule: str
    status: Status
    reason: str
    command: str | None = Field(None, description="the command that fixes it (fail, warn)")
    node: str | None = Field(None, description="the node concerned, when there is one")


class BackupFact(BaseModel):
    """An etcd backup of the repository, as the preflight needs it."""

    id: str
    started: datetime
    status: str
    verified: bool | None = Field(None, description="newest verification: passed/failed/never")


class BackupFacts(BaseModel):
    """The repository's etcd backups, or why they could not be read."""

    backups: list[BackupFact] = Field(default_factory=list)
    error: str | None = Field(None, description="not configured or unreadable, and why")


class UpgradePlan(BaseModel):
    """``k3sops upgrade plan``: nodes, order and preflight verdicts (JSON schema pinned)."""

    target: str
    max_unavailable: int
    backup_max_age_seconds: float
    nodes: list[NodeState]
    order: list[Batch]
    preflight: list[Preflight]
    notes: list[str] = Field(default_factory=list)

    @property
    def refused(self) -> list[Preflight]:
        """The failed rules (any refuses the plan)."""
        return [p for p in self.preflight if p.status == "fail"]


# --------------------------------------------------------------------------------------------
# Nodes and order


def node_role(node: Mapping[str, Any]) -> Role:
    """``server`` when K3s labelled the node control-plane (or master), else ``agent``."""
    labels = get(node, "metadata", "labels", default={}) or {}
    return "server" if any(k in labels for k in SERVER_LABELS) else "agent"


def node_ready(node: Mapping[str, Any]) -> bool:
    """The Ready condition is True."""
    ready = conditions(dict(node)).get("Ready")
    return bool(ready and ready.get("status") == "True")


def node_states(nodes: Iterable[Mapping[str, Any]], target: K3sVersion) -> list[NodeState]:
    """Each node with its role, version and whether the plan upgrades it (servers first)."""
    out = []
    for n in nodes:
        version = str(get(n, "status", "nodeInfo", "kubeletVersion", default="") or "")
        parsed = parse_version(version)
        out.append(NodeState(
            name=meta(dict(n))[1], role=node_role(n), version=version or "unknown",
            ready=node_ready(n), schedulable=not get(n, "spec", "unschedulable"),
            upgrade=parsed is not None and parsed.key < target.key,
            in_progress=(get(n, "metadata", "annotations", default={}) or {}).get(
                UPGRADE_ANNOTATION)))
    return sorted(out, key=lambda s: (s.role != "server", s.name))


def order(states: Sequence[NodeState], max_unavailable: int) -> list[Batch]:
    """Servers one at a time, then agents ``max_unavailable`` at a time (by name)."""
    servers = [s.name for s in states if s.upgrade and s.role == "server"]
    agents = [s.name for s in states if s.upgrade and s.role == "agent"]
    batches = [Batch(step=0, role="server", nodes=[s]) for s in servers]
    batches += [Batch(step=0, role="agent", nodes=agents[i:i + max_unavailable])
                for i in range(0, len(agents), max_unavailable)]
    for i, b in enumerate(batches, start=1):
        b.step = i
    return batches


# --------------------------------------------------------------------------------------------
# Version rules


def _plan_cmd(version: str, max_unavailable: int) -> str:
    extra = f" --max-unavailable {max_unavailable}" if max_unavailable != 1 else ""
    return f"k3sops upgrade plan --to {version}{extra}"


def version_rules(states: Sequence[NodeState], batches: Sequence[Batch], target: K3sVersion,
                  max_unavailable: int) -> list[Preflight]:
    """``version-format``, ``no-downgrade``, ``minor-skew`` and ``agents-not-newer``."""
    out: list[Preflight] = []
    parsed = {s.name: parse_version(s.version) for s in states}
    unreadable = [s for s in states if parsed[s.name] is None]
    for s in unreadable:
        out.append(Preflight(
            rule="version-format", status="fail", node=s.name,
            reason=f"node {s.name} reports version {s.version!r}, not a K3s version "
                   "(vX.Y.Z+k3sN): its place in the upgrade cannot be judged",
            command=f"kubectl get node {s.name} -o jsonpath='{{.status.nodeInfo}}'"))
    if not unreadable:
        out.append(Preflight(rule="version-format", status="pass",
                             reason=f"every node's version reads as a K3s version ({len(states)}"
                                    " nodes)"))
    versions = {n: v for n, v in parsed.items() if v is not None}
    newer = sorted((n for n, v in versions.items() if v.key > target.key),
                   key=lambda n: versions[n].key, reverse=True)
    if newer:
        newest = versions[newer[0]]
        out.append(Preflight(
            rule="no-downgrade", status="fail", node=newer[0],
            reason=f"{target} is older than {', '.join(f'{n} ({versions[n]})' for n in newer)}:"
                   " a downgrade is refused (K3s goes back only by an etcd restore)",
            command=_plan_cmd(str(newest), max_unavailable)))
    else:
        out.append(Preflight(rule="no-downgrade", status="pass",
                             reason=f"no node runs a version newer than {target}"))
    skipping = sorted(n for n, v in versions.items()
                      if v.major != target.major or target.minor - v.minor > 1)
    for n in skipping:
        v = versions[n]
        if v.major != target.major:
            reason = (f"node {n} runs {v}: going to {target} changes the major version, "
                      "which Kubernetes does not support in one step")
            step = None
        else:
            step = f"v{v.major}.{v.minor + 1}"
            skipped = ", ".join(f"v{v.major}.{m}" for m in range(v.minor + 1, target.minor))
            reason = (f"node {n} runs {v}: going to {target} skips {skipped}; upgrade one "
                      f"minor version at a time ({step} first)")
        out.append(Preflight(
            rule="minor-skew", status="fail", node=n, reason=reason,
            command=_plan_cmd(f"{step}.<patch>+k3s<N>", max_unavailable) if step else None))
    if not skipping:
        out.append(Preflight(rule="minor-skew", status="pass",
                             reason=f"no minor version skipped on the way to {target}"))
    out.append(_agents_not_newer(states, batches, versions, target))
    return out


def _agents_not_newer(states: Sequence[NodeState], batches: Sequence[Batch],
                      versions: Mapping[str, K3sVersion], target: K3sVersion) -> Preflight:
    """The first state of the upgrade (now, or after a step) with an agent newer than a server."""
    current = dict(versions)
    roles = {s.name: s.role for s in states}
    for step in [None, *batches]:
        if step is not None:
            current.update({n: target for n in step.nodes})
        servers = [(v.key, n) for n, v in current.items() if roles[n] == "server"]
        agents = [(v.key, n) for n, v in current.items() if roles[n] == "agent"]
        if not servers or not agents:
            break
        oldest_server, agent = min(servers), max(agents)
        if agent[0] > oldest_server[0]:
            when = "now" if step is None else f"after step {step.step}"
            return Preflight(
                rule="agents-not-newer", status="fail", node=agent[1],
                reason=f"{when} agent {agent[1]} ({current[agent[1]]}) is newer than server "
                       f"{oldest_server[1]} ({current[oldest_server[1]]}): a kubelet must "
                       "never be newer than the API server; keep work off that agent until "
                       "the servers are upgraded",
                command=f"k3sops node drain {agent[1]} --apply")
    return Preflight(rule="agents-not-newer", status="pass",
                     reason="no agent is newer than a server now or after any step")


# --------------------------------------------------------------------------------------------
# Cluster rules


def ready_rule(states: Sequence[NodeState]) -> list[Preflight]:
    """``nodes-ready``: one failure per node not Ready."""
    out = [Preflight(rule="nodes-ready", status="fail", node=s.name,
                     reason=f"node {s.name} is not Ready: an upgrade would take down more "
                            "than the node it works on",
                     command=f"k3sops diagnose node {s.name}")
           for s in states if not s.ready]
    return out or [Preflight(rule="nodes-ready", status="pass",
                             reason=f"all {len(states)} nodes are Ready")]


def etcd_rule(nodes: Iterable[Mapping[str, Any]]) -> Preflight:
    """``etcd-quorum``: one server down still leaves a quorum of healthy voting members."""
    servers = [n for n in nodes if node_role(n) == "server"]
    members = []
    for n in servers:
        cond = conditions(dict(n)).get(VOTER_CONDITION)
        ann = get(n, "metadata", "annotations", default={}) or {}
        if cond is not None or ETCD_NODE_ANNOTATION in ann:
            # A member K3s has not reported a voter condition for yet is judged by Ready.
            voter = cond is None or cond.get("status") == "True"
            members.append((meta(dict(n))[1], voter, node_ready(n)))
    if not members:
        if len(servers) <= 1:
            return Preflight(
                rule="etcd-quorum", status="warn",
                reason="a single server without embedded etcd (kine/sqlite): the API server is "
                       "down while that server upgrades (workloads keep running); more servers "
                       "need embedded etcd (K3s: restart the server with --cluster-init) "
                       "or an external datastore",
                command=None)
        return Preflight(
            rule="etcd-quorum", status="pass",
            reason=f"{len(servers)} servers on an external datastore (no embedded etcd): one "
                   "server down leaves the others serving the API")
    healthy = sorted(n for n, voter, ready in members if voter and ready)
    sick = sorted(n for n, voter, ready in members if not (voter and ready))
    quorum = len(members) // 2 + 1
    if len(members) == 1:
        return Preflight(
            rule="etcd-quorum", status="warn",
            reason="etcd has a single member: the API server is down while its server "
                   "upgrades (workloads keep running)",
            command="k3sops scale nodes add NODE1 NODE2 --server --apply")
    if len(healthy) - 1 >= quorum:
        return Preflight(
            rule="etcd-quorum", status="pass",
            reason=f"{len(healthy)} of {len(members)} etcd members healthy voters; {quorum} "
                   "make a quorum, so one server down leaves a quorum")
    fix = (f"k3sops diagnose node {sick[0]}" if sick
           else "k3sops scale nodes add NODE --server --apply")
    why = (f"not healthy voters: {', '.join(sick)}; " if sick else "")
    return Preflight(
        rule="etcd-quorum", status="fail", node=sick[0] if sick else None,
        reason=f"etcd has {len(healthy)} healthy voting member(s) of {len(members)} ({why}"
               f"{quorum} make a quorum): with one server down for its upgrade, etcd would "
               "lose quorum and the API would stop",
        command=fix)


class EtcdView(BaseModel):
    """etcd's own view as the check's ``etcd-health`` rule judged it, or why it is missing."""

    members: int = Field(0, description="members answering etcd_server_has_leader")
    findings: list[Finding] = Field(default_factory=list)
    unread: str | None = Field(None, description="why the view could not be read")


def etcd_view(answers: Mapping[str, InstantResult], platform: Platform | None,
              now: datetime) -> EtcdView:
    """Judge Prometheus' answers to the ``etcd-health`` check's queries with that check."""
    from k3sops.domain.checks import REGISTRY, CheckContext
    from k3sops.domain.checks.controlplane import Q_LEADER

    snap = ClusterSnapshot(now=now, objects={}, metrics=answers)
    findings = REGISTRY["etcd-health"].fn(CheckContext(snapshot=snap, platform=platform,
                                                       period="daily"))
    leader = answers.get(Q_LEADER)
    return EtcdView(members=len(leader.samples) if leader is not None else 0,
                    findings=findings)


def etcd_health_rule(view: EtcdView) -> list[Preflight]:
    """``etcd-health``: no member without a leader (fail); disk and quota warnings (warn)."""
    if view.unread is not None or view.members == 0:
        why = view.unread or "Prometheus scrapes no etcd member (etcd_server_has_leader)"
        return [Preflight(rule="etcd-health", status="warn",
                          reason=f"etcd's own health was not read ({why}): judged by K3s' "
                                 "node conditions only", command=None)]
    out = [Preflight(rule="etcd-health",
                     status="fail" if f.severity == "critical" else "warn",
                     reason=f.message, command=f"k3sops runbook show {f.runbook}")
           for f in view.findings if f.severity in ("critical", "warning")]
    return out or [Preflight(rule="etcd-health", status="pass",
                             reason=f"{view.members} scraped etcd member(s) have a leader, fast "
                                    "disks and room in their quota")]


def backup_rule(facts: BackupFacts, now: datetime, max_age: float) -> Preflight:
    """``etcd-backup``: a verified, Completed etcd backup newer than ``max_age`` seconds."""
    take = "k3sops backup etcd && k3sops backup verify --since 1h"
    if facts.error is not None:
        return Preflight(rule="etcd-backup", status="fail",
                         reason=f"no etcd backup can be found: {facts.error}", command=take)
    done = sorted((b for b in facts.backups if b.status == "Completed"),
                  key=lambda b: b.started, reverse=True)
    fresh = [b for b in done if (now - b.started).total_seconds() <= max_age]
    limit = _age(max_age)
    good = [b for b in fresh if b.verified]
    if good:
        return Preflight(rule="etcd-backup", status="pass",
                         reason=f"etcd backup {good[0].id} is {_age(_secs(now, good[0]))} old "
                                f"(under {limit}) and verified")
    if fresh:
        b = fresh[0]
        state = "failed its verification" if b.verified is False else "was never verified"
        return Preflight(rule="etcd-backup", status="fail",
                         reason=f"the newest etcd backup under {limit} old ({b.id}) {state}",
                         command=(f"k3sops backup verify {b.id}" if b.verified is None
                                  else take))
    if done:
        b = done[0]
        return Preflight(rule="etcd-backup", status="fail",
                         reason=f"the newest etcd backup ({b.id}) is {_age(_secs(now, b))} old, "
                                f"older than --backup-max-age {limit}",
                         command=take)
    return Preflight(rule="etcd-backup", status="fail",
                     reason="the repository holds no completed etcd backup", command=take)


def _secs(now: datetime, b: BackupFact) -> float:
    return max((now - b.started).total_seconds(), 0.0)


def _age(seconds: float) -> str:
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h" if seconds < 2 * 86400 else f"{seconds / 86400:.1f}d"


def evicted_pods(pods: Iterable[Mapping[str, Any]], nodes: set[str]) -> list[Mapping[str, Any]]:
    """The pods a drain of ``nodes`` evicts, picked as the drain plan picks them.

    Bound there, not finished or terminating, not DaemonSet or mirror pods.
    """
    out = []
    for p in pods:
        if get(p, "spec", "nodeName") not in nodes:
            continue
        if get(p, "status", "phase") in ("Succeeded", "Failed"):
            continue
        if get(p, "metadata", "deletionTimestamp") is not None:
            continue
        if MIRROR_ANNOTATION in (get(p, "metadata", "annotations", default={}) or {}):
            continue
        owners = get(p, "metadata", "ownerReferences", default=[]) or []
        if any(o.get("kind") == "DaemonSet" for o in owners):
            continue
        out.append(p)
    return out


def pdb_rule(batches: Sequence[Batch], pods: Sequence[Mapping[str, Any]],
             pdbs: Sequence[Mapping[str, Any]]) -> list[Preflight]:
    """``pdb-drain``: a budget letting fewer of its pods go than a step would evict."""
    out = []
    for b in batches:
        evicted = evicted_pods(pods, set(b.nodes))
        for pdb in pdbs:
            ns, name = meta(dict(pdb))
            if get(pdb, "metadata", "deletionTimestamp") is not None:
                continue
            sel = get(pdb, "spec", "selector")
            if not isinstance(sel, Mapping):
                continue  # a null selector selects nothing (policy/v1)
            hit = [p for p in evicted if get(p, "metadata", "namespace") == ns
                   and selector_matches(sel, get(p, "metadata", "labels"))]
            allowed = get(pdb, "status", "disruptionsAllowed")
            allowed = int(allowed) if isinstance(allowed, int) else 0
            if not hit or len(hit) <= allowed:
                continue
            by_node: dict[str, list[str]] = defaultdict(list)
            for p in hit:
                by_node[str(get(p, "spec", "nodeName"))].append(meta(dict(p))[1])
            node = sorted(by_node)[0]
            where = "; ".join(f"{n}: {', '.join(sorted(ps))}" for n, ps in sorted(by_node.items()))
            out.append(Preflight(
                rule="pdb-drain", status="fail", node=node,
                reason=f"poddisruptionbudget {ns}/{name} allows {allowed} disruption(s) but "
                       f"draining {', '.join(b.nodes)} (step {b.step}) evicts {len(hit)} of its "
                       f"pods ({where}): the drain would hang; add replicas or relax the budget",
                command=f"k3sops diagnose poddisruptionbudget/{name} -n {ns}"))
    return out or [Preflight(rule="pdb-drain", status="pass",
                             reason="no disruption budget blocks the drain of any step")]


def headroom_rule(batches: Sequence[Batch], nodes: Sequence[Mapping[str, Any]],
                  pods: Sequence[Mapping[str, Any]], target: K3sVersion,
                  max_unavailable: int) -> list[Preflight]:
    """``headroom``: each step's evicted requests fit in the free room of the nodes left."""
    caps = {c.name: c for c in capacity.node_capacity(nodes, pods)}
    out = []
    for b in batches:
        stay = [c for n, c in caps.items() if c.schedulable and n not in b.nodes]
        evicted = evicted_pods(pods, set(b.nodes))
        short = []
        for resource, show in (("cpu", format_cpu), ("memory", show_memory)):
            need = sum(pod_request(dict(p), resource) for p in evicted)
            free = sum(max(getattr(c, resource).headroom, 0.0) for c in stay)
            if need > free:
                short.append(f"{resource} {show(need)} requested, {show(free)} free")
        if short:
            fix = (_plan_cmd(str(target), max_unavailable - 1)
                   if len(b.nodes) > 1 else "k3sops scale nodes add NODE --agent --apply")
            out.append(Preflight(
                rule="headroom", status="fail", node=b.nodes[0],
                reason=f"the pods evicted from {', '.join(b.nodes)} (step {b.step}) do not fit "
                       f"on the other schedulable nodes: {'; '.join(short)}",
                command=fix))
    return out or [Preflight(rule="headroom", status="pass",
                             reason="every step's evicted pods fit, by requests, on the nodes "
                                    "that stay")]


def plan(target: K3sVersion, nodes: Sequence[Mapping[str, Any]],
         pods: Sequence[Mapping[str, Any]], pdbs: Sequence[Mapping[str, Any]],
         backups: BackupFacts, *, now: datetime, max_unavailable: int = 1,
         backup_max_age: float = DEFAULT_BACKUP_MAX_AGE,
         etcd_view: EtcdView | None = None) -> UpgradePlan:
    """The whole plan: nodes, order and every preflight verdict (see the module docstring)."""
    states = node_states(nodes, target)
    batches = order(states, max_unavailable)
    notes = [f"{s.name} already runs {s.version}: left out" for s in states
             if parse_version(s.version) == target]
    notes += [f"{s.name} carries {UPGRADE_ANNOTATION}={s.in_progress}: an upgrade stopped "
              f"there; `k3sops upgrade apply --to {s.in_progress} --resume` finishes it"
              for s in states if s.in_progress is not None]
    if not batches:
        notes.append(f"every node already runs {target} (or newer): nothing to upgrade")
    notes.append("headroom counts requests against allocatable only: taints, affinity and "
                 "topology spread are not simulated")
    checks = [*version_rules(states, batches, target, max_unavailable), *ready_rule(states),
              etcd_rule(nodes),
              *etcd_health_rule(etcd_view or EtcdView(unread="not gathered")),
              backup_rule(backups, now, backup_max_age),
              *pdb_rule(batches, pods, pdbs), *headroom_rule(batches, nodes, pods, target,
                                                              max_unavailable)]
    return UpgradePlan(target=str(target), max_unavailable=max_unavailable,
                       backup_max_age_seconds=backup_max_age, nodes=states, order=batches,
                       preflight=checks, notes=notes)
