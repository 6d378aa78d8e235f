"""GitOps: ArgoCD Applications degraded, missing or out of sync (only where the CRD exists).

An Application lives in ArgoCD's namespace but deploys into ``spec.destination.namespace``:
that namespace decides the environment of its findings and whether ``--env`` includes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding, Severity
from k3sops.domain.snapshot import Obj, get, meta

APPLICATIONS = "applications.argoproj.io"
HEALTH_SEVERITY: dict[str, Severity] = {"Degraded": "critical", "Missing": "warning"}
MAX_RESOURCES = 10


def _destination(app: Obj) -> str | None:
    ns = get(app, "spec", "destination", "namespace")
    return str(ns) if ns else None


def _source(app: Obj) -> dict[str, Any]:
    src: Mapping[str, Any] = (get(app, "spec", "source")
                              or next(iter(get(app, "spec", "sources", default=[]) or []), {}))
    return {"repo": src.get("repoURL"), "path": src.get("path") or src.get("chart"),
            "target_revision": src.get("targetRevision")}


def _resources(app: Obj, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    out = []
    for r in get(app, "status", "resources", default=[]) or []:
        if keep(r):
            out.append({"kind": r.get("kind"), "namespace": r.get("namespace"),
                        "name": r.get("name"), "sync": r.get("status"),
                        "health": get(r, "health", "status"),
                        "message": get(r, "health", "message")})
    return out[:MAX_RESOURCES]


def _common(app: Obj) -> dict[str, Any]:
    return {"destination_namespace": _destination(app), **_source(app),
            "revision": get(app, "status", "sync", "revision"),
            "conditions": get(app, "status", "conditions", default=[]),
            "operation": {"phase": get(app, "status", "operationState", "phase"),
                          "message": get(app, "status", "operationState", "message"),
                          "finished_at": get(app, "status", "operationState", "finishedAt")}
            if get(app, "status", "operationState") else None,
            "reconciled_at": get(app, "status", "reconciledAt")}


def _apps(ctx: CheckContext) -> list[Obj]:
    return [a for a in ctx.snapshot.get(APPLICATIONS) if ctx.in_scope(_destination(a))]


def _finding(ctx: CheckContext, app: Obj, check_id: str, severity: Severity, message: str,
             evidence: dict[str, Any]) -> Finding:
    ns, name = meta(app)
    f = ctx.finding(check_id, severity, "Application", ns, name, message, check_id, evidence)
    # the environment is the destination's, not ArgoCD's own namespace
    return f.model_copy(update={"environment": ctx.environment_of(_destination(app))})


@check("argocd-app-degraded", "ArgoCD Applications healthy", reads=(APPLICATIONS,))
def argocd_app_degraded(ctx: CheckContext) -> list[Finding]:
    """Applications whose health is Degraded (critical) or Missing (warning)."""
    out = []
    for app in _apps(ctx):
        health = get(app, "status", "health", "status")
        severity = HEALTH_SEVERITY.get(str(health))
        if severity is None:
            continue
        _, name = meta(app)
        bad = _resources(app, lambda r: get(r, "health", "status") in HEALTH_SEVERITY)
        detail = get(app, "status", "health", "message") or (
            f"{bad[0]['kind']} {bad[0]['name']} is {bad[0]['health']}" if bad else "")
        out.append(_finding(
            ctx, app, "argocd-app-degraded", severity,
            f"ArgoCD application {name} is {health}" + (f": {detail}" if detail else ""),
            {"health": health, "health_message": get(app, "status", "health", "message"),
             "unhealthy_resources": bad, **_common(app)}))
    return out


@check("argocd-app-out-of-sync", "ArgoCD Applications in sync", reads=(APPLICATIONS,))
def argocd_app_out_of_sync(ctx: CheckContext) -> list[Finding]:
    """Applications whose live state differs from git (sync status OutOfSync)."""
    out = []
    for app in _apps(ctx):
        if get(app, "status", "sync", "status") != "OutOfSync":
            continue
        _, name = meta(app)
        drift = _resources(app, lambda r: r.get("status") == "OutOfSync")
        auto = get(app, "spec", "syncPolicy", "automated") is not None
        out.append(_finding(
            ctx, app, "argocd-app-out-of-sync", "warning",
            f"ArgoCD application {name} is OutOfSync with {_source(app)['target_revision']}"
            + (f" ({len(drift)} resources differ)" if drift else "")
            + ("" if auto else "; auto-sync is off"),
            {"sync": "OutOfSync", "auto_sync": auto, "out_of_sync_resources": drift,
             **_common(app)}))
    return out
