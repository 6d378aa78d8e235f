"""Runbooks for refused creates: workloads that cannot create pods, quotas used up."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="workload-create-failed", title="Workload cannot create its pods",
        summary="The API server refuses the pods (or Jobs) a controller creates: a "
                "ResourceQuota, a missing ServiceAccount or PriorityClass, the namespace's "
                "PodSecurity level, a LimitRange, an admission webhook or policy. No pod "
                "exists to show an error; the refusal is on the workload.",
        severity_hint="critical",
        steps=[
            step("Read the refusal", "The controller records the API server's answer: it "
                 "names who refused and why.",
                 "kubectl -n <namespace> describe <kind> <name>; "
                 "kubectl -n <namespace> get events --field-selector reason=FailedCreate",
                 "'exceeded quota: NAME', 'error looking up service account NS/NAME', "
                 "'violates PodSecurity \"LEVEL:VERSION\"', 'admission webhook \"NAME\" denied "
                 "the request', 'no PriorityClass with name NAME', 'maximum cpu usage per "
                 "Container'.", "k3sops diagnose <kind>/<name> -n <namespace>"),
            step("Quota: compare the ask with the room", "A quota refuses a pod that would "
                 "take it over its hard limit, or one that sets no request/limit it counts.",
                 "kubectl -n <namespace> describe resourcequota <quota>",
                 "Used against Hard; raise the quota, free room, or set the requests/limits "
                 "the quota requires in the workload's template."),
            step("ServiceAccount, PriorityClass or RuntimeClass: create it or fix the name",
                 "A pod may only name objects that exist.",
                 "kubectl -n <namespace> get serviceaccount <sa>; kubectl get priorityclass; "
                 "kubectl get runtimeclass",
                 "The name in the template differs from what exists (typo, not yet applied, "
                 "deleted with an old release)."),
            step("PodSecurity: see what the namespace enforces", "The "
                 "pod-security.kubernetes.io/enforce label sets the level every pod must meet.",
                 "kubectl get namespace <namespace> --show-labels",
                 "Fix the template's securityContext to meet the level; relax the label only "
                 "with a reason (the refusal lists every field at fault)."),
            step("Webhook or policy: read who refused and whether it is reachable",
                 "A webhook's own message says what it wants; a webhook that cannot be called "
                 "with failurePolicy Fail refuses everything it matches.",
                 "kubectl get validatingwebhookconfigurations,mutatingwebhookconfigurations,"
                 "validatingadmissionpolicies",
                 "The webhook's service and endpoints (see webhook-unavailable), or the "
                 "policy's validation message."),
        ],
        related=["quota-exhausted", "webhook-unavailable", "deployment-rollout-stuck"]),
    Runbook(
        id="quota-exhausted", title="ResourceQuota used up",
        summary="A namespace's ResourceQuota has a resource at its hard limit: every new pod "
                "(or object) it counts is refused, so scale-ups, rollouts and Jobs stop.",
        severity_hint="warning",
        steps=[
            step("See what is used", "Used against Hard per resource.",
                 "kubectl -n <namespace> describe resourcequota <name>",
                 "The resources at or near their hard limit."),
            step("Find who uses it", "Finished pods, forgotten Jobs or oversized requests "
                 "often hold the room.",
                 "kubectl -n <namespace> get pods --sort-by=.spec.containers[0].resources."
                 "requests.cpu; kubectl -n <namespace> get jobs",
                 "Pods that could go, requests far above real use (k3sops diagnose performance)."),
            step("Raise the quota or free room", "A quota is a budget: change it on purpose, "
                 "in Git if the namespace is managed by GitOps.",
                 "kubectl -n <namespace> edit resourcequota <name>",
                 "The workloads that could not create pods recover (workload-create-failed "
                 "clears)."),
        ],
        related=["workload-create-failed", "capacity-requests"]),
]
