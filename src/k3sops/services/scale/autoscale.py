"""`scale autoscale`: create or update an autoscaling/v2 HPA with exactly the asked spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.adapters.kube import KubeAdapter
from k3sops.domain import sizing
from k3sops.errors import K3sopsError, PlanRejected
from k3sops.services.scale.common import HPA_GV, WORKLOAD_GV, Audited, resolve_workload


class AutoscaleReport(BaseModel):
    """What `scale autoscale` did or would do."""

    namespace: str
    name: str
    target: str
    action: Literal["create", "update", "none"]
    changed_fields: list[str] = Field(default_factory=list)
    spec: dict[str, Any]
    applied: bool
    result: Literal["planned", "ok", "failed", "skipped"]
    notes: list[str] = Field(default_factory=list)
    audit_log: str | None = None


def _no_cpu_request(workload: Mapping[str, Any]) -> list[str]:
    """Containers without a CPU request: CPU utilisation (a share of it) is undefined for them."""
    spec = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [str(c.get("name", "")) for c in spec.get("containers") or []
            if "cpu" not in ((c.get("resources") or {}).get("requests") or {})]


def autoscale(kube: KubeAdapter, audited: Audited, name: str, namespace: str, *,
              cpu_percent: int, min_replicas: int, max_replicas: int, apply: bool,
              hpa_name: str | None = None) -> AutoscaleReport:
    """Create or update the HPA of a workload so that its spec is exactly the one asked."""
    plural, wname = resolve_workload(kube, name, namespace)
    spec = sizing.hpa_spec(plural, wname, cpu_percent, min_replicas, max_replicas)
    hname = hpa_name or wname
    current = kube.find(HPA_GV, "horizontalpodautoscalers", hname, namespace)
    if current is not None and sizing.hpa_targets([current], plural, wname) != [hname]:
        ref = (current.get("spec") or {}).get("scaleTargetRef") or {}
        raise PlanRejected(f"HPA {namespace}/{hname} exists and targets "
                           f"{ref.get('kind')}/{ref.get('name')}, not {plural}/{wname}",
                           hint="pass --hpa-name NAME for a new HPA")
    others = [h for h in sizing.hpa_targets(
        kube.list(HPA_GV, "horizontalpodautoscalers", namespace), plural, wname)
        if h != hname]
    if others:
        raise PlanRejected(f"{plural}/{wname} is already targeted by HPA "
                           f"{', '.join(others)}; two HPAs on one workload fight",
                           hint="update that one: --hpa-name " + others[0])
    if current is None:
        action: Literal["create", "update", "none"] = "create"
        changed = list(spec)
    else:
        changed = sizing.hpa_spec_differs(current.get("spec") or {}, spec)
        action = "update" if changed else "none"
    report = AutoscaleReport(namespace=namespace, name=hname,
                             target=f"{plural}/{wname}", action=action,
                             changed_fields=changed, spec=spec, applied=apply,
                             result="planned")
    missing = _no_cpu_request(kube.get(WORKLOAD_GV, plural, wname, namespace))
    if missing:
        report.notes.append(f"container(s) {', '.join(missing)} have no CPU request: the "
                            "HPA cannot compute CPU utilisation until they do "
                            "(k3sops scale resources recommends one)")
    if not apply:
        return report
    report.audit_log = str(audited.audit.path)
    if action == "none":
        report.result = "skipped"
        audited.record("autoscale", f"{namespace}/horizontalpodautoscalers/{hname}",
                       "spec already as asked", "skipped")
        return report
    detail = (f"{action} cpu {cpu_percent}% min {min_replicas} max {max_replicas} "
              f"on {plural}/{wname}")
    try:
        if current is None:
            kube.create(HPA_GV, "horizontalpodautoscalers", namespace, {
                "apiVersion": HPA_GV, "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": hname, "namespace": namespace,
                             "labels": {"app.kubernetes.io/managed-by": "k3sops"}},
                "spec": spec})
        else:
            # PUT with the resourceVersion read: the spec becomes exactly the asked one
            # (a merge patch would keep behavior/metrics we were not asked for).
            current["spec"] = spec
            kube.replace(HPA_GV, "horizontalpodautoscalers", namespace, current)
    except K3sopsError as e:
        audited.record("autoscale", f"{namespace}/horizontalpodautoscalers/{hname}",
                       detail, "failed", e.message)
        raise
    audited.record("autoscale", f"{namespace}/horizontalpodautoscalers/{hname}", detail,
                   "ok")
    report.result = "ok"
    return report

