"""Runbooks for workloads and applications: rollouts, replicas, jobs, GitOps, errors, latency."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

_PODS_OF = step(
    "Look at the workload's pods", "Unavailable replicas are pods that are not Ready: their "
    "state says why.", "kubectl -n <namespace> get pods -l <selector> -o wide",
    "Pods Pending, CrashLoopBackOff, ImagePullBackOff or Running but not Ready; follow the "
    "matching pod runbook.", "k3sops check")

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="deployment-rollout-stuck", title="Deployment rollout stuck",
        summary="A rollout passed its progress deadline: new pods do not become available, "
                "so old and new versions run side by side.",
        severity_hint="critical",
        steps=[
            step("Check the rollout", "The Progressing condition says why it stopped.",
                 "kubectl -n <namespace> rollout status deployment/<name> --timeout=10s; "
                 "kubectl -n <namespace> describe deployment <name>",
                 "ProgressDeadlineExceeded and the new ReplicaSet's ready count."),
            _PODS_OF,
            step("Roll back if the new version is broken", "Restores service while you fix "
                 "the release.", "kubectl -n <namespace> rollout undo deployment/<name>",
                 "The rollout completes: all replicas updated and available."),
        ],
        related=["pod-crashloop", "pod-image-pull", "pod-pending"]),
    Runbook(
        id="deployment-unavailable", title="Deployment has unavailable replicas",
        summary="Fewer replicas are available than desired; with zero available the service "
                "is down.",
        severity_hint="warning",
        steps=[
            step("Compare desired and available", "How much capacity is missing.",
                 "kubectl -n <namespace> get deployment <name>",
                 "READY x/y and AVAILABLE.", "k3sops status"),
            _PODS_OF,
            step("Check events of the ReplicaSet", "Quota or admission errors stop pod "
                 "creation altogether.", "kubectl -n <namespace> describe rs -l <selector>",
                 "'FailedCreate' (quota exceeded, forbidden by a policy)."),
        ],
        related=["deployment-rollout-stuck", "pod-pending", "service-no-endpoints"]),
    Runbook(
        id="statefulset-unavailable", title="StatefulSet has unready replicas",
        summary="A StatefulSet has fewer ready replicas than desired; it creates pods in "
                "order, so one stuck pod blocks the ones after it.",
        severity_hint="warning",
        steps=[
            _PODS_OF,
            step("Check its volumes", "Each replica has its own PVC; a lost or Pending claim "
                 "blocks that replica.", "kubectl -n <namespace> get pvc -l <selector>",
                 "Claims not Bound: follow pvc-pending or pvc-lost."),
        ],
        related=["pvc-pending", "pvc-lost", "longhorn-volume-faulted"]),
    Runbook(
        id="daemonset-unavailable", title="DaemonSet pods unavailable",
        summary="Some nodes lack a ready DaemonSet pod (networking, logging, node-exporter): "
                "those nodes miss that function.",
        severity_hint="warning",
        steps=[
            step("Find the nodes missing a ready pod", "Usually one node's problem.",
                 "kubectl -n <namespace> get pods -l <selector> -o wide",
                 "Pods not Ready and the nodes they are on."),
            step("Check taints and tolerations", "A new taint keeps the DaemonSet off a node.",
                 "kubectl describe node <node> | grep -A3 Taints",
                 "A taint the DaemonSet does not tolerate."),
        ],
        related=["node-not-ready", "pod-crashloop"]),
    Runbook(
        id="job-failed", title="Job failed",
        summary="A Job reached its backoff limit or deadline; for a CronJob (backups!) the "
                "work of that run did not happen.",
        severity_hint="warning",
        steps=[
            step("See the job's condition", "BackoffLimitExceeded or DeadlineExceeded.",
                 "kubectl -n <namespace> describe job <name>",
                 "The Failed condition's reason and the pods it created."),
            step("Read the logs of its last pod", "Why the work failed.",
                 "kubectl -n <namespace> logs job/<name>", "The error before exit.",
                 "k3sops logs <pod> -n <namespace>"),
            step("Re-run it once fixed", "A CronJob's next run may be hours away.",
                 "kubectl -n <namespace> create job <name>-manual --from=cronjob/<cronjob>",
                 "The new job completes: `kubectl -n <namespace> get job <name>-manual`."),
        ],
        related=["pod-failed", "backup-failed"]),
    Runbook(
        id="argocd-app-degraded", title="ArgoCD application degraded",
        summary="ArgoCD reports the application Degraded or Missing: some of its resources "
                "are unhealthy.",
        severity_hint="warning",
        steps=[
            step("See which resources are unhealthy", "ArgoCD names them.",
                 "kubectl -n argocd get application <name> -o jsonpath="
                 "'{range .status.resources[*]}{.kind}/{.name}: {.health.status}{\"\\n\"}{end}'",
                 "Resources Degraded or Missing.", "k3sops check"),
            step("Follow the runbook of the failing resource", "A Degraded Deployment is a "
                 "deployment problem.", "kubectl -n <namespace> describe <kind> <name>",
                 "The same causes as deployment-unavailable, pvc-pending and so on."),
        ],
        related=["deployment-unavailable", "argocd-app-out-of-sync"]),
    Runbook(
        id="argocd-app-out-of-sync", title="ArgoCD application out of sync",
        summary="The cluster differs from git: a manual change, a failed sync, or auto-sync "
                "off in an environment with a manual gate.",
        severity_hint="warning",
        steps=[
            step("See what differs", "A drifted field or a sync error.",
                 "kubectl -n argocd get application <name> -o jsonpath="
                 "'{.status.sync.status} {.status.operationState.message}'",
                 "OutOfSync resources and the last operation's message."),
            step("Sync, or bring the manual change into git", "Git is the source of truth; a "
                 "manual fix is lost at the next sync.", "argocd app sync <name>",
                 "Status Synced and Healthy."),
        ],
        related=["argocd-app-degraded"]),
    Runbook(
        id="app-error-rate", title="Application error rate high",
        summary="More than the platform's share of requests (5% by default) fail with 5xx: "
                "users see errors.",
        severity_hint="warning",
        steps=[
            step("Confirm and find the workload", "Which service and since when.",
                 "kubectl -n <namespace> get pods -l <selector>",
                 "The error rate over time and whether it began with a deploy.",
                 "k3sops metrics apps"),
            step("Read the application's logs", "The errors behind the 5xx.",
                 "kubectl -n <namespace> logs deployment/<name> --since=15m",
                 "Exceptions, timeouts to dependencies.", "k3sops logs <pod> -n <namespace>"),
            step("Roll back a bad release", "Fastest way to stop errors from a new version.",
                 "kubectl -n <namespace> rollout undo deployment/<name>",
                 "The error rate falls below the threshold."),
        ],
        related=["app-latency", "pod-restarting"]),
    Runbook(
        id="app-latency", title="Application latency high",
        summary="The 95th percentile latency is above the platform threshold (0.5s by "
                "default): users wait.",
        severity_hint="warning",
        steps=[
            step("Confirm and find the workload", "Which service and since when.",
                 "kubectl -n <namespace> top pods",
                 "p95 over time; CPU throttling or memory near the limit.",
                 "k3sops metrics apps"),
            step("Check saturation and dependencies", "Slow databases and CPU limits are the "
                 "usual causes.", "kubectl -n <namespace> logs deployment/<name> --since=15m",
                 "Slow-query or timeout messages; scale out if CPU bound.",
                 "k3sops logs <pod> -n <namespace>"),
        ],
        related=["app-error-rate", "node-high-cpu"]),
    Runbook(
        id="daemonset-misscheduled", title="DaemonSet pods where they should not run",
        summary="A DaemonSet pod keeps running on a node its DaemonSet no longer selects: a "
                "NoSchedule taint was added (it does not evict) or a node label removed. The "
                "pod does work where it is not wanted (on a node under maintenance, say).",
        severity_hint="warning",
        steps=[
            step("See which nodes", "The finding names the node and the taint or label.",
                 "kubectl -n <namespace> get pods -l <selector> -o wide; "
                 "kubectl describe node <node> | grep -A3 Taints",
                 "The taint the DaemonSet does not tolerate, or the label it selects on."),
            step("Decide who is right", "Either the DaemonSet should tolerate the taint, or "
                 "the pod should go.",
                 "kubectl -n <namespace> delete pod <pod>",
                 "numberMisscheduled 0 (kubectl -n <namespace> get ds <name> -o "
                 "jsonpath='{.status.numberMisscheduled}')."),
        ],
        related=["daemonset-unavailable", "node-cordoned"]),
]
