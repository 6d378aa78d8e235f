"""Runbook for repeated Warning events no specific check explains."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="events-warning", title="Repeated Warning events on an object",
        summary="Kubernetes keeps reporting a problem with this object (a mount, a sandbox, a "
                "provisioning or endpoint failure...) that no specific check covers. The "
                "event's reason and message say what failed and which component reports it.",
        severity_hint="warning",
        steps=[
            step("Read the events", "The reason, message and reporting component name the "
                 "failing operation.",
                 "kubectl -n <namespace> get events --field-selector "
                 "involvedObject.name=<name>,type=Warning --sort-by=.lastTimestamp",
                 "The newest events: the message usually names the missing or failing "
                 "dependency (a volume, a network plugin, a provisioner)."),
            step("Follow the object's dependencies", "The failing operation is often about "
                 "something the object uses.", "k3sops diagnose <kind>/<name> -n <namespace>",
                 "A dependency with its own finding, or a link that does not exist.",
                 "k3sops diagnose"),
            step("Check the reporting component", "kubelet, a controller or a CSI driver "
                 "reports the event; its logs say more.",
                 "kubectl -n kube-system logs <component-pod> --tail=100",
                 "Errors at the time of the events."),
        ]),
]
