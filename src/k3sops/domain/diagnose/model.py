"""The report of a diagnosis (chain steps, root causes) and the accumulator that builds it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from k3sops.domain.checks.base import CheckContext
from k3sops.domain.findings import (
    SEVERITY_RANK,
    Finding,
    NotEvaluated,
    ResourceRef,
    Severity,
    Source,
    sort_findings,
)


class ChainStep(BaseModel):
    """One link of a causal chain: what was looked at, whether it holds, and what was seen."""

    model_config = ConfigDict(extra="forbid")

    step: str
    ok: bool
    detail: str
    depth: int = 0
    """How far down the dependency chain (0: the target itself)."""
    resource: ResourceRef | None = None


class RootCause(BaseModel):
    """Where a chain ends: a finding nothing below explains, or a fact that could not be read.

    Attributes:
        resource: the object at the root (or the one whose link could not be followed).
        check: the finding's check id (None for a missing object no rule names, or an
            undetermined root).
        severity, message, runbook: of that finding (or a sentence saying what is missing).
        path: the objects from the diagnosed target down to the root.
        determined: False when the root could not be determined because a fact was missing.
        missing: the fact that was missing (``could not read storageclasses: forbidden``).
    """

    model_config = ConfigDict(extra="forbid")

    resource: ResourceRef
    check: str | None = None
    severity: Severity | None = None
    message: str
    runbook: str | None = None
    path: list[str] = Field(default_factory=list)
    determined: bool = True
    missing: str | None = None


class DiagnosisReport(BaseModel):
    """What `k3sops diagnose` prints: the target, its chain, roots, findings and sources."""

    model_config = ConfigDict(extra="forbid")

    target: str
    chain: list[ChainStep] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    root_causes: list[RootCause] = Field(default_factory=list)
    not_evaluated: list[NotEvaluated] = Field(default_factory=list)


class Diagnosis:
    """Accumulates chain steps, findings and roots while a target is examined."""

    def __init__(self, ctx: CheckContext) -> None:
        """Start an empty diagnosis over ``ctx``'s snapshot."""
        self.ctx = ctx
        self.chain: list[ChainStep] = []
        self.findings: list[Finding] = []
        self.roots: list[RootCause] = []
        self.not_evaluated: list[NotEvaluated] = []

    def step(self, step: str, ok: bool, detail: str, depth: int = 0,
             resource: ResourceRef | None = None) -> None:
        """Record a link of the chain."""
        self.chain.append(ChainStep(step=step, ok=ok, detail=detail, depth=depth,
                                    resource=resource))

    def add(self, check: str, severity: Severity, kind: str, namespace: str | None, name: str,
            message: str, runbook: str, evidence: dict[str, Any]) -> None:
        """Record a finding that is not a check's (a probe's result: DNS, etcd, performance)."""
        self.findings.append(self.ctx.finding(check, severity, kind, namespace, name, message,
                                              runbook, evidence))

    def report(self, target: str, sources: list[Source] | None = None) -> DiagnosisReport:
        """The report, findings de-duplicated by identity and sorted most severe first."""
        seen: dict[str, Finding] = {}
        for f in self.findings:
            prev = seen.get(f.key)
            seen[f.key] = f if prev is None else prev.model_copy(update={
                "evidence": {**prev.evidence, **f.evidence},
                "message": max(prev.message, f.message, key=len)})
        roots: dict[tuple[str, str, str | None, str], RootCause] = {}
        for r in self.roots:
            roots.setdefault((r.check or r.message, r.resource.kind, r.resource.namespace,
                              r.resource.name), r)
        ordered = sorted(roots.values(), key=lambda r: (
            not r.determined, -SEVERITY_RANK.get(r.severity or "info", 0), len(r.path)))
        return DiagnosisReport(target=target, chain=self.chain,
                               findings=sort_findings(list(seen.values())),
                               sources=sources or [], root_causes=ordered,
                               not_evaluated=self.not_evaluated)
