"""Where the monitoring stack answers: endpoints, Prometheus, Alertmanager, Grafana, Loki."""

from __future__ import annotations

import re
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

from k3sops.config.schema.fields import (
    MODEL_CONFIG,
    SERVICE_RE,
    DnsLabel,
    FilePath,
    invalid,
)


class ServiceRef(NamedTuple):
    """A Kubernetes service port, as written ``namespace/name:port``."""

    namespace: str
    name: str
    port: int | str
    """Port number, or the name of a named service port."""


class Endpoint(BaseModel):
    """Where an HTTP API answers: a URL, or a service reached through the API server's proxy."""

    model_config = MODEL_CONFIG

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
            raise invalid("not an http(s) URL with a host", "http://HOST[:PORT][/PATH], https://…")
        if parts.username is not None or parts.password is not None:
            raise invalid(
                "credentials in the URL are not allowed",
                hint="platform.yaml never holds secrets; drop the user:password@ part",
            )
        return value

    @field_validator("service")
    @classmethod
    def _check_service(cls, value: str | None) -> str | None:
        if value is None:
            return None
        m = SERVICE_RE.match(value)
        if m is None or len(m["namespace"]) > 63 or len(m["name"]) > 63:
            raise invalid(
                f"{value[:80]!r} is not a service reference",
                "NAMESPACE/NAME:PORT with DNS labels and a port number or port name",
            )
        port = m["port"]
        if port.isdigit() and not 1 <= int(port) <= 65535:
            raise invalid(f"port {port} is out of range", "1-65535 or a named port")
        if not port.isdigit() and (len(port) > 15 or not re.search("[a-z]", port)):
            raise invalid(f"{port!r} is not a valid port name", "1-15 chars with a letter")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Endpoint:
        if (self.url is None) == (self.service is None):
            which = "both" if self.url is not None else "neither"
            raise invalid(
                f"{which} of url and service given; exactly one is needed",
                "url: http(s)://… or service: NAMESPACE/NAME:PORT",
            )
        if self.url is not None and "scheme" in self.model_fields_set:
            raise invalid("scheme applies to service endpoints only; the URL carries its own")
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

    model_config = MODEL_CONFIG

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

    model_config = MODEL_CONFIG

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


