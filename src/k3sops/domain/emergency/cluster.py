"""Checks of `emergency cluster-unresponsive`: API server, etcd, control plane, certificates."""

from __future__ import annotations

from typing import Any

from k3sops.domain import checks as registry
from k3sops.domain import diagnose as dg
from k3sops.domain import etcdmember
from k3sops.domain.emergency.facts import Facts, recent_warnings, unknown_kube, verdict
from k3sops.domain.emergency.models import CheckResult, Proposal, Status
from k3sops.domain.findings import Finding
from k3sops.domain.metrics import InstantResult
from k3sops.domain.snapshot import ClusterSnapshot, conditions, get, meta

SLOW_API_SECONDS = 1.0
"""An API server health endpoint answering slower than this is reported as slow."""
CERT_WARN_DAYS = 30
"""The API server's serving certificate is reported when it expires within this many days."""
ETCD_DB_QUOTA_PERCENT = 90.0
"""etcd database size (percent of its quota) above which writes are about to be refused."""

ETCD_QUERIES = etcdmember.ETCD_QUERIES
"""etcd's own view (see :mod:`k3sops.domain.etcdmember`)."""


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"



def check_livez(facts: Facts) -> CheckResult:
    """Is the API server reachable, and how fast does /livez answer?"""
    sid, title = "api-livez", "API server reachable (/livez)"
    p = facts.probes.get("livez")
    if p is None or not p.reachable:
        why = p.error if p else "not probed"
        return verdict(
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
        return verdict(sid, title, "fail", f"/livez answered HTTP {p.status}: {p.body[:200]}",
                       evidence=ev, runbook="apiserver-down",
                       next_step="read /livez?verbose and the k3s log of the servers")
    slow = p.seconds is not None and p.seconds > SLOW_API_SECONDS
    return verdict(sid, title, "warn" if slow else "ok",
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
        return verdict(sid, title, "unknown", "not reachable (see /livez)",
                       runbook="emergency-cluster-down")
    failed = failed_readyz_checks(p.body)
    ev = {"probe": p.model_dump(mode="json"), "failed_checks": failed}
    if p.status == 200 and not failed:
        slow = p.seconds is not None and p.seconds > SLOW_API_SECONDS
        return verdict(sid, title, "warn" if slow else "ok",
                       f"ready, HTTP 200 in {p.seconds:.3f}s" + (" (slow)" if slow else ""),
                       evidence=ev)
    etcd = any(f.startswith("etcd") for f in failed)
    return verdict(sid, title, "fail",
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
        return verdict(sid, title, "skipped",
                       "monitoring.etcd_metrics is false (kine/sqlite, or metrics not exposed)")
    if facts.etcd_error and not facts.etcd:
        return verdict(sid, title, "unknown", f"etcd metrics unavailable: {facts.etcd_error}",
                       next_step="check etcd from a server: etcdctl endpoint health --cluster",
                       runbook="emergency-cluster-down")
    leader = _by_instance(facts.etcd.get("has_leader"))
    if not leader:
        return verdict(sid, title, "unknown", "no etcd member is scraped (etcd_server_has_leader "
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
        return verdict(sid, title, "fail", f"no leader on {', '.join(no_leader)}: the datastore "
                       "refuses writes", evidence=ev, runbook="etcd-no-leader",
                       next_step="check etcd quorum on the servers (etcdctl endpoint health "
                                 "--cluster); restore from a snapshot only as a last resort")
    if full:
        return verdict(sid, title, "warn", f"database near its quota: {sizes}", evidence=ev,
                       runbook="etcd-db-quota", next_step="compact and defragment etcd")
    learners = [m["instance"] for m in members if m["is_learner"]]
    return verdict(sid, title, "ok",
                   f"{len(members)} member(s) with a leader"
                   + (f", learners: {', '.join(learners)}" if learners else "")
                   + (f"; db {sizes}" if sizes else ""), evidence=ev)


def check_control_plane_nodes(facts: Facts) -> CheckResult:
    """Servers Ready, enough of them for etcd quorum, each an etcd voter (K3s' condition)."""
    sid, title = "control-plane-nodes", "control-plane nodes Ready"
    if not facts.kube_ok() or facts.snapshot is None:
        return unknown_kube(sid, title, facts)
    servers = [n for n in facts.snapshot.get("nodes") if dg.node_role(n) == "server"]
    if not servers:
        return verdict(sid, title, "unknown", "no node carries a control-plane/etcd role label")
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
        return verdict(sid, title, "fail",
                       f"{up} of {len(servers)} servers Ready, quorum needs {quorum}: "
                       f"NotReady {', '.join(down)}", evidence=ev,
                       runbook="etcd-insufficient-members", proposals=proposals,
                       next_step="bring servers back (k3s service, network); if they are lost "
                                 "for good follow emergency-etcd-restore")
    if down or non_voters:
        return verdict(sid, title, "warn",
                       f"{up} of {len(servers)} servers Ready (quorum {quorum})"
                       + (f"; NotReady {', '.join(down)}" if down else "")
                       + (f"; not etcd voters: {', '.join(non_voters)}" if non_voters else ""),
                       evidence=ev, runbook="node-not-ready", proposals=proposals,
                       next_step="diagnose the NotReady server before another one fails")
    return verdict(sid, title, "ok", f"{up} of {len(servers)} servers Ready", evidence=ev,
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
        return verdict(sid, title, status,
                       f"serving certificate not read: {facts.cert_error or 'not probed'}"
                       + (f"; {found[0].message}" if found else ""), evidence=ev,
                       findings=found, runbook="emergency-certificate-expired")
    days = (facts.cert.not_after - facts.now).total_seconds() / 86400
    ev.update(not_after=facts.cert.not_after.isoformat(), days_left=round(days, 1),
              subject=facts.cert.subject, issuer=facts.cert.issuer)
    detail = f"serving certificate {facts.cert.subject} expires {facts.cert.not_after:%Y-%m-%d}"
    if days <= 0:
        return verdict(sid, title, "fail", detail + " (EXPIRED)", evidence=ev, findings=found,
                       runbook="emergency-certificate-expired",
                       next_step="rotate the certificates on every server "
                                 "(k3s certificate rotate) and restart k3s")
    if days < CERT_WARN_DAYS or any(f.severity == "critical" for f in found):
        return verdict(sid, title, "warn", detail + f" (in {days:.0f} days)", evidence=ev,
                       findings=found, runbook="emergency-certificate-expired",
                       next_step="plan a certificate rotation now")
    return verdict(sid, title, "warn" if found else "ok",
                   detail + f" (in {days:.0f} days)"
                   + (f"; {found[0].message}" if found else ""), evidence=ev, findings=found,
                   runbook="apiserver-client-cert-expiry" if found else None)



def check_recent_events(facts: Facts) -> CheckResult:
    """Warning events of the last hour about nodes and kube-system."""
    sid, title = "recent-events", "recent warning events (nodes, kube-system)"
    if not facts.kube_ok() or facts.snapshot is None:
        return unknown_kube(sid, title, facts)
    evs = recent_warnings(facts.snapshot, facts.now, lambda e: get(
        e, "involvedObject", "kind") == "Node" or get(e, "involvedObject", "namespace")
        == "kube-system")
    if not evs:
        return verdict(sid, title, "ok", "none in the last hour")
    return verdict(sid, title, "warn", "; ".join(
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
        return unknown_kube(sid, title, facts)
    bad = _unavailable_system_workloads(facts.snapshot)
    if not bad:
        return verdict(sid, title, "ok", "every kube-system Deployment is available")
    return verdict(sid, title, "warn", "unavailable: " + ", ".join(f"{k}/{n}" for k, n in bad),
                   runbook="deployment-unavailable",
                   next_step="restart them once the control plane is healthy",
                   proposals=[Proposal(action="restart", target=f"{k}/{n}",
                                       namespace="kube-system", reason="unavailable",
                                       runbook="deployment-unavailable") for k, n in bad])

