"""Shared helpers of the check unit tests (captured lab data, a platform, running a check)."""

from __future__ import annotations

from k3sops.config import Platform
from k3sops.domain.checks import REGISTRY, CheckContext
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import ClusterSnapshot


def platform() -> Platform:
    """The dev lab's platform.yaml shape: three environments, one namespace each."""
    return Platform.model_validate({
        "name": "k3sops-lab",
        "environments": {env: {"namespaces": [env]}
                         for env in ("development", "staging", "production")}})


def run(check_id: str, snap: ClusterSnapshot, plat: Platform | None = None,
        environment: str | None = None) -> list[Finding]:
    ctx = CheckContext(snapshot=snap, platform=plat, period="daily", environment=environment)
    findings = REGISTRY[check_id].fn(ctx)
    assert all(f.check == check_id and f.runbook for f in findings)
    return findings


def found(findings: list[Finding]) -> set[tuple[str, str | None, str, str]]:
    return {(f.resource.kind, f.resource.namespace, f.resource.name, f.severity)
            for f in findings}


def by_name(findings: list[Finding], name: str) -> Finding:
    return next(f for f in findings if f.resource.name == name)
