"""Application scaling: replicas, HPAs, right-sizing requests/limits, PVC expansion.

Every change is planned first and made only with ``apply=True``; applied changes are written to
the audit log (adapters/audit.py), like the remediations.

- ``scale_app``: the remediation ``scale`` plan (domain/remediate.plan_scale), refused while an
  HPA owns the workload's replica count (the HPA would undo it at its next sync) unless forced;
  after an applied change it waits for the controllers to bring the replicas up.
- ``autoscale``: create or update an autoscaling/v2 HPA with exactly the asked spec.
- ``hpa_status``: every HPA with at-max and not-scaling warnings.
- ``resources``: recommendations from Prometheus history (domain/sizing); applied as a patch
  of the workload's pod template, or into the GitOps values file when the app is managed there.
- ``pvc``: checks first (StorageClass allows expansion, larger size, bound claim, Longhorn
  volume able to grow), then the patch, then follows the resize conditions.

Modules: :mod:`.common` (API groups, the audit log, the workload, the clients every verb
opens) and one module per verb: :mod:`.app`, :mod:`.autoscale`, :mod:`.status`,
:mod:`.resources`, :mod:`.pvc`. Verbs import only :mod:`.common`, never each other (an
import-linter contract holds it); this package re-exports their public names.
"""

from k3sops.services.scale.app import scale_app
from k3sops.services.scale.autoscale import AutoscaleReport, autoscale
from k3sops.services.scale.common import (
    HPA_GV,
    WORKLOAD_GV,
    Audited,
    close_prometheus,
    connect_prometheus,
    open_cluster,
    resolve_workload,
)
from k3sops.services.scale.pvc import (
    LONGHORN_GV,
    LONGHORN_NAMESPACE,
    LONGHORN_PROVISIONER,
    PvcCheck,
    PvcReport,
    expand_pvc,
    pvc_checks,
)
from k3sops.services.scale.resources import (
    WORKLOAD_PLURALS,
    Change,
    GitopsWriter,
    ResourcesReport,
    apply_resources,
    container_resources,
    gitops_hooks,
    gitops_target,
    histories,
    history_queries,
    planned_changes,
    recommend_resources,
)
from k3sops.services.scale.status import HpaReport, hpa_status

__all__ = [
    "HPA_GV", "LONGHORN_GV", "LONGHORN_NAMESPACE", "LONGHORN_PROVISIONER", "WORKLOAD_GV",
    "WORKLOAD_PLURALS", "Audited", "AutoscaleReport", "Change", "GitopsWriter", "HpaReport",
    "PvcCheck", "PvcReport", "ResourcesReport", "apply_resources", "autoscale",
    "close_prometheus", "connect_prometheus", "container_resources", "expand_pvc",
    "gitops_hooks", "gitops_target", "histories", "history_queries", "hpa_status",
    "open_cluster", "planned_changes", "pvc_checks", "recommend_resources", "resolve_workload",
    "scale_app",
]
