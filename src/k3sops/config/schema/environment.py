"""Environments of the platform: thresholds and promotion policy."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from k3sops.config.schema.fields import (
    MODEL_CONFIG,
    DnsLabel,
    check_duration,
    invalid,
    none_as_empty,
)
from k3sops.timeparse import duration_seconds


class Thresholds(BaseModel):
    """Alert and check thresholds of one environment (defaults from the operations guide)."""

    model_config = MODEL_CONFIG

    cpu_percent: float = Field(default=80, gt=0, le=100, strict=True)
    """Node/pod CPU use (percent of allocatable) above which a check warns."""
    memory_percent: float = Field(default=80, gt=0, le=100, strict=True)
    """Node/pod memory use (percent of allocatable) above which a check warns."""
    disk_free_percent: float = Field(default=10, gt=0, le=100, strict=True)
    """Free disk space (percent) below which a node or volume is reported."""
    for_: str = Field(default="5m", alias="for")
    """How long a condition must hold before it alerts (Prometheus duration, e.g. ``5m``);
    avoids paging on short spikes."""
    restarts_per_hour: int = Field(default=3, ge=0, strict=True)
    """Container restarts per hour above which a workload is reported as crash-looping."""
    http_error_rate_percent: float = Field(default=5.0, gt=0, le=100, strict=True)
    """Share of HTTP 5xx responses (percent) above which a service is reported."""
    p95_latency_seconds: float = Field(default=0.5, gt=0, strict=True)
    """95th percentile request latency (seconds) above which a service is reported."""
    cert_expiry_days: int = Field(default=14, ge=1, strict=True)
    """Days before a certificate expires from which it is reported, leaving time to renew."""

    @field_validator("for_")
    @classmethod
    def _check_duration(cls, value: str) -> str:
        return check_duration(
            value, "digits with units y, w, d, h, m, s, ms in that order, e.g. 30s, 5m, 1h30m")

    @property
    def for_seconds(self) -> float:
        """The ``for`` duration in seconds."""
        return duration_seconds(self.for_)


class Promotion(BaseModel):
    """How a release is promoted into this environment."""

    model_config = MODEL_CONFIG

    policy: Literal["auto", "manual", "approval"] = "manual"
    """``auto``: deploy on every change; ``manual``: an operator runs the promotion;
    ``approval``: one of ``approvers`` must approve first. Defaults to the safe ``manual``."""
    approvers: list[str] = Field(default_factory=list)
    """Users or groups allowed to approve a promotion; required when policy is ``approval``."""
    required_approvals: int = Field(default=1, ge=1, strict=True)
    """Distinct approvers (from ``approvers``) needed for one version (policy ``approval``)."""
    approval_expiry: str = "24h"
    """How long an approval stays valid (Prometheus duration): an old approval does not
    carry a later decision."""
    healthy_for: str = "10m"
    """How long the source environment must have run the version healthily (rollout complete,
    no firing alerts for the app, error rate and p95 within bounds) before it moves here."""
    max_error_rate_percent: float = Field(default=5.0, gt=0, le=100, strict=True)
    """Highest share of 5xx responses (percent) of the app in the source environment."""
    max_p95_seconds: float = Field(default=0.5, gt=0, strict=True)
    """Highest 95th percentile request latency (seconds) of the app in the source environment."""
    error_rate_query: str = (
        '100 * sum(rate(http_requests_total{namespace="$namespace",job="$app",code=~"5.."}[5m]))'
        ' / sum(rate(http_requests_total{namespace="$namespace",job="$app"}[5m]))')
    """PromQL of the error-rate gate (percent); ``$namespace`` and ``$app`` are filled in."""
    p95_query: str = (
        'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket'
        '{namespace="$namespace",job="$app"}[5m])))')
    """PromQL of the p95 latency gate (seconds); ``$namespace`` and ``$app`` are filled in."""
    missing_metrics: Literal["pass", "fail"] = "pass"
    """What a metric gate says when the app exposes no such series (reported either way)."""

    @field_validator("approval_expiry", "healthy_for")
    @classmethod
    def _check_promotion_duration(cls, value: str) -> str:
        return check_duration(
            value, "digits with units y, w, d, h, m, s in that order, e.g. 10m, 1h30m")

    @field_validator("approvers")
    @classmethod
    def _check_approvers(cls, value: list[str]) -> list[str]:
        if any(not a.strip() for a in value):
            raise invalid("an approver is empty", "non-empty user or group names")
        if len(set(value)) != len(value):
            raise invalid("approvers are listed more than once", "each approver once")
        return value

    @model_validator(mode="after")
    def _approval_needs_approvers(self) -> Promotion:
        if self.policy == "approval" and not self.approvers:
            raise invalid(
                "policy 'approval' needs at least one entry in approvers",
                hint="list who may approve under approvers:, or use policy 'manual'",
            )
        return self


class Environment(BaseModel):
    """One environment of the platform (development, staging or production)."""

    model_config = MODEL_CONFIG

    context: str | None = None
    """Kubeconfig context of this environment's cluster; unset: the current context."""
    namespaces: list[DnsLabel] = Field(default_factory=list)
    """Namespaces holding this environment's workloads; checks and promotion are scoped to
    them. Empty: the environment owns every namespace of its cluster."""
    promotion: Promotion = Field(default_factory=Promotion)
    """How releases reach this environment."""
    thresholds: Thresholds = Field(default_factory=Thresholds)
    """Thresholds for checks and generated alert rules in this environment."""

    @field_validator("promotion", "thresholds", mode="before")
    @classmethod
    def _empty_sections(cls, value: object) -> object:
        return none_as_empty(value)

    @field_validator("namespaces")
    @classmethod
    def _unique_namespaces(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise invalid("a namespace is listed more than once", "each namespace once")
        return value


