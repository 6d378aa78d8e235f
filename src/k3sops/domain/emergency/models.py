"""The emergency report and what it is made of: probes, checks, proposals, the timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from k3sops.domain.findings import Finding, Source

Procedure = Literal["cluster-unresponsive", "app-down", "network-lost"]
PROCEDURES: tuple[Procedure, ...] = ("cluster-unresponsive", "app-down", "network-lost")
Status = Literal["ok", "warn", "fail", "unknown", "skipped"]
Fact = Literal["api", "snapshot", "etcd", "cert", "logs", "dns"]


class Probe(BaseModel):
    """One GET of an API server health endpoint (``/livez``, ``/readyz?verbose``)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    reachable: bool
    status: int | None = None
    seconds: float | None = None
    body: str = ""
    error: str | None = None


class CertInfo(BaseModel):
    """The API server's serving certificate as presented in the TLS handshake."""

    model_config = ConfigDict(extra="forbid")

    subject: str
    issuer: str
    not_after: datetime


class Proposal(BaseModel):
    """A change to make, through a remediation plan or by hand.

    ``restart``, ``scale`` and ``uncordon`` go through the remediation plans; ``manual`` is a
    command for a person (or for k3sops' node-level steps).
    """

    model_config = ConfigDict(extra="forbid")

    action: Literal["restart", "scale", "uncordon", "manual"]
    target: str = Field(description="deployment/NAME, statefulset/NAME or a node name")
    namespace: str | None = None
    replicas: int | None = None
    reason: str
    command: str | None = Field(default=None, description="what to run, for a manual step")
    runbook: str | None = None

    @property
    def key(self) -> str:
        """Identity: one proposal per action and object."""
        return f"{self.action}|{self.namespace or ''}|{self.target}|{self.command or ''}"

    @property
    def text(self) -> str:
        """One line for a prompt or the timeline."""
        where = f" -n {self.namespace}" if self.namespace else ""
        if self.action == "manual":
            return f"{self.reason}: {self.command}" if self.command else self.reason
        extra = f" --replicas {self.replicas}" if self.action == "scale" else ""
        return f"{self.action} {self.target}{where}{extra} ({self.reason})"


class CheckResult(BaseModel):
    """What one step of a procedure found."""

    model_config = ConfigDict(extra="forbid")

    step: str
    title: str
    status: Status
    detail: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    runbook: str | None = None
    next_step: str | None = None
    proposals: list[Proposal] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)


class ActionRecord(BaseModel):
    """A proposal and what became of it."""

    model_config = ConfigDict(extra="forbid")

    proposal: Proposal
    decision: Literal["applied", "declined", "proposed"]
    why: str
    result: Literal["ok", "skipped", "failed", "not-run"] = "not-run"
    error: str | None = None
    audit_log: str | None = None


class TimelineEntry(BaseModel):
    """One line of the incident timeline (UTC)."""

    model_config = ConfigDict(extra="forbid")

    at: datetime
    kind: Literal["start", "check", "decision", "action", "verify", "end"]
    step: str
    result: str
    detail: str = ""


class EmergencyReport(BaseModel):
    """What `k3sops emergency` prints (``-o json``).

    ``timeline_markdown`` is the paste-able incident timeline, also written by
    ``--timeline FILE``.
    """

    model_config = ConfigDict(extra="forbid")

    procedure: Procedure
    target: str
    started_at: datetime
    finished_at: datetime | None = None
    checks: list[CheckResult] = Field(default_factory=list)
    actions: list[ActionRecord] = Field(default_factory=list)
    verification: list[CheckResult] = Field(default_factory=list)
    """The checks re-run after a change, as they ended (pass, or still failing at --wait)."""
    next_steps: list[str] = Field(default_factory=list)
    runbooks: list[str] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    timeline_markdown: str = ""
    interrupted: bool = False
    """Ctrl-C stopped the procedure: the report holds what ran before."""

    @property
    def failed(self) -> list[CheckResult]:
        """Checks that found the emergency (status fail)."""
        return [c for c in self.checks if c.status == "fail"]

    @property
    def unresolved(self) -> list[CheckResult]:
        """Failed checks that no verified change turned ok."""
        fixed = {v.step for v in self.verification if v.status == "ok"}
        return [c for c in self.failed if c.step not in fixed]

