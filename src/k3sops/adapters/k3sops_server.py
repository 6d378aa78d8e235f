"""A running `k3sops serve` read over its ``/api/v1`` (``k3sops check --server URL``).

Only I/O: the JSON answers are returned as parsed; :mod:`k3sops.services.remote` turns them
back into the report models. The bearer token is sent in the ``Authorization`` header and
never appears in an error: messages name the server's scheme, host and port only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2

from k3sops.errors import AdapterError, NotFound, Timeout, Unauthorized, Unreachable

TIMEOUT_SECONDS = 30.0
"""Connect/read timeout: the service answers a check from its cache in about a second."""


def origin_of(url: str) -> str:
    """Scheme, host and port of ``url`` (what errors may show: no path, query or userinfo)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _detail(resp: httpx2.Response) -> str:
    """The server's own message (``{"error": ...}``, or FastAPI's ``detail``), short."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    detail = (body.get("error") or body.get("detail")) if isinstance(body, dict) else None
    return str(detail)[:300] if detail else ""


class K3sopsServer:
    """The ``/api/v1`` of one `k3sops serve`.

    Args:
        url: the service's base URL (``https://k3sops.example:8443``).
        token: the bearer token (None: no ``Authorization`` header; the service answers 401).
        ca: a CA bundle to verify its certificate (None: the system CAs).
        transport: replaces the network in tests.
    """

    def __init__(self, url: str, token: str | None, ca: Path | None = None, *,
                 timeout: float = TIMEOUT_SECONDS,
                 transport: httpx2.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.origin = origin_of(self.url)
        headers = {"User-Agent": "k3sops", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        verify: Any = True
        if ca is not None:
            import ssl

            try:
                verify = ssl.create_default_context(cafile=str(ca))
            except (OSError, ssl.SSLError) as e:
                from k3sops.errors import ConfigError

                raise ConfigError(f"cannot use --server-ca {ca}: {type(e).__name__}",
                                  hint="pass a PEM file with the service's CA") from e
        self._client = httpx2.Client(timeout=httpx2.Timeout(timeout), headers=headers,
                                     verify=verify, transport=transport,
                                     follow_redirects=False)

    def report(self, period: str, environment: str | None) -> dict[str, Any]:
        """``GET /api/v1/report``: the service's latest background report of ``period``.

        With ``environment`` the service judges it on demand. The report's own time says when
        it was judged (its ``X-K3sops-As-Of``).
        """
        params = {"period": period}
        if environment is not None:
            params["environment"] = environment
        return self._get("/api/v1/report", params, "reports")

    def diagnose(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        """``GET /api/v1/diagnose/KIND/NAMESPACE/NAME`` (``-``: cluster-scoped)."""
        path = "/".join(quote(p, safe="") for p in (kind, namespace or "-", name))
        return self._get(f"/api/v1/diagnose/{path}", {}, "diagnoses")

    def alerts(self, state: str | None, limit: int) -> dict[str, Any]:
        """``GET /api/v1/alerts``: the enriched alerts the service stored, newest first."""
        params = {"limit": str(limit)}
        if state is not None:
            params["state"] = state
        return self._get("/api/v1/alerts", params, "alerts")

    def _get(self, path: str, params: dict[str, str], resource: str) -> dict[str, Any]:
        where = f"k3sops service {self.origin}"
        try:
            resp = self._client.get(self.url + path, params=params)
        except httpx2.TimeoutException as e:
            raise Timeout(f"{where} did not answer {path} within the timeout",
                          hint="check that the service is up (its /healthz)") from e
        except httpx2.HTTPError as e:
            # str(e) may carry the request (and so the URL): only the type is shown.
            raise Unreachable(f"{where} could not be reached ({type(e).__name__})",
                              hint="check --server (or K3SOPS_SERVER), the port, and "
                                   "--server-ca for a private CA") from e
        detail = _detail(resp)
        said = f": {detail}" if detail else ""
        if resp.status_code == 401:
            raise Unauthorized(f"{where} refused the request: HTTP 401{said}",
                               hint="pass --token-file FILE or set K3SOPS_SERVER_TOKEN with a "
                                    "valid Kubernetes token")
        if resp.status_code == 403:
            raise Unauthorized(f"{where} refused the request: HTTP 403{said}",
                               hint=f"the token needs `get` on {resource} of k3sops.io "
                                    "(a ClusterRole bound to its user)")
        if resp.status_code == 503:
            # its cache is not in sync, or it cannot review tokens (the API server is down)
            raise AdapterError(f"{where}: service not ready{said}",
                                  hint="retry when its /readyz answers 200")
        if resp.status_code == 404:
            raise NotFound(f"{where}: {path} not found{said}")
        if resp.status_code == 400:
            from k3sops.errors import UsageError

            raise UsageError(f"{where} refused the request{said}")
        if not 200 <= resp.status_code < 300:
            raise AdapterError(f"{where} answered HTTP {resp.status_code} for {path}{said}")
        try:
            body = resp.json()
        except ValueError as e:
            raise AdapterError(f"{where} answered {path} with something that is not JSON",
                               hint="is --server the k3sops service?") from e
        if not isinstance(body, dict):
            raise AdapterError(f"{where} answered {path} with JSON that is not an object")
        return body

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
