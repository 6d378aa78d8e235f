"""Jobs that do not run, CronJobs whose runs fail or do not happen.

A Job that has had no running pod for a quarter of an hour (its pods Pending, or none
created) is stuck; one whose pods cannot even be created is workload-create-failed's. A
CronJob fails when its newest finished run failed (an older failure followed by a success is
history). A CronJob that stopped being scheduled is seen from its schedule: when two of the
times it should have run passed since its last run (or its creation), runs are being missed —
a Forbid policy behind a stuck Job, too many missed starts, a controller that is not running.
"""

from __future__ import annotations

from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks import cron
from k3sops.domain.checks.admission import refusal
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.workloads import pod_problems
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import Obj, conditions, events_for, get, meta, parse_time, raw_events

JOB_STUCK_SECONDS = 900
SCHEDULE_SLACK_SECONDS = 30
"""The cronjob controller starts a run within seconds of its time; this much late is on time."""
FINISHED = ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget")


def _live(ctx: CheckContext, kind: str) -> list[Obj]:
    return [o for o in ctx.snapshot.get(kind) if ctx.in_scope(meta(o)[0]) and ix.live(o)]


def _finished(job: Obj) -> str | None:
    conds = conditions(job)
    for t in ("Failed", "Complete", "FailureTarget", "SuccessCriteriaMet"):
        if (conds.get(t) or {}).get("status") == "True":
            return {"FailureTarget": "Failed", "SuccessCriteriaMet": "Complete"}.get(t, t)
    return None


def _event_time(ev: Obj) -> str:
    return str(ev.get("lastTimestamp") or get(ev, "series", "lastObservedTime")
               or ev.get("eventTime") or get(ev, "metadata", "creationTimestamp") or "")


def create_failing(ctx: CheckContext, kind: str, ns: str | None, name: str) -> bool:
    """Whether the newest create of the object failed (workload-create-failed reports it).

    False when events could not be read: then nobody else can say it.
    """
    if ctx.unread("events"):
        return False
    events = raw_events(ctx.snapshot, kind, ns, name)
    ok = max((_event_time(e) for e in events if e.get("reason") == "SuccessfulCreate"),
             default="")
    return any(e.get("reason") == "FailedCreate" and _event_time(e) > ok
               and refusal(str(e.get("message") or ""), ns).cause != "namespace-terminating"
               for e in events)


def _age(ctx: CheckContext, value: Any) -> float | None:
    at = parse_time(value)
    return None if at is None else (ctx.snapshot.now - at).total_seconds()


@check("job-stuck", "Jobs run", reads=("jobs", "pods"), uses=("events",))
def job_stuck(ctx: CheckContext) -> list[Finding]:
    """Active Jobs older than 15 minutes with no running or finished pod.

    Their pods are all Pending (unschedulable, or never starting) or none exists. Suspended
    and finished Jobs are not judged; a Job whose pods are refused at creation is reported by
    workload-create-failed (when events could be read).
    """
    out = []
    for job in _live(ctx, "jobs"):
        if _finished(job) or get(job, "spec", "suspend"):
            continue
        age = _age(ctx, get(job, "status", "startTime")
                   or get(job, "metadata", "creationTimestamp"))
        if age is None or age < JOB_STUCK_SECONDS:
            continue
        ns, name = meta(job)
        pods = [p for p in ix.owned_by(ctx.snapshot, "pods", "Job", ns, name) if ix.live(p)]
        if any(get(p, "status", "phase") in ("Running", "Succeeded") for p in pods):
            continue
        if not pods and create_failing(ctx, "Job", ns, name):
            continue  # workload-create-failed names who refuses its pods
        problems = [pod_problems(p) for p in pods[:3]]
        if not pods:
            why = "no pod exists"
        elif problems[0].get("unschedulable"):
            why = f"pod {problems[0]['pod']} cannot be scheduled"
        else:
            why = f"pod {problems[0]['pod']} is {problems[0].get('phase')}"
        evidence: dict[str, Any] = {
            "age_seconds": int(age), "active": get(job, "status", "active"), "pods": problems,
            "cronjob": next((r.get("name") for r in get(job, "metadata", "ownerReferences",
                                                        default=[]) or []
                             if r.get("kind") == "CronJob"), None),
            "events": events_for(ctx.snapshot, "Job", ns, name)}
        if pods:
            evidence["cause_ref"] = {"kind": "Pod", "namespace": ns, "name": meta(pods[0])[1]}
        out.append(ctx.finding(
            "job-stuck", "warning", "Job", ns, name,
            f"job {ns}/{name} has run no pod for {int(age // 60)} min: {why}", "job-stuck",
            evidence))
    return out


def _runs(ctx: CheckContext, cj: Obj) -> list[Obj]:
    ns, name = meta(cj)
    return sorted(ix.owned_by(ctx.snapshot, "jobs", "CronJob", ns, name),
                  key=lambda j: str(get(j, "metadata", "creationTimestamp") or ""))


@check("cronjob-failing", "CronJobs' last runs succeed", reads=("cronjobs", "jobs"))
def cronjob_failing(ctx: CheckContext) -> list[Finding]:
    """CronJobs whose newest finished Job failed (suspended CronJobs are cronjob-suspended's)."""
    out = []
    for cj in _live(ctx, "cronjobs"):
        if get(cj, "spec", "suspend"):
            continue
        finished = [(j, state) for j in _runs(ctx, cj) if (state := _finished(j))]
        if not finished or finished[-1][1] != "Failed":
            continue
        job = finished[-1][0]
        ns, name = meta(cj)
        failed = conditions(job).get("Failed") or conditions(job).get("FailureTarget") or {}
        streak = 0
        for _, state in reversed(finished):
            if state != "Failed":
                break
            streak += 1
        out.append(ctx.finding(
            "cronjob-failing", "warning", "CronJob", ns, name,
            f"cronjob {ns}/{name}: its last run {meta(job)[1]} failed ({failed.get('reason')})"
            + (f", {streak} failed runs in a row of those kept" if streak > 1 else ""),
            "cronjob-failing",
            {"job": meta(job)[1], "reason": failed.get("reason"),
             "message": failed.get("message"), "failed_in_a_row": streak,
             "last_successful_time": get(cj, "status", "lastSuccessfulTime"),
             "schedule": get(cj, "spec", "schedule"),
             "cause_ref": {"kind": "Job", "namespace": ns, "name": meta(job)[1]}}))
    return out


def _missed(ctx: CheckContext, cj: Obj) -> tuple[list[str], str] | None:
    """The scheduled times missed since the last run (two or more), and the reference time."""
    try:
        schedule = cron.parse(str(get(cj, "spec", "schedule") or ""))
    except cron.CronError:
        return None
    tz_name = get(cj, "spec", "timeZone")
    tz = cron.zone(tz_name)
    if tz_name and tz is None:
        return None  # a zone this machine does not know: cannot place the runs
    last_text = get(cj, "status", "lastScheduleTime") or get(cj, "metadata",
                                                             "creationTimestamp")
    last = parse_time(last_text)
    if last is None:
        return None
    now = ctx.snapshot.now.astimezone(tz) if tz else ctx.snapshot.now
    created = parse_time(get(cj, "metadata", "creationTimestamp"))
    runs = cron.previous_runs(schedule, now, 2, since=created)
    deadline = get(cj, "spec", "startingDeadlineSeconds")
    slack = max(SCHEDULE_SLACK_SECONDS, int(deadline or 0))
    if len(runs) < 2 or (runs[1] - last).total_seconds() <= slack:
        return None
    return [r.isoformat() for r in runs], str(last_text)


@check("cronjob-not-scheduling", "CronJobs run on schedule", reads=("cronjobs",),
       uses=("events",))
def cronjob_not_scheduling(ctx: CheckContext) -> list[Finding]:
    """CronJobs (not suspended) that missed two or more scheduled runs in a row.

    Why, when it shows: concurrencyPolicy Forbid with a run still active (the active Job is
    the cause_ref), or the controller's own warnings (too many missed start times). A CronJob
    whose Jobs are refused at creation is workload-create-failed's.
    """
    out = []
    for cj in _live(ctx, "cronjobs"):
        if get(cj, "spec", "suspend"):
            continue
        missed = _missed(ctx, cj)
        if missed is None:
            continue
        ns, name = meta(cj)
        if create_failing(ctx, "CronJob", ns, name):
            continue
        runs, last = missed
        active = [str(a.get("name")) for a in get(cj, "status", "active", default=[]) or []]
        policy = get(cj, "spec", "concurrencyPolicy") or "Allow"
        evidence: dict[str, Any] = {
            "schedule": get(cj, "spec", "schedule"), "time_zone": get(cj, "spec", "timeZone"),
            "last_schedule": last, "missed_runs": runs, "concurrency_policy": policy,
            "active_jobs": active,
            "events": events_for(ctx.snapshot, "CronJob", ns, name)}
        if active and policy == "Forbid":
            why = f"run {active[0]} is still active and concurrencyPolicy is Forbid"
            evidence["cause_ref"] = {"kind": "Job", "namespace": ns, "name": active[0]}
        else:
            warning = next((e for e in evidence["events"] if e.get("type") == "Warning"), None)
            why = (f"{warning.get('reason')}: {warning.get('message')}" if warning else
                   "the cronjob controller has not started it (is the controller-manager "
                   "running?)")
        out.append(ctx.finding(
            "cronjob-not-scheduling", "warning", "CronJob", ns, name,
            f"cronjob {ns}/{name} ({get(cj, 'spec', 'schedule')}) has not run since {last} "
            f"and missed its runs at {runs[1]} and {runs[0]}: {why}", "cronjob-not-scheduling",
            evidence))
    return out
