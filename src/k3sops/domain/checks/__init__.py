"""The checks of `k3sops check`; importing this package registers every one of them."""

from k3sops.domain.checks import (  # noqa: F401 - registration side effect
    alerts,
    apps,
    backups,
    capacity,
    controlplane,
    gitops,
    manual,
    network,
    nodes,
    pods,
    storage,
    versions,
    workloads,
)
from k3sops.domain.checks.base import MANUAL, REGISTRY, CheckContext, CheckSpec, check, selected

__all__ = ["MANUAL", "REGISTRY", "CheckContext", "CheckSpec", "check", "selected"]
