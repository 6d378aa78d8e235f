"""Checklist steps k3sops cannot do for you, with instructions (acknowledge with `check ack`).

Each item is listed in the report of its period (and of the longer periods, as checks are) until
someone acknowledges it: ``k3sops check ack ITEM --note "..."`` records who and when.
"""

from __future__ import annotations

from k3sops.domain.checks.base import manual
from k3sops.domain.findings import ManualItem

REVIEW_OVERNIGHT_INCIDENTS = manual(ManualItem(
    id="review-overnight-incidents", period="daily",
    title="Review overnight incidents and the on-call handover",
    instructions=(
        "Read the incident channel and the on-call handover notes since yesterday's check. "
        "For each incident: is it resolved, is a post-mortem or follow-up ticket open, did an "
        "alert fire for it (compare with alert-firing / alert-overnight above; an incident "
        "without an alert is a missing rule). Note open follow-ups when acknowledging."),
))

REVIEW_DASHBOARDS = manual(ManualItem(
    id="review-dashboards", period="weekly",
    title="Check that dashboards and docs still match the services",
    instructions=(
        "Open the Grafana dashboards of each environment: every running service should have "
        "its panels, no panel should show 'No data' for a service that still exists, and "
        "nothing should describe a service that is gone. Re-render the k3sops dashboards after "
        "an upgrade (`k3sops dashboards render`) so they follow the current metrics, and update "
        "runbooks and architecture docs that name renamed or removed services."),
))

REVIEW_ACCESS = manual(ManualItem(
    id="review-access", period="monthly",
    title="Review cluster access: RBAC bindings and kubeconfig holders",
    instructions=(
        "List who can do what: `kubectl get clusterrolebindings,rolebindings -A -o wide`, "
        "paying attention to cluster-admin and to bindings of people who left or changed "
        "teams. Check who holds a kubeconfig or a K3s token (/var/lib/rancher/k3s/server/token) "
        "and rotate credentials of anyone who no longer needs them. Remove unused "
        "ServiceAccounts and their tokens."),
))

DR_RUNBOOK_REVIEW = manual(ManualItem(
    id="dr-runbook-review", period="monthly",
    title="Review the disaster-recovery runbook",
    instructions=(
        "Read the disaster-recovery runbook end to end against the platform as it is now: "
        "node names and IPs, the etcd snapshot and S3 locations, backup repositories and "
        "where their passwords live, contact lists and escalation paths. Fix what changed, and "
        "make sure the last restore drill (restore-test-due) followed the runbook as written."),
))

SECURITY_PATCHES = manual(ManualItem(
    id="security-patches", period="monthly",
    title="Apply OS security patches to the nodes",
    instructions=(
        "Check each node for pending security updates (Debian/Ubuntu: `apt list --upgradable`, "
        "RHEL-like: `dnf updateinfo list security`) and for a pending reboot "
        "(/var/run/reboot-required). Patch and reboot one node at a time: drain it "
        "(`kubectl drain NODE --ignore-daemonsets --delete-emptydir-data`), update, reboot, "
        "uncordon, and wait for its pods to be Ready before the next one; servers one by one "
        "so etcd keeps its quorum. kernel-drift in this report shows nodes left behind."),
))
