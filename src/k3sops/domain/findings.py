"""Findings: what a check (or a diagnosis) reports. The JSON shape is a documented contract.

``k3sops check -o json`` prints ``CheckReport``: ``{"summary": {...}, "findings": [...],
"sources": [...], "resolved": [...], "manual": [...], "not_evaluated": [...],
"suppressed": [...]}``; tests pin it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["critical", "warning", "info"]
Period = Literal["daily", "weekly", "monthly"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResourceRef(_Model):
    """The object a finding is about (kind as Kubernetes names it; namespace None if global)."""

    kind: str
    namespace: str | None = None
    name: str


class Finding(_Model):
    """One thing an operator should look at.

    Attributes:
        check: stable id of the check that found it (``pod-crashloop``).
        severity: critical | warning | info.
        resource: the object concerned.
        message: one sentence a person reads first.
        evidence: the facts behind it (conditions, events, metric values), JSON-able.
        runbook: the runbook id to follow (`k3sops runbook show ID`).
        environment: the platform environment the resource belongs to, when known.
        new: true when the previous stored check did not report it.
    """

    check: str
    severity: Severity
    resource: ResourceRef
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    runbook: str
    environment: str | None = None
    new: bool = False

    @property
    def key(self) -> str:
        """Identity across runs: same check, same object."""
        r = self.resource
        return f"{self.check}|{r.kind}|{r.namespace or ''}|{r.name}"


class ManualItem(_Model):
    """A checklist step k3sops cannot automate, with instructions and its acknowledgement."""

    id: str
    period: Period
    title: str
    instructions: str
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    note: str | None = None


class NotEvaluated(_Model):
    """A check that was not run because an input could not be read.

    It neither fired nor resolved anything (its earlier findings are carried, not resolved).

    Attributes:
        check: the check id.
        title: what the check looks at.
        missing: the inputs that could not be read (``kind: why``, ``query NAME: why``).
    """

    check: str
    title: str
    missing: list[str]


class Source(_Model):
    """A data source of the check and whether it could be read (exit 4 when one could not)."""

    name: str
    ok: bool
    endpoint: str
    error: str | None = None
    skipped: bool = False


class Summary(_Model):
    """Counts, score and context of one check run."""

    period: Period
    environment: str | None
    started_at: str
    duration_seconds: float
    total: int
    critical: int
    warning: int
    info: int
    new: int
    resolved: int
    health_score: int
    checks_run: int
    fail_on: Severity | None = None
    usage: dict[str, float] = Field(default_factory=dict)
    """Cluster-wide CPU, memory and disk use in percent at check time (trend charts)."""
    not_evaluated: int = 0
    """Checks not run because an input could not be read."""
    suppressed: int = 0
    """Findings hidden by a suppression in platform.yaml (listed with --show-suppressed)."""


class CheckReport(_Model):
    """What `k3sops check` prints."""

    summary: Summary
    findings: list[Finding]
    sources: list[Source]
    resolved: list[Finding] = Field(default_factory=list)
    manual: list[ManualItem] = Field(default_factory=list)
    not_evaluated: list[NotEvaluated] = Field(default_factory=list)
    suppressed: list[Finding] = Field(default_factory=list)
    """Findings a suppression hid (only with --show-suppressed; always counted in summary)."""


def health_score(findings: list[Finding]) -> int:
    """100 minus 20 per critical, 5 per warning, 1 per info (floored at 0): a quick gauge."""
    penalty = sum({"critical": 20, "warning": 5, "info": 1}[f.severity] for f in findings)
    return max(0, 100 - penalty)


def at_or_above(findings: list[Finding], severity: Severity) -> list[Finding]:
    """The findings whose severity is at least ``severity``."""
    floor = SEVERITY_RANK[severity]
    return [f for f in findings if SEVERITY_RANK[f.severity] >= floor]


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Most severe first, then by check and resource."""
    return sorted(findings, key=lambda f: (-SEVERITY_RANK[f.severity], f.check,
                                           f.resource.namespace or "", f.resource.name))
