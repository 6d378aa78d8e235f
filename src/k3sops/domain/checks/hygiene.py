"""Weekly hygiene of workloads: requests, limits, probes, image tags, replicas, owners.

Judged on the pod templates people write (Deployments, StatefulSets, DaemonSets, CronJobs,
Jobs and ReplicaSets without an owner, naked pods): one finding per workload, naming its
containers. These break nothing today; they are why a node runs out of memory, a broken pod
receives traffic, a rollout pulls a different image than yesterday, or a drain takes a
service down. All info.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import KIND_NAMES, Obj, get, meta

TEMPLATE_KINDS = ("deployments", "statefulsets", "daemonsets")
"""Kinds the template rules cannot do without; the others are judged when read."""
OPTIONAL_TEMPLATE_KINDS = ("cronjobs", "jobs", "replicasets", "pods")
SERVING_KINDS = frozenset({"deployments", "statefulsets", "daemonsets"})
MIRROR = "kubernetes.io/config.mirror"


def _templates(ctx: CheckContext) -> list[tuple[str, Obj, Mapping[str, Any]]]:
    """Templates in scope, without workloads scaled to 0, finished pods or objects going away."""
    out = []
    for kind, obj, spec in ix.templates(ctx.snapshot, (*TEMPLATE_KINDS,
                                                       *OPTIONAL_TEMPLATE_KINDS)):
        if not ctx.in_scope(meta(obj)[0]) or not ix.live(obj):
            continue
        if kind in ("deployments", "statefulsets", "replicasets") and \
                get(obj, "spec", "replicas") == 0:
            continue
        if kind == "pods" and (get(obj, "status", "phase") in ("Succeeded", "Failed")
                               or get(obj, "metadata", "annotations", MIRROR)):
            continue
        out.append((kind, obj, spec))
    return out


def _per_container(ctx: CheckContext, check_id: str, runbook: str, what: str,
                   bad: Callable[[Mapping[str, Any]], str | None],
                   kinds: frozenset[str] | None = None,
                   init: bool = False) -> list[Finding]:
    """One info finding per template with containers ``bad`` says something about."""
    out = []
    for kind, obj, spec in _templates(ctx):
        if kinds is not None and kind not in kinds:
            continue
        containers = [*((spec.get("initContainers") or []) if init else []),
                      *(spec.get("containers") or [])]
        found = [(str(c.get("name")), why) for c in containers if (why := bad(c))]
        if not found:
            continue
        ns, name = meta(obj)
        kind_name = KIND_NAMES[kind]
        shown = "; ".join(f"{c}: {w}" for c, w in found[:4])
        out.append(ctx.finding(
            check_id, "info", kind_name, ns, name,
            f"{kind_name.lower()} {ns}/{name} {what} ({shown})", runbook,
            {"containers": [{"container": c, "missing": w} for c, w in found]}))
    return out


def _no_requests(c: Mapping[str, Any]) -> str | None:
    requests = get(c, "resources", "requests", default={}) or {}
    missing = [r for r in ("cpu", "memory") if r not in requests]
    return f"no {' and '.join(missing)} request" if missing else None


def _no_memory_limit(c: Mapping[str, Any]) -> str | None:
    return None if get(c, "resources", "limits", "memory") else "no memory limit"


@check("container-no-requests", "Containers request CPU and memory", periods=("weekly",),
       reads=TEMPLATE_KINDS, uses=OPTIONAL_TEMPLATE_KINDS)
def container_no_requests(ctx: CheckContext) -> list[Finding]:
    """Containers without CPU or memory requests: the scheduler places them blind.

    (A LimitRange may default them at admission: then the pods have them and so does this
    rule's view of naked pods, but not of templates.)
    """
    return _per_container(ctx, "container-no-requests", "container-no-requests",
                          "has containers without resource requests", _no_requests)


@check("container-no-limits", "Containers have a memory limit", periods=("weekly",),
       reads=TEMPLATE_KINDS, uses=OPTIONAL_TEMPLATE_KINDS)
def container_no_limits(ctx: CheckContext) -> list[Finding]:
    """Containers without a memory limit: one leak can take its node's memory."""
    return _per_container(ctx, "container-no-limits", "container-no-limits",
                          "has containers without a memory limit", _no_memory_limit)


def _serving(ctx: CheckContext) -> Callable[[str, Obj], bool]:
    """Whether a workload's pods are selected by a Service (services unread: unknown, False)."""
    by_ns: dict[str | None, list[Mapping[str, Any]]] = defaultdict(list)
    for svc in ctx.snapshot.get("services"):
        sel = get(svc, "spec", "selector")
        if sel:
            by_ns[meta(svc)[0]].append(sel)

    def serving(kind: str, obj: Obj) -> bool:
        labels = get(obj, "spec", "template", "metadata", "labels") if kind != "pods" else \
            get(obj, "metadata", "labels")
        return any(ix.selector_matches(sel, labels) for sel in by_ns.get(meta(obj)[0], []))
    return serving


@check("container-no-probes", "Containers have health probes", periods=("weekly",),
       reads=TEMPLATE_KINDS, uses=(*OPTIONAL_TEMPLATE_KINDS, "services"))
def container_no_probes(ctx: CheckContext) -> list[Finding]:
    """Containers without a liveness probe, or without a readiness probe behind a Service.

    A hung process is never restarted without liveness; without readiness a Service sends
    traffic to pods that are still starting or broken. Jobs and CronJobs run to completion
    and are not judged. Without Services, readiness is not judged (it would be a guess).
    """
    serving = _serving(ctx)
    services_read = not ctx.unread("services")
    out = []
    for kind, obj, spec in _templates(ctx):
        if kind in ("jobs", "cronjobs"):
            continue
        behind = services_read and serving(kind, obj)
        found = []
        for c in spec.get("containers") or []:
            missing = [p for p, key in (("liveness", "livenessProbe"),
                                        ("readiness", "readinessProbe"))
                       if not c.get(key) and (p == "liveness" or behind)]
            if missing:
                found.append((str(c.get("name")), " and ".join(missing)))
        if not found:
            continue
        ns, name = meta(obj)
        kind_name = KIND_NAMES[kind]
        shown = "; ".join(f"{c}: no {w} probe" for c, w in found[:4])
        out.append(ctx.finding(
            "container-no-probes", "info", kind_name, ns, name,
            f"{kind_name.lower()} {ns}/{name} has containers without health probes ({shown})",
            "container-no-probes",
            {"containers": [{"container": c, "missing": w} for c, w in found],
             "behind_a_service": behind if services_read else
             f"unknown: could not read services: {ctx.unread('services')}"}))
    return out


def image_tag_problem(image: str) -> str | None:
    """``latest`` or no tag (and no digest): what runs changes with every pull."""
    if "@" in image:
        return None  # pinned by digest
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "no tag (means latest)"
    if last.rsplit(":", 1)[1] == "latest":
        return "tag latest"
    return None


@check("image-latest", "Images are pinned", periods=("weekly",), reads=TEMPLATE_KINDS,
       uses=OPTIONAL_TEMPLATE_KINDS)
def image_latest(ctx: CheckContext) -> list[Finding]:
    """Containers (and init containers) whose image has the tag ``latest`` or none."""
    return _per_container(
        ctx, "image-latest", "image-latest", "runs unpinned images",
        lambda c: (f"{c.get('image')}: {why}" if (why := image_tag_problem(
            str(c.get("image") or ""))) else None), init=True)


@check("single-replica", "Staging and production workloads survive a drain",
       periods=("weekly",), reads=("deployments", "statefulsets", "poddisruptionbudgets"),
       uses=("horizontalpodautoscalers",))
def single_replica(ctx: CheckContext) -> list[Finding]:
    """Deployments/StatefulSets of staging/production with 1 replica and no covering budget.

    A drain or a node failure takes them down. Those an HPA may scale above 1 are not judged.
    """
    pdbs: dict[str | None, list[Mapping[str, Any]]] = defaultdict(list)
    for pdb in ctx.snapshot.get("poddisruptionbudgets"):
        sel = get(pdb, "spec", "selector")
        if isinstance(sel, Mapping):
            pdbs[meta(pdb)[0]].append(sel)
    scaled = {(meta(h)[0], get(h, "spec", "scaleTargetRef", "kind"),
               get(h, "spec", "scaleTargetRef", "name"))
              for h in ctx.snapshot.get("horizontalpodautoscalers")
              if int(get(h, "spec", "maxReplicas", default=1) or 1) > 1}
    out = []
    for plural in ("deployments", "statefulsets"):
        for obj in ctx.snapshot.get(plural):
            ns, name = meta(obj)
            env = ctx.environment_of(ns)
            if env not in ("staging", "production") or not ix.live(obj) or not ctx.in_scope(ns):
                continue
            if get(obj, "spec", "replicas", default=1) != 1:
                continue
            kind = KIND_NAMES[plural]
            if (ns, kind, name) in scaled:
                continue
            labels = get(obj, "spec", "template", "metadata", "labels")
            if any(ix.selector_matches(sel, labels) for sel in pdbs.get(ns, [])):
                continue
            out.append(ctx.finding(
                "single-replica", "info", kind, ns, name,
                f"{kind.lower()} {ns}/{name} in {env} runs 1 replica and no "
                "PodDisruptionBudget covers it: a drain or a node failure takes it down",
                "single-replica", {"environment": env, "replicas": 1}))
    return out


@check("pod-no-owner", "Pods are managed", periods=("weekly",), reads=("pods",))
def pod_no_owner(ctx: CheckContext) -> list[Finding]:
    """Pods no controller owns (not static/mirror pods): nothing recreates them if lost."""
    out = []
    for pod in ctx.snapshot.get("pods"):
        ns, name = meta(pod)
        if (get(pod, "metadata", "ownerReferences") or not ix.live(pod)
                or get(pod, "metadata", "annotations", MIRROR) or not ctx.in_scope(ns)
                or get(pod, "status", "phase") in ("Succeeded", "Failed")):
            continue
        out.append(ctx.finding(
            "pod-no-owner", "info", "Pod", ns, name,
            f"pod {ns}/{name} has no owner: if it or its node goes, nothing recreates it",
            "pod-no-owner", {"node": get(pod, "spec", "nodeName"),
                             "phase": get(pod, "status", "phase")}))
    return out


@check("cronjob-suspended", "CronJobs are not suspended", periods=("weekly",),
       reads=("cronjobs",))
def cronjob_suspended(ctx: CheckContext) -> list[Finding]:
    """Suspended CronJobs: their runs do not happen (fine for a while, easy to forget)."""
    return [ctx.finding(
        "cronjob-suspended", "info", "CronJob", meta(cj)[0], meta(cj)[1],
        f"cronjob {meta(cj)[0]}/{meta(cj)[1]} ({get(cj, 'spec', 'schedule')}) is suspended: "
        "its runs do not happen", "cronjob-suspended",
        {"schedule": get(cj, "spec", "schedule"),
         "last_schedule": get(cj, "status", "lastScheduleTime")})
        for cj in ctx.snapshot.get("cronjobs")
        if get(cj, "spec", "suspend") and ix.live(cj) and ctx.in_scope(meta(cj)[0])]
