"""The ``platform.yaml`` model and its loading.

``platform.yaml`` describes the platform k3sops operates: its environments (with their
kubeconfig contexts, namespaces, promotion policy and alert thresholds), where the monitoring
stack answers, and the optional Ansible, backup and GitOps sections. It never holds secrets:
passwords live in environment variables or files that the file names.

Loading turns every problem into a :class:`~k3sops.errors.ConfigError` whose message names
``FILE:LINE: field.path: problem (allowed: ...)`` for each error, so an operator can jump to the
line. Nothing here reads the environment at import time; callers pass it in
(:func:`find_platform_file`).
"""

from __future__ import annotations

import contextlib
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from k3sops.errors import ConfigError

__all__ = [
    "ENVIRONMENT_NAMES",
    "STARTER_TEMPLATE",
    "Ansible",
    "Backup",
    "BackupBinaries",
    "BackupDrill",
    "BackupHook",
    "BackupHooks",
    "BackupSchedule",
    "BackupTarget",
    "ConfigIssue",
    "Endpoint",
    "Environment",
    "EnvironmentName",
    "EtcdAccess",
    "GitOps",
    "Monitoring",
    "Platform",
    "PlatformConfigError",
    "Promotion",
    "ServiceRef",
    "Thresholds",
    "VolumeSchedule",
    "find_platform_file",
    "load_platform",
    "parse_platform",
    "render_starter",
]

EnvironmentName = Literal["development", "staging", "production"]
ENVIRONMENT_NAMES: tuple[str, ...] = typing.get_args(EnvironmentName)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_LABEL_ALLOWED = "a-z, 0-9 and '-', starting and ending alphanumeric, 1-63 chars"
# Prometheus' own duration grammar: units in descending order, each at most once ("1h30m").
_PROM_DURATION = re.compile(
    r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$"
)
_DURATION_UNITS = {"y": 365 * 86400.0, "w": 7 * 86400.0, "d": 86400.0, "h": 3600.0,
                   "m": 60.0, "s": 1.0, "ms": 0.001}
_SERVICE_RE = re.compile(
    r"^(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)/(?P<name>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
    r":(?P<port>[0-9]+|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"
)
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Backends restic accepts as "backend:rest"; anything else is a local path.
_RESTIC_BACKENDS = ("local", "sftp", "rest", "s3", "azure", "gs", "b2", "swift", "rclone")
_URL_LIKE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")
_SENSITIVE = re.compile(r"password|token|secret|key", re.IGNORECASE)

# No use_attribute_docstrings: pydantic would read and parse this file's source at import to
# turn the field docstrings into descriptions nothing reads, 60-90 ms of every command's
# start-up. The docstrings stay, for people.
_MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _invalid(problem: str, allowed: str | None = None, hint: str | None = None) -> Exception:
    """Build a validation error that carries its own "allowed" text and hint."""
    ctx: dict[str, str] = {"problem": problem}
    if allowed is not None:
        ctx["allowed"] = allowed
    if hint is not None:
        ctx["hint"] = hint
    return PydanticCustomError("k3sops_invalid", "{problem}", ctx)


def _check_dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise _invalid(f"{value[:70]!r} is not a DNS-1123 label", _DNS_LABEL_ALLOWED)
    return value


DnsLabel = Annotated[str, AfterValidator(_check_dns_label)]


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Resolve ``~`` and paths relative to the directory of the file being loaded."""
    with contextlib.suppress(RuntimeError):  # no home directory known: keep it as written
        value = value.expanduser()
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    if isinstance(base, Path) and not value.is_absolute():
        return base / value
    return value


FilePath = Annotated[Path, AfterValidator(_resolve_path)]


def _resolve_local(value: str, info: ValidationInfo) -> str:
    """Resolve a string that may be a local path (not a URL) against the file's directory."""
    return str(_resolve_path(Path(value), info))


def _none_as_empty(value: object) -> object:
    """Let an empty section (``monitoring:`` with everything commented out) mean defaults."""
    return {} if value is None else value


class Thresholds(BaseModel):
    """Alert and check thresholds of one environment (defaults from the operations guide)."""

    model_config = _MODEL_CONFIG

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
        if value != "0" and (not value or not _PROM_DURATION.match(value)):
            raise _invalid(
                f"{value[:40]!r} is not a Prometheus duration",
                "digits with units y, w, d, h, m, s, ms in that order, e.g. 30s, 5m, 1h30m",
            )
        return value

    @property
    def for_seconds(self) -> float:
        """The ``for`` duration in seconds."""
        return sum(
            int(n) * _DURATION_UNITS[u] for n, u in re.findall(r"([0-9]+)(ms|[ywdhms])", self.for_)
        )


class Promotion(BaseModel):
    """How a release is promoted into this environment."""

    model_config = _MODEL_CONFIG

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
        if value != "0" and (not value or not _PROM_DURATION.match(value)):
            raise _invalid(f"{value[:40]!r} is not a Prometheus duration",
                           "digits with units y, w, d, h, m, s in that order, e.g. 10m, 1h30m")
        return value

    @field_validator("approvers")
    @classmethod
    def _check_approvers(cls, value: list[str]) -> list[str]:
        if any(not a.strip() for a in value):
            raise _invalid("an approver is empty", "non-empty user or group names")
        if len(set(value)) != len(value):
            raise _invalid("approvers are listed more than once", "each approver once")
        return value

    @model_validator(mode="after")
    def _approval_needs_approvers(self) -> Promotion:
        if self.policy == "approval" and not self.approvers:
            raise _invalid(
                "policy 'approval' needs at least one entry in approvers",
                hint="list who may approve under approvers:, or use policy 'manual'",
            )
        return self


class Environment(BaseModel):
    """One environment of the platform (development, staging or production)."""

    model_config = _MODEL_CONFIG

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
        return _none_as_empty(value)

    @field_validator("namespaces")
    @classmethod
    def _unique_namespaces(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise _invalid("a namespace is listed more than once", "each namespace once")
        return value


class ServiceRef(NamedTuple):
    """A Kubernetes service port, as written ``namespace/name:port``."""

    namespace: str
    name: str
    port: int | str
    """Port number, or the name of a named service port."""


class Endpoint(BaseModel):
    """Where an HTTP API answers: a URL, or a service reached through the API server's proxy."""

    model_config = _MODEL_CONFIG

    url: str | None = None
    """Base URL (``http://`` or ``https://``) when the API is reachable directly."""
    service: str | None = None
    """``namespace/name:port`` of a service reached through the API server's service proxy,
    so no port-forward or ingress is needed; port is a number or a named port."""
    scheme: Literal["http", "https"] = "http"
    """Scheme the service itself speaks (service form only)."""
    timeout_seconds: float = Field(default=10, gt=0, strict=True)
    """Per-request timeout in seconds; every call has one so a hung API cannot stall a run."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            has_host = bool(parts.hostname)
        except ValueError:
            has_host = False
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not has_host:
            raise _invalid("not an http(s) URL with a host", "http://HOST[:PORT][/PATH], https://…")
        if parts.username is not None or parts.password is not None:
            raise _invalid(
                "credentials in the URL are not allowed",
                hint="platform.yaml never holds secrets; drop the user:password@ part",
            )
        return value

    @field_validator("service")
    @classmethod
    def _check_service(cls, value: str | None) -> str | None:
        if value is None:
            return None
        m = _SERVICE_RE.match(value)
        if m is None or len(m["namespace"]) > 63 or len(m["name"]) > 63:
            raise _invalid(
                f"{value[:80]!r} is not a service reference",
                "NAMESPACE/NAME:PORT with DNS labels and a port number or port name",
            )
        port = m["port"]
        if port.isdigit() and not 1 <= int(port) <= 65535:
            raise _invalid(f"port {port} is out of range", "1-65535 or a named port")
        if not port.isdigit() and (len(port) > 15 or not re.search("[a-z]", port)):
            raise _invalid(f"{port!r} is not a valid port name", "1-15 chars with a letter")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Endpoint:
        if (self.url is None) == (self.service is None):
            which = "both" if self.url is not None else "neither"
            raise _invalid(
                f"{which} of url and service given; exactly one is needed",
                "url: http(s)://… or service: NAMESPACE/NAME:PORT",
            )
        if self.url is not None and "scheme" in self.model_fields_set:
            raise _invalid("scheme applies to service endpoints only; the URL carries its own")
        return self

    @property
    def service_ref(self) -> ServiceRef | None:
        """The parsed ``service`` reference, or None for a URL endpoint."""
        if self.service is None:
            return None
        ns, rest = self.service.split("/", 1)
        name, port = rest.rsplit(":", 1)
        return ServiceRef(ns, name, int(port) if port.isdigit() else port)

    def proxy_path(self) -> str:
        """Return the API server path that proxies to this service endpoint.

        Returns:
            ``/api/v1/namespaces/NS/services/SCHEME:NAME:PORT/proxy/``.

        Raises:
            ValueError: if this endpoint is a URL (a caller bug: check ``service_ref`` first).
        """
        ref = self.service_ref
        if ref is None:
            raise ValueError("proxy_path() called on a URL endpoint")
        target = f"{self.scheme}:{ref.name}:{ref.port}"
        return f"/api/v1/namespaces/{ref.namespace}/services/{target}/proxy/"


class AppMetrics(BaseModel):
    """Application metric names; defaults follow the common Prometheus client conventions."""

    model_config = _MODEL_CONFIG

    requests_total: str = "http_requests_total"
    """Counter of HTTP requests, labelled with the status code."""
    duration_seconds: str = "http_request_duration_seconds"
    """Histogram of request durations (its ``_bucket`` series is used for p95)."""
    status_label: str = "code"
    """Label holding the HTTP status code (``code`` or ``status``)."""
    workload_labels: list[str] = Field(default_factory=lambda: ["namespace", "job"])
    """Labels that identify a workload when aggregating."""


class Monitoring(BaseModel):
    """Where the monitoring stack answers."""

    model_config = _MODEL_CONFIG

    namespace: DnsLabel = "monitoring"
    """Namespace of Prometheus, Alertmanager, Grafana and Loki (rules and dashboards go here)."""
    prometheus: Endpoint = Field(
        default_factory=lambda: Endpoint(service="monitoring/prometheus-server:80")
    )
    """Prometheus HTTP API."""
    alertmanager: Endpoint = Field(
        default_factory=lambda: Endpoint(service="monitoring/alertmanager:9093")
    )
    """Alertmanager HTTP API."""
    grafana: Endpoint | None = None
    """Grafana HTTP API, for dashboards; unset: dashboards are written as files only."""
    loki: Endpoint | None = None
    """Loki HTTP API, for log queries during diagnosis; unset: logs come from the API server."""
    rule_files_dir: FilePath | None = None
    """Directory a Prometheus on this host reads rule files from (``rule_files`` glob), such as
    the lab's; `alerts apply` writes there and reloads Prometheus. Unset: rules are applied to the
    cluster as PrometheusRule objects in ``namespace``."""
    etcd_metrics: bool = True
    """Whether etcd metrics are scraped (K3s: ``--etcd-expose-metrics``); without them the etcd
    alert rules are left out rather than firing falsely."""
    embedded_control_plane: bool = True
    """K3s runs the scheduler and controller-manager inside the server process, with no scrape
    targets of their own: rules for their absence are left out unless this is false."""
    runbook_base_url: str | None = None
    """Where your runbook pages are published (``runbook_url`` = base + id); every alert also
    carries ``runbook_id`` for `k3sops runbook show ID`."""
    app_metrics: AppMetrics = Field(default_factory=AppMetrics)
    """Names of the application (RED) metrics, for `metrics apps` and the application rules."""


class Ansible(BaseModel):
    """Node provisioning with Ansible."""

    model_config = _MODEL_CONFIG

    inventory: FilePath
    """Inventory file or directory listing the K3s nodes (servers and agents)."""
    private_key_file: FilePath | None = None
    """SSH private key used to reach the nodes; unset: the SSH agent / Ansible's default."""
    user: str | None = None
    """Remote SSH user; unset: the inventory's or Ansible's default."""
    token_env: str | None = None
    """Environment variable holding the K3s cluster token (the playbooks need it to install or
    join nodes); the token is never written here."""
    token_file: FilePath | None = None
    """File holding the K3s cluster token (keep it mode 0600); alternative to token_env."""
    timeout_seconds: float = Field(default=1800, gt=0, strict=True)
    """How long one playbook run may take before it is stopped."""
    node_ready_timeout_seconds: float = Field(default=300, gt=0, strict=True)
    """How long `scale nodes add` waits for new Nodes to become Ready."""

    @field_validator("token_env")
    @classmethod
    def _check_token_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_VAR.match(value):
            raise _invalid("not an environment variable name", "letters, digits and _")
        return value

    @model_validator(mode="after")
    def _one_token_source(self) -> Ansible:
        if self.token_env is not None and self.token_file is not None:
            raise _invalid("both token_env and token_file given; at most one is allowed",
                           "token_env: VARIABLE or token_file: PATH")
        return self


class BackupBinaries(BaseModel):
    """Executables the backups run (names are looked up on PATH; paths are used as given)."""

    model_config = _MODEL_CONFIG

    restic: str = "restic"
    """restic, the repository client (0.14 or later)."""
    etcdctl: str = "etcdctl"
    """etcdctl (snapshot save through the etcd snapshot API, key counts)."""
    etcdutl: str = "etcdutl"
    """etcdutl (snapshot status and restore; etcd 3.5+)."""
    etcd: str = "etcd"
    """etcd server, started on free loopback ports for restore drills."""
    kubectl: str = "kubectl"
    """kubectl, the exec client for `pg_dump`/`tar` in a pod (what `kubectl exec` does)."""
    pg_bin_dir: FilePath | None = None
    """Directory of PostgreSQL's client and server binaries (psql, pg_dump, pg_restore,
    initdb, pg_ctl) for DSN backups and drills; unset: PATH, then /usr/lib/postgresql/*/bin."""


class EtcdAccess(BaseModel):
    """How to reach etcd's client API (the snapshot API) directly."""

    model_config = _MODEL_CONFIG

    endpoints: list[str] = Field(default_factory=lambda: ["https://127.0.0.1:2379"])
    """Client URLs; K3s' embedded etcd answers on https://127.0.0.1:2379 on a server."""
    cacert: FilePath | None = None
    """CA of etcd's server certificate
    (K3s: /var/lib/rancher/k3s/server/tls/etcd/server-ca.crt)."""
    cert: FilePath | None = None
    """Client certificate (K3s: /var/lib/rancher/k3s/server/tls/etcd/client.crt)."""
    key: FilePath | None = None
    """Client key (K3s: /var/lib/rancher/k3s/server/tls/etcd/client.key)."""

    @field_validator("endpoints")
    @classmethod
    def _check_endpoints(cls, value: list[str]) -> list[str]:
        if not value:
            raise _invalid("no endpoint given", "one or more http(s)://HOST:PORT URLs")
        for v in value:
            if not re.match(r"^https?://[^/\s]+$", v):
                raise _invalid(f"{v[:60]!r} is not an etcd client URL", "http(s)://HOST:PORT")
        return value


class BackupHook(BaseModel):
    """A command run before or after a backup (e.g. flush a cache, pause a writer)."""

    model_config = _MODEL_CONFIG

    command: list[str] = Field(min_length=1)
    """argv of the command (no shell unless you name one)."""
    where: Literal["pod", "local"] = "pod"
    """``pod``: run in the target's pod through exec; ``local``: on this host."""
    timeout_seconds: float = Field(default=60, gt=0, strict=True)
    """Seconds the hook may take before it is killed (and counts as failed)."""
    on_error: Literal["fail", "continue"] = "fail"
    """``fail``: a failing pre hook stops the backup (post: the backup is Failed);
    ``continue``: the failure is recorded in the manifest and the backup goes on."""


class BackupHooks(BaseModel):
    """Hooks of a backup target."""

    model_config = _MODEL_CONFIG

    pre: list[BackupHook] = Field(default_factory=list)
    """Run in order before the data is read."""
    post: list[BackupHook] = Field(default_factory=list)
    """Run in order after the data was read (also when reading failed)."""


class BackupTarget(BaseModel):
    """Application data to back up: a PostgreSQL database or a directory (tar through exec)."""

    model_config = _MODEL_CONFIG
    unknown_key_hints: ClassVar[dict[str, str]] = {
        "password": "platform.yaml never holds secrets: use password_env or password_file",
    }

    name: DnsLabel
    """Name used on the command line (`backup app NAME`), in tags and metrics."""
    kind: Literal["postgres", "tar"] = "postgres"
    """``postgres``: ``pg_dump -Fc``; ``tar``: a tar stream of ``path`` in the pod."""
    environment: EnvironmentName | None = None
    """Environment the data belongs to (a backup tag)."""
    namespace: DnsLabel | None = None
    """Namespace of the pod to exec into (pod form)."""
    pod: str | None = None
    """Pod to exec into, e.g. ``postgres-0`` (pod form)."""
    container: str | None = None
    """Container of the pod (unset: the pod's default container)."""
    database: str = "postgres"
    """Database to dump (postgres)."""
    user: str | None = None
    """Database user (postgres; unset: the pod's/libpq's default)."""
    dsn: str | None = None
    """libpq connection string without password, for a database reached directly (DSN form),
    e.g. ``host=db.example port=5432 dbname=app user=backup``."""
    password_env: str | None = None
    """Environment variable holding the database password (DSN form; given to the client
    as PGPASSWORD, never on a command line)."""
    path: str | None = None
    """Directory to archive (tar)."""
    hooks: BackupHooks = Field(default_factory=BackupHooks)
    """Commands run before and after the backup."""
    schedule: str | None = "0 1 * * *"
    """Cron expression (UTC) `backup schedule` runs `backup app NAME` on; null: not
    scheduled."""

    @field_validator("schedule")
    @classmethod
    def _check_target_schedule(cls, value: str | None) -> str | None:
        return _check_cron(value)

    @field_validator("dsn")
    @classmethod
    def _check_dsn(cls, value: str | None) -> str | None:
        if value is not None and (re.search(r"(^|[\s?&])password\s*=", value, re.IGNORECASE)
                                  or re.search(r"://[^/@]*:[^/@]*@", value)):
            raise _invalid("the DSN carries a password", hint="put it in the variable named "
                           "by password_env; platform.yaml never holds secrets")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> BackupTarget:
        pod_form = self.namespace is not None and self.pod is not None
        if self.kind == "postgres" and pod_form == (self.dsn is not None):
            raise _invalid("give either namespace+pod (exec) or dsn (direct), exactly one",
                           "namespace: NS, pod: NAME   or   dsn: 'host=... dbname=...'")
        if self.kind == "tar" and (not pod_form or not self.path):
            raise _invalid("a tar target needs namespace, pod and path")
        return self


def _check_cron(value: str | None) -> str | None:
    from k3sops.domain.schedule import cron_fields
    from k3sops.errors import UsageError

    if value is None:
        return None
    try:
        cron_fields(value)
    except UsageError as e:
        raise _invalid(e.message, "minute hour day-of-month month day-of-week, "
                       "e.g. '0 2 * * *', or @daily/@weekly") from e
    return value


class VolumeSchedule(BaseModel):
    """A Longhorn volume (by its PVC) that `backup schedule` backs up."""

    model_config = _MODEL_CONFIG

    namespace: DnsLabel
    """Namespace of the PVC."""
    pvc: str
    """Name of the PVC."""
    schedule: str = "0 3 * * *"
    """Cron expression (UTC) of `backup volume PVC -n NAMESPACE`."""

    @field_validator("schedule")
    @classmethod
    def _check_volume_schedule(cls, value: str) -> str:
        _check_cron(value)
        return value


class BackupSchedule(BaseModel):
    """When `backup schedule` runs what (CronJobs or systemd timers); times are UTC."""

    model_config = _MODEL_CONFIG

    etcd: str | None = "0 2 * * *"
    """Cron expression of `backup etcd`; null: etcd is not scheduled."""
    verify: str = "0 4 * * 0"
    """Cron expression of the weekly `backup verify --since 8d`."""
    volumes: list[VolumeSchedule] = Field(default_factory=list)
    """Longhorn volumes to back up."""
    namespace: DnsLabel = "k3sops"
    """Namespace of the CronJobs (and of their ConfigMap, Secret and ServiceAccount)."""
    image: str = "ghcr.io/k3sops/k3sops:latest"
    """Container image of the CronJobs (one with k3sops, restic and etcdctl)."""

    @field_validator("etcd", "verify")
    @classmethod
    def _check_schedules(cls, value: str | None) -> str | None:
        return _check_cron(value)


class BackupDrill(BaseModel):
    """Where restore drills run."""

    model_config = _MODEL_CONFIG

    postgres_dsn: str | None = None
    """Server where a scratch database is created for the drill (and dropped after); unset:
    a throwaway local PostgreSQL cluster (initdb) on a free loopback port."""
    postgres_password_env: str | None = None
    """Environment variable with that server's password."""
    read_data_subset: str = "10%"
    """How much of the repository's data `backup verify` reads back (restic
    ``--read-data-subset``: ``N%`` or ``n/t``)."""

    @field_validator("read_data_subset")
    @classmethod
    def _check_subset(cls, value: str) -> str:
        if not re.match(r"^([0-9]{1,3}(\.[0-9]+)?%|[0-9]+/[0-9]+)$", value):
            raise _invalid(f"{value!r} is not a data subset", "N% (e.g. 10%) or n/t (e.g. 1/5)")
        return value


class Backup(BaseModel):
    """Backups with restic. The repository password is never stored here."""

    model_config = _MODEL_CONFIG
    unknown_key_hints: ClassVar[dict[str, str]] = {
        "password": "platform.yaml never holds secrets: name an environment variable with "
        "backup.password_env or a file with backup.password_file",
    }

    repository: str
    """restic repository: a local path, or ``sftp:``, ``rest:``, ``s3:``, ``b2:``, ``azure:``,
    ``gs:``, ``swift:``, ``rclone:`` repository string."""
    password_env: str | None = None
    """Name of the environment variable holding the repository password."""
    password_file: FilePath | None = None
    """File holding the repository password (keep it mode 0600)."""
    binaries: BackupBinaries = Field(default_factory=BackupBinaries)
    """Executables used by backups and drills."""
    etcd: EtcdAccess = Field(default_factory=EtcdAccess)
    """etcd's client API, for `backup etcd` through the snapshot API."""
    targets: list[BackupTarget] = Field(default_factory=list)
    """Application data `backup app NAME` knows."""
    drill: BackupDrill = Field(default_factory=BackupDrill)
    """Where and how `backup verify` runs restore drills."""
    metrics_file: FilePath | None = None
    """node-exporter textfile-collector file the backup metrics are written to (e.g.
    /var/lib/node_exporter/textfile/k3sops_backup.prom); unset: no metrics file."""
    lease_namespace: DnsLabel = "kube-system"
    """Namespace of the Leases that keep two backups of one target from overlapping."""
    work_dir: FilePath | None = None
    """Scratch space for etcd snapshot files and drills (unset: the system temp dir)."""
    schedule: BackupSchedule = Field(default_factory=BackupSchedule)
    """When `backup schedule` runs the backups and the weekly verify."""

    @field_validator("binaries", "etcd", "drill", "schedule", mode="before")
    @classmethod
    def _empty_backup_sections(cls, value: object) -> object:
        return _none_as_empty(value)

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, value: list[BackupTarget]) -> list[BackupTarget]:
        names = [t.name for t in value]
        if len(set(names)) != len(names):
            raise _invalid("a target name is used more than once", "each name once")
        return value

    def target(self, name: str) -> BackupTarget | None:
        """The target called ``name``."""
        return next((t for t in self.targets if t.name == name), None)

    @field_validator("repository")
    @classmethod
    def _check_repository(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise _invalid("the repository is empty", "a path or BACKEND:LOCATION")
        m = re.match(r"^([a-z0-9]+):", value)
        if m is None:
            return _resolve_local(value, info)
        if m[1] not in _RESTIC_BACKENDS:
            raise _invalid(f"unknown restic backend {m[1]!r}", ", ".join(_RESTIC_BACKENDS))
        if m[1] == "local":
            return "local:" + _resolve_local(value[len("local:"):], info)
        return value

    @field_validator("password_env")
    @classmethod
    def _check_env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_VAR.match(value):
            raise _invalid("not an environment variable name", "letters, digits and _")
        return value

    @model_validator(mode="after")
    def _exactly_one_password_source(self) -> Backup:
        if (self.password_env is None) == (self.password_file is None):
            which = "both" if self.password_env is not None else "neither"
            raise _invalid(
                f"{which} of password_env and password_file given; exactly one is needed",
                "password_env: VARIABLE or password_file: PATH",
            )
        return self


class GitOps(BaseModel):
    """The GitOps repository ArgoCD deploys from, holding per-environment values files."""

    model_config = _MODEL_CONFIG

    repo: str
    """Local path or URL (https://, ssh://, git@host:path) of the GitOps repository."""
    branch: str = "main"
    """Branch ArgoCD tracks; promotions are committed here."""
    values_path: str = "environments/{env}/values.yaml"
    """Path of an environment's values file inside the repo; ``{env}`` is the environment."""
    push: Literal["direct", "branch"] = "direct"
    """``direct``: promotions are pushed to ``branch`` (rebased onto a concurrent change);
    ``branch``: pushed to a review branch ``k3sops/<env>/<app>-<version>`` to merge by hand."""
    deploy: Literal["argocd", "apply", "none"] = "argocd"
    """How a pushed change reaches the cluster: ``argocd`` (wait for the app's Application to
    sync and be healthy), ``apply`` (k3sops renders the manifests and server-side applies them,
    as in the lab), ``none`` (only git is changed)."""
    argocd_namespace: DnsLabel = "argocd"
    """Namespace of ArgoCD's Application objects (``<app>-<env>``)."""
    rollout_timeout: str = "5m"
    """How long to wait for a rollout (or an ArgoCD sync) to finish after a change."""

    @field_validator("rollout_timeout")
    @classmethod
    def _check_rollout_timeout(cls, value: str) -> str:
        if not value or value == "0" or not _PROM_DURATION.match(value):
            raise _invalid(f"{value[:40]!r} is not a Prometheus duration", "e.g. 90s, 5m")
        return value

    @field_validator("repo")
    @classmethod
    def _check_repo(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise _invalid("the repository is empty", "a local path or a git URL")
        if _URL_LIKE.match(value) or _SCP_LIKE.match(value):
            return value
        return _resolve_local(value, info)

    @field_validator("branch")
    @classmethod
    def _check_branch(cls, value: str) -> str:
        if not value or ".." in value or re.search(r"[\s~^:?*\[\\]", value) or value[0] == "-":
            raise _invalid(f"{value[:60]!r} is not a git branch name", "e.g. main, release/1.2")
        return value

    @field_validator("values_path")
    @classmethod
    def _check_values_path(cls, value: str) -> str:
        if "{env}" not in value:
            raise _invalid("values_path must contain {env}", "e.g. environments/{env}/values.yaml")
        try:
            value.format(env="x")
        except (KeyError, IndexError, ValueError) as e:
            raise _invalid("values_path may use only the {env} placeholder") from e
        return value

    def values_file(self, env: str) -> str:
        """Return the values file path inside the repo for environment ``env``."""
        return self.values_path.format(env=env)


class Suppression(BaseModel):
    """Hide a check's findings for some objects, or change their severity (with a reason).

    Every field given must match: ``check`` (an id or a glob such as ``container-*``), ``kind``,
    ``namespace`` (a glob), ``name`` (a regular expression matching the whole name) and
    ``labels`` (each must equal the object's label). Suppressed findings are counted in every
    report and listed with ``--show-suppressed``; a suppression past ``expires`` stops applying
    and is itself reported (``suppression-expired``).
    """

    model_config = _MODEL_CONFIG

    check: str = Field(min_length=1)
    """Check id or glob (``image-latest``, ``rbac-*``)."""
    kind: str | None = None
    """Kind of the object (``Pod``, ``Deployment``...)."""
    namespace: str | None = None
    """Namespace glob (``dev-*``)."""
    name: str | None = None
    """Regular expression the object's whole name must match (``tmp-.*``)."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels the object must carry."""
    severity: Literal["critical", "warning", "info"] | None = None
    """Report at this severity instead of hiding the finding."""
    reason: str = Field(min_length=1)
    """Why: shown with every suppressed finding."""
    expires: date | None = None
    """Last day the suppression applies (YYYY-MM-DD); afterwards it is reported."""

    @field_validator("name")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as e:
                raise _invalid(f"{value[:60]!r} is not a regular expression: {e}",
                               "a Python regular expression, e.g. tmp-.*") from e
        return value

    @field_validator("reason")
    @classmethod
    def _check_reason(cls, value: str) -> str:
        if not value.strip():
            raise _invalid("the reason is empty", "why this finding may be ignored")
        return value


class Platform(BaseModel):
    """The whole ``platform.yaml``."""

    model_config = _MODEL_CONFIG

    name: DnsLabel
    """Name of the platform (DNS-1123 label); used in labels, backup tags and report titles."""
    kubeconfig: FilePath | None = None
    """Kubeconfig file; --kubeconfig and $K3SOPS_KUBECONFIG override it. Unset: $KUBECONFIG,
    then ~/.kube/config."""
    environments: dict[EnvironmentName, Environment]
    """The environments, at least one, keyed by name."""
    monitoring: Monitoring = Field(default_factory=Monitoring)
    """Where the monitoring stack answers."""
    ansible: Ansible | None = None
    """Node provisioning; unset: node operations that need Ansible are refused."""
    backup: Backup | None = None
    """restic backups; unset: backup and restore commands are refused."""
    gitops: GitOps | None = None
    """GitOps repository; unset: promotion is refused."""
    suppressions: list[Suppression] = Field(default_factory=list)
    """Findings to hide or re-grade, each with a reason and an optional expiry."""

    @field_validator("monitoring", mode="before")
    @classmethod
    def _empty_monitoring(cls, value: object) -> object:
        return _none_as_empty(value)

    @field_validator("environments", mode="before")
    @classmethod
    def _none_envs_as_defaults(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: _none_as_empty(v) for k, v in value.items()}
        return value

    @field_validator("environments")
    @classmethod
    def _at_least_one(
        cls, value: dict[EnvironmentName, Environment]
    ) -> dict[EnvironmentName, Environment]:
        if not value:
            raise _invalid("at least one environment is needed", ", ".join(ENVIRONMENT_NAMES))
        return value


# --------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in a platform file, as shown to the user."""

    source: str
    line: int | None
    path: str
    problem: str
    allowed: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        text = f"{where}: {self.path}: {self.problem}"
        return f"{text} (allowed: {self.allowed})" if self.allowed else text


class PlatformConfigError(ConfigError):
    """A platform file failed validation; ``issues`` lists each problem with its line."""

    def __init__(self, message: str, issues: tuple[ConfigIssue, ...], *,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.issues = issues


_TYPE_NAMES: dict[str, str] = {
    "string": "string",
    "int": "whole number",
    "float": "number",
    "bool": "true or false",
    "dict": "mapping",
    "model": "mapping",
    "model_attributes": "mapping",
    "list": "list",
    "path": "path string",
}


def _kind(value: object) -> str:
    """Name the YAML kind of a constructed value for messages."""
    if value is None:
        return "null (empty value)"
    for tp, name in ((bool, "boolean"), (int, "whole number"), (float, "number"),
                     (str, "string"), (list, "list"), (dict, "mapping")):
        if isinstance(value, tp):
            return name
    return type(value).__name__


def _shown(value: object, key: str | None) -> str:
    """Show a scalar input in a message, unless its key could hold a secret."""
    if key is not None and _SENSITIVE.search(key):
        return ""
    if value is None or isinstance(value, bool | int | float):
        return f" {value!r}"
    if isinstance(value, str):
        return f" {value[:40]!r}" + ("…" if len(value) > 40 else "")
    return ""


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional wrappers from a type annotation."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """Return the model class that validates the mapping at ``loc`` (None if not a model)."""
    tp: Any = Platform
    for seg in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next((f for n, f in tp.model_fields.items() if seg in (n, f.alias)), None)
            if field is None:
                return None
            tp = field.annotation
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


@dataclass
class _Positions:
    """Where things are in the YAML document, keyed by path (keys as constructed, indices)."""

    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)
    """1-based line of each key (mapping entries) or item (sequence entries)."""
    mappings: set[tuple[Any, ...]] = field(default_factory=set)
    """Paths of mappings, so an integer key is not shown as a list index."""

    def line_for(self, loc: tuple[Any, ...]) -> int | None:
        """Line of ``loc`` in the file, else of its nearest ancestor present in the file."""
        for n in range(len(loc), -1, -1):
            try:
                line = self.lines.get(loc[:n])
            except TypeError:  # an unhashable segment cannot be in the map
                continue
            if line is not None:
                return line
        return None

    def format_path(self, loc: tuple[int | str, ...]) -> str:
        """Dotted path with ``[i]`` for list indices, e.g. ``environments.production.x[0]``."""
        out = ""
        for n, seg in enumerate(loc):
            is_index = isinstance(seg, int) and not isinstance(seg, bool)
            try:
                in_mapping = loc[:n] in self.mappings
            except TypeError:
                in_mapping = False
            if is_index and not in_mapping:
                out += f"[{seg}]"
            else:
                out += ("." if out else "") + str(seg)
        return out or "(top level)"


def _range_text(model: type[BaseModel] | None, name: str, ctx: Mapping[str, Any]) -> str:
    """Describe a numeric field's full allowed range, e.g. ``> 0, <= 100``."""
    ops = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    bounds: dict[str, Any] = dict(ctx)
    field_info = model.model_fields.get(name) if model is not None else None
    for meta in field_info.metadata if field_info is not None else ():
        for attr in ops:
            if getattr(meta, attr, None) is not None:
                bounds[attr] = getattr(meta, attr)
    return ", ".join(f"{op} {bounds[k]}" for k, op in ops.items() if k in bounds)


def _issue(err: ErrorDetails, source: str, pos: _Positions) -> ConfigIssue:
    """Turn one pydantic error into a ConfigIssue with line, dotted path and "allowed"."""
    is_key = bool(err["loc"]) and err["loc"][-1] == "[key]"
    loc = tuple(err["loc"][:-1] if is_key else err["loc"])
    etype = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    value = err.get("input")
    key = None if is_key else next((str(s) for s in reversed(loc) if isinstance(s, str)), None)
    allowed: str | None = None
    hint: str | None = None
    line = pos.line_for(loc)

    if etype == "k3sops_invalid":
        problem = str(ctx["problem"])
        allowed = ctx.get("allowed")
        hint = ctx.get("hint")
    elif etype == "missing":
        problem = "required key is missing"
    elif etype == "extra_forbidden":
        problem = "unknown key"
        parent = _model_at(loc[:-1])
        if parent is not None:
            allowed = ", ".join(f.alias or n for n, f in parent.model_fields.items())
            hints: dict[str, str] = getattr(parent, "unknown_key_hints", {})
            hint = hints.get(str(loc[-1]))
    elif etype in ("literal_error", "enum"):
        problem = f"{'unknown key' if is_key else 'unexpected value'}{_shown(value, key)}"
        allowed = ", ".join(re.findall(r"'((?:[^'\\]|\\.)*)'", str(ctx.get("expected", ""))))
    elif etype.endswith(("_type", "_parsing")) or etype == "int_from_float":
        base = etype.removesuffix("_type").removesuffix("_parsing").removesuffix("_from_float")
        problem = f"wrong type: got {_kind(value)}{_shown(value, key)}"
        allowed = _TYPE_NAMES.get(base, base.replace("_", " "))
    elif etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        problem = f"out of range: got{_shown(value, key)}"
        allowed = _range_text(_model_at(loc[:-1]), str(loc[-1]) if loc else "", ctx)
    else:
        msg = err["msg"].removeprefix("Value error, ")
        problem = (msg[:1].lower() + msg[1:]) if msg else etype
    if is_key and not problem.startswith("unknown key"):
        problem = f"key: {problem}"
    return ConfigIssue(source, line, pos.format_path(loc), problem, allowed or None, hint)


def _validation_error(e: ValidationError, source: str,
                      pos: _Positions) -> PlatformConfigError:
    issues = sorted((_issue(err, source, pos) for err in e.errors()),
                    key=lambda i: (i.line or 0, i.path))
    count = f"{len(issues)} problem{'s' if len(issues) != 1 else ''}"
    message = "\n".join([f"invalid platform file {source} ({count}):", *map(str, issues)])
    specific = list(dict.fromkeys(i.hint for i in issues if i.hint))
    hint = "; ".join(specific) if specific else (
        "fix the lines above; `k3sops init FILE` writes a commented example of every section"
    )
    return PlatformConfigError(message, tuple(issues), hint=hint)


# --------------------------------------------------------------------------------------------
# YAML reading


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and gives every bad value a position."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError) as e:
            # e.g. "!!float abc" or a timestamp with month 13: never echo the value itself.
            tag = node.tag.rsplit(":", 1)[-1]
            raise ConstructorError(None, None, f"cannot read this value as {tag}",
                                   node.start_mark) from e

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise ConstructorError(
                        None, None,
                        f"duplicate key {key_node.value[:40]!r} (first at line {seen[ident]})",
                        key_node.start_mark,
                    )
                seen[ident] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _positions(loader: _Loader, root: Node) -> _Positions:
    """Map each key path (keys as constructed, list indices as ints) to its 1-based line."""
    pos = _Positions({(): root.start_mark.line + 1})
    lines = pos.lines
    stack: list[tuple[tuple[Any, ...], Node]] = [((), root)]
    visited: set[int] = set()
    while stack:
        path, node = stack.pop()
        if id(node) in visited:  # aliases: describe each node once, where first seen
            continue
        visited.add(id(node))
        if isinstance(node, MappingNode):
            pos.mappings.add(path)
            for key_node, value_node in node.value:
                try:
                    key = loader.construct_object(key_node, deep=True)
                    child = (*path, key)
                    lines.setdefault(child, key_node.start_mark.line + 1)
                except (yaml.YAMLError, TypeError):
                    continue
                stack.append((child, value_node))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                child = (*path, i)
                lines.setdefault(child, item.start_mark.line + 1)
                stack.append((child, item))
    return pos


def _yaml_error(e: yaml.YAMLError, source: str) -> ConfigError:
    hint = "check indentation, and quote values containing ':', '#', '{' or '['"
    if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
        mark = e.problem_mark
        problem = e.problem or "invalid YAML"
        context = ""
        if e.context and e.context_mark is not None:
            context = f" ({e.context} at line {e.context_mark.line + 1})"
        if problem.startswith("duplicate key"):
            hint = "keep one of the two keys"
        elif problem.startswith("cannot read this value"):
            hint = "quote the value if it is meant as a string"
        return ConfigError(
            f"{source}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {problem}{context}",
            hint=hint,
        )
    if isinstance(e, yaml.reader.ReaderError):
        return ConfigError(
            f"{source}:1: cannot read the file at character {e.position}: {e.reason}",
            hint="save the file as UTF-8 text",
        )
    return ConfigError(f"{source}:1: invalid YAML: {type(e).__name__}", hint=hint)


def parse_platform(
    text: str | bytes, source: str = "<string>", *, base_dir: Path | None = None
) -> Platform:
    """Parse and validate the text of a platform file.

    Args:
        text: YAML document (str, or bytes in UTF-8/UTF-16 with BOM).
        source: name of the document used in messages (usually the file path).
        base_dir: directory relative paths are resolved against; None keeps them as written.

    Returns:
        The validated platform.

    Raises:
        ConfigError: broken YAML, not a mapping, or any validation error
            (a PlatformConfigError listing each problem with its line).
    """
    try:
        loader = _Loader(text)  # reads ahead to detect the encoding: can fail already
    except yaml.YAMLError as e:
        raise _yaml_error(e, source) from e
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
        pos = _positions(loader, root) if root is not None else _Positions()
    except yaml.YAMLError as e:
        raise _yaml_error(e, source) from e
    except RecursionError as e:
        raise ConfigError(f"{source}:1: invalid YAML: nested too deeply") from e
    finally:
        loader.dispose()

    if data is None:
        raise ConfigError(
            f"{source}: the platform file is empty",
            hint="`k3sops init FILE` writes a commented starter platform.yaml",
        )
    if not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else 1
        raise ConfigError(
            f"{source}:{line}: the top level must be a mapping of settings "
            f"(name:, environments:, …), got {_kind(data)}",
            hint="`k3sops init FILE` writes a commented starter platform.yaml",
        )
    try:
        return Platform.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as e:
        raise _validation_error(e, source, pos) from e
    except RecursionError as e:
        raise ConfigError(f"{source}:1: the document is nested too deeply") from e


def load_platform(path: Path) -> Platform:
    """Read and validate a platform file; relative paths in it resolve against its directory.

    Args:
        path: the platform.yaml to read.

    Returns:
        The validated platform.

    Raises:
        ConfigError: the file cannot be read, is not valid YAML, or is not a valid platform.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise ConfigError(
            f"{path}: no such file",
            hint="pass the path of your platform.yaml (-c/--config or $K3SOPS_CONFIG), "
            "or run `k3sops init` to create one",
        ) from e
    except IsADirectoryError as e:
        raise ConfigError(f"{path}: is a directory, not a platform file",
                          hint="pass the platform.yaml inside it") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or type(e).__name__}",
                          hint="check the file's permissions") from e
    return parse_platform(raw, str(path), base_dir=path.parent.absolute())


def find_platform_file(explicit: Path | None, env: Mapping[str, str], cwd: Path) -> Path | None:
    """Choose the platform file: flag > ``$K3SOPS_CONFIG`` > ``./platform.yaml`` > none.

    Args:
        explicit: a path given on the command line, if any.
        env: the environment to consult (pass ``os.environ``; never read here implicitly).
        cwd: directory relative paths and the default ``platform.yaml`` are taken from.

    Returns:
        The file to load (not checked for existence unless it is the default), or None.
    """
    if explicit is not None:
        return cwd / explicit
    from_env = env.get("K3SOPS_CONFIG", "")
    if from_env:
        return cwd / Path(from_env)
    default = cwd / "platform.yaml"
    return default if default.is_file() else None


# --------------------------------------------------------------------------------------------
# Starter file

STARTER_TEMPLATE = """\
# platform.yaml: the K3s platform k3sops operates.
#
# Check it with `k3sops config validate`. Relative paths are resolved against the directory
# of this file. This file never holds secrets: passwords and tokens come from environment
# variables or files that it names. Settings given as flags or K3SOPS_* environment variables
# override what is written here.

# Name of the platform: a DNS-1123 label (lowercase letters, digits, '-'). Used in labels,
# backup tags and report titles.
name: my-platform

# Kubeconfig file for every environment. Omit it to use --kubeconfig, $K3SOPS_KUBECONFIG,
# then $KUBECONFIG, then ~/.kube/config.
# kubeconfig: ~/.kube/config

# The environments (development, staging, production; at least one).
environments:
  development:
    # Kubeconfig context of this environment's cluster; omit for the current context.
    context: dev
    # Namespaces holding this environment's workloads (checks and promotion are scoped
    # to them). Empty or omitted: every namespace of the cluster.
    namespaces: [apps]
    # How releases reach this environment: auto (every change), manual (an operator runs
    # the promotion) or approval (one of the approvers must approve first).
    promotion:
      policy: auto
    # Thresholds for checks and generated alert rules. Every key is optional; these are the
    # defaults from the operations guide.
    thresholds:
      cpu_percent: 80              # node/pod CPU use, percent of allocatable
      memory_percent: 80           # node/pod memory use, percent of allocatable
      disk_free_percent: 10        # free disk below this percent is reported
      for: 5m                      # how long a condition holds before it alerts
      restarts_per_hour: 3         # container restarts per hour: crash-looping above this
      http_error_rate_percent: 5.0 # share of HTTP 5xx responses, percent
      p95_latency_seconds: 0.5     # 95th percentile request latency, seconds
      cert_expiry_days: 14         # report certificates expiring within this many days
  staging:
    context: staging
    namespaces: [apps]
    promotion:
      policy: manual
  production:
    context: production
    namespaces: [apps]
    promotion:
      policy: approval
      # Users or groups who may approve a promotion (required for policy approval).
      approvers: [ops-lead]
      # Gates of `k3sops env promote` (defaults shown): staging must have run the version
      # healthily this long, approvals expire, and error rate / p95 latency from Prometheus.
      # healthy_for: 10m
      # approval_expiry: 24h
      # required_approvals: 1
      # max_error_rate_percent: 5.0
      # max_p95_seconds: 0.5
      # missing_metrics: pass     # when the app exposes no such series: pass or fail
    thresholds:
      for: 10m

# Where the monitoring stack answers. An endpoint is either `url: http(s)://...` or
# `service: NAMESPACE/NAME:PORT`, reached through the API server's service proxy (no
# port-forward needed; add `scheme: https` if the service speaks TLS). Each endpoint has a
# timeout_seconds (default 10).
monitoring:
  namespace: monitoring
  prometheus:
    service: monitoring/prometheus-server:80
  alertmanager:
    service: monitoring/alertmanager:9093
  # Grafana, for dashboards (omit to write dashboards as files only).
  # grafana:
  #   url: https://grafana.example.com
  # Loki, for log queries during diagnosis (omit to read logs from the API server).
  # loki:
  #   service: monitoring/loki:3100

# Node provisioning with Ansible (optional: delete the section if you do not use it).
ansible:
  inventory: inventory/hosts.ini   # inventory file or directory of the K3s nodes
  # private_key_file: ~/.ssh/id_ed25519
  # user: ubuntu
  # token_env: K3S_TOKEN          # the cluster token, for installing and joining nodes

# Backups with restic (optional). repository: a local path or sftp:, rest:, s3:, b2: ...
# The repository password comes from an environment variable (password_env) or a file
# (password_file): exactly one of them; never write the password itself here.
backup:
  repository: sftp:backup@backup-host:/srv/restic/my-platform
  password_env: RESTIC_PASSWORD

# The GitOps repository ArgoCD deploys from (optional). values_path is the environment's
# values file inside the repository; {env} is replaced by the environment name.
gitops:
  repo: https://git.example.com/platform/deployments.git
  branch: main
  values_path: environments/{env}/values.yaml
  # push: direct       # direct (to branch; rebased onto a concurrent change) or branch (review)
  # deploy: argocd     # argocd (follow the Application), apply (k3sops applies) or none
  # rollout_timeout: 5m
"""

_STARTER_NAME = "my-platform"


def render_starter(name: str) -> str:
    """Return the starter platform.yaml with ``name`` as the platform name.

    Args:
        name: platform name, a DNS-1123 label.

    Raises:
        ConfigError: ``name`` is not a DNS-1123 label.
    """
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise ConfigError(f"{name[:70]!r} is not a valid platform name",
                          hint=f"use {_DNS_LABEL_ALLOWED}, e.g. my-platform")
    return STARTER_TEMPLATE.replace(_STARTER_NAME, name)
