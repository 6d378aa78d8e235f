"""`k3sops metrics`: ask Prometheus the catalogue of node, cluster and application queries.

Prometheus is found from platform.yaml (``monitoring.prometheus``): a URL, or a service reached
through the API server's service proxy; without a platform file, the conventional
``monitoring/prometheus-server:80`` service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from k3sops.adapters.kube import KubeAdapter
from k3sops.adapters.prometheus import HttpApi, PrometheusAdapter
from k3sops.config import AppMetrics, Endpoint
from k3sops.domain.metrics import (
    InstantResult,
    MetricsReport,
    QueryReport,
    Scope,
    build_report,
    catalogue,
    query_report,
)
from k3sops.errors import K3sopsError, NotFound, Timeout, Unauthorized, Unreachable, UsageError
from k3sops.services import context
from k3sops.services.context import Settings, monitoring

# Errors that mean Prometheus itself could not be asked, as opposed to one query failing.
_ENDPOINT_ERRORS = (Unreachable, Timeout, Unauthorized, NotFound)


def prometheus_endpoint(settings: Settings) -> Endpoint:
    """The Prometheus endpoint of platform.yaml, or the conventional in-cluster service."""
    return monitoring(settings).prometheus


def app_metrics(settings: Settings) -> AppMetrics:
    """Application metric names from platform.yaml, or the defaults."""
    return monitoring(settings).app_metrics


def prometheus_api(endpoint: Endpoint, kube: KubeAdapter | None) -> HttpApi:
    """The HTTP API of ``endpoint``: its URL, or the service proxy path on ``kube``'s server.

    Args:
        endpoint: a URL endpoint (``kube`` unused) or a service endpoint (``kube`` required).
        kube: the Kubernetes API to proxy through, for service endpoints.

    Raises:
        ConfigError: a service endpoint without a Kubernetes API.
    """
    return HttpApi.from_endpoint("Prometheus", endpoint, kube)


def connect(settings: Settings, env: Mapping[str, str], home: Path) -> PrometheusAdapter:
    """Open Prometheus as platform.yaml says; the Kubernetes API is only read for services.

    Args:
        settings: resolved settings.
        env: the process environment (kubeconfig discovery).
        home: the user's home directory (kubeconfig discovery).

    Returns:
        An adapter; close it with ``adapter.close()``.
    """
    endpoint = prometheus_endpoint(settings)
    if endpoint.url is not None:
        return PrometheusAdapter(prometheus_api(endpoint, None))
    kube = context.kube(settings, env, home)
    try:
        # The proxy client (kube.http()) is independent of the lightkube client closed below.
        return PrometheusAdapter(prometheus_api(endpoint, kube))
    finally:
        kube.close()


def env_namespaces(settings: Settings, env_name: str | None) -> list[str]:
    """The namespaces of environment ``env_name`` (empty: all), or [] without ``--env``.

    Raises:
        UsageError: ``--env`` without a platform file, or an environment it does not define.
    """
    if env_name is None:
        return []
    if settings.platform is None:
        raise UsageError(f"--env {env_name} needs a platform.yaml defining the environment",
                         hint="pass -c/--config PLATFORM.yaml or set $K3SOPS_CONFIG")
    envs = settings.platform.environments
    for name, environment in envs.items():
        if name == env_name:
            return list(environment.namespaces)
    raise UsageError(f"unknown environment {env_name!r}",
                     hint="platform.yaml defines: " + ", ".join(sorted(envs)))


def collect(prom: PrometheusAdapter, scopes: Sequence[Scope], app: AppMetrics,
            namespaces: Sequence[str] = ()) -> MetricsReport:
    """Run the catalogue for ``scopes`` concurrently and build the report.

    Queries that fail are listed in ``failed_queries`` (the CLI exits 4) while the others are
    shown; when every query fails because Prometheus cannot be asked at all, that error is
    raised instead (exit 1), since there is nothing to show.

    Args:
        prom: the Prometheus to ask.
        scopes: levels to collect.
        app: application metric names.
        namespaces: restrict the application level to these namespaces; empty: all.

    Raises:
        Unreachable, Timeout, Unauthorized, NotFound: Prometheus could not be asked.
    """
    queries = catalogue(scopes, app, namespaces)
    raw = prom.query_many({q.name: q.expr for q in queries})
    errors = [r for r in raw.values() if isinstance(r, K3sopsError)]
    if errors and len(errors) == len(raw):
        fatal = next((e for e in errors if isinstance(e, _ENDPOINT_ERRORS)), None)
        if fatal is not None:
            raise fatal
    answers: dict[str, InstantResult | str] = {
        name: r if isinstance(r, InstantResult) else r.message for name, r in raw.items()}
    return build_report(prom.api.how, scopes, queries, answers, app, namespaces)


def adhoc(prom: PrometheusAdapter, expr: str) -> QueryReport:
    """Run one user-supplied instant query.

    Raises:
        QueryError: Prometheus could not parse ``expr`` (its message names the position).
        AdapterError: Prometheus could not be asked, or the query failed while running.
    """
    return query_report(prom.api.how, expr, prom.query(expr))
