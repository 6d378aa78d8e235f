"""Reports (and stored alerts) read from a running `k3sops serve` (``--server URL``).

The service answers with the same models the CLI builds (``CheckReport``,
``DiagnosisReport`` dumped as JSON), so they are validated back into those models here and
every output format and ``--fail-on`` work unchanged.

The token, in order: ``--token-file``, ``$K3SOPS_SERVER_TOKEN``, the bearer token of the
kubeconfig's current user (when it has one). It is never printed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError

from k3sops.adapters.k3sops_server import K3sopsServer
from k3sops.domain import alerting
from k3sops.domain import diagnose as dg
from k3sops.domain.findings import CheckReport, Period
from k3sops.domain.service_alerts import ServiceAlertList, service_alert_list
from k3sops.errors import AdapterError, ConfigError, UsageError
from k3sops.services.context import Settings

TOKEN_ENV = "K3SOPS_SERVER_TOKEN"  # noqa: S105 (the variable's name, not a token)
SERVER_ENV = "K3SOPS_SERVER"
MAX_ALERTS = 1000
"""The most alerts one ``GET /api/v1/alerts`` returns (the service's own bound)."""


def server_token(url: str, token_file: Path | None, settings: Settings,
                 env: Mapping[str, str], home: Path) -> str | None:
    """The bearer token for the service at ``url`` (None: none found; it will answer 401).

    The kubeconfig's token is a credential for the whole cluster: it is sent only over
    https or to a loopback address, never in clear text across a network (a token named
    explicitly, by file or variable, is the user's choice).

    Raises:
        ConfigError: ``--token-file`` cannot be read or is empty.
    """
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read --token-file {token_file}: {type(e).__name__}",
                              hint="pass a file holding the bearer token") from e
        if not token:
            raise ConfigError(f"--token-file {token_file} is empty",
                              hint="pass a file holding the bearer token")
        return token
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return token
    if not _private_channel(url):
        return None
    return _kubeconfig_token(settings, env, home)


def _private_channel(url: str) -> bool:
    """https, or plain http to this machine."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _kubeconfig_token(settings: Settings, env: Mapping[str, str], home: Path) -> str | None:
    """The current kubeconfig user's bearer token, if it has one (no kubeconfig: None)."""
    from k3sops.adapters.kube import discover_kubeconfig, load_single

    try:
        source = discover_kubeconfig(settings.kubeconfig,
                                     settings.platform.kubeconfig if settings.platform else None,
                                     env, home)
        single = load_single(source, settings.context)
    except ConfigError:
        return None
    user = single.user
    if user is None:
        return None
    if user.token:
        return str(user.token)
    if user.token_file:
        try:
            return Path(user.token_file).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None
    return None


def _server(url: str, token: str | None, ca: Path | None) -> K3sopsServer:
    if not url.startswith(("https://", "http://")):
        raise UsageError(f"--server {url[:60]!r} is not an http(s) URL",
                         hint="e.g. --server https://k3sops.example:8443")
    return K3sopsServer(url, token, ca)


def check(url: str, token: str | None, ca: Path | None, period: Period,
          environment: str | None) -> CheckReport:
    """The checklist of ``period`` as the service judges it now.

    Raises:
        Unauthorized: 401/403 (the service's message); AdapterError: 503 (service not ready);
        Unreachable/Timeout: the service could not be reached; AdapterError: not a report.
    """
    server = _server(url, token, ca)
    try:
        body = server.report(period, environment)
    finally:
        server.close()
    try:
        return CheckReport.model_validate(body)
    except ValidationError as e:
        raise AdapterError(f"k3sops service {server.origin} answered /api/v1/report with "
                           f"something that is not a check report ({e.error_count()} "
                           "problem(s))", hint="is the service the same k3sops version?") from e


def diagnose(url: str, token: str | None, ca: Path | None, kind: str, namespace: str | None,
             name: str) -> dg.DiagnosisReport:
    """One object's diagnosis as the service makes it from its cache.

    Raises:
        UsageError: an unknown kind, or a namespaced one without ``namespace``;
        otherwise as :func:`check` (NotFound: the service does not know the kind).
    """
    from k3sops.domain.snapshot import CLUSTER_SCOPED, plural_of

    plural = plural_of(kind)
    if plural is None:
        raise UsageError(f"unknown kind {kind[:40]!r}",
                         hint="e.g. pod, deployment, service, ingress, node, pvc")
    if plural not in CLUSTER_SCOPED and not namespace:
        raise UsageError(f"with --server a {plural} needs its namespace",
                         hint="add -n NAMESPACE")
    server = _server(url, token, ca)
    try:
        body = server.diagnose(plural, None if plural in CLUSTER_SCOPED else namespace, name)
    finally:
        server.close()
    try:
        return dg.DiagnosisReport.model_validate(body)
    except ValidationError as e:
        raise AdapterError(f"k3sops service {server.origin} answered /api/v1/diagnose with "
                           f"something that is not a diagnosis ({e.error_count()} "
                           "problem(s))", hint="is the service the same k3sops version?") from e


def alerts(url: str, token: str | None, ca: Path | None, *, state: str | None, limit: int,
           environments: Sequence[str] = (), severities: Sequence[str] = (),
           selectors: Sequence[str] = ()) -> ServiceAlertList:
    """The enriched alerts the service stored (``GET /api/v1/alerts``), filtered.

    Raises:
        UsageError: a selector is not a matcher, or ``state``/``limit`` is out of range
        (checked before the service is asked); otherwise as :func:`check`.
    """
    matchers = alerting.parse_matchers(selectors)
    if state not in (None, "firing", "resolved"):
        raise UsageError(f"--state {state[:20]!r} is not firing or resolved",
                         hint="use --state firing or --state resolved (or leave it out: both)")
    if not 1 <= limit <= MAX_ALERTS:
        raise UsageError(f"--limit {limit} is out of range",
                         hint=f"use a number from 1 to {MAX_ALERTS}")
    server = _server(url, token, ca)
    try:
        body = server.alerts(state, limit)
    finally:
        server.close()
    rows = body.get("alerts")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise AdapterError(f"k3sops service {server.origin} answered /api/v1/alerts with "
                           "something that is not a list of alerts",
                           hint="is the service the same k3sops version?")
    return service_alert_list(server.origin, state, rows, environments=environments,
                              severities=severities, selectors=matchers)
