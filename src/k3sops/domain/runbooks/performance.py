"""Runbooks for `k3sops diagnose performance` findings that have no runbook elsewhere."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="pod-cpu-throttled", title="A pod is CPU-throttled",
        summary="The container reaches its CPU limit: the kernel's CFS quota pauses it for the "
                "rest of each 100ms period, which shows as latency, not as errors.",
        severity_hint="warning",
        steps=[
            step("See how often and how hard", "The share of throttled periods and the usage "
                 "against the limit.", "kubectl -n <namespace> top pod <pod> --containers",
                 "Usage at or near the CPU limit.", "k3sops diagnose performance"),
            step("Compare limit and requests", "A limit far below the real need throttles "
                 "every burst.", "kubectl -n <namespace> get pod <pod> -o "
                 "jsonpath='{.spec.containers[*].resources}'",
                 "The CPU limit per container."),
            step("Raise the limit or remove it", "Many platforms set CPU requests only: "
                 "requests give the fair share, limits only add throttling.",
                 "kubectl -n <namespace> set resources deployment/<name> --limits=cpu=<cpu>",
                 "Throttled periods drop under 25%."),
        ],
        related=["node-high-cpu", "capacity-requests"]),
]
