"""The procedures: their steps in order, their runbooks, proposals and next steps."""

from __future__ import annotations

from k3sops.domain.emergency.app import (
    check_app_alerts,
    check_app_events,
    check_logs,
    check_pods,
    check_service_chain,
    check_workload,
)
from k3sops.domain.emergency.cluster import (
    check_certificates,
    check_control_plane_nodes,
    check_etcd,
    check_livez,
    check_readyz,
    check_recent_events,
    check_system_workloads,
)
from k3sops.domain.emergency.facts import StepSpec
from k3sops.domain.emergency.models import ActionRecord, CheckResult, Procedure, Proposal
from k3sops.domain.emergency.network import (
    check_coredns,
    check_dns_probe,
    check_ingress_controller,
    check_kube_proxy_flannel,
    check_metallb,
    check_nodes_pattern,
)

PROCEDURE_STEPS: dict[Procedure, tuple[StepSpec, ...]] = {
    "cluster-unresponsive": (
        StepSpec("api-livez", "API server reachable (/livez)", ("api",), check_livez),
        StepSpec("api-readyz", "API server ready (/readyz)", ("api",), check_readyz),
        StepSpec("etcd", "etcd health, leader and database size", ("etcd",), check_etcd),
        StepSpec("control-plane-nodes", "control-plane nodes Ready", ("snapshot",),
                 check_control_plane_nodes),
        StepSpec("certificates", "certificate expiry", ("cert", "snapshot"),
                 check_certificates),
        StepSpec("recent-events", "recent warning events", ("snapshot",), check_recent_events),
        StepSpec("system-workloads", "kube-system workloads available", ("snapshot",),
                 check_system_workloads),
    ),
    "app-down": (
        StepSpec("workload", "workload rollout and replicas", ("snapshot",), check_workload),
        StepSpec("pods", "pods and their causal chain", ("snapshot",), check_pods),
        StepSpec("service-chain", "Service → EndpointSlices → Ingress", ("snapshot",),
                 check_service_chain),
        StepSpec("events", "recent warning events of the app", ("snapshot",),
                 check_app_events),
        StepSpec("logs", "log tail", ("snapshot", "logs"), check_logs),
        StepSpec("alerts", "firing alerts for the app", ("snapshot",), check_app_alerts),
    ),
    "network-lost": (
        StepSpec("nodes", "NotReady pattern", ("snapshot",), check_nodes_pattern),
        StepSpec("coredns", "CoreDNS", ("snapshot",), check_coredns),
        StepSpec("ingress-controller", "ingress controller", ("snapshot",),
                 check_ingress_controller),
        StepSpec("metallb", "MetalLB", ("snapshot",), check_metallb),
        StepSpec("kube-proxy-flannel", "kube-proxy / flannel hints", ("snapshot",),
                 check_kube_proxy_flannel),
        StepSpec("dns-probe", "DNS lookup from a pod", ("snapshot", "dns"), check_dns_probe),
    ),
}
"""Every procedure's steps, in the order they run."""

PROCEDURE_RUNBOOK: dict[Procedure, str] = {
    "cluster-unresponsive": "emergency-cluster-down",
    "app-down": "emergency-app-down",
    "network-lost": "emergency-network-lost",
}
"""The runbook each procedure follows (named first among the report's runbooks)."""


def proposals(checks: list[CheckResult]) -> list[Proposal]:
    """Every proposal of the checks, once each, in the order the checks made them."""
    seen: dict[str, Proposal] = {}
    for c in checks:
        for p in c.proposals:
            seen.setdefault(p.key, p)
    return list(seen.values())


def next_steps(procedure: Procedure, checks: list[CheckResult],
               actions: list[ActionRecord]) -> tuple[list[str], list[str]]:
    """What to do next (failed checks first) and the runbooks to follow."""
    order = {"fail": 0, "warn": 1, "unknown": 2}
    steps: list[str] = []
    runbooks = [PROCEDURE_RUNBOOK[procedure]]
    for c in sorted((c for c in checks if c.status in order), key=lambda c: order[c.status]):
        if c.next_step:
            steps.append(f"{c.title}: {c.next_step}"
                         + (f" (runbook {c.runbook})" if c.runbook else ""))
        if c.runbook and c.runbook not in runbooks:
            runbooks.append(c.runbook)
    for a in actions:
        if a.decision != "applied":
            steps.append(f"not done: {a.proposal.text}"
                         + ("; rerun with --yes to make this change"
                            if a.proposal.action != "manual" else ""))
    if not steps:
        steps.append("no problem found by this procedure: look at `k3sops check` and "
                     "`k3sops diagnose` for anything else")
    return steps, runbooks

