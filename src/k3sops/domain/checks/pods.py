"""Pods: CrashLoopBackOff, image pulls, Pending, Failed, OOMKilled, not ready.

A pod is judged by its own status (phase, conditions, container states) and events; the
causes behind it (scheduler reasons, unbound claims, the node) are gathered into the evidence
so that `check` and `diagnose` say the same thing.
"""

from __future__ import annotations

from typing import Any

from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.references import kubelet_says_missing
from k3sops.domain.checks.scheduling import scheduling_causes
from k3sops.domain.findings import Finding, Severity
from k3sops.domain.index import by_name, unhealthy_pods
from k3sops.domain.snapshot import Obj, conditions, events_for, get, meta, parse_time

CRASHLOOP_MIN_RESTARTS = 3
OOM_RECENT_SECONDS = 86400
"""An OOM kill the container recovered from is a warning for a day, then info."""
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
    """Containers whose last termination was OOMKilled (exit 137), with their memory limit.

    Critical while the container is down for it (not ready, crash-looping, or ended so); a
    container that was killed and has run fine since keeps ``lastState`` until its next
    exit, so that is a warning for a day (the limit is tight) and info after.
    """
    out = []
    for pod in _pods(ctx):
        ns, name = meta(pod)
        specs = {c.get("name"): c for c in get(pod, "spec", "containers", default=[]) or []}
        for cs in _statuses(pod):
            current = get(cs, "state", "terminated") or {}
            term = get(cs, "lastState", "terminated") or current or {}
            if term.get("reason") != "OOMKilled":
                continue
            limit = get(specs.get(cs.get("name"), {}), "resources", "limits", "memory")
            ago = _age_since(ctx, term.get("finishedAt"))
            severity: Severity
            if current.get("reason") == "OOMKilled" or not cs.get("ready") or ago is None:
                severity, when = "critical", ""
            elif ago < OOM_RECENT_SECONDS:
                severity, when = "warning", f" {int(ago // 60)} min ago and has run since"
            else:
                severity, when = "info", f" {int(ago // 3600)} h ago and has run since"
            out.append(ctx.finding(
                "pod-oomkilled", severity, "Pod", ns, name,
                f"container {cs.get('name')} of {ns}/{name} was OOMKilled{when}"
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
    """Pods in phase Failed (Jobs' own failures are the job-failed check's), or Unknown.

    Unknown: nobody has reported the pod's state (its node stopped talking) and no rule
    looking at Running or Pending pods sees it.
    """
    out = []
    for pod in _pods(ctx):
        ns, name = meta(pod)
        phase = get(pod, "status", "phase")
        if phase == "Unknown":
            node = get(pod, "spec", "nodeName")
            out.append(ctx.finding(
                "pod-failed", "warning", "Pod", ns, name,
                f"pod {ns}/{name} is in phase Unknown: its state has not been reported"
                + (f" (node {node})" if node else ""), "pod-failed",
                {"phase": phase, "reason": get(pod, "status", "reason"),
                 "message": get(pod, "status", "message"), "node": node,
                 "owner": _owner(pod),
                 **({"cause_ref": {"kind": "Node", "namespace": None, "name": node}}
                    if node else {})}))
            continue
        if phase != "Failed":
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


@check("pod-not-ready", "Running pods are ready", reads=("pods",),
       uses=("events", "nodes"))
def pod_not_ready(ctx: CheckContext) -> list[Finding]:
    """Running pods not ready for longer than the grace: readiness probe or gate failing.

    Crash-looping, OOM-killed and image-pulling containers are their own checks' findings.
    When a node stops reporting, the node lifecycle controller marks every pod on it not
    ready: those are node-not-ready's finding (one per node, not one per pod).
    """
    out = []
    now = ctx.snapshot.now.timestamp()
    nodes = None if ctx.unread("nodes") else by_name(ctx.snapshot, "nodes")
    for pod in _pods(ctx):
        if get(pod, "status", "phase") != "Running":
            continue
        ready = conditions(pod).get("Ready") or {}
        if ready.get("status") == "True":
            continue
        node = nodes.get((None, str(get(pod, "spec", "nodeName")))) if nodes else None
        if node is not None and (conditions(node).get("Ready") or {}).get("status") != "True":
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


STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
"""Waiting reasons of a container that is on its way (or stuck on its way: pod-stuck-starting)."""
OTHER_RULES_REASONS = frozenset({"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff",
                                 "InvalidImageName"})
"""Waiting reasons that pod-crashloop and pod-image-pull report."""
CONTAINER_ERROR_GRACE_SECONDS = 60
"""A container the kubelet could not create may succeed at its next try (a runtime timeout):
judged once the pod is a minute old."""
STUCK_STARTING_SECONDS = 600
STUCK_TERMINATING_SECONDS = 300
"""How long past its grace period a pod may take to go: the kubelet's last word on slow
pre-stop hooks and volume unmounts."""
_START_EVENTS = frozenset({"FailedMount", "FailedAttachVolume", "FailedCreatePodSandBox",
                           "FailedKillPod", "FailedSync", "FailedCreatePodContainer",
                           "FailedPreStopHook", "NetworkNotReady"})


def _age_since(ctx: CheckContext, value: Any) -> float | None:
    at = parse_time(value)
    return None if at is None else (ctx.snapshot.now - at).total_seconds()


def _reference_error(message: str) -> bool:
    """A kubelet message naming a missing ConfigMap/Secret or key: pod-*-missing says it."""
    return bool(kubelet_says_missing("configmaps", message)
                or kubelet_says_missing("secrets", message))


@check("pod-container-error", "Containers can be created and started", reads=("pods",),
       uses=("events",))
def pod_container_error(ctx: CheckContext) -> list[Finding]:
    """Containers the kubelet cannot create or start, other than crash loops and image pulls.

    Waiting in CreateContainerConfigError, CreateContainerError, RunContainerError,
    PreStartHookError, PostStartHookError, ErrImageNeverPull, ... A CreateContainerConfigError
    about a missing ConfigMap or Secret is pod-configmap-missing's or pod-secret-missing's
    (they name the object).
    """
    out = []
    for pod in unhealthy_pods(ctx.snapshot):
        ns, name = meta(pod)
        if not ctx.in_scope(ns) or get(pod, "metadata", "deletionTimestamp"):
            continue
        age = _age_since(ctx, get(pod, "metadata", "creationTimestamp"))
        if age is not None and age < CONTAINER_ERROR_GRACE_SECONDS:
            continue
        for cs in _statuses(pod):
            waiting = get(cs, "state", "waiting") or {}
            reason = str(waiting.get("reason") or "")
            message = str(waiting.get("message") or "")
            if not reason or reason in STARTING_REASONS or reason in OTHER_RULES_REASONS:
                continue
            if reason == "CreateContainerConfigError" and _reference_error(message):
                continue
            short = message if len(message) <= 200 else message[:197] + "..."
            out.append(ctx.finding(
                "pod-container-error", "critical", "Pod", ns, name,
                f"container {cs.get('name')} of {ns}/{name} cannot start: {reason}"
                + (f": {short}" if short else ""), "pod-container-error",
                {"container": cs.get("name"), "reason": reason, "message": message,
                 "restarts": cs.get("restartCount", 0), "owner": _owner(pod),
                 "events": events_for(ctx.snapshot, "Pod", ns, name)}))
    return out


def _stall(pod: Obj) -> tuple[str, list[str]] | None:
    """What a scheduled Pending pod is waiting for, if only for starting: (what, containers).

    None when a container waits for another reason (another rule's) or nothing waits.
    """
    inits = get(pod, "status", "initContainerStatuses", default=[]) or []
    apps = get(pod, "status", "containerStatuses", default=[]) or []
    if any((r := get(cs, "state", "waiting", "reason")) and r not in STARTING_REASONS
           for cs in [*inits, *apps]):
        return None
    running_init = [cs for cs in inits if get(cs, "state", "running")
                    and not cs.get("ready")]
    if running_init:
        cs = running_init[0]
        return (f"init container {cs.get('name')} has been running since "
                f"{get(cs, 'state', 'running', 'startedAt')} and has not finished",
                [str(cs.get("name"))])
    waiting = [str(cs.get("name")) for cs in [*inits, *apps]
               if get(cs, "state", "waiting", "reason") in STARTING_REASONS]
    if waiting or not apps:
        reasons = sorted({str(get(cs, "state", "waiting", "reason")) for cs in [*inits, *apps]
                          if get(cs, "state", "waiting")}) or ["no container status"]
        return f"containers still {'/'.join(reasons)}", waiting
    return None


@check("pod-stuck-starting", "Scheduled pods start", reads=("pods",), uses=("events",))
def pod_stuck_starting(ctx: CheckContext) -> list[Finding]:
    """Pods scheduled more than 10 minutes ago whose containers still are not started.

    ContainerCreating or PodInitializing (volumes that do not mount or attach, a sandbox or
    network that cannot be set up, an init container that never finishes); the kubelet's
    FailedMount / FailedAttachVolume / FailedCreatePodSandBox events say why. A volume whose
    ConfigMap or Secret is missing is the pod-*-missing rules' finding.
    """
    out = []
    for pod in unhealthy_pods(ctx.snapshot):
        ns, name = meta(pod)
        if (not ctx.in_scope(ns) or get(pod, "metadata", "deletionTimestamp")
                or get(pod, "status", "phase") != "Pending"):
            continue
        sched = conditions(pod).get("PodScheduled") or {}
        if sched.get("status") != "True" or not get(pod, "spec", "nodeName"):
            continue
        waited = _age_since(ctx, sched.get("lastTransitionTime")
                            or get(pod, "metadata", "creationTimestamp"))
        if waited is None or waited < STUCK_STARTING_SECONDS:
            continue
        stall = _stall(pod)
        if stall is None:
            continue
        events = [e for e in events_for(ctx.snapshot, "Pod", ns, name, limit=10)
                  if e.get("reason") in _START_EVENTS]
        if any(_reference_error(str(e.get("message") or "")) for e in events):
            continue
        why, containers = stall
        latest = f": {events[0].get('reason')}: {events[0].get('message')}" if events else ""
        evidence: dict[str, Any] = {
            "node": get(pod, "spec", "nodeName"), "scheduled_at": sched.get("lastTransitionTime"),
            "waiting_seconds": int(waited), "stall": why, "containers": containers,
            "owner": _owner(pod), "events": events}
        if ctx.unread("events"):
            evidence["events"] = f"could not read events: {ctx.unread('events')}"
        out.append(ctx.finding(
            "pod-stuck-starting", "warning", "Pod", ns, name,
            f"pod {ns}/{name} was scheduled on {get(pod, 'spec', 'nodeName')} "
            f"{int(waited // 60)} min ago and has not started ({why}){latest}",
            "pod-stuck-starting", evidence))
    return out


@check("pod-stuck-terminating", "Deleted pods go away", reads=("pods",), uses=("nodes",))
def pod_stuck_terminating(ctx: CheckContext) -> list[Finding]:
    """Pods still there more than 5 minutes after their grace period ended.

    ``deletionTimestamp`` is when the grace period ends. The usual holders: finalizers nobody
    removes, and a node that is down (nobody confirms the containers stopped).
    """
    out = []
    nodes_unread = ctx.unread("nodes")
    for pod in unhealthy_pods(ctx.snapshot):
        ns, name = meta(pod)
        deleted = get(pod, "metadata", "deletionTimestamp")
        if not deleted or not ctx.in_scope(ns):
            continue
        overdue = _age_since(ctx, deleted)
        if overdue is None or overdue < STUCK_TERMINATING_SECONDS:
            continue
        finalizers = list(get(pod, "metadata", "finalizers", default=[]) or [])
        node_name = get(pod, "spec", "nodeName")
        causes = []
        evidence: dict[str, Any] = {"deletion_timestamp": deleted, "overdue_seconds": int(overdue),
                                    "finalizers": finalizers, "node": node_name,
                                    "owner": _owner(pod)}
        if finalizers:
            causes.append(f"finalizer {', '.join(finalizers)} is not removed")
        if node_name and nodes_unread:
            evidence["node_ready"] = f"could not read nodes: {nodes_unread}"
        elif node_name:
            node = by_name(ctx.snapshot, "nodes").get((None, str(node_name)))
            ready = (conditions(node).get("Ready") or {}).get("status") if node else None
            evidence["node_ready"] = ready if node is not None else "node does not exist"
            if node is not None and ready != "True":
                causes.append(f"its node {node_name} is not Ready")
                evidence["cause_ref"] = {"kind": "Node", "namespace": None, "name": node_name}
        why = "; ".join(causes) or "the kubelet has not confirmed its containers stopped"
        out.append(ctx.finding(
            "pod-stuck-terminating", "warning", "Pod", ns, name,
            f"pod {ns}/{name} is still Terminating {int(overdue // 60)} min after its grace "
            f"period: {why}", "pod-stuck-terminating", evidence))
    return out
