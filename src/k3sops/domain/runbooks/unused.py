"""Runbooks for weekly clean-up: ConfigMaps and Secrets nothing uses."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="configmap-unused", title="ConfigMap used by nothing",
        summary="No pod or workload template refers to the ConfigMap: left over from an old "
                "release, or read by a controller through the API (then keep it).",
        severity_hint="info",
        steps=[
            step("Find its origin", "Labels and annotations name the chart or app.",
                 "kubectl -n <namespace> get configmap <name> -o yaml | head -30",
                 "app.kubernetes.io/* labels, a Helm release, a controller that reads it."),
            step("Delete it if nothing reads it", "Or suppress the finding for config a "
                 "controller reads through the API.",
                 "kubectl -n <namespace> delete configmap <name>",
                 "Gone, or suppressed with a reason.", "k3sops check --weekly"),
        ],
        related=["secret-unused"]),
    Runbook(
        id="secret-unused", title="Secret used by nothing",
        summary="No pod, workload template, Ingress, ServiceAccount or volume refers to the "
                "Secret: credentials nobody uses are still credentials to leak.",
        severity_hint="info",
        steps=[
            step("Find its origin", "Without printing its values.",
                 "kubectl -n <namespace> get secret <name> -o "
                 "jsonpath='{.type} {.metadata.labels} {.metadata.annotations}'",
                 "A chart, an operator, an old deployment."),
            step("Rotate what it held, then delete it", "If it was ever used, assume it may "
                 "have leaked.", "kubectl -n <namespace> delete secret <name>",
                 "Gone, or suppressed with a reason.", "k3sops check --weekly"),
        ],
        related=["configmap-unused"]),
]
