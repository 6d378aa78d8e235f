"""Runbooks for the API's own extensions: admission webhooks, aggregated APIs, namespaces."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="webhook-unavailable", title="Admission webhook cannot be called",
        summary="A Validating/MutatingWebhookConfiguration calls a Service that is missing, "
                "has no ready endpoint or lacks the port: with failurePolicy Fail every "
                "matching API request is refused (deployments, scaling, even pods).",
        severity_hint="critical",
        steps=[
            step("See what the webhook intercepts", "Its rules and selectors decide which "
                 "requests fail.",
                 "kubectl get validatingwebhookconfiguration,mutatingwebhookconfiguration "
                 "<name> -o yaml",
                 "rules (resources, operations), namespaceSelector, failurePolicy, "
                 "clientConfig.service."),
            step("Bring the webhook's Service back", "Usually its Deployment is down.",
                 "kubectl -n <namespace> get svc,endpointslices,pods -l <selector>",
                 "Pods not ready; the Service or port missing.", "k3sops check"),
            step("If the webhook's owner is gone, remove the configuration",
                 "A webhook left behind by an uninstalled operator blocks the API for good.",
                 "kubectl delete validatingwebhookconfiguration <name>",
                 "Requests succeed again."),
        ],
        related=["service-no-endpoints", "apiservice-unavailable"]),
    Runbook(
        id="apiservice-unavailable", title="Aggregated API unavailable",
        summary="An APIService (e.g. v1beta1.metrics.k8s.io, K3s' metrics-server) is not "
                "Available: its API fails, and namespace deletion and API discovery break "
                "cluster-wide.",
        severity_hint="critical",
        steps=[
            step("Read the condition", "The aggregator says why.",
                 "kubectl get apiservice <name> -o jsonpath='{.status.conditions}'",
                 "ServiceNotFound, MissingEndpoints, FailedDiscoveryCheck (TLS, network)."),
            step("Check the backing Service and pods", "metrics-server runs in kube-system on "
                 "K3s.",
                 "kubectl -n <namespace> get svc,endpointslices,pods -l <selector>",
                 "Pods not ready or the Service missing.", "k3sops check"),
            step("Remove an APIService whose server was uninstalled", "It keeps breaking "
                 "discovery until deleted.",
                 "kubectl delete apiservice <name>",
                 "kubectl api-resources shows no error."),
        ],
        related=["namespace-stuck-terminating", "service-no-endpoints"]),
    Runbook(
        id="namespace-stuck-terminating", title="Namespace stuck Terminating",
        summary="A namespace being deleted does not go away: the namespace controller cannot "
                "list every kind (an unavailable APIService) or objects keep finalizers.",
        severity_hint="warning",
        steps=[
            step("Read the namespace's conditions", "They name the blocker.",
                 "kubectl get namespace <name> -o jsonpath='{.status.conditions}'",
                 "NamespaceDeletionDiscoveryFailure (an APIService), "
                 "NamespaceFinalizersRemaining (which finalizer), NamespaceContentRemaining."),
            step("Fix an unavailable APIService", "Discovery must succeed for the deletion to "
                 "finish.", "kubectl get apiservice | grep False",
                 "Every APIService Available, or the stale one deleted."),
            step("Find the objects holding finalizers", "Their controller should remove them; "
                 "if it is gone, remove the finalizer by hand.",
                 "kubectl api-resources --verbs=list --namespaced -o name | xargs -n1 "
                 "kubectl get -n <name> --ignore-not-found --show-kind",
                 "The remaining objects; `kubectl patch <kind>/<obj> -n <name> --type=merge "
                 "-p '{\"metadata\":{\"finalizers\":[]}}'` as a last resort.",
                 "k3sops check"),
        ],
        related=["apiservice-unavailable"]),
]
