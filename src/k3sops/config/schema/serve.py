"""The ``serve`` section: how `k3sops serve` listens, schedules, elects a leader and alerts."""

from __future__ import annotations

from typing import ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator, model_validator

from k3sops.config.schema.fields import (
    MODEL_CONFIG,
    DnsLabel,
    EnvironmentName,
    EnvVarName,
    FilePath,
    check_cron,
    check_duration,
    invalid,
    none_as_empty,
)

LISTEN_ALLOWED = "HOST:PORT, e.g. 0.0.0.0:8443 or 127.0.0.1:21080 ([::1]:8443 for IPv6)"
NEVER_INLINE = ("platform.yaml never holds secrets: name an environment variable with {key}_env "
               "or a file with {key}_file")


def split_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ValueError naming the problem (never the caller's data).

    An IPv6 host is written in brackets (``[::1]:8443``) and returned without them.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("no HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(c.isspace() for c in host):
        raise ValueError("no host")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("the port is not 1-65535")
    return host, int(port)


class ServeTls(BaseModel):
    """TLS for the service's listener (in a cluster usually terminated elsewhere)."""

    model_config = MODEL_CONFIG

    cert_file: FilePath
    """PEM certificate (chain) served."""
    key_file: FilePath
    """PEM private key of the certificate (a mounted Secret; keep it mode 0600)."""


class ServeSchedule(BaseModel):
    """When the leader runs each checklist (cron: minute hour day-of-month month weekday)."""

    model_config = MODEL_CONFIG

    daily: str | None = "0 7 * * *"
    """Daily checklist; null: not scheduled."""
    weekly: str | None = "0 8 * * 1"
    """Weekly checklist; null: not scheduled."""
    monthly: str | None = "0 9 1 * *"
    """Monthly checklist; null: not scheduled."""
    timezone: str = "UTC"
    """IANA time zone the cron expressions are read in (e.g. Europe/Berlin)."""

    @field_validator("daily", "weekly", "monthly")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise invalid(f"{value[:60]!r} is not a known time zone",
                          "an IANA name, e.g. UTC, Europe/Berlin") from e
        return value

    def crons(self) -> dict[Literal["daily", "weekly", "monthly"], str]:
        """The scheduled checklists and their cron expressions (unscheduled ones left out)."""
        out: dict[Literal["daily", "weekly", "monthly"], str] = {}
        if self.daily:
            out["daily"] = self.daily
        if self.weekly:
            out["weekly"] = self.weekly
        if self.monthly:
            out["monthly"] = self.monthly
        return out


class ServeLease(BaseModel):
    """The coordination.k8s.io Lease the replicas elect their leader with."""

    model_config = MODEL_CONFIG

    namespace: DnsLabel = "k3sops"
    """Namespace of the Lease (the service's own)."""
    name: DnsLabel = "k3sops-serve"
    """Name of the Lease."""
    duration: str = "15s"
    """How long a leader's claim lasts without renewal: the longest failover."""

    @field_validator("duration")
    @classmethod
    def _check_duration(cls, value: str) -> str:
        return check_duration(value, "e.g. 15s, 1m")

    @property
    def seconds(self) -> float:
        """The lease duration in seconds."""
        from k3sops.timeparse import duration_seconds

        return duration_seconds(self.duration)


class AlertReceiver(BaseModel):
    """Where enriched alerts are forwarded; the URL is a secret (a chat webhook's is a token)."""

    model_config = MODEL_CONFIG
    unknown_key_hints: ClassVar[dict[str, str]] = {
        "url": NEVER_INLINE.format(key="url") + " (a webhook URL carries its token)",
    }

    name: DnsLabel
    """Name of the receiver (in metrics and logs)."""
    type: Literal["webhook", "slack"] = "webhook"
    """``webhook``: the enriched alert as JSON; ``slack``: a Slack-compatible incoming-webhook
    message."""
    url_env: EnvVarName | None = None
    """Environment variable holding the URL."""
    url_file: FilePath | None = None
    """File holding the URL (one line; e.g. a mounted Secret)."""

    @model_validator(mode="after")
    def _one_url_source(self) -> AlertReceiver:
        if (self.url_env is None) == (self.url_file is None):
            raise invalid("exactly one of url_env and url_file is needed",
                          "url_env: VARIABLE or url_file: PATH")
        return self


class RemediationTrigger(BaseModel):
    """What a remediation policy reacts to: an alert name or a check id (exactly one)."""

    model_config = MODEL_CONFIG

    alert: str | None = None
    """Alertmanager alert name (``alertname`` label), e.g. KubePodCrashLooping."""
    check: str | None = None
    """k3sops check id, e.g. pod-crashloop."""

    @model_validator(mode="after")
    def _exactly_one(self) -> RemediationTrigger:
        if (self.alert is None) == (self.check is None):
            raise invalid("exactly one of alert and check is needed",
                          "{alert: NAME} or {check: ID}")
        return self


class RemediationPolicy(BaseModel):
    """One automatic remediation: trigger -> audited plan, where, how often."""

    model_config = MODEL_CONFIG

    id: DnsLabel
    """Name of the policy (in the audit log and the rate limit)."""
    when: RemediationTrigger
    """The alert or check that triggers it (not ``on:``, which YAML 1.1 reads as true)."""
    plan: Literal["restart", "clean-pods", "cordon"]
    """The existing remediation plan run (`k3sops remediate ...`), audited as from the CLI."""
    environments: list[EnvironmentName] = Field(min_length=1)
    """Environments whose objects it may act on (at least one)."""
    max_per_hour: int = Field(default=1, ge=1, le=60, strict=True)
    """At most this many actions of the policy per hour; more are refused and counted."""


class Remediation(BaseModel):
    """Automatic remediation by policy: off by default, dry-run unless enabled."""

    model_config = MODEL_CONFIG

    enabled: bool = False
    """False: policies are evaluated and their plans recorded as dry runs, nothing changed."""
    policies: list[RemediationPolicy] = Field(default_factory=list)
    """The policies, in order."""

    @field_validator("policies")
    @classmethod
    def _unique_ids(cls, value: list[RemediationPolicy]) -> list[RemediationPolicy]:
        ids = [p.id for p in value]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise invalid(f"policy ids used twice: {', '.join(twice)}", "unique ids")
        return value


class Serve(BaseModel):
    """`k3sops serve`: the operations service (unset: every default below)."""

    model_config = MODEL_CONFIG
    unknown_key_hints: ClassVar[dict[str, str]] = {
        "alertmanager_token": NEVER_INLINE.format(key="alertmanager_token"),
    }

    listen: str = "0.0.0.0:8443"
    """``HOST:PORT`` the HTTP(S) listener binds; `--listen` overrides it."""
    tls: ServeTls | None = None
    """Serve HTTPS with this certificate; unset: plain HTTP (behind a Service or a proxy)."""
    schedule: ServeSchedule = Field(default_factory=ServeSchedule)
    """When the leader runs the daily, weekly and monthly checklists."""
    lease: ServeLease = Field(default_factory=ServeLease)
    """The Lease of the leader election."""
    alertmanager_token_env: EnvVarName | None = None
    """Environment variable holding the bearer token Alertmanager sends to
    ``POST /api/v1/alerts`` (its ``http_config.authorization``)."""
    alertmanager_token_file: FilePath | None = None
    """File holding that token (alternative to alertmanager_token_env)."""
    receivers: list[AlertReceiver] = Field(default_factory=list)
    """Where enriched alerts are forwarded."""
    remediation: Remediation = Field(default_factory=Remediation)
    """Automatic remediation by policy (off by default)."""

    @field_validator("schedule", "lease", "remediation", mode="before")
    @classmethod
    def _empty_as_defaults(cls, value: object) -> object:
        return none_as_empty(value)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        try:
            split_listen(value)
        except ValueError as e:
            raise invalid(f"{value[:60]!r}: {e}", LISTEN_ALLOWED) from e
        return value

    @field_validator("receivers")
    @classmethod
    def _unique_receivers(cls, value: list[AlertReceiver]) -> list[AlertReceiver]:
        names = [r.name for r in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise invalid(f"receiver names used twice: {', '.join(twice)}", "unique names")
        return value

    @model_validator(mode="after")
    def _one_token_source(self) -> Serve:
        if self.alertmanager_token_env is not None and self.alertmanager_token_file is not None:
            raise invalid("both alertmanager_token_env and alertmanager_token_file given; at "
                          "most one is used",
                          "alertmanager_token_env: VARIABLE or alertmanager_token_file: PATH")
        return self

    @property
    def address(self) -> tuple[str, int]:
        """``listen`` as (host, port)."""
        return split_listen(self.listen)
