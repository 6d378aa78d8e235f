"""Emergency procedures as ordered checks over gathered facts (pure; the service gathers).

`k3sops emergency cluster-unresponsive | app-down APP | network-lost` walks one of the
procedures below. Each :class:`StepSpec` names the facts it needs (the service gathers them
just before the step runs, so progress shows as it happens) and a function turning those facts
into a :class:`CheckResult`: a status, what was seen, the evidence, the runbook and the proposed
next step. Changes k3sops can make are :class:`Proposal` s; the service asks before making
any of them and makes them through the remediation plans (audited). Everything that happened
is kept as a :class:`TimelineEntry` list and rendered as Markdown for an incident report.

Nothing here reads a clock or does I/O: ``Facts.now`` and every timestamp come from the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from k3sops.domain import checks as registry
from k3sops.domain import diagnose as dg
from k3sops.domain import etcdmember
from k3sops.domain.dnsprobe import DnsProbeResult
from k3sops.domain.findings import Finding, Source
from k3sops.domain.metrics import InstantResult
from k3sops.domain.snapshot import ClusterSnapshot, Obj, conditions, events_for, get, meta
from k3sops.domain.snapshot import parse_time as _parse_time

Procedure = Literal["cluster-unresponsive", "app-down", "network-lost"]
PROCEDURES: tuple[Procedure, ...] = ("cluster-unresponsive", "app-down", "network-lost")
Status = Literal["ok", "warn", "fail", "unknown", "skipped"]
Fact = Literal["api", "snapshot", "etcd", "cert", "logs", "dns"]

SLOW_API_SECONDS = 1.0
"""An API server health endpoint answering slower than this is reported as slow."""
CERT_WARN_DAYS = 30
"""The API server's serving certificate is reported when it expires within this many days."""
ETCD_DB_QUOTA_PERCENT = 90.0
"""etcd database size (percent of its quota) above which writes are about to be refused."""
RECENT_EVENTS_SECONDS = 3600
"""Warning events newer than this are "recent"."""
INGRESS_CONTROLLERS = ("traefik", "ingress-nginx-controller", "nginx-ingress-controller")
"""Deployment (or DaemonSet) names of the ingress controllers looked for, K3s' traefik first."""


class Probe(BaseModel):
    """One GET of an API server health endpoint (``/livez``, ``/readyz?verbose``)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    reachable: bool
    status: int | None = None
    seconds: float | None = None
    body: str = ""
    error: str | None = None


class CertInfo(BaseModel):
    """The API server's serving certificate as presented in the TLS handshake."""

    model_config = ConfigDict(extra="forbid")

    subject: str
    issuer: str
    not_after: datetime


class Proposal(BaseModel):
    """A change to make, through a remediation plan or by hand.

    ``restart``, ``scale`` and ``uncordon`` go through the remediation plans; ``manual`` is a
    command for a person (or for k3sops' node-level steps).
    """

    model_config = ConfigDict(extra="forbid")

    action: Literal["restart", "scale", "uncordon", "manual"]
    target: str = Field(description="deployment/NAME, statefulset/NAME or a node name")
    namespace: str | None = None
    replicas: int | None = None
    reason: str
    command: str | None = Field(default=None, description="what to run, for a manual step")
    runbook: str | None = None

    @property
    def key(self) -> str:
        """Identity: one proposal per action and object."""
        return f"{self.action}|{self.namespace or ''}|{self.target}|{self.command or ''}"

    @property
    def text(self) -> str:
        """One line for a prompt or the timeline."""
        where = f" -n {self.namespace}" if self.namespace else ""
        if self.action == "manual":
            return f"{self.reason}: {self.command}" if self.command else self.reason
        extra = f" --replicas {self.replicas}" if self.action == "scale" else ""
        return f"{self.action} {self.target}{where}{extra} ({self.reason})"


class CheckResult(BaseModel):
    """What one step of a procedure found."""

    model_config = ConfigDict(extra="forbid")

    step: str
    title: str
    status: Status
    detail: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    runbook: str | None = None
    next_step: str | None = None
    proposals: list[Proposal] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)


class ActionRecord(BaseModel):
    """A proposal and what became of it."""

    model_config = ConfigDict(extra="forbid")

    proposal: Proposal
    decision: Literal["applied", "declined", "proposed"]
    why: str
    result: Literal["ok", "skipped", "failed", "not-run"] = "not-run"
    error: str | None = None
    audit_log: str | None = None


class TimelineEntry(BaseModel):
    """One line of the incident timeline (UTC)."""

    model_config = ConfigDict(extra="forbid")

    at: datetime
    kind: Literal["start", "check", "decision", "action", "verify", "end"]
    step: str
    result: str
    detail: str = ""


class EmergencyReport(BaseModel):
    """What `k3sops emergency` prints (``-o json``).

    ``timeline_markdown`` is the paste-able incident timeline, also written by
    ``--timeline FILE``.
    """

    model_config = ConfigDict(extra="forbid")

    procedure: Procedure
    target: str
    started_at: datetime
    finished_at: datetime | None = None
    checks: list[CheckResult] = Field(default_factory=list)
    actions: list[ActionRecord] = Field(default_factory=list)
    verification: list[CheckResult] = Field(default_factory=list)
    """The checks re-run after a change, as they ended (pass, or still failing at --wait)."""
    next_steps: list[str] = Field(default_factory=list)
    runbooks: list[str] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    timeline_markdown: str = ""
    interrupted: bool = False
    """Ctrl-C stopped the procedure: the report holds what ran before."""

    @property
    def failed(self) -> list[CheckResult]:
        """Checks that found the emergency (status fail)."""
        return [c for c in self.checks if c.status == "fail"]

    @property
    def unresolved(self) -> list[CheckResult]:
        """Failed checks that no verified change turned ok."""
        fixed = {v.step for v in self.verification if v.status == "ok"}
        return [c for c in self.failed if c.step not in fixed]


@dataclass
class Facts:
    """What the service gathered so far; a step reads only the facts it declared."""

    now: datetime
    app: str | None = None
    namespace: str | None = None
    probes: dict[str, Probe] = field(default_factory=dict)
    snapshot: ClusterSnapshot | None = None
    sources: list[Source] = field(default_factory=list)
    etcd_enabled: bool = True
    etcd: dict[str, InstantResult] = field(default_factory=dict)
    etcd_error: str | None = None
    cert: CertInfo | None = None
    cert_error: str | None = None
    logs: dict[str, list[str]] = field(default_factory=dict)
    dns: DnsProbeResult | None = None
    dns_requested: bool = False

    def kube_ok(self) -> bool:
        """Whether the API objects could be read."""
        return self.snapshot is not None and bool(self.snapshot.objects) and all(
            s.ok for s in self.sources if s.name == "kubernetes")

    def kube_error(self) -> str:
        """Why the API objects are missing."""
        return next((s.error or "unreachable" for s in self.sources
                     if s.name == "kubernetes" and not s.ok), "not read")


StepFn = Callable[[Facts], CheckResult]


@dataclass(frozen=True)
class StepSpec:
    """One step of a procedure: its id, title, the facts it needs and its check."""

    id: str
    title: str
    needs: tuple[Fact, ...]
    fn: StepFn


ETCD_QUERIES = etcdmember.ETCD_QUERIES
"""etcd's own view (see :mod:`k3sops.domain.etcdmember`)."""


def _result(spec_id: str, title: str, status: Status, detail: str, **kw: Any) -> CheckResult:
    return CheckResult(step=spec_id, title=title, status=status, detail=detail, **kw)


def _unknown_kube(spec_id: str, title: str, facts: Facts) -> CheckResult:
    return _result(spec_id, title, "unknown",
                   f"cannot read the cluster's objects: {facts.kube_error()}",
                   next_step="restore API access first (see the API server checks)",
                   runbook="emergency-cluster-down")


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


# --- cluster-unresponsive ----------------------------------------------------------------------

def check_livez(facts: Facts) -> CheckResult:
    """Is the API server reachable, and how fast does /livez answer?"""
    sid, title = "api-livez", "API server reachable (/livez)"
    p = facts.probes.get("livez")
    if p is None or not p.reachable:
        why = p.error if p else "not probed"
        return _result(
            sid, title, "fail", f"the API server does not answer: {why}",
            evidence={"probe": p.model_dump(mode="json") if p else None},
            runbook="emergency-cluster-down",
            next_step="check the k3s service and its log on every server; then etcd quorum",
            proposals=[Proposal(action="manual", target="servers", reason="on every server",
                                command="sudo systemctl status k3s; "
                                        "sudo journalctl -u k3s -n 200 --no-pager",
                                runbook="emergency-cluster-down")])
    ev = {"probe": p.model_dump(mode="json")}
    if p.status != 200:
        return _result(sid, title, "fail", f"/livez answered HTTP {p.status}: {p.body[:200]}",
                       evidence=ev, runbook="apiserver-down",
                       next_step="read /livez?verbose and the k3s log of the servers")
    slow = p.seconds is not None and p.seconds > SLOW_API_SECONDS
    return _result(sid, title, "warn" if slow else "ok",
                   f"HTTP 200 in {p.seconds:.3f}s" + (" (slow)" if slow else ""), evidence=ev,
                   runbook="apiserver-latency" if slow else None,
                   next_step="the API server is overloaded: check etcd and the servers' CPU"
                   if slow else None)


def failed_readyz_checks(body: str) -> list[str]:
    """The ``[-]name failed: reason`` lines of a ``/readyz?verbose`` answer."""
    return [ln.strip()[3:] for ln in body.splitlines() if ln.strip().startswith("[-]")]


def check_readyz(facts: Facts) -> CheckResult:
    """Is the API server ready to serve (/readyz?verbose), and which of its checks fail?"""
    sid, title = "api-readyz", "API server ready (/readyz)"
    p = facts.probes.get("readyz")
    if p is None or not p.reachable:
        return _result(sid, title, "unknown", "not reachable (see /livez)",
                       runbook="emergency-cluster-down")
    failed = failed_readyz_checks(p.body)
    ev = {"probe": p.model_dump(mode="json"), "failed_checks": failed}
    if p.status == 200 and not failed:
        slow = p.seconds is not None and p.seconds > SLOW_API_SECONDS
        return _result(sid, title, "warn" if slow else "ok",
                       f"ready, HTTP 200 in {p.seconds:.3f}s" + (" (slow)" if slow else ""),
                       evidence=ev)
    etcd = any(f.startswith("etcd") for f in failed)
    return _result(sid, title, "fail",
                   f"not ready (HTTP {p.status}): " + ("; ".join(failed) or p.body[:200]),
                   evidence=ev, runbook="etcd-no-leader" if etcd else "apiserver-down",
                   next_step="etcd is failing the API server: check quorum below"
                   if etcd else "read the failing checks in the k3s log of the servers")


def _by_instance(res: InstantResult | None) -> dict[str, float | None]:
    return {s.labels.get("instance", "?"): s.number for s in (res.samples if res else [])}


def check_etcd(facts: Facts) -> CheckResult:
    """Etcd from its own metrics: a leader on every member, learners, database size vs quota."""
    sid, title = "etcd", "etcd health, leader and database size"
    if not facts.etcd_enabled:
        return _result(sid, title, "skipped",
                       "monitoring.etcd_metrics is false (kine/sqlite, or metrics not exposed)")
    if facts.etcd_error and not facts.etcd:
        return _result(sid, title, "unknown", f"etcd metrics unavailable: {facts.etcd_error}",
                       next_step="check etcd from a server: etcdctl endpoint health --cluster",
                       runbook="emergency-cluster-down")
    leader = _by_instance(facts.etcd.get("has_leader"))
    if not leader:
        return _result(sid, title, "unknown", "no etcd member is scraped (etcd_server_has_leader "
                       "has no series)", runbook="target-down",
                       next_step="check the etcd scrape target (k3s --etcd-expose-metrics)")
    learner = _by_instance(facts.etcd.get("is_learner"))
    size = _by_instance(facts.etcd.get("db_size"))
    quota = _by_instance(facts.etcd.get("quota"))
    changes = _by_instance(facts.etcd.get("leader_changes"))
    members: list[dict[str, Any]] = []
    for inst in sorted(leader):
        s, q = size.get(inst), quota.get(inst)
        members.append({"instance": inst, "has_leader": leader[inst] == 1,
                        "is_learner": learner.get(inst) == 1, "db_size_bytes": s,
                        "quota_bytes": q,
                        "db_used_percent": round(100 * s / q, 2) if s and q else None,
                        "leader_changes_1h": changes.get(inst)})
    no_leader = [m["instance"] for m in members if not m["has_leader"]]
    full = [m for m in members if (m["db_used_percent"] or 0) > ETCD_DB_QUOTA_PERCENT]
    sizes = ", ".join(f"{m['instance']} {_mib(m['db_size_bytes'])}"
                      + (f" of {_mib(m['quota_bytes'])}" if m["quota_bytes"] else "")
                      for m in members if m["db_size_bytes"] is not None)
    ev = {"members": members}
    if no_leader:
        return _result(sid, title, "fail", f"no leader on {', '.join(no_leader)}: the datastore "
                       "refuses writes", evidence=ev, runbook="etcd-no-leader",
                       next_step="check etcd quorum on the servers (etcdctl endpoint health "
                                 "--cluster); restore from a snapshot only as a last resort")
    if full:
        return _result(sid, title, "warn", f"database near its quota: {sizes}", evidence=ev,
                       runbook="etcd-db-quota", next_step="compact and defragment etcd")
    learners = [m["instance"] for m in members if m["is_learner"]]
    return _result(sid, title, "ok",
                   f"{len(members)} member(s) with a leader"
                   + (f", learners: {', '.join(learners)}" if learners else "")
                   + (f"; db {sizes}" if sizes else ""), evidence=ev)


def check_control_plane_nodes(facts: Facts) -> CheckResult:
    """Servers Ready, enough of them for etcd quorum, each an etcd voter (K3s' condition)."""
    sid, title = "control-plane-nodes", "control-plane nodes Ready"
    if not facts.kube_ok() or facts.snapshot is None:
        return _unknown_kube(sid, title, facts)
    servers = [n for n in facts.snapshot.get("nodes") if dg.node_role(n) == "server"]
    if not servers:
        return _result(sid, title, "unknown", "no node carries a control-plane/etcd role label")
    rows: list[dict[str, Any]] = []
    for n in servers:
        ready = conditions(n).get("Ready") or {}
        rows.append({"node": meta(n)[1], "ready": ready.get("status") == "True",
                     "since": ready.get("lastTransitionTime"), "reason": ready.get("reason"),
                     "cordoned": bool(get(n, "spec", "unschedulable")),
                     "etcd": etcdmember.member_view(n)})
    down = [r["node"] for r in rows if not r["ready"]]
    non_voters = [f"{r['node']} ({r['etcd']['reason']})" for r in rows
                  if r["etcd"]["voter"] is False]
    quorum = len(servers) // 2 + 1
    up = len(servers) - len(down)
    ev = {"servers": rows, "ready": up, "quorum": quorum}
    proposals = [Proposal(action="manual", target=d, reason=f"server {d} is NotReady",
                          command=f"k3sops diagnose node {d}; on the host: "
                                  "sudo systemctl status k3s", runbook="node-not-ready")
                 for d in down]
    proposals += [Proposal(action="uncordon", target=r["node"],
                           reason="Ready server left cordoned", runbook="node-cordoned")
                  for r in rows if r["ready"] and r["cordoned"]]
    if up < quorum:
        return _result(sid, title, "fail",
                       f"{up} of {len(servers)} servers Ready, quorum needs {quorum}: "
                       f"NotReady {', '.join(down)}", evidence=ev,
                       runbook="etcd-insufficient-members", proposals=proposals,
                       next_step="bring servers back (k3s service, network); if they are lost "
                                 "for good follow emergency-etcd-restore")
    if down or non_voters:
        return _result(sid, title, "warn",
                       f"{up} of {len(servers)} servers Ready (quorum {quorum})"
                       + (f"; NotReady {', '.join(down)}" if down else "")
                       + (f"; not etcd voters: {', '.join(non_voters)}" if non_voters else ""),
                       evidence=ev, runbook="node-not-ready", proposals=proposals,
                       next_step="diagnose the NotReady server before another one fails")
    return _result(sid, title, "ok", f"{up} of {len(servers)} servers Ready", evidence=ev,
                   proposals=proposals)


def check_certificates(facts: Facts) -> CheckResult:
    """The API server's serving certificate and the client/kubelet certificate horizon."""
    sid, title = "certificates", "certificate expiry"
    found: list[Finding] = []
    if facts.snapshot is not None and facts.snapshot.metrics:
        spec = registry.REGISTRY.get("cert-expiry-horizon")
        if spec is not None:
            found = spec.fn(dg.context(facts.snapshot))
    ev: dict[str, Any] = {"horizon_findings": [f.message for f in found]}
    if facts.cert is None:
        status: Status = "warn" if found else "unknown"
        return _result(sid, title, status,
                       f"serving certificate not read: {facts.cert_error or 'not probed'}"
                       + (f"; {found[0].message}" if found else ""), evidence=ev,
                       findings=found, runbook="emergency-certificate-expired")
    days = (facts.cert.not_after - facts.now).total_seconds() / 86400
    ev.update(not_after=facts.cert.not_after.isoformat(), days_left=round(days, 1),
              subject=facts.cert.subject, issuer=facts.cert.issuer)
    detail = f"serving certificate {facts.cert.subject} expires {facts.cert.not_after:%Y-%m-%d}"
    if days <= 0:
        return _result(sid, title, "fail", detail + " (EXPIRED)", evidence=ev, findings=found,
                       runbook="emergency-certificate-expired",
                       next_step="rotate the certificates on every server "
                                 "(k3s certificate rotate) and restart k3s")
    if days < CERT_WARN_DAYS or any(f.severity == "critical" for f in found):
        return _result(sid, title, "warn", detail + f" (in {days:.0f} days)", evidence=ev,
                       findings=found, runbook="emergency-certificate-expired",
                       next_step="plan a certificate rotation now")
    return _result(sid, title, "warn" if found else "ok",
                   detail + f" (in {days:.0f} days)"
                   + (f"; {found[0].message}" if found else ""), evidence=ev, findings=found,
                   runbook="apiserver-client-cert-expiry" if found else None)


def recent_warnings(snapshot: ClusterSnapshot, now: datetime, keep: Callable[[Obj], bool],
                    limit: int = 10) -> list[dict[str, Any]]:
    """Warning events newer than RECENT_EVENTS_SECONDS about objects ``keep`` accepts."""
    out = []
    for ev in snapshot.get("events"):
        if ev.get("type") != "Warning" or not keep(ev):
            continue
        last = ev.get("lastTimestamp") or get(ev, "series", "lastObservedTime") \
            or ev.get("eventTime")
        when = _parse_time(last)
        if when is not None and (now - when).total_seconds() > RECENT_EVENTS_SECONDS:
            continue
        inv = ev.get("involvedObject") or {}
        ns = f"{inv.get('namespace')}/" if inv.get("namespace") else ""
        out.append({"last": last, "reason": ev.get("reason"), "message": ev.get("message"),
                    "count": ev.get("count"),
                    "object": f"{inv.get('kind')}/{ns}{inv.get('name')}"})
    out.sort(key=lambda e: str(e.get("last") or ""), reverse=True)
    return out[:limit]


def check_recent_events(facts: Facts) -> CheckResult:
    """Warning events of the last hour about nodes and kube-system."""
    sid, title = "recent-events", "recent warning events (nodes, kube-system)"
    if not facts.kube_ok() or facts.snapshot is None:
        return _unknown_kube(sid, title, facts)
    evs = recent_warnings(facts.snapshot, facts.now, lambda e: get(
        e, "involvedObject", "kind") == "Node" or get(e, "involvedObject", "namespace")
        == "kube-system")
    if not evs:
        return _result(sid, title, "ok", "none in the last hour")
    return _result(sid, title, "warn", "; ".join(
        f"{e['object']} {e['reason']}: {e['message']}" for e in evs[:3]),
        evidence={"events": evs})


def _unavailable_system_workloads(snapshot: ClusterSnapshot) -> list[tuple[str, str]]:
    out = []
    for d in snapshot.get("deployments"):
        ns, name = meta(d)
        r = dg.rollout_state(d)
        if ns == "kube-system" and r["desired"] and int(r["available"] or 0) < r["desired"]:
            out.append(("deployment", name))
    return out


def check_system_workloads(facts: Facts) -> CheckResult:
    """kube-system Deployments (CoreDNS, metrics-server, traefik, local-path) available."""
    sid, title = "system-workloads", "kube-system workloads available"
    if not facts.kube_ok() or facts.snapshot is None:
        return _unknown_kube(sid, title, facts)
    bad = _unavailable_system_workloads(facts.snapshot)
    if not bad:
        return _result(sid, title, "ok", "every kube-system Deployment is available")
    return _result(sid, title, "warn", "unavailable: " + ", ".join(f"{k}/{n}" for k, n in bad),
                   runbook="deployment-unavailable",
                   next_step="restart them once the control plane is healthy",
                   proposals=[Proposal(action="restart", target=f"{k}/{n}",
                                       namespace="kube-system", reason="unavailable",
                                       runbook="deployment-unavailable") for k, n in bad])


# --- app-down ----------------------------------------------------------------------------------

def find_workload(snapshot: ClusterSnapshot, app: str, namespace: str | None,
                  ) -> list[tuple[str, Obj]]:
    """Deployments and StatefulSets named ``app`` (in ``namespace`` when given)."""
    return [(kind, o) for kind, plural in (("deployment", "deployments"),
                                           ("statefulset", "statefulsets"))
            for o in snapshot.get(plural) if meta(o)[1] == app
            and (namespace is None or meta(o)[0] == namespace)]


def _workload(facts: Facts) -> tuple[str, Obj] | None:
    if facts.snapshot is None or facts.app is None:
        return None
    found = find_workload(facts.snapshot, facts.app, facts.namespace)
    return found[0] if len(found) == 1 else None


def workload_state(kind: str, obj: Obj) -> dict[str, Any]:
    """Desired, ready and available replicas and the rollout state of a workload."""
    if kind == "deployment":
        return dg.rollout_state(obj)
    st = get(obj, "status", default={}) or {}
    desired = int(get(obj, "spec", "replicas", default=1) or 0)
    ready = int(st.get("readyReplicas") or 0)
    current, update = st.get("currentRevision"), st.get("updateRevision")
    return {"desired": desired, "ready": ready, "available": int(st.get("availableReplicas")
                                                                 or ready),
            "updated": st.get("updatedReplicas", 0),
            "state": "complete" if ready >= desired and current == update else "progressing"}


def workload_pods(snapshot: ClusterSnapshot, kind: str, obj: Obj) -> list[Obj]:
    """The live pods of a Deployment (through its ReplicaSets) or of a StatefulSet."""
    ns, name = meta(obj)
    if kind == "deployment":
        pods = dg.pods_of_deployment(snapshot, str(ns), name)
    else:
        pods = [p for p in snapshot.get("pods") if meta(p)[0] == ns and any(
            r.get("kind") == "StatefulSet" and r.get("name") == name
            for r in get(p, "metadata", "ownerReferences", default=[]) or [])]
    # Pods on their way out (scale-down, rollout) are not the app any more.
    return [p for p in pods if not get(p, "metadata", "deletionTimestamp")]


def check_workload(facts: Facts) -> CheckResult:
    """The app's Deployment/StatefulSet: replicas wanted and available, rollout progress."""
    sid, title = "workload", "workload rollout and replicas"
    if not facts.kube_ok() or facts.snapshot is None:
        return _unknown_kube(sid, title, facts)
    found = _workload(facts)
    if found is None:
        return _result(sid, title, "fail", f"no single Deployment or StatefulSet named "
                       f"{facts.app}" + (f" in {facts.namespace}" if facts.namespace else ""))
    kind, obj = found
    ns, name = meta(obj)
    r = workload_state(kind, obj)
    ev = {"kind": kind, "namespace": ns, "name": name, "rollout": r}
    ref = f"{kind}/{name}"
    if r["desired"] == 0:
        return _result(sid, title, "fail", f"{ref} is scaled to 0 replicas", evidence=ev,
                       runbook="deployment-unavailable",
                       next_step=f"scale {ref} back up",
                       proposals=[Proposal(action="scale", target=ref, namespace=ns, replicas=1,
                                           reason="scaled to 0", runbook="deployment-unavailable")])
    if r["state"] == "stuck":
        return _result(sid, title, "fail",
                       f"{ref} rollout is stuck: {r.get('progressing_message')}", evidence=ev,
                       runbook="deployment-rollout-stuck",
                       next_step="roll back to the previous revision if the new one is broken",
                       proposals=[Proposal(action="manual", target=ref, namespace=ns,
                                           reason="roll back the broken revision",
                                           command=f"kubectl -n {ns} rollout undo {ref}",
                                           runbook="deployment-rollout-stuck")])
    avail = int(r["available"] or 0)
    status: Status = "fail" if avail == 0 else ("warn" if avail < r["desired"] else "ok")
    return _result(sid, title, status,
                   f"{ref}: {avail}/{r['desired']} available, {r['updated']} updated, "
                   f"{r['state']}", evidence=ev,
                   runbook="deployment-unavailable" if status != "ok" else None,
                   next_step="look at its pods" if status != "ok" else None)


def check_pods(facts: Facts) -> CheckResult:
    """The app's pods and, for each unhealthy one, its causal chain (as `diagnose pod`)."""
    sid, title = "pods", "pods and their causal chain"
    found = _workload(facts)
    if not facts.kube_ok() or facts.snapshot is None:
        return _unknown_kube(sid, title, facts)
    if found is None:
        return _result(sid, title, "skipped", "no workload")
    kind, obj = found
    ns, name = meta(obj)
    pods = workload_pods(facts.snapshot, kind, obj)
    bad = [p for p in dg.unhealthy_pods(facts.snapshot, ns) if p in pods]
    d = dg.Diagnosis(dg.context(facts.snapshot))
    for p in bad:
        dg.diagnose_pod(facts.snapshot, str(ns), meta(p)[1], None, d)
    report = d.report(f"{kind}/{ns}/{name}")
    chain = [f"{c.step}: {c.detail}" for c in report.chain if not c.ok]
    ev = {"pods": [meta(p)[1] for p in pods], "unhealthy": [meta(p)[1] for p in bad],
          "chain": [c.model_dump(mode="json") for c in report.chain]}
    if not pods:
        return _result(sid, title, "fail", "the workload has no pods", evidence=ev,
                       runbook="deployment-unavailable")
    if not bad:
        return _result(sid, title, "ok", f"{len(pods)} pod(s) Running and ready", evidence=ev)
    checks = {f.check for f in report.findings}
    ref = f"{kind}/{name}"
    proposals: list[Proposal] = []
    runbook = report.findings[0].runbook if report.findings else "pod-not-ready"
    if checks & {"pod-crashloop", "pod-not-ready", "pod-oomkilled"}:
        proposals.append(Proposal(action="restart", target=ref, namespace=ns,
                                  reason="pods crash or are not ready", runbook=runbook))
    if "pod-image-pull" in checks:
        proposals.append(Proposal(action="manual", target=ref, namespace=ns,
                                  reason="the image cannot be pulled: fix the image or roll back",
                                  command=f"kubectl -n {ns} rollout undo {ref}",
                                  runbook="pod-image-pull"))
    status: Status = "fail" if len(bad) == len(pods) else "warn"
    return _result(sid, title, status,
                   f"{len(bad)} of {len(pods)} pod(s) unhealthy: " + "; ".join(chain[:4]),
                   evidence=ev, runbook=runbook, findings=report.findings,
                   proposals=proposals,
                   next_step="follow the runbook of the first finding; "
                             f"`k3sops diagnose pod {meta(bad[0])[1]} -n {ns}` for the full chain")


def _selected(selector: Mapping[str, Any] | None, labels: Mapping[str, Any]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def check_service_chain(facts: Facts) -> CheckResult:
    """Service → EndpointSlices → ready pods, and the Ingresses routing to those Services."""
    sid, title = "service-chain", "Service → EndpointSlices → Ingress"
    if not facts.kube_ok() or facts.snapshot is None:
        return _unknown_kube(sid, title, facts)
    found = _workload(facts)
    if found is None:
        return _result(sid, title, "skipped", "no workload")
    snap = facts.snapshot
    _, obj = found
    ns = meta(obj)[0]
    labels = get(obj, "spec", "template", "metadata", "labels", default={}) or {}
    services = [s for s in snap.get("services") if meta(s)[0] == ns
                and _selected(get(s, "spec", "selector"), labels)]
    if not services:
        return _result(sid, title, "warn", "no Service selects the app's pods: nothing routes "
                       "to it", runbook="service-no-endpoints")
    links: list[str] = []
    broken: list[str] = []
    rows = []
    for s in services:
        sname = meta(s)[1]
        slices = [x for x in snap.get("endpointslices") if meta(x)[0] == ns and get(
            x, "metadata", "labels", "kubernetes.io/service-name") == sname]
        ready = [e for x in slices for e in x.get("endpoints") or []
                 if get(e, "conditions", "ready") is not False]
        ings = [meta(i)[1] for i in snap.get("ingresses") if meta(i)[0] == ns and any(
            get(p, "backend", "service", "name") == sname
            for r in get(i, "spec", "rules", default=[]) or []
            for p in get(r, "http", "paths", default=[]) or [])]
        rows.append({"service": sname, "endpointslices": len(slices),
                     "ready_endpoints": len(ready), "ingresses": ings})
        link = (f"Ingress {','.join(ings)} → " if ings else "") + \
            f"Service {sname} → {len(ready)} ready endpoint(s)"
        (links if ready else broken).append(link)
    ev = {"services": rows}
    if broken:
        return _result(sid, title, "fail", "broken: " + "; ".join(broken), evidence=ev,
                       runbook="service-no-endpoints",
                       next_step="the Service has no ready endpoint: the pods are not ready or "
                                 "its selector does not match them")
    return _result(sid, title, "ok", "; ".join(links), evidence=ev)


def check_app_events(facts: Facts) -> CheckResult:
    """Recent warning events of the workload, its ReplicaSets and its pods."""
    sid, title = "events", "recent warning events of the app"
    if not facts.kube_ok() or facts.snapshot is None:
        return _unknown_kube(sid, title, facts)
    found = _workload(facts)
    if found is None:
        return _result(sid, title, "skipped", "no workload")
    kind, obj = found
    ns, name = meta(obj)
    names = {name, *(meta(p)[1] for p in workload_pods(facts.snapshot, kind, obj))}
    evs = recent_warnings(facts.snapshot, facts.now, lambda e: get(
        e, "involvedObject", "namespace") == ns and (
        get(e, "involvedObject", "name") in names
        or str(get(e, "involvedObject", "name", default="")).startswith(f"{name}-")))
    if not evs:
        events = events_for(facts.snapshot, {"deployment": "Deployment"}.get(
            kind, "StatefulSet"), ns, name, limit=3)
        return _result(sid, title, "ok", "no warning events in the last hour",
                       evidence={"events": events})
    return _result(sid, title, "warn", "; ".join(f"{e['object']} {e['reason']}: {e['message']}"
                                                 for e in evs[:3]), evidence={"events": evs})


def check_logs(facts: Facts) -> CheckResult:
    """The tail of the logs of the app's unhealthy pods (previous instance after a restart)."""
    sid, title = "logs", "log tail"
    if not facts.logs:
        return _result(sid, title, "skipped", "no pod to read logs of")
    errors = {k: [ln for ln in v if any(w in ln.lower() for w in ("error", "panic", "fatal",
                                                                   "unavailable"))]
              for k, v in facts.logs.items()}
    worst = next(((k, v[-1]) for k, v in errors.items() if v), None)
    ev = {"logs": facts.logs}
    if worst is None:
        first = next(iter(facts.logs.items()))
        return _result(sid, title, "ok", f"{first[0]}: " + (first[1][-1] if first[1]
                                                              else "(empty)"), evidence=ev)
    return _result(sid, title, "warn", f"{worst[0]}: {worst[1]}", evidence=ev,
                   next_step="the log names the failure: fix its cause (configuration, a "
                             "dependency) before restarting")


ALERT_LABELS = ("deployment", "statefulset", "pod", "service", "job", "app", "container",
                "app_kubernetes_io_name", "workload")


def check_app_alerts(facts: Facts) -> CheckResult:
    """Alerts firing now (Alertmanager) whose labels name the app in its namespace."""
    sid, title = "alerts", "firing alerts for the app"
    snap = facts.snapshot
    src = next((s for s in facts.sources if s.name == "alertmanager"), None)
    if snap is None or snap.alerts is None:
        return _result(sid, title, "unknown",
                       f"Alertmanager not read: {src.error if src else 'not asked'}")
    found = _workload(facts)
    ns = meta(found[1])[0] if found else facts.namespace
    app = facts.app or ""
    spec = registry.REGISTRY.get("alert-firing")
    firing = spec.fn(dg.context(snap)) if spec is not None else []
    mine = [f for f in firing if f.resource.namespace in (None, ns) and any(
        str(f.evidence.get("labels", {}).get(k, "")).startswith(app) for k in ALERT_LABELS)]
    if not mine:
        return _result(sid, title, "ok", f"no alert names {app}"
                       + (f" ({len(firing)} firing elsewhere)" if firing else ""))
    return _result(sid, title, "warn", "; ".join(f.message for f in mine[:3]),
                   findings=mine, runbook=mine[0].runbook,
                   evidence={"alerts": [f.evidence.get("labels") for f in mine]})


# --- network-lost ------------------------------------------------------------------------------

def not_ready_pattern(snapshot: ClusterSnapshot) -> dict[str, Any]:
    """Which nodes are NotReady: none, one, all agents, all nodes, or some."""
    rows = []
    for n in snapshot.get("nodes"):
        c = conditions(n)
        rows.append({"node": meta(n)[1], "role": dg.node_role(n),
                     "ready": (c.get("Ready") or {}).get("status") == "True",
                     "network_unavailable": (c.get("NetworkUnavailable") or {}).get("status")
                     == "True", "pod_cidr": get(n, "spec", "podCIDR")})
    down = [r for r in rows if not r["ready"]]
    agents = [r for r in rows if r["role"] == "agent"]
    if not down:
        pattern = "none"
    elif len(down) == len(rows):
        pattern = "all-nodes"
    elif agents and all(not r["ready"] for r in agents) and len(down) == len(agents):
        pattern = "all-agents"
    elif len(down) == 1:
        pattern = "one-node"
    else:
        pattern = "some-nodes"
    return {"pattern": pattern, "not_ready": [r["node"] for r in down], "nodes": rows,
            "network_unavailable": [r["node"] for r in rows if r["network_unavailable"]]}


_PATTERN_HINT = {
    "all-nodes": "every node is NotReady: the servers' side (API server, etcd) or the whole "
                 "network is down; start with `k3sops emergency cluster-unresponsive`",
    "all-agents": "every agent lost the servers: the network between agents and servers "
                  "(firewall, the API address or load balancer the agents use)",
    "one-node": "one node lost its network or its k3s service: check that host",
    "some-nodes": "several nodes lost their network: a switch, subnet or zone",
}


def check_nodes_pattern(facts: Facts) -> CheckResult:
    """The NotReady pattern: one node, every agent, or everything."""
    sid, title = "nodes", "NotReady pattern"
    if not facts.kube_ok() or facts.snapshot is None:
        return _unknown_kube(sid, title, facts)
    p = not_ready_pattern(facts.snapshot)
    if p["pattern"] == "none" and not p["network_unavailable"]:
        return _result(sid, title, "ok", f"all {len(p['nodes'])} nodes Ready", evidence=p)
    hint = _PATTERN_HINT.get(p["pattern"], "")
    detail = (f"{p['pattern']}: NotReady {', '.join(p['not_ready'])}" if p["not_ready"]
              else "all Ready") + (f"; NetworkUnavailable on {', '.join(p['network_unavailable'])}"
                                   if p["network_unavailable"] else "")
    return _result(sid, title, "fail" if p["not_ready"] else "warn", detail, evidence=p,
                   runbook="emergency-network-lost", next_step=hint,
                   proposals=[Proposal(action="manual", target=n, reason=f"{n} is NotReady",
                                       command=f"k3sops diagnose node {n}; on the host: ip route; "
                                               "sudo journalctl -u k3s -u k3s-agent -n 100 "
                                               "--no-pager | grep -i -e flannel -e network",
                                       runbook="node-not-ready")
                              for n in p["not_ready"][:3]])


def check_coredns(facts: Facts) -> CheckResult:
    """CoreDNS available and kube-dns with ready endpoints."""
    sid, title = "coredns", "CoreDNS"
    if not facts.kube_ok() or facts.snapshot is None:
        return _unknown_kube(sid, title, facts)
    d = dg.diagnose_network(facts.snapshot, "kube-system")
    steps = {c.step: c for c in d.chain}
    core, eps = steps.get("CoreDNS"), steps.get("kube-dns endpoints")
    ok = bool(core and core.ok and eps and eps.ok)
    detail = f"deployment {core.detail if core else 'missing'}; endpoints " \
             f"{eps.detail if eps else 'missing'}"
    if ok:
        return _result(sid, title, "ok", detail)
    dep = dg.find(facts.snapshot, "deployments", "coredns", "kube-system")
    return _result(sid, title, "fail", detail, runbook="dns-coredns-unavailable",
                   next_step="restart CoreDNS; then check its pods' logs",
                   proposals=[Proposal(action="restart", target="deployment/coredns",
                                       namespace="kube-system", reason="CoreDNS unavailable",
                                       runbook="dns-coredns-unavailable")] if dep else [])


def _controller(snapshot: ClusterSnapshot) -> tuple[str, Obj] | None:
    for name in INGRESS_CONTROLLERS:
        for kind, plural in (("deployment", "deployments"), ("daemonset", "daemonsets")):
            for o in snapshot.get(plural):
                if meta(o)[1] == name:
                    return kind, o
    return None


def check_ingress_controller(facts: Facts) -> CheckResult:
    """The ingress controller (K3s: traefik in kube-system) available, its Service addressed."""
    sid, title = "ingress-controller", "ingress controller"
    if not facts.kube_ok() or facts.snapshot is None:
        return _unknown_kube(sid, title, facts)
    found = _controller(facts.snapshot)
    if found is None:
        return _result(sid, title, "warn", "no ingress controller found (looked for "
                       + ", ".join(INGRESS_CONTROLLERS) + ")", runbook="ingress-backend-missing")
    kind, obj = found
    ns, name = meta(obj)
    if kind == "deployment":
        r = dg.rollout_state(obj)
        avail, desired = int(r["available"] or 0), int(r["desired"])
    else:
        st = get(obj, "status", default={}) or {}
        avail, desired = int(st.get("numberAvailable") or 0), int(
            st.get("desiredNumberScheduled") or 0)
    svc = dg.find(facts.snapshot, "services", name, ns)
    ips = [i.get("ip") or i.get("hostname") for i in get(
        svc, "status", "loadBalancer", "ingress", default=[]) or []]
    stype = get(svc, "spec", "type")
    ev = {"kind": kind, "namespace": ns, "name": name, "available": avail, "desired": desired,
          "service_type": stype, "external": ips}
    svc_txt = (f"Service {stype}" + (f" {', '.join(map(str, ips))}" if ips else "")) \
        if svc else "no Service"
    if desired and avail == 0:
        return _result(sid, title, "fail", f"{kind}/{name}: 0/{desired} available; {svc_txt}",
                       evidence=ev, runbook="deployment-unavailable",
                       next_step="restart the ingress controller",
                       proposals=[Proposal(action="restart", target=f"{kind}/{name}",
                                           namespace=ns, reason="ingress controller down",
                                           runbook="deployment-unavailable")]
                       if kind == "deployment" else [])
    if stype == "LoadBalancer" and not ips:
        return _result(sid, title, "fail", f"{kind}/{name} up but its LoadBalancer Service "
                       "has no external IP", evidence=ev, runbook="loadbalancer-no-ip",
                       next_step="check MetalLB (below)")
    return _result(sid, title, "ok" if avail >= desired else "warn",
                   f"{kind}/{name}: {avail}/{desired} available; {svc_txt}", evidence=ev)


def check_metallb(facts: Facts) -> CheckResult:
    """MetalLB controller and speakers, pools and advertisements; LoadBalancers without IP."""
    sid, title = "metallb", "MetalLB"
    if not facts.kube_ok() or facts.snapshot is None:
        return _unknown_kube(sid, title, facts)
    snap = facts.snapshot
    if not snap.has("ipaddresspools.metallb.io"):
        return _result(sid, title, "skipped", "MetalLB is not installed (no metallb.io CRDs)")
    d = dg.diagnose_network(snap)
    lb = [c for c in d.chain if c.step.startswith("LoadBalancer ")]
    pools = next((c for c in d.chain if c.step == "MetalLB pools"), None)
    bad_lb = [c.step.split(" ", 1)[1] for c in lb if not c.ok]
    unavailable = []
    for o in [*snap.get("deployments"), *snap.get("daemonsets")]:
        if meta(o)[0] != "metallb-system":
            continue
        st = get(o, "status", default={}) or {}
        avail = st.get("availableReplicas", st.get("numberAvailable")) or 0
        want = get(o, "spec", "replicas", default=st.get("desiredNumberScheduled")) or 0
        if int(want) and int(avail) < int(want):
            unavailable.append(meta(o)[1])
    ev = {"pools": pools.detail if pools else None, "lb_without_ip": bad_lb,
          "unavailable": unavailable}
    problems = ([f"unavailable: {', '.join(unavailable)}"] if unavailable else []) + \
        ([f"LoadBalancers without IP: {', '.join(bad_lb)}"] if bad_lb else []) + \
        ([] if pools is None or pools.ok else ["no IPAddressPool"])
    if problems:
        props = [Proposal(action="restart", target="deployment/controller",
                          namespace="metallb-system", reason="MetalLB controller unavailable",
                          runbook="loadbalancer-no-ip")] if "controller" in unavailable else []
        return _result(sid, title, "fail", "; ".join(problems), evidence=ev,
                       runbook="loadbalancer-no-ip", proposals=props,
                       next_step="check the pool has free addresses and the speakers run")
    return _result(sid, title, "ok", f"pools {pools.detail if pools else '?'}; "
                   f"{len(lb)} LoadBalancer(s) addressed", evidence=ev)


def check_kube_proxy_flannel(facts: Facts) -> CheckResult:
    """K3s runs kube-proxy and flannel inside its own process: only hints are visible here."""
    sid, title = "kube-proxy-flannel", "kube-proxy / flannel hints"
    if not facts.kube_ok() or facts.snapshot is None:
        return _unknown_kube(sid, title, facts)
    nodes = facts.snapshot.get("nodes")
    no_cidr = [meta(n)[1] for n in nodes if not get(n, "spec", "podCIDR")]
    unavailable = [meta(n)[1] for n in nodes
                   if (conditions(n).get("NetworkUnavailable") or {}).get("status") == "True"]
    flannel = [meta(n)[1] for n in nodes if any(str(k).startswith("flannel.alpha.coreos.com")
                                                for k in (get(n, "metadata", "annotations",
                                                              default={}) or {}))]
    ev = {"no_pod_cidr": no_cidr, "network_unavailable": unavailable,
          "flannel_annotated": flannel}
    hint = ("K3s embeds kube-proxy and flannel in the k3s process; on an affected node check "
            "`ip route`, the flannel.1 interface and `journalctl -u k3s | grep -i flannel`")
    if unavailable:
        return _result(sid, title, "fail", f"NetworkUnavailable on {', '.join(unavailable)}",
                       evidence=ev, runbook="emergency-network-lost", next_step=hint)
    detail = (f"{len(flannel)}/{len(nodes)} nodes carry flannel annotations"
              + (f"; no podCIDR: {', '.join(no_cidr[:5])}" if no_cidr else ""))
    return _result(sid, title, "ok", detail, evidence=ev, next_step=None)


def check_dns_probe(facts: Facts) -> CheckResult:
    """The guide's busybox `nslookup kubernetes.default` from a probe pod (--probe-dns)."""
    sid, title = "dns-probe", "DNS lookup from a pod"
    if not facts.dns_requested:
        return _result(sid, title, "skipped", "not asked (pass --probe-dns to run a probe pod)")
    p = facts.dns
    if p is None:
        return _result(sid, title, "unknown", "the probe did not run")
    ev = {"probe": p.model_dump(mode="json")}
    if p.outcome == "success":
        return _result(sid, title, "ok", p.detail, evidence=ev)
    if p.outcome == "failure":
        return _result(sid, title, "fail", p.detail, evidence=ev,
                       runbook="dns-coredns-unavailable",
                       next_step="CoreDNS does not answer from pods: check CoreDNS and the "
                                 "node network (flannel)")
    return _result(sid, title, "unknown", f"inconclusive: {p.detail}", evidence=ev,
                   next_step="DNS from pods is unproven: run the lookup from a pod on a real "
                             "node (kubectl run dnstest --rm -it --image=busybox:1.36 "
                             "--restart=Never -- nslookup kubernetes.default)")


PROCEDURE_STEPS: dict[Procedure, tuple[StepSpec, ...]] = {
    "cluster-unresponsive": (
        StepSpec("api-livez", "API server reachable (/livez)", ("api",), check_livez),
        StepSpec("api-readyz", "API server ready (/readyz)", ("api",), check_readyz),
        StepSpec("etcd", "etcd health, leader and database size", ("etcd",), check_etcd),
        StepSpec("control-plane-nodes", "control-plane nodes Ready", ("snapshot",),
                 check_control_plane_nodes),
        StepSpec("certificates", "certificate expiry", ("cert", "snapshot"),
                 check_certificates),
        StepSpec("recent-events", "recent warning events", ("snapshot",), check_recent_events),
        StepSpec("system-workloads", "kube-system workloads available", ("snapshot",),
                 check_system_workloads),
    ),
    "app-down": (
        StepSpec("workload", "workload rollout and replicas", ("snapshot",), check_workload),
        StepSpec("pods", "pods and their causal chain", ("snapshot",), check_pods),
        StepSpec("service-chain", "Service → EndpointSlices → Ingress", ("snapshot",),
                 check_service_chain),
        StepSpec("events", "recent warning events of the app", ("snapshot",),
                 check_app_events),
        StepSpec("logs", "log tail", ("snapshot", "logs"), check_logs),
        StepSpec("alerts", "firing alerts for the app", ("snapshot",), check_app_alerts),
    ),
    "network-lost": (
        StepSpec("nodes", "NotReady pattern", ("snapshot",), check_nodes_pattern),
        StepSpec("coredns", "CoreDNS", ("snapshot",), check_coredns),
        StepSpec("ingress-controller", "ingress controller", ("snapshot",),
                 check_ingress_controller),
        StepSpec("metallb", "MetalLB", ("snapshot",), check_metallb),
        StepSpec("kube-proxy-flannel", "kube-proxy / flannel hints", ("snapshot",),
                 check_kube_proxy_flannel),
        StepSpec("dns-probe", "DNS lookup from a pod", ("snapshot", "dns"), check_dns_probe),
    ),
}
"""Every procedure's steps, in the order they run."""

PROCEDURE_RUNBOOK: dict[Procedure, str] = {
    "cluster-unresponsive": "emergency-cluster-down",
    "app-down": "emergency-app-down",
    "network-lost": "emergency-network-lost",
}
"""The runbook each procedure follows (named first among the report's runbooks)."""


def proposals(checks: list[CheckResult]) -> list[Proposal]:
    """Every proposal of the checks, once each, in the order the checks made them."""
    seen: dict[str, Proposal] = {}
    for c in checks:
        for p in c.proposals:
            seen.setdefault(p.key, p)
    return list(seen.values())


def next_steps(procedure: Procedure, checks: list[CheckResult],
               actions: list[ActionRecord]) -> tuple[list[str], list[str]]:
    """What to do next (failed checks first) and the runbooks to follow."""
    order = {"fail": 0, "warn": 1, "unknown": 2}
    steps: list[str] = []
    runbooks = [PROCEDURE_RUNBOOK[procedure]]
    for c in sorted((c for c in checks if c.status in order), key=lambda c: order[c.status]):
        if c.next_step:
            steps.append(f"{c.title}: {c.next_step}"
                         + (f" (runbook {c.runbook})" if c.runbook else ""))
        if c.runbook and c.runbook not in runbooks:
            runbooks.append(c.runbook)
    for a in actions:
        if a.decision != "applied":
            steps.append(f"not done: {a.proposal.text}"
                         + ("; rerun with --yes to make this change"
                            if a.proposal.action != "manual" else ""))
    if not steps:
        steps.append("no problem found by this procedure: look at `k3sops check` and "
                     "`k3sops diagnose` for anything else")
    return steps, runbooks


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def timeline_markdown(report: EmergencyReport) -> str:
    """The incident timeline as Markdown (UTC), ready to paste into an incident report."""
    started = report.started_at.strftime("%Y-%m-%d %H:%M:%S")
    finished = report.finished_at.strftime("%Y-%m-%d %H:%M:%S") if report.finished_at else "?"
    verdict = (f"{len(report.failed)} check(s) failed, {len(report.unresolved)} unresolved"
               if report.failed else "no check failed")
    if report.interrupted:
        verdict += " (INTERRUPTED: later steps did not run)"
    lines = [f"# Incident timeline: {report.procedure} ({report.target})", "",
             f"- Started: {started} UTC", f"- Finished: {finished} UTC",
             f"- Result: {verdict}; {sum(1 for a in report.actions if a.decision == 'applied')}"
             " change(s) made",
             f"- Runbooks: {', '.join(report.runbooks)}", "",
             "| time (UTC) | kind | step | result | detail |", "|---|---|---|---|---|"]
    lines += [f"| {e.at:%H:%M:%S} | {e.kind} | {_md(e.step)} | {_md(e.result)} | "
              f"{_md(e.detail)} |" for e in report.timeline]
    lines += ["", "## Checks", ""]
    lines += [f"- **{c.title}**: {c.status} — {c.detail}" for c in report.checks]
    if report.actions:
        lines += ["", "## Changes", ""]
        lines += [f"- {a.proposal.text}: {a.decision} ({a.why})"
                  + (f", result {a.result}" if a.decision == "applied" else "")
                  + (f": {a.error}" if a.error else "") for a in report.actions]
    if report.verification:
        lines += ["", "## Verification after the changes", ""]
        lines += [f"- **{c.title}**: {c.status} — {c.detail}" for c in report.verification]
    lines += ["", "## Next steps", "", *(f"- {s}" for s in report.next_steps), ""]
    return "\n".join(lines)
