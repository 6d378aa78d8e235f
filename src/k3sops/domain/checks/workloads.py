"""Workloads: stuck rollouts, unavailable Deployments, StatefulSets and DaemonSets, failed Jobs.

A workload scaled to 0 is never reported. A rollout that is still within its progress
deadline is Kubernetes' own "not yet": the deadline decides, and when it passes the rollout is
reported as stuck (not as unavailable too).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from k3sops.domain.checks.admission import refusal
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.network import DNS_DEPLOYMENTS, DNS_NAMESPACE, pod_starting
from k3sops.domain.findings import Finding, Severity
from k3sops.domain.snapshot import (
    Obj,
    conditions,
    events_for,
    get,
    meta,
    parse_time,
    raw_events,
)

REVISION = "deployment.kubernetes.io/revision"
ROLLOUT_GRACE_SECONDS = 60
"""A workload with no available replica at all during a rollout is reported after this long:
a brand-new workload starting up is not an outage, one that stays at zero is."""
MAX_POD_PROBLEMS = 3
_RS_IN_MESSAGE = re.compile(r'ReplicaSet "([^"]+)"')


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _desired(obj: Obj) -> int:
    # spec.replicas defaults to 1 when absent (the API server defaults it, but be safe)
    replicas = get(obj, "spec", "replicas")
    return 1 if replicas is None else _int(replicas)


def _in_scope(ctx: CheckContext, kind: str) -> list[Obj]:
    return [o for o in ctx.snapshot.get(kind) if ctx.in_scope(meta(o)[0])
            and not get(o, "metadata", "deletionTimestamp")]


def _cond(c: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {k: c.get(k) for k in ("type", "status", "reason", "message", "lastTransitionTime")
            if c.get(k) is not None}


def _owned_by(obj: Obj, kind: str, name: str, uid: str | None) -> bool:
    for ref in get(obj, "metadata", "ownerReferences", default=[]) or []:
        if ref.get("kind") == kind and ref.get("name") == name and (
                uid is None or ref.get("uid") in (None, uid)):
            return True
    return False


def _stuck(dep: Obj) -> Mapping[str, Any] | None:
    prog = conditions(dep).get("Progressing")
    if prog and prog.get("status") == "False" and prog.get("reason") == "ProgressDeadlineExceeded":
        return prog
    return None


def _rolling_out(dep: Obj) -> bool:
    """Whether a rollout is under way (Progressing=True for a reason other than completion)."""
    prog = conditions(dep).get("Progressing")
    return bool(prog and prog.get("status") == "True"
                and prog.get("reason") != "NewReplicaSetAvailable")


def _zero_for_long(ctx: CheckContext, obj: Obj, cond_type: str | None = None) -> bool:
    """Whether the workload has had no availability for longer than the rollout grace.

    Measured from the transition of ``cond_type`` (Deployments: Available), else from the
    object's creation (StatefulSets and DaemonSets have no such condition).
    """
    cond = conditions(obj).get(cond_type) if cond_type else None
    since = parse_time(cond.get("lastTransitionTime")) if cond else None
    since = since or parse_time(get(obj, "metadata", "creationTimestamp"))
    return since is None or (ctx.snapshot.now - since).total_seconds() >= ROLLOUT_GRACE_SECONDS


def pod_problems(pod: Obj) -> dict[str, Any]:
    """What is wrong with one pod, in a line of facts (waiting reasons, last exits, scheduling)."""
    _, name = meta(pod)
    out: dict[str, Any] = {"pod": name, "phase": get(pod, "status", "phase")}
    sched = conditions(pod).get("PodScheduled")
    if sched and sched.get("status") == "False":
        out["unschedulable"] = sched.get("message") or sched.get("reason")
    containers = []
    for cs in [*(get(pod, "status", "initContainerStatuses", default=[]) or []),
               *(get(pod, "status", "containerStatuses", default=[]) or [])]:
        c: dict[str, Any] = {"container": cs.get("name"), "ready": bool(cs.get("ready")),
                             "restarts": _int(cs.get("restartCount"))}
        waiting = get(cs, "state", "waiting")
        if waiting:
            c["waiting"] = waiting.get("reason")
        # a container that ended (Job pods, restartPolicy Never) shows its exit in ``state``
        last = get(cs, "lastState", "terminated") or get(cs, "state", "terminated")
        if last:
            c["last_exit"] = {"reason": last.get("reason"), "exit_code": last.get("exitCode")}
        containers.append(c)
    if containers:
        out["containers"] = containers
    return out


def _problem_summary(problems: list[dict[str, Any]]) -> str:
    """The most telling problem of the new pods, for the message."""
    for p in problems:
        if p.get("unschedulable"):
            return f"pod {p['pod']} cannot be scheduled"
        for c in p.get("containers", []):
            if c.get("waiting") and c["waiting"] not in ("ContainerCreating", "PodInitializing"):
                return f"pod {p['pod']}: {c['waiting']}"
            if c.get("last_exit"):
                return (f"pod {p['pod']}: container {c['container']} exited "
                        f"{c['last_exit'].get('exit_code')} ({c['last_exit'].get('reason')}), "
                        f"{c['restarts']} restarts")
            if not c.get("ready"):
                return f"pod {p['pod']}: container {c['container']} not ready"
    return ""


def _event_time(ev: Obj) -> str:
    return str(ev.get("lastTimestamp") or get(ev, "series", "lastObservedTime")
               or ev.get("eventTime") or get(ev, "metadata", "creationTimestamp") or "")


def _create_refused(ctx: CheckContext, kind: str, obj: Obj) -> str:
    """Why the workload's pods are refused at creation, when they are ("" otherwise).

    Deployments: their ReplicaFailure condition; StatefulSets and DaemonSets: a FailedCreate
    event newer than their last SuccessfulCreate (workload-create-failed has the details).
    """
    ns, name = meta(obj)
    if kind == "Deployment":
        cond = conditions(obj).get("ReplicaFailure")
        if cond and cond.get("status") == "True":
            return refusal(str(cond.get("message") or ""), ns).detail
        return ""
    if ctx.unread("events"):
        return ""
    events = raw_events(ctx.snapshot, kind, ns, name)
    ok = max((_event_time(e) for e in events if e.get("reason") == "SuccessfulCreate"),
             default="")
    failed = next((e for e in events if e.get("reason") == "FailedCreate"
                   and _event_time(e) > ok), None)
    return refusal(str(failed.get("message") or ""), ns).detail if failed else ""


def _new_and_old_rs(dep: Obj, prog: Mapping[str, Any] | None,
                    rs_by_owner: Mapping[str, list[Obj]]) -> tuple[Obj | None, list[Obj]]:
    ns, name = meta(dep)
    uid = get(dep, "metadata", "uid")
    owned = [rs for rs in rs_by_owner.get(f"{ns}/{name}", [])
             if _owned_by(rs, "Deployment", name, uid)]
    revision = get(dep, "metadata", "annotations", REVISION)
    new = next((rs for rs in owned if revision is not None
                and get(rs, "metadata", "annotations", REVISION) == revision), None)
    if new is None and prog is not None:
        # the controller names the new ReplicaSet in the condition's message
        m = _RS_IN_MESSAGE.search(str(prog.get("message") or ""))
        if m:
            new = next((rs for rs in owned if meta(rs)[1] == m.group(1)), None)
    old = [rs for rs in owned if rs is not new and _int(get(rs, "spec", "replicas")) > 0]
    return new, old


def _rs_summary(rs: Obj | None) -> dict[str, Any] | None:
    if rs is None:
        return None
    images = [c.get("image") for c in
              get(rs, "spec", "template", "spec", "containers", default=[]) or []]
    return {"name": meta(rs)[1], "revision": get(rs, "metadata", "annotations", REVISION),
            "replicas": _int(get(rs, "spec", "replicas")),
            "ready": _int(get(rs, "status", "readyReplicas")),
            "available": _int(get(rs, "status", "availableReplicas")), "images": images}


def _index(objs: Sequence[Obj], owner_kind: str) -> dict[str, list[Obj]]:
    """Objects by "namespace/owner-name" of their controller of ``owner_kind``."""
    out: dict[str, list[Obj]] = defaultdict(list)
    for o in objs:
        ns, _ = meta(o)
        for ref in get(o, "metadata", "ownerReferences", default=[]) or []:
            if ref.get("kind") == owner_kind:
                out[f"{ns}/{ref.get('name')}"].append(o)
    return out


@check("deployment-rollout-stuck", "Rollouts within their progress deadline",
       reads=("deployments",), uses=("replicasets", "pods", "events"))
def deployment_rollout_stuck(ctx: CheckContext) -> list[Finding]:
    """Deployments whose rollout passed its progress deadline (ProgressDeadlineExceeded)."""
    stuck = [(d, prog) for d in _in_scope(ctx, "deployments") if _desired(d) > 0
             and (prog := _stuck(d)) is not None]
    if not stuck:
        return []
    rs_by_owner = _index(ctx.snapshot.get("replicasets"), "Deployment")
    pods_by_owner = _index(ctx.snapshot.get("pods"), "ReplicaSet")
    out = []
    for dep, prog in stuck:
        ns, name = meta(dep)
        new, old = _new_and_old_rs(dep, prog, rs_by_owner)
        new_pods = pods_by_owner.get(f"{ns}/{meta(new)[1]}", []) if new is not None else []
        problems = [pod_problems(p) for p in new_pods
                    if conditions(p).get("Ready", {}).get("status") != "True"]
        problems = problems[:MAX_POD_PROBLEMS]
        updated = _int(get(dep, "status", "updatedReplicas"))
        available = _int(get(dep, "status", "availableReplicas"))
        desired = _desired(dep)
        why = _problem_summary(problems)
        if not why and (refused := _create_refused(ctx, "Deployment", dep)):
            why = f"its pods cannot be created: {refused}"
        out.append(ctx.finding(
            "deployment-rollout-stuck", "critical", "Deployment", ns, name,
            f"rollout of deployment {ns}/{name} passed its progress deadline "
            f"({get(dep, 'spec', 'progressDeadlineSeconds', default=600)}s): "
            f"{updated}/{desired} updated, {available}/{desired} available"
            + (f"; {why}" if why else ""),
            "deployment-rollout-stuck",
            {"conditions": [c for c in (_cond(v) for v in conditions(dep).values()) if c],
             "desired": desired, "updated": updated, "available": available,
             "new_replicaset": _rs_summary(new),
             "old_replicasets": [_rs_summary(rs) for rs in old],
             "new_pods": problems,
             "events": events_for(ctx.snapshot, "Deployment", ns, name)}))
    return out


@check("deployment-unavailable", "Deployments fully available", reads=("deployments",),
       uses=("events",))
def deployment_unavailable(ctx: CheckContext) -> list[Finding]:
    """Deployments with fewer available replicas than desired (critical when none is)."""
    out = []
    for dep in _in_scope(ctx, "deployments"):
        ns, name = meta(dep)
        desired = _desired(dep)
        available = _int(get(dep, "status", "availableReplicas"))
        if desired == 0 or available >= desired or _stuck(dep) is not None:
            continue  # scaled to 0, fine, or reported by deployment-rollout-stuck
        if available == 0 and ns == DNS_NAMESPACE and name in DNS_DEPLOYMENTS:
            continue  # cluster DNS down: dns-coredns-unavailable reports it
        if _rolling_out(dep) and (available > 0 or not _zero_for_long(ctx, dep, "Available")):
            continue  # a rollout in progress: its progress deadline decides
        severity: Severity = "critical" if available == 0 else "warning"
        refused = _create_refused(ctx, "Deployment", dep)
        out.append(ctx.finding(
            "deployment-unavailable", severity, "Deployment", ns, name,
            f"deployment {ns}/{name} has {available}/{desired} replicas available"
            + (f"; its pods cannot be created: {refused}" if refused else ""),
            "deployment-unavailable",
            {"desired": desired, "available": available,
             "ready": _int(get(dep, "status", "readyReplicas")),
             "updated": _int(get(dep, "status", "updatedReplicas")),
             "unavailable": _int(get(dep, "status", "unavailableReplicas")),
             "conditions": [c for c in (_cond(v) for v in conditions(dep).values()) if c],
             "events": events_for(ctx.snapshot, "Deployment", ns, name)}))
    return out


def _pods_of(index: Mapping[str, list[Obj]], ns: str | None, name: str) -> list[dict[str, Any]]:
    pods = index.get(f"{ns}/{name}", [])
    bad = [p for p in pods if conditions(p).get("Ready", {}).get("status") != "True"]
    return [pod_problems(p) for p in bad[:MAX_POD_PROBLEMS]]


@check("statefulset-unavailable", "StatefulSets fully ready", reads=("statefulsets",),
       uses=("pods", "events"))
def statefulset_unavailable(ctx: CheckContext) -> list[Finding]:
    """StatefulSets with fewer ready replicas than desired (critical when none is ready)."""
    out = []
    index: dict[str, list[Obj]] | None = None
    for sts in _in_scope(ctx, "statefulsets"):
        ns, name = meta(sts)
        desired = _desired(sts)
        ready = _int(get(sts, "status", "readyReplicas"))
        if desired == 0 or ready >= desired:
            continue
        updating = (get(sts, "status", "updateRevision") not in
                    (None, get(sts, "status", "currentRevision")))
        if updating and (ready > 0 or not _zero_for_long(ctx, sts)):
            continue  # a rolling update replaces pods one by one: not an outage yet
        if index is None:
            index = _index(ctx.snapshot.get("pods"), "StatefulSet")
        problems = _pods_of(index, ns, name)
        why = _problem_summary(problems)
        if not why and (refused := _create_refused(ctx, "StatefulSet", sts)):
            why = f"its pods cannot be created: {refused}"
        severity: Severity = "critical" if ready == 0 else "warning"
        out.append(ctx.finding(
            "statefulset-unavailable", severity, "StatefulSet", ns, name,
            f"statefulset {ns}/{name} has {ready}/{desired} replicas ready"
            + (f"; {why}" if why else ""),
            "statefulset-unavailable",
            {"desired": desired, "ready": ready,
             "current": _int(get(sts, "status", "currentReplicas")),
             "updated": _int(get(sts, "status", "updatedReplicas")),
             "current_revision": get(sts, "status", "currentRevision"),
             "update_revision": get(sts, "status", "updateRevision"),
             "pods": problems, "events": events_for(ctx.snapshot, "StatefulSet", ns, name)}))
    return out


NO_NODE_GRACE_SECONDS = 300
"""A DaemonSet placed on no node is judged after this long (nodes joining, labels applied)."""


def _node_ready(ctx: CheckContext) -> dict[str, bool] | None:
    """Node name -> Ready, or None when nodes could not be read."""
    if ctx.unread("nodes"):
        return None
    return {meta(n)[1]: (conditions(n).get("Ready") or {}).get("status") == "True"
            for n in ctx.snapshot.get("nodes")}


def _restricted(ds: Obj) -> bool:
    """Whether the DaemonSet's template picks its nodes (node selector or required affinity)."""
    spec = get(ds, "spec", "template", "spec", default={}) or {}
    return bool(spec.get("nodeSelector") or get(
        spec, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution"))


def _placed_nowhere(ctx: CheckContext, ds: Obj, nodes: dict[str, bool]) -> Finding | None:
    """A DaemonSet the controller places on no node although nodes exist."""
    ns, name = meta(ds)
    created = parse_time(get(ds, "metadata", "creationTimestamp"))
    if (not nodes or _int(get(ds, "status", "numberMisscheduled")) > 0
            or (created is not None
                and (ctx.snapshot.now - created).total_seconds() < NO_NODE_GRACE_SECONDS)):
        return None
    spec = get(ds, "spec", "template", "spec", default={}) or {}
    if _restricted(ds):
        # Often on purpose (a GPU plugin on a cluster without GPUs): worth knowing.
        return ctx.finding(
            "daemonset-unavailable", "info", "DaemonSet", ns, name,
            f"daemonset {ns}/{name} runs on no node: its node selector/affinity matches none "
            f"of the {len(nodes)} nodes", "daemonset-unavailable",
            {"desired": 0, "nodes": len(nodes), "node_selector": spec.get("nodeSelector"),
             "node_affinity": get(spec, "affinity", "nodeAffinity")})
    return ctx.finding(
        "daemonset-unavailable", "warning", "DaemonSet", ns, name,
        f"daemonset {ns}/{name} is meant for every node but runs on none of the {len(nodes)} "
        "nodes: their taints keep it off", "daemonset-unavailable",
        {"desired": 0, "nodes": len(nodes), "tolerations": spec.get("tolerations")})


@check("daemonset-unavailable", "DaemonSets available on every node",
       reads=("daemonsets",), uses=("pods", "events", "nodes"))
def daemonset_unavailable(ctx: CheckContext) -> list[Finding]:
    """DaemonSets with unavailable pods (critical when none is available).

    Pods that are unavailable only because their node is not Ready are node-not-ready's
    (every DaemonSet would report each down node). A DaemonSet placed on no node while nodes
    exist is info when its selector picks nodes on purpose, warning when taints keep a
    DaemonSet meant for every node off all of them.
    """
    out = []
    index: dict[str, list[Obj]] | None = None
    nodes = _node_ready(ctx)
    for ds in _in_scope(ctx, "daemonsets"):
        ns, name = meta(ds)
        desired = _int(get(ds, "status", "desiredNumberScheduled"))
        unavailable = _int(get(ds, "status", "numberUnavailable"))
        available = _int(get(ds, "status", "numberAvailable"))
        if desired == 0 and nodes is not None and get(ds, "status", "observedGeneration"):
            if (f := _placed_nowhere(ctx, ds, nodes)) is not None:
                out.append(f)
            continue
        if desired == 0 or unavailable == 0:
            continue
        updating = _int(get(ds, "status", "updatedNumberScheduled")) < desired
        if updating and (available > 0 or not _zero_for_long(ctx, ds)):
            continue  # a rolling update takes pods down maxUnavailable at a time
        if index is None:
            index = _index(ctx.snapshot.get("pods"), "DaemonSet")
        unready = [p for p in index.get(f"{ns}/{name}", [])
                   if conditions(p).get("Ready", {}).get("status") != "True"]
        on_down = [p for p in unready if nodes is not None
                   and nodes.get(str(get(p, "spec", "nodeName"))) is False]
        # A pod created a moment ago on a node that just joined (or after a restart) and not
        # running yet is on its way, not down: past the grace, or at its first error, it counts.
        # A running pod that is not ready counts at once (its probe is what fails).
        starting = [p for p in unready if p not in on_down
                    and get(p, "status", "phase") == "Pending" and pod_starting(ctx, p)]
        if len(on_down) + len(starting) >= unavailable:
            continue  # nodes down (node-not-ready says it) or pods starting
        problems = _pods_of(index, ns, name)
        why = _problem_summary(problems)
        if not why and (refused := _create_refused(ctx, "DaemonSet", ds)):
            why = f"its pods cannot be created: {refused}"
        severity: Severity = "critical" if available == 0 else "warning"
        out.append(ctx.finding(
            "daemonset-unavailable", severity, "DaemonSet", ns, name,
            f"daemonset {ns}/{name} has {unavailable} of {desired} pods unavailable"
            + (f"; {why}" if why else ""),
            "daemonset-unavailable",
            {"desired": desired, "available": available, "unavailable": unavailable,
             "ready": _int(get(ds, "status", "numberReady")),
             "misscheduled": _int(get(ds, "status", "numberMisscheduled")),
             "nodes_unavailable": sorted(str(n) for p in unready
                                         if (n := get(p, "spec", "nodeName"))),
             "pods": problems,
             "events": events_for(ctx.snapshot, "DaemonSet", ns, name)}))
    return out


def _superseded(job: Obj, jobs_by_cron: Mapping[str, list[Obj]]) -> bool:
    """A CronJob's failed run followed by a later successful one is history, not a problem."""
    ns, _ = meta(job)
    refs = [r for r in get(job, "metadata", "ownerReferences", default=[]) or []
            if r.get("kind") == "CronJob"]
    if not refs:
        return False
    started = str(get(job, "metadata", "creationTimestamp", default=""))
    for other in jobs_by_cron.get(f"{ns}/{refs[0].get('name')}", []):
        if (str(get(other, "metadata", "creationTimestamp", default="")) > started
                and conditions(other).get("Complete", {}).get("status") == "True"):
            return True
    return False


@check("job-failed", "Jobs succeed", reads=("jobs",), uses=("pods", "events"))
def job_failed(ctx: CheckContext) -> list[Finding]:
    """Jobs with condition Failed=True (backoff limit, deadline), with their pods' exits."""
    jobs = _in_scope(ctx, "jobs")
    failed = [j for j in jobs if conditions(j).get("Failed", {}).get("status") == "True"]
    if not failed:
        return []
    by_cron = _index(jobs, "CronJob")
    pods = _index(ctx.snapshot.get("pods"), "Job")
    out = []
    for job in failed:
        if _superseded(job, by_cron):
            continue
        ns, name = meta(job)
        cond = conditions(job)["Failed"]
        owner = next((r.get("name") for r in get(job, "metadata", "ownerReferences",
                                                 default=[]) or []
                      if r.get("kind") == "CronJob"), None)
        out.append(ctx.finding(
            "job-failed", "warning", "Job", ns, name,
            f"job {ns}/{name} failed: {cond.get('reason')}"
            + (f" ({cond.get('message')})" if cond.get("message") else ""),
            "job-failed",
            {"condition": _cond(cond), "cronjob": owner,
             "failed_pods": _int(get(job, "status", "failed")),
             "backoff_limit": get(job, "spec", "backoffLimit"),
             "pods": [pod_problems(p) for p in pods.get(f"{ns}/{name}", [])][:MAX_POD_PROBLEMS],
             "events": events_for(ctx.snapshot, "Job", ns, name)}))
    return out
