"""Pods: CrashLoopBackOff, image pulls, Pending, Failed, OOMKilled, not ready.

A pod is judged by its own status (phase, conditions, container states) and events; the
causes behind it (scheduler reasons, unbound claims, the node) are gathered into the evidence
so that `check` and `diagnose` say the same thing.
"""

from __future__ import annotations

from typing import Any

from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.scheduling import scheduling_causes
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import Obj, conditions, events_for, get, meta, parse_time

CRASHLOOP_MIN_RESTARTS = 3
NOT_READY_GRACE_SECONDS = 300
"""A running pod that is not ready is reported after this long: probes need time to pass."""


def _statuses(pod: Obj) -> list[dict[str, Any]]:
    return [*(get(pod, "status", "initContainerStatuses", default=[]) or []),
            *(get(pod, "status", "containerStatuses", default=[]) or [])]


def _owner(pod: Obj) -> dict[str, Any] | None:
    refs = get(pod, "metadata", "ownerReferences", default=[]) or []
    return {"kind": refs[0].get("kind"), "name": refs[0].get("name")} if refs else None


def _pods(ctx: CheckContext) -> list[Obj]:
    return [p for p in ctx.snapshot.get("pods") if ctx.in_scope(meta(p)[0])
            and not get(p, "metadata", "deletionTimestamp")]


@check("pod-crashloop", "Pods not crash-looping", reads=("pods",), uses=("events",))
def pod_crashloop(ctx: CheckContext) -> list[Finding]:
    """Containers waiting in CrashLoopBackOff, with their last termination and restarts."""
    out = []
    for pod in _pods(ctx):
        ns, name = meta(pod)
        for cs in _statuses(pod):
            last = get(cs, "lastState", "terminated", default={}) or {}
            waiting = get(cs, "state", "waiting", "reason") == "CrashLoopBackOff"
            # Between back-offs a crash-looping container runs for a moment: still looping
            # when it restarted several times and died within the last 10 minutes.
            finished = parse_time(last.get("finishedAt"))
            recent = (finished is not None and not cs.get("ready")
                      and (ctx.snapshot.now - finished).total_seconds() < 600
                      and int(cs.get("restartCount") or 0) >= CRASHLOOP_MIN_RESTARTS)
            if not (waiting or recent):
                continue
            if last.get("reason") == "OOMKilled":
                continue  # reported by pod-oomkilled, with the limit
            reason = f" {last.get('reason')}" if last.get("reason") else ""
            out.append(ctx.finding(
                "pod-crashloop", "critical", "Pod", ns, name,
                f"container {cs.get('name')} of {ns}/{name} is in CrashLoopBackOff "
                f"({cs.get('restartCount', 0)} restarts, last exit {last.get('exitCode')}"
                f"{reason})",
                "pod-crashloop",
                {"container": cs.get("name"), "restarts": cs.get("restartCount", 0),
                 "last_termination": last, "owner": _owner(pod),
                 "events": events_for(ctx.snapshot, "Pod", ns, name)}))
    return out


@check("pod-oomkilled", "No OOMKilled containers", reads=("pods",))
def pod_oomkilled(ctx: CheckContext) -> list[Finding]:
    """Containers whose last termination was OOMKilled (exit 137), with their memory limit."""
    out = []
    for pod in _pods(ctx):
        ns, name = meta(pod)
        specs = {c.get("name"): c for c in get(pod, "spec", "containers", default=[]) or []}
        for cs in _statuses(pod):
            term = (get(cs, "lastState", "terminated") or get(cs, "state", "terminated")
                    or {})
            if term.get("reason") != "OOMKilled":
                continue
            limit = get(specs.get(cs.get("name"), {}), "resources", "limits", "memory")
            out.append(ctx.finding(
                "pod-oomkilled", "critical", "Pod", ns, name,
                f"container {cs.get('name')} of {ns}/{name} was OOMKilled"
                + (f" (memory limit {limit})" if limit else " (no memory limit)")
                + f", {cs.get('restartCount', 0)} restarts", "pod-oomkilled",
                {"container": cs.get("name"), "memory_limit": limit,
                 "restarts": cs.get("restartCount", 0), "termination": term,
                 "owner": _owner(pod)}))
    return out


@check("pod-image-pull", "Images pull", reads=("pods",), uses=("events",))
def pod_image_pull(ctx: CheckContext) -> list[Finding]:
    """Containers stuck on ErrImagePull / ImagePullBackOff / InvalidImageName."""
    bad = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName"}
    out = []
    for pod in _pods(ctx):
        ns, name = meta(pod)
        for cs in _statuses(pod):
            reason = get(cs, "state", "waiting", "reason")
            if reason in bad:
                out.append(ctx.finding(
                    "pod-image-pull", "critical", "Pod", ns, name,
                    f"container {cs.get('name')} of {ns}/{name} cannot pull "
                    f"{cs.get('image')}: {reason}", "pod-image-pull",
                    {"image": cs.get("image"), "reason": reason,
                     "message": get(cs, "state", "waiting", "message"),
                     "events": events_for(ctx.snapshot, "Pod", ns, name)}))
    return out


@check("pod-pending", "No pods stuck Pending", reads=("pods",),
       uses=("events", "nodes", "persistentvolumeclaims", "storageclasses"))
def pod_pending(ctx: CheckContext) -> list[Finding]:
    """Pods the scheduler could not place, with the causes behind its FailedScheduling."""
    out = []
    for pod in _pods(ctx):
        ns, name = meta(pod)
        if get(pod, "status", "phase") != "Pending":
            continue
        sched = conditions(pod).get("PodScheduled")
        if sched is None or sched.get("status") != "False":
            continue  # scheduled and starting: not stuck yet
        events = events_for(ctx.snapshot, "Pod", ns, name, limit=8)
        msg = str(sched.get("message") or "")
        fs = next((e for e in events if e.get("reason") == "FailedScheduling"), None)
        if fs and fs.get("message"):
            msg = str(fs["message"])
        causes = scheduling_causes(ctx, pod, msg)
        detail = "; ".join(str(c.get("detail") or c["reason"]) for c in causes)
        out.append(ctx.finding(
            "pod-pending", "warning", "Pod", ns, name,
            f"pod {ns}/{name} cannot be scheduled: {detail or msg or sched.get('reason')}",
            "pod-pending",
            {"reason": sched.get("reason"), "message": msg, "causes": causes,
             "since": sched.get("lastTransitionTime"), "owner": _owner(pod),
             "events": events}))
    return out


@check("pod-failed", "No failed pods", reads=("pods",))
def pod_failed(ctx: CheckContext) -> list[Finding]:
    """Pods in phase Failed (Jobs' own failures are the job-failed check's)."""
    out = []
    for pod in _pods(ctx):
        ns, name = meta(pod)
        if get(pod, "status", "phase") != "Failed":
            continue
        owner = _owner(pod)
        if owner and owner.get("kind") == "Job":
            continue
        terms = [get(cs, "state", "terminated", default={}) for cs in _statuses(pod)]
        reason = get(pod, "status", "reason") or next(
            (t.get("reason") for t in terms if t.get("reason")), "Failed")
        out.append(ctx.finding(
            "pod-failed", "warning", "Pod", ns, name,
            f"pod {ns}/{name} failed: {reason}"
            + (" (evicted)" if reason == "Evicted" else ""),
            "pod-evicted" if reason == "Evicted" else "pod-failed",
            {"reason": reason, "message": get(pod, "status", "message"),
             "terminations": terms, "owner": owner}))
    return out


def _ready_since(pod: Obj) -> float | None:
    ready = conditions(pod).get("Ready")
    at = parse_time(ready.get("lastTransitionTime")) if ready is not None else None
    return at.timestamp() if at is not None else None


@check("pod-not-ready", "Running pods are ready", reads=("pods",), uses=("events",))
def pod_not_ready(ctx: CheckContext) -> list[Finding]:
    """Running pods not ready for longer than the grace: readiness probe or gate failing.

    Crash-looping, OOM-killed and image-pulling containers are their own checks' findings.
    """
    out = []
    now = ctx.snapshot.now.timestamp()
    for pod in _pods(ctx):
        if get(pod, "status", "phase") != "Running":
            continue
        ready = conditions(pod).get("Ready") or {}
        if ready.get("status") == "True":
            continue
        since = _ready_since(pod)
        if since is not None and now - since < NOT_READY_GRACE_SECONDS:
            continue
        ns, name = meta(pod)
        statuses = _statuses(pod)
        if any(get(cs, "state", "waiting") or
               (get(cs, "lastState", "terminated") and not cs.get("ready")
                and int(cs.get("restartCount") or 0) >= CRASHLOOP_MIN_RESTARTS)
               for cs in statuses):
            continue  # waiting or crash-looping containers: the other pod checks say why
        unready = [str(cs.get("name")) for cs in get(pod, "status", "containerStatuses",
                                                       default=[]) or []
                   if not cs.get("ready")]
        conds = conditions(pod)
        gates = [str(g.get("conditionType")) for g in
                 get(pod, "spec", "readinessGates", default=[]) or []
                 if (conds.get(str(g.get("conditionType"))) or {}).get("status") != "True"]
        events = [e for e in events_for(ctx.snapshot, "Pod", ns, name, limit=8)
                  if e.get("reason") in ("Unhealthy", "ProbeWarning")]
        specs = {c.get("name"): c for c in get(pod, "spec", "containers", default=[]) or []}
        if unready:
            why = (f"container {', '.join(unready)} is running but not ready"
                   + (f": {events[0].get('message')}" if events else
                      " (readiness probe failing)"))
        elif gates:
            why = (f"readiness gate {', '.join(gates)} is not satisfied (the controller that "
                   "sets it has not)")
        else:
            why = f"Ready is {ready.get('status')}: {ready.get('reason') or ''}".strip()
        out.append(ctx.finding(
            "pod-not-ready", "warning", "Pod", ns, name,
            f"pod {ns}/{name} is not ready: {why}", "pod-not-ready",
            {"containers_not_ready": unready, "readiness_gates_unsatisfied": gates,
             "readiness_probes": {c: get(specs.get(c), "readinessProbe") for c in unready},
             "since": ready.get("lastTransitionTime"), "owner": _owner(pod),
             "events": events}))
    return out
