"""Loki's HTTP API: LogQL range queries (``GET /loki/api/v1/query_range``).

Loki answers a LogQL syntax error with HTTP 400 and a plain-text body such as
``parse error at line 1, col 1: syntax error: unexpected IDENTIFIER``; that becomes a
UsageError (exit 2) carrying Loki's message with its position.
"""

from __future__ import annotations

from typing import Any

import httpx2

from k3sops.adapters.kube import KubeAdapter
from k3sops.adapters.prometheus import HttpApi
from k3sops.config import Endpoint
from k3sops.errors import (
    AdapterError,
    NotFound,
    Timeout,
    Unauthorized,
    Unreachable,
    UsageError,
)

QUERY_RANGE = "/loki/api/v1/query_range"


class LokiAdapter:
    """The Loki queries k3sops makes; errors name the endpoint."""

    def __init__(self, api: HttpApi) -> None:
        self.api = api

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint, kube: KubeAdapter | None,
                      transport: httpx2.BaseTransport | None = None) -> LokiAdapter:
        """Reach Loki at ``endpoint``; ``transport`` replaces the network (URL endpoints only).

        A swappable transport is how the client is tested against recorded Loki answers,
        since Loki itself cannot run here.
        """
        if transport is not None and endpoint.url is not None:
            client = httpx2.Client(timeout=httpx2.Timeout(endpoint.timeout_seconds),
                                   transport=transport)
            return cls(HttpApi("Loki", endpoint.url, client, endpoint.url))
        return cls(HttpApi.from_endpoint("Loki", endpoint, kube))

    @property
    def where(self) -> str:
        """The endpoint, for messages and reports."""
        return self.api.how

    def query_range(self, params: dict[str, str]) -> Any:
        """Run ``/loki/api/v1/query_range`` with ``params`` and return the decoded answer.

        Raises:
            UsageError: Loki rejected the query (HTTP 400: bad LogQL, bad limit or range).
            NotFound / Unauthorized / Unreachable / Timeout / AdapterError: as for any API.
        """
        where = f"Loki at {self.api.how}"
        try:
            resp = self.api.client.get(f"{self.api.base_url}{QUERY_RANGE}", params=params)
        except httpx2.TimeoutException as e:
            raise Timeout(f"{where} did not answer {QUERY_RANGE} in time",
                          hint="narrow the time range or the selector, or raise "
                               "timeout_seconds in platform.yaml") from e
        except httpx2.HTTPError as e:
            raise Unreachable(f"cannot reach {where}: {e}",
                              hint="check that Loki runs and monitoring.loki in platform.yaml "
                                   "is right") from e
        text = resp.text.strip()
        if resp.status_code == 400:
            raise UsageError(f"{where} rejected the query: {text[:500]}",
                             hint="see https://grafana.com/docs/loki/latest/query/ for LogQL")
        if resp.status_code in (401, 403):
            raise Unauthorized(f"{where} refused GET {QUERY_RANGE} (HTTP {resp.status_code})",
                               hint="multi-tenant Loki needs an X-Scope-OrgID; "
                                    "a gateway may need credentials")
        if resp.status_code == 404:
            raise NotFound(f"{where}: {QUERY_RANGE} not found (HTTP 404)",
                           hint="is monitoring.loki the Loki (or gateway) address?")
        if resp.status_code >= 300:
            raise AdapterError(f"{where}: GET {QUERY_RANGE} failed (HTTP {resp.status_code}): "
                               f"{text[:300]}")
        try:
            return resp.json()
        except ValueError as e:
            raise AdapterError(f"{where}: GET {QUERY_RANGE} returned HTTP {resp.status_code}, "
                               f"not JSON: {text[:200]}") from e

    def close(self) -> None:
        """Release connections."""
        self.api.close()
