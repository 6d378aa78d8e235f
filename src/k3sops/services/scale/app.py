"""`scale app`: the remediation scale plan, refused while an HPA owns the replica count."""

from __future__ import annotations

import time

from k3sops.adapters.kube import KubeActions, KubeClient
from k3sops.domain import remediate, sizing
from k3sops.domain.remediate import Plan
from k3sops.errors import PlanRejected
from k3sops.services.remediate import RemediationReport, Runner
from k3sops.services.scale.common import HPA_GV, WORKLOAD_GV, resolve_workload


def scale_app(runner: Runner, name: str, namespace: str, replicas: int, *, force: bool = False,
              wait: float = 0.0) -> RemediationReport:
    """Plan (and apply) a replica count; refused while an HPA targets the workload.

    Args:
        runner: the remediation runner (cluster, apply or not, audit log).
        name: ``NAME`` or ``deployment/NAME``/``statefulset/NAME``.
        namespace: the workload's namespace.
        replicas: desired count.
        force: scale even though an HPA owns the count (it will change it back).
        wait: seconds to wait after an applied change until the replicas are ready (0: no wait).

    Raises:
        PlanRejected: an HPA targets the workload and ``force`` is off (nothing was changed).
    """
    kube = runner.actions.kube
    plural, wname = resolve_workload(kube, name, namespace)
    hpas = sizing.hpa_targets(kube.list(HPA_GV, "horizontalpodautoscalers", namespace),
                              plural, wname)

    def build(a: KubeActions) -> Plan:
        plan = remediate.plan_scale(plural, namespace, wname,
                                   a.replicas(plural, namespace, wname), replicas)
        if hpas and plan.steps and not force:
            raise PlanRejected(
                f"{plural}/{wname} in {namespace} is scaled by HorizontalPodAutoscaler "
                f"{', '.join(hpas)}: it owns the replica count and would undo "
                f"--replicas {replicas} at its next sync",
                hint="change the HPA instead (k3sops scale autoscale NAME --min/--max), "
                     "or pass --force to scale anyway")
        if hpas:
            plan.notes.append(f"HorizontalPodAutoscaler {', '.join(hpas)} targets this "
                              "workload and may change the count again")
        return plan

    report = runner.run(f"scale {plural}/{wname} -n {namespace}", build)
    if runner.apply and wait > 0 and any(s.result == "ok" for s in report.steps):
        report.notes.append(_wait_ready(kube, plural, wname, namespace, replicas, wait))
    return report


def _wait_ready(api: KubeClient, plural: str, name: str, namespace: str, replicas: int,
                timeout: float, every: float = 1.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        st = api.get(WORKLOAD_GV, plural, name, namespace).get("status") or {}
        ready = int(st.get("readyReplicas") or 0)
        total = int(st.get("replicas") or 0)
        if ready == replicas and total == replicas:
            return f"{ready}/{replicas} replicas ready"
        if time.monotonic() >= deadline:
            return (f"after {timeout:g}s: {ready}/{replicas} replicas ready, {total} exist "
                    "(the controllers are still working, or pods cannot be scheduled)")
        time.sleep(every)

