"""Runbooks for autoscaling and disruption budgets: HPAs, PodDisruptionBudgets."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

_DESCRIBE_HPA = step(
    "Describe the HPA", "Its conditions and events say what it could and could not do.",
    "kubectl -n <namespace> describe hpa <name>",
    "AbleToScale, ScalingActive and ScalingLimited with their reasons; the metrics it read.",
    "k3sops diagnose <kind>/<name> -n <namespace>")

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="hpa-target-missing", title="HPA cannot scale its target",
        summary="The HorizontalPodAutoscaler names a workload that does not exist (renamed, "
                "deleted, wrong kind) or cannot read or change its scale: nothing is "
                "autoscaled.",
        severity_hint="warning",
        steps=[
            _DESCRIBE_HPA,
            step("Compare the target with what exists", "A chart that renamed its Deployment "
                 "but not the HPA is the usual cause.",
                 "kubectl -n <namespace> get hpa <name> -o jsonpath='{.spec.scaleTargetRef}'; "
                 "kubectl -n <namespace> get deploy,sts",
                 "Fix scaleTargetRef (kind, name, apiVersion) or delete the stale HPA."),
        ],
        related=["hpa-metrics-unavailable"]),
    Runbook(
        id="hpa-metrics-unavailable", title="HPA cannot read its metrics",
        summary="The HPA cannot compute a replica count: the metrics API (metrics-server for "
                "CPU/memory, an adapter for custom or external metrics) is missing or down, "
                "or the pods set no request for the resource it scales on. It keeps the "
                "current replica count whatever the load.",
        severity_hint="warning",
        steps=[
            _DESCRIBE_HPA,
            step("Check the metrics API", "CPU/memory come from v1beta1.metrics.k8s.io "
                 "(metrics-server, bundled with K3s unless disabled); Pods/Object metrics "
                 "from v1beta1.custom.metrics.k8s.io; External from "
                 "v1beta1.external.metrics.k8s.io.",
                 "kubectl get apiservices | grep metrics; kubectl top pods -n <namespace>",
                 "An APIService missing or Available=False (see apiservice-unavailable); "
                 "'kubectl top' failing too."),
            step("Check the pods' requests", "Utilisation is usage divided by request: "
                 "without a request there is no utilisation.",
                 "kubectl -n <namespace> get deploy <target> -o jsonpath="
                 "'{.spec.template.spec.containers[*].resources}'",
                 "'missing request for cpu' in the HPA's message: add requests."),
        ],
        related=["apiservice-unavailable", "hpa-target-missing", "container-no-requests"]),
    Runbook(
        id="hpa-at-max", title="HPA wants more replicas than its maximum",
        summary="The load needs more replicas than maxReplicas allows: the workload runs "
                "at its ceiling and latency or errors rise with more load.",
        severity_hint="warning",
        steps=[
            _DESCRIBE_HPA,
            step("See how far over it is", "The current metric against the target tells how "
                 "many replicas it would want.",
                 "kubectl -n <namespace> get hpa <name>",
                 "TARGETS far above the target (e.g. 300%/70%).",
                 "k3sops diagnose performance"),
            step("Raise the maximum if the cluster has room", "Check node capacity first.",
                 "kubectl -n <namespace> patch hpa <name> -p '{\"spec\":{\"maxReplicas\":<n>}}'",
                 "ScalingLimited turns False; replicas rise; requests fit the nodes "
                 "(capacity-requests)."),
        ],
        related=["capacity-requests", "app-latency"]),
    Runbook(
        id="pdb-blocks-eviction", title="Disruption budget blocks every eviction",
        summary="The PodDisruptionBudget allows no disruption while all its pods are healthy "
                "(minAvailable equal to the replicas, maxUnavailable 0): kubectl drain, node "
                "upgrades and the cluster autoscaler wait on these pods forever.",
        severity_hint="warning",
        steps=[
            step("Read the budget against the replicas", "minAvailable must be below the "
                 "replica count (or maxUnavailable at least 1) for any pod to move.",
                 "kubectl -n <namespace> get pdb <name>; kubectl -n <namespace> get deploy,sts",
                 "ALLOWED DISRUPTIONS 0 with all pods healthy."),
            step("Fix the budget or add a replica", "With one replica a budget cannot both "
                 "protect it and let it move: run two, or accept the short outage.",
                 "kubectl -n <namespace> patch pdb <name> --type=merge "
                 "-p '{\"spec\":{\"maxUnavailable\":1,\"minAvailable\":null}}'",
                 "ALLOWED DISRUPTIONS at least 1; a drain proceeds (kubectl drain --dry-run)."),
        ],
        related=["pdb-overlap", "single-replica"]),
    Runbook(
        id="pdb-overlap", title="Pods under more than one disruption budget",
        summary="Two PodDisruptionBudgets select the same pods: the eviction API refuses to "
                "evict such a pod at all, so drains fail on it.",
        severity_hint="warning",
        steps=[
            step("Find the overlapping budgets", "Their selectors match the same labels.",
                 "kubectl -n <namespace> get pdb -o wide; "
                 "kubectl -n <namespace> get pods --show-labels",
                 "The shared pods named in the finding and the selectors that match them."),
            step("Keep one budget per workload", "Narrow or delete one of them.",
                 "kubectl -n <namespace> delete pdb <name>",
                 "Each pod matched by one budget; eviction works (kubectl drain --dry-run)."),
        ],
        related=["pdb-blocks-eviction"]),
    Runbook(
        id="pdb-no-pods", title="Disruption budget protects nothing",
        summary="The PodDisruptionBudget's selector matches no pod (a renamed workload, a "
                "typo): the workload it was meant for has no protection during drains.",
        severity_hint="info",
        steps=[
            step("Compare the selector with the workload's labels", "The labels must match "
                 "the pod template's.",
                 "kubectl -n <namespace> get pdb <name> -o jsonpath='{.spec.selector}'; "
                 "kubectl -n <namespace> get pods --show-labels",
                 "The labels differ (a renamed app, a chart that changed its labels)."),
            step("Fix the selector or delete the budget", "A budget for a workload that is "
                 "gone only confuses the next person.",
                 "kubectl -n <namespace> edit pdb <name>",
                 "The budget's expectedPods above 0 (kubectl -n <namespace> get pdb <name> "
                 "-o jsonpath='{.status.expectedPods}')."),
        ],
        related=["single-replica"]),
]
