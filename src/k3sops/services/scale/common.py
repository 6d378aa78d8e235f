"""What every scale verb shares: the API groups, the audit log, the workload, the clients."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from k3sops.adapters.audit import AuditLog, current_user, state_dir
from k3sops.adapters.kube import KubeAdapter, KubeClient
from k3sops.adapters.prometheus import PrometheusAdapter
from k3sops.domain import remediate
from k3sops.errors import K3sopsError, NotFound
from k3sops.services import context, metrics

HPA_GV = "autoscaling/v2"
WORKLOAD_GV = "apps/v1"


class Audited:
    """Where changes are recorded: the audit log and the kube context they were made in."""

    def __init__(self, kube: KubeAdapter, env: Mapping[str, str], home: Path,
                 state: Path | None) -> None:
        self.audit = AuditLog(state_dir(state, env, home) / "audit.jsonl")
        self.context = kube.context

    def record(self, action: str, target: str, detail: str, result: str,
               error: str | None = None) -> None:
        """Append one record (who, when, what, result)."""
        self.audit.append({"who": current_user(), "context": self.context,
                           "what": {"action": action, "target": target, "detail": detail},
                           "result": result, "error": error})


def resolve_workload(api: KubeClient, name: str, namespace: str) -> tuple[str, str]:
    """``NAME`` or ``KIND/NAME`` -> (plural, name); a bare name is a Deployment or StatefulSet.

    Raises:
        NotFound: no such workload.
    """
    if "/" in name:
        plural, wname = remediate.parse_workload(name)
        api.get(WORKLOAD_GV, plural, wname, namespace)  # NotFound names it
        return plural, wname
    for plural in ("deployments", "statefulsets"):
        if api.find(WORKLOAD_GV, plural, name, namespace) is not None:
            return plural, name
    raise NotFound(f"no Deployment or StatefulSet {name!r} in namespace {namespace}",
                   hint=f"list them: kubectl get deploy,sts -n {namespace}")


def open_cluster(settings: context.Settings, env: Mapping[str, str], home: Path,
                 state: Path | None) -> tuple[KubeAdapter, Audited]:
    """The cluster and the audit log a scaling command works with."""
    kube = context.kube(settings, env, home)
    return kube, Audited(kube, env, home, state)


def close_prometheus(prom: PrometheusAdapter | K3sopsError) -> None:
    """Close Prometheus if it was opened."""
    if isinstance(prom, PrometheusAdapter):
        prom.close()


def connect_prometheus(settings: context.Settings, env: Mapping[str, str],
                       home: Path) -> PrometheusAdapter | K3sopsError:
    """Prometheus, or the error that prevented reaching it (so callers can degrade)."""
    try:
        return metrics.connect(settings, env, home)
    except K3sopsError as e:
        return e
