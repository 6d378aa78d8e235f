"""Outgoing webhooks: POST one JSON document to a receiver's URL (`k3sops serve` forwarding).

A receiver's URL often *is* its credential (a Slack-compatible incoming webhook carries its
token in the path), so the URL is a :class:`~pydantic.SecretStr` here and errors name the
receiver and its host only, never the path or query.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx2
from pydantic import SecretStr

from k3sops.errors import AdapterError, Timeout, Unauthorized, Unreachable

TIMEOUT_SECONDS = 5.0
"""Connect/read/write timeout of one delivery: a slow receiver must not hold the others."""


def host_of(url: SecretStr) -> str:
    """The scheme and host of ``url`` (what may be shown); the path may be a token."""
    parts = urlsplit(url.get_secret_value())
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


class WebhookSender:
    """Posts JSON documents to webhook receivers over one HTTP connection pool."""

    def __init__(self, timeout: float = TIMEOUT_SECONDS,
                 transport: httpx2.BaseTransport | None = None) -> None:
        """Build the client; ``transport`` replaces the network in tests."""
        self._client = httpx2.Client(timeout=httpx2.Timeout(timeout), transport=transport,
                                     follow_redirects=False)

    def post(self, name: str, url: SecretStr, document: Any) -> int:
        """POST ``document`` as JSON to ``url``; return the HTTP status (2xx).

        Raises:
            Unreachable / Timeout: the receiver could not be reached in time.
            Unauthorized: it answered 401/403.
            AdapterError: any other non-2xx answer (the status is named, the body is not:
                a receiver's error page may echo the request).
        """
        where = f"receiver {name} ({host_of(url)})"
        try:
            resp = self._client.post(url.get_secret_value(), json=document)
        except httpx2.TimeoutException as e:
            raise Timeout(f"{where} did not answer within the timeout",
                          hint="check the receiver; other receivers were still sent to") from e
        except httpx2.HTTPError as e:
            # str(e) may contain the URL, so only the exception's type is shown.
            raise Unreachable(f"{where} could not be reached ({type(e).__name__})",
                              hint="check the receiver's URL and that it is up") from e
        if resp.status_code in (401, 403):
            raise Unauthorized(f"{where} refused the delivery: HTTP {resp.status_code}",
                               hint="the webhook URL or its token is no longer valid")
        if not 200 <= resp.status_code < 300:
            raise AdapterError(f"{where} answered HTTP {resp.status_code}",
                               hint="check the receiver's logs")
        return resp.status_code

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
