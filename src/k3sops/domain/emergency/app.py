"""Checks of `emergency app-down`: rollout, pods, Service chain, events, logs, alerts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k3sops.domain import checks as registry
from k3sops.domain import diagnose as dg
from k3sops.domain.emergency.facts import Facts, recent_warnings, unknown_kube, verdict
from k3sops.domain.emergency.models import CheckResult, Proposal, Status
from k3sops.domain.snapshot import ClusterSnapshot, Obj, events_for, get, meta


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
        return unknown_kube(sid, title, facts)
    found = _workload(facts)
    if found is None:
        return verdict(sid, title, "fail", f"no single Deployment or StatefulSet named "
                       f"{facts.app}" + (f" in {facts.namespace}" if facts.namespace else ""))
    kind, obj = found
    ns, name = meta(obj)
    r = workload_state(kind, obj)
    ev = {"kind": kind, "namespace": ns, "name": name, "rollout": r}
    ref = f"{kind}/{name}"
    if r["desired"] == 0:
        return verdict(sid, title, "fail", f"{ref} is scaled to 0 replicas", evidence=ev,
                       runbook="deployment-unavailable",
                       next_step=f"scale {ref} back up",
                       proposals=[Proposal(action="scale", target=ref, namespace=ns, replicas=1,
                                           reason="scaled to 0", runbook="deployment-unavailable")])
    if r["state"] == "stuck":
        return verdict(sid, title, "fail",
                       f"{ref} rollout is stuck: {r.get('progressing_message')}", evidence=ev,
                       runbook="deployment-rollout-stuck",
                       next_step="roll back to the previous revision if the new one is broken",
                       proposals=[Proposal(action="manual", target=ref, namespace=ns,
                                           reason="roll back the broken revision",
                                           command=f"kubectl -n {ns} rollout undo {ref}",
                                           runbook="deployment-rollout-stuck")])
    avail = int(r["available"] or 0)
    status: Status = "fail" if avail == 0 else ("warn" if avail < r["desired"] else "ok")
    return verdict(sid, title, status,
                   f"{ref}: {avail}/{r['desired']} available, {r['updated']} updated, "
                   f"{r['state']}", evidence=ev,
                   runbook="deployment-unavailable" if status != "ok" else None,
                   next_step="look at its pods" if status != "ok" else None)


def check_pods(facts: Facts) -> CheckResult:
    """The app's pods and, for each unhealthy one, its causal chain (as `diagnose pod`)."""
    sid, title = "pods", "pods and their causal chain"
    found = _workload(facts)
    if not facts.kube_ok() or facts.snapshot is None:
        return unknown_kube(sid, title, facts)
    if found is None:
        return verdict(sid, title, "skipped", "no workload")
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
        return verdict(sid, title, "fail", "the workload has no pods", evidence=ev,
                       runbook="deployment-unavailable")
    if not bad:
        return verdict(sid, title, "ok", f"{len(pods)} pod(s) Running and ready", evidence=ev)
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
    return verdict(sid, title, status,
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
        return unknown_kube(sid, title, facts)
    found = _workload(facts)
    if found is None:
        return verdict(sid, title, "skipped", "no workload")
    snap = facts.snapshot
    _, obj = found
    ns = meta(obj)[0]
    labels = get(obj, "spec", "template", "metadata", "labels", default={}) or {}
    services = [s for s in snap.get("services") if meta(s)[0] == ns
                and _selected(get(s, "spec", "selector"), labels)]
    if not services:
        return verdict(sid, title, "warn", "no Service selects the app's pods: nothing routes "
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
        return verdict(sid, title, "fail", "broken: " + "; ".join(broken), evidence=ev,
                       runbook="service-no-endpoints",
                       next_step="the Service has no ready endpoint: the pods are not ready or "
                                 "its selector does not match them")
    return verdict(sid, title, "ok", "; ".join(links), evidence=ev)


def check_app_events(facts: Facts) -> CheckResult:
    """Recent warning events of the workload, its ReplicaSets and its pods."""
    sid, title = "events", "recent warning events of the app"
    if not facts.kube_ok() or facts.snapshot is None:
        return unknown_kube(sid, title, facts)
    found = _workload(facts)
    if found is None:
        return verdict(sid, title, "skipped", "no workload")
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
        return verdict(sid, title, "ok", "no warning events in the last hour",
                       evidence={"events": events})
    return verdict(sid, title, "warn", "; ".join(f"{e['object']} {e['reason']}: {e['message']}"
                                                 for e in evs[:3]), evidence={"events": evs})


def check_logs(facts: Facts) -> CheckResult:
    """The tail of the logs of the app's unhealthy pods (previous instance after a restart)."""
    sid, title = "logs", "log tail"
    if not facts.logs:
        return verdict(sid, title, "skipped", "no pod to read logs of")
    errors = {k: [ln for ln in v if any(w in ln.lower() for w in ("error", "panic", "fatal",
                                                                   "unavailable"))]
              for k, v in facts.logs.items()}
    worst = next(((k, v[-1]) for k, v in errors.items() if v), None)
    ev = {"logs": facts.logs}
    if worst is None:
        first = next(iter(facts.logs.items()))
        return verdict(sid, title, "ok", f"{first[0]}: " + (first[1][-1] if first[1]
                                                              else "(empty)"), evidence=ev)
    return verdict(sid, title, "warn", f"{worst[0]}: {worst[1]}", evidence=ev,
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
        return verdict(sid, title, "unknown",
                       f"Alertmanager not read: {src.error if src else 'not asked'}")
    found = _workload(facts)
    ns = meta(found[1])[0] if found else facts.namespace
    app = facts.app or ""
    spec = registry.REGISTRY.get("alert-firing")
    firing = spec.fn(dg.context(snap)) if spec is not None else []
    mine = [f for f in firing if f.resource.namespace in (None, ns) and any(
        str(f.evidence.get("labels", {}).get(k, "")).startswith(app) for k in ALERT_LABELS)]
    if not mine:
        return verdict(sid, title, "ok", f"no alert names {app}"
                       + (f" ({len(firing)} firing elsewhere)" if firing else ""))
    return verdict(sid, title, "warn", "; ".join(f.message for f in mine[:3]),
                   findings=mine, runbook=mine[0].runbook,
                   evidence={"alerts": [f.evidence.get("labels") for f in mine]})

