"""Runbooks for batch work: Jobs that do not run, CronJobs that fail or stop running."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="job-stuck", title="Job does not run",
        summary="The Job is active but none of its pods runs: they are Pending (no node fits, "
                "a claim is not bound) or never start. The work it should do is not done.",
        severity_hint="warning",
        steps=[
            step("Look at its pods", "Their state says why they do not run.",
                 "kubectl -n <namespace> get pods -l job-name=<job> -o wide",
                 "Pending with FailedScheduling (follow pod-pending), ContainerCreating "
                 "(pod-stuck-starting), none at all (workload-create-failed).",
                 "k3sops diagnose <kind>/<name> -n <namespace>"),
            step("Fix the cause, or delete the Job", "A CronJob with concurrencyPolicy Forbid "
                 "starts no new run while this one is active.",
                 "kubectl -n <namespace> delete job <job>",
                 "The next run of its CronJob starts on schedule."),
        ],
        related=["pod-pending", "cronjob-not-scheduling", "workload-create-failed"]),
    Runbook(
        id="cronjob-failing", title="CronJob's last run failed",
        summary="The newest finished run of the CronJob failed (its pods exited with errors, "
                "hit the backoff limit or the deadline): the scheduled work is not done.",
        severity_hint="warning",
        steps=[
            step("Read the failed Job", "Its condition names the reason: BackoffLimitExceeded, "
                 "DeadlineExceeded.",
                 "kubectl -n <namespace> describe job <job>",
                 "The reason and the pods' exit codes.",
                 "k3sops diagnose <kind>/<name> -n <namespace>"),
            step("Read the logs of its pods", "The error of the run.",
                 "kubectl -n <namespace> logs -l job-name=<job> --all-containers --tail=100",
                 "The failure; for DeadlineExceeded, whether the work just needs longer."),
            step("Run it once by hand after the fix", "Confirms the fix without waiting for "
                 "the schedule.",
                 "kubectl -n <namespace> create job --from=cronjob/<name> <name>-manual",
                 "The manual Job completes."),
        ],
        related=["job-failed", "cronjob-not-scheduling"]),
    Runbook(
        id="cronjob-not-scheduling", title="CronJob misses its runs",
        summary="Two or more scheduled runs passed without the CronJob starting a Job: a "
                "previous run still active with concurrencyPolicy Forbid, too many missed "
                "start times (the controller gives up after 100), a startingDeadlineSeconds "
                "too short, or the controller not running.",
        severity_hint="warning",
        steps=[
            step("Read its status and events", "lastScheduleTime, the active runs and the "
                 "controller's warnings.",
                 "kubectl -n <namespace> describe cronjob <name>",
                 "Active jobs with Forbid; 'Cannot determine if job needs to be started: too "
                 "many missed start times'.", "k3sops diagnose <kind>/<name> -n <namespace>"),
            step("Clear the blocking run", "A stuck active Job blocks every run under Forbid.",
                 "kubectl -n <namespace> get jobs -l batch.kubernetes.io/cronjob-name=<name>",
                 "Fix or delete the stuck Job (job-stuck)."),
            step("Check the controller", "On K3s the cronjob controller runs in the server "
                 "process.", "kubectl get --raw /healthz; journalctl -u k3s --since -1h | "
                 "grep -i cronjob",
                 "Errors from the cronjob controller."),
        ],
        related=["job-stuck", "cronjob-failing", "controller-manager-down"]),
]
