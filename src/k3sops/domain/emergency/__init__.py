"""Emergency procedures as ordered checks over gathered facts (pure; the service gathers).

`k3sops emergency cluster-unresponsive | app-down APP | network-lost` walks one of the
procedures. Each :class:`StepSpec` names the facts it needs (the service gathers them just
before the step runs, so progress shows as it happens) and a function turning those facts into
a :class:`CheckResult`: a status, what was seen, the evidence, the runbook and the proposed next
step. Changes k3sops can make are :class:`Proposal` s; the service asks before making any of
them and makes them through the remediation plans (audited). Everything that happened is kept
as a :class:`TimelineEntry` list and rendered as Markdown for an incident report.

Nothing here reads a clock or does I/O: ``Facts.now`` and every timestamp come from the caller.

Modules, each importing only those above it (an import-linter contract holds the order):

- :mod:`.models`: the report and its parts (probes, checks, proposals, timeline entries);
- :mod:`.facts`: what a step reads, its spec, and the helpers every check shares;
- :mod:`.cluster`, :mod:`.app`, :mod:`.network`: the checks of each procedure (independent);
- :mod:`.procedures`: each procedure's steps in order, its runbook, proposals, next steps;
- :mod:`.timeline`: the incident timeline as Markdown.

This package re-exports their public names, so ``from k3sops.domain import emergency as em``
keeps working.
"""

from k3sops.domain.emergency.app import (
    ALERT_LABELS,
    check_app_alerts,
    check_app_events,
    check_logs,
    check_pods,
    check_service_chain,
    check_workload,
    find_workload,
    workload_pods,
    workload_state,
)
from k3sops.domain.emergency.cluster import (
    CERT_WARN_DAYS,
    ETCD_DB_QUOTA_PERCENT,
    ETCD_QUERIES,
    SLOW_API_SECONDS,
    check_certificates,
    check_control_plane_nodes,
    check_etcd,
    check_livez,
    check_readyz,
    check_recent_events,
    check_system_workloads,
    failed_readyz_checks,
)
from k3sops.domain.emergency.facts import (
    RECENT_EVENTS_SECONDS,
    Facts,
    StepFn,
    StepSpec,
    recent_warnings,
)
from k3sops.domain.emergency.models import (
    PROCEDURES,
    ActionRecord,
    CertInfo,
    CheckResult,
    EmergencyReport,
    Fact,
    Probe,
    Procedure,
    Proposal,
    Status,
    TimelineEntry,
)
from k3sops.domain.emergency.network import (
    INGRESS_CONTROLLERS,
    check_coredns,
    check_dns_probe,
    check_ingress_controller,
    check_kube_proxy_flannel,
    check_metallb,
    check_nodes_pattern,
    not_ready_pattern,
)
from k3sops.domain.emergency.procedures import (
    PROCEDURE_RUNBOOK,
    PROCEDURE_STEPS,
    next_steps,
    proposals,
)
from k3sops.domain.emergency.timeline import timeline_markdown

__all__ = [
    "ALERT_LABELS", "CERT_WARN_DAYS", "ETCD_DB_QUOTA_PERCENT", "ETCD_QUERIES",
    "INGRESS_CONTROLLERS", "PROCEDURES", "PROCEDURE_RUNBOOK", "PROCEDURE_STEPS",
    "RECENT_EVENTS_SECONDS", "SLOW_API_SECONDS", "ActionRecord", "CertInfo", "CheckResult",
    "EmergencyReport", "Fact", "Facts", "Probe", "Procedure", "Proposal", "Status", "StepFn",
    "StepSpec", "TimelineEntry", "check_app_alerts", "check_app_events", "check_certificates",
    "check_control_plane_nodes", "check_coredns", "check_dns_probe", "check_etcd",
    "check_ingress_controller", "check_kube_proxy_flannel", "check_livez", "check_logs",
    "check_metallb", "check_nodes_pattern", "check_pods", "check_readyz", "check_recent_events",
    "check_service_chain", "check_system_workloads", "check_workload", "failed_readyz_checks",
    "find_workload", "next_steps", "not_ready_pattern", "proposals", "recent_warnings",
    "timeline_markdown", "workload_pods", "workload_state",
]
