"""Runbooks for weekly workload hygiene: requests, limits, probes, tags, replicas, owners."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

_TEMPLATE = step(
    "Read the template", "The finding names the workload and its containers.",
    "kubectl -n <namespace> get <kind> <name> -o yaml",
    "The containers named, in the source the workload comes from (chart values, manifests "
    "in Git).")

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="container-no-requests", title="Containers without resource requests",
        summary="Without CPU and memory requests the scheduler places pods as if they used "
                "nothing: nodes are overcommitted and these pods are the first evicted.",
        severity_hint="info",
        steps=[
            _TEMPLATE,
            step("Set requests near normal use", "Observed use is the best guide.",
                 "kubectl -n <namespace> top pods; kubectl -n <namespace> set resources "
                 "<kind>/<name> -c <container> --requests=cpu=<cpu>,memory=<mem>",
                 "Requests present; nodes' requested share (k3sops check: capacity-requests).",
                 "k3sops diagnose performance"),
        ],
        related=["container-no-limits", "capacity-requests"]),
    Runbook(
        id="container-no-limits", title="Containers without a memory limit",
        summary="A container without a memory limit can take all of its node's memory: one "
                "leak makes the kernel kill other pods.",
        severity_hint="info",
        steps=[
            _TEMPLATE,
            step("Set a memory limit with headroom", "Above peak use, so it is only hit by a "
                 "leak.",
                 "kubectl -n <namespace> set resources <kind>/<name> -c <container> "
                 "--limits=memory=<mem>",
                 "No OOMKilled after the rollout (pod-oomkilled)."),
        ],
        related=["container-no-requests", "pod-oomkilled"]),
    Runbook(
        id="container-no-probes", title="Containers without health probes",
        summary="Without a liveness probe a hung process is never restarted; without a "
                "readiness probe a Service sends traffic to pods that are starting or broken.",
        severity_hint="info",
        steps=[
            _TEMPLATE,
            step("Add probes on the app's health endpoint", "Readiness: ready to serve; "
                 "liveness: alive at all (looser, or it restarts a slow but healthy app).",
                 "kubectl -n <namespace> edit <kind> <name>",
                 "readinessProbe and livenessProbe on every serving container."),
        ],
        related=["pod-not-ready", "service-no-endpoints"]),
    Runbook(
        id="image-latest", title="Images not pinned",
        summary="An image tagged latest (or untagged) changes under the same name: two pods "
                "of one workload may run different code, and a rollback does not roll back.",
        severity_hint="info",
        steps=[
            _TEMPLATE,
            step("Pin a version (or a digest)", "The tag your release process produces.",
                 "kubectl -n <namespace> set image <kind>/<name> <container>=<image>:<version>",
                 "Every container image with a version tag or @sha256 digest."),
        ],
        related=[]),
    Runbook(
        id="single-replica", title="Single replica without a disruption budget",
        summary="A staging or production workload runs one replica and no "
                "PodDisruptionBudget covers it: a node drain or failure takes the service down "
                "until the pod is rescheduled.",
        severity_hint="info",
        steps=[
            step("Decide whether it may go down", "Some singletons (a database primary) "
                 "accept a short outage; web front ends should not.",
                 "kubectl -n <namespace> get <kind> <name>",
                 "What depends on it (its Services, Ingresses)."),
            step("Run two replicas and add a budget", "maxUnavailable 1 lets drains proceed "
                 "one pod at a time.",
                 "kubectl -n <namespace> scale <kind>/<name> --replicas=2; kubectl -n "
                 "<namespace> create pdb <name> --selector=<labels> --max-unavailable=1",
                 "Two replicas Ready; the budget allows 1 disruption."),
        ],
        related=["pdb-blocks-eviction"]),
    Runbook(
        id="pod-no-owner", title="Pod without an owner",
        summary="A pod created directly (kubectl run, a debug session, an old manifest): if "
                "it or its node goes, nothing recreates it.",
        severity_hint="info",
        steps=[
            step("See what it is", "Debug pods are usually left over; services should be "
                 "Deployments.",
                 "kubectl -n <namespace> get pod <pod> -o wide --show-labels",
                 "Its age, its image and who made it (annotations, labels)."),
            step("Delete it or move it under a controller", "A Deployment (or a Job for "
                 "one-off work) keeps it running.",
                 "kubectl -n <namespace> delete pod <pod>", "No naked pod left."),
        ],
        related=[]),
    Runbook(
        id="cronjob-suspended", title="CronJob suspended",
        summary="The CronJob is suspended: its runs do not happen. Fine during maintenance, "
                "easy to forget afterwards.",
        severity_hint="info",
        steps=[
            step("Decide whether it should run", "Someone suspended it for a reason: "
                 "check with its owner.",
                 "kubectl -n <namespace> get cronjob <name> -o yaml",
                 "Annotations or Git history saying why."),
            step("Resume it", "Runs start at the next scheduled time.",
                 "kubectl -n <namespace> patch cronjob <name> -p '{\"spec\":{\"suspend\":false}}'",
                 "SUSPEND False; a Job at the next schedule."),
        ],
        related=["cronjob-not-scheduling"]),
]
