"""Admission webhooks whose Service cannot answer.

The API server calls a webhook's Service for every matching request. When the Service is
missing, has no ready endpoint, or lacks the port the webhook names, the call fails: with
``failurePolicy: Fail`` (the default) the request is refused — a webhook on pods or on every
resource can stop deployments, scaling and even node registration; with ``Ignore`` requests
pass unchecked (and each one waits for the timeout first).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.network import (
    WEBHOOK_KIND_NAMES,
    WEBHOOK_KINDS,
    service_ports,
    serving_endpoints,
)
from k3sops.domain.findings import Finding, Severity
from k3sops.domain.snapshot import get, meta


def _problem(ctx: CheckContext, svc_ref: Mapping[str, Any]) -> str | None:
    ns, name = svc_ref.get("namespace"), str(svc_ref.get("name"))
    port = int(svc_ref.get("port") or 443)
    svc = ix.find(ctx.snapshot, "services", ns, name)
    if svc is None:
        return f"service {ns}/{name} does not exist"
    if get(svc, "spec", "type") == "ExternalName":
        return None  # resolved by DNS outside the cluster: nothing to judge here
    ports = service_ports(svc)
    if not any(p.get("port") == port for p in ports):
        return (f"service {ns}/{name} has no port {port} (it has "
                f"{', '.join(str(p.get('port')) for p in ports) or 'none'})")
    slices = ix.slices_by_service(ctx.snapshot).get((ns, name), [])
    if not serving_endpoints(svc, slices):
        return f"service {ns}/{name} has no ready endpoint"
    return None


@check("webhook-unavailable", "Admission webhooks can be reached",
       reads=(*WEBHOOK_KINDS, "services", "endpointslices"))
def webhook_unavailable(ctx: CheckContext) -> list[Finding]:
    """Webhook configurations with a webhook whose Service cannot answer.

    Critical when such a webhook fails closed (``failurePolicy: Fail``, the default): the
    matching API requests are refused now; a warning when it fails open (``Ignore``). One
    finding per configuration; webhooks called by URL are not judged.
    """
    out = []
    for kind in WEBHOOK_KINDS:
        for cfg in ctx.snapshot.get(kind):
            _, name = meta(cfg)
            # no grace: while its pods start, requests are really refused (failing open or
            # closed), as at any other moment
            if not ix.live(cfg):
                continue
            broken = []
            for hook in cfg.get("webhooks") or []:
                svc_ref = get(hook, "clientConfig", "service")
                if not isinstance(svc_ref, Mapping) or not svc_ref.get("name"):
                    continue
                problem = _problem(ctx, svc_ref)
                if problem is None:
                    continue
                policy = str(hook.get("failurePolicy") or "Fail")
                broken.append({
                    "webhook": hook.get("name"), "failure_policy": policy,
                    "service": f"{svc_ref.get('namespace')}/{svc_ref.get('name')}",
                    "port": int(svc_ref.get("port") or 443), "problem": problem,
                    "rules": [{k: r.get(k) for k in ("operations", "resources", "apiGroups")}
                              for r in hook.get("rules") or []],
                    "namespace_selector": hook.get("namespaceSelector") or None,
                    "object_selector": hook.get("objectSelector") or None,
                    "timeout_seconds": hook.get("timeoutSeconds")})
            if not broken:
                continue
            closed = [b for b in broken if b["failure_policy"] == "Fail"]
            severity: Severity = "critical" if closed else "warning"
            first = (closed or broken)[0]
            effect = ("matching API requests are refused" if closed else
                      "matching API requests pass unchecked after a timeout")
            resources = sorted({r for rule in first["rules"] for r in rule.get("resources") or []})
            more = f" (+{len(broken) - 1} more)" if len(broken) > 1 else ""
            refs = [{"kind": "Service", "namespace": b["service"].split("/", 1)[0],
                     "name": b["service"].split("/", 1)[1]} for b in broken]
            out.append(ctx.finding(
                "webhook-unavailable", severity, WEBHOOK_KIND_NAMES[kind], None, name,
                f"{WEBHOOK_KIND_NAMES[kind]} {name}: webhook {first['webhook']} cannot be "
                f"called, {first['problem']} (failurePolicy {first['failure_policy']}): "
                f"{effect}" + (f" ({', '.join(resources)})" if resources else "") + more,
                "webhook-unavailable",
                {"webhooks": broken, "cause_ref": refs}))
    return out

