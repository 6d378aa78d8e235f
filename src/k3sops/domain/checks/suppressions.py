"""Suppressions in platform.yaml that have expired: their findings are back, say so."""

from __future__ import annotations

from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding


@check("suppression-expired", "No suppression has expired", category="report")
def suppression_expired(ctx: CheckContext) -> list[Finding]:
    """A suppression past its ``expires`` date: it no longer hides anything."""
    if ctx.platform is None:
        return []
    today = ctx.snapshot.now.date()
    out = []
    for i, s in enumerate(ctx.platform.suppressions, start=1):
        if s.expires is None or s.expires >= today:
            continue
        scope = ", ".join(f"{k}={v}" for k, v in (("kind", s.kind), ("namespace", s.namespace),
                                                    ("name", s.name)) if v)
        out.append(ctx.finding(
            "suppression-expired", "warning", "Suppression", None, f"{i}:{s.check}",
            f"suppression #{i} of {s.check}" + (f" ({scope})" if scope else "")
            + f" expired on {s.expires.isoformat()}: its findings are reported again; renew "
            "its expiry or remove it from platform.yaml", "suppression-expired",
            {"index": i, "check": s.check, "reason": s.reason,
             "expires": s.expires.isoformat(), "kind": s.kind, "namespace": s.namespace,
             "name": s.name, "labels": s.labels}))
    return out
