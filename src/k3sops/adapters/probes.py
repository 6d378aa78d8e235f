"""Probes of a cluster in trouble: health endpoints, the serving certificate, a probe pod.

Built on :class:`KubeAdapter` (its credentials, TLS and error mapping). Each call has its own
short timeout: an emergency procedure must not hang on a dead API server.
"""

from __future__ import annotations

import socket
import ssl
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx2
from cryptography import x509
from cryptography.x509.oid import NameOID

from k3sops.adapters.kube import KubeAdapter
from k3sops.errors import AdapterError, NotFound, Timeout, Unauthorized, Unreachable


def _name(n: x509.Name) -> str:
    cn = n.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cn[0].value) if cn else n.rfc4514_string()


class Probes:
    """Health endpoints, the TLS certificate and short-lived probe pods of one cluster."""

    def __init__(self, kube: KubeAdapter, timeout: float = 5.0) -> None:
        self.kube = kube
        self.timeout = timeout
        self._http: httpx2.Client | None = None

    def _client(self) -> httpx2.Client:
        if self._http is None:
            self._http = self.kube.http()
            self._http.timeout = httpx2.Timeout(self.timeout)
        return self._http

    def close(self) -> None:
        """Release the HTTP connection."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def get_path(self, path: str) -> tuple[int, str, float]:
        """GET an API server path; (HTTP status, body text, seconds taken).

        Raises:
            Unreachable, Timeout: the API server did not answer.
        """
        url = f"{self.kube.server.rstrip('/')}{path}"
        started = time.monotonic()
        try:
            resp = self._client().get(url)
        except httpx2.TimeoutException as e:
            raise Timeout(f"API server {self.kube.server} did not answer {path} within "
                          f"{self.timeout:g}s", hint="is it overloaded or down?") from e
        except httpx2.HTTPError as e:
            raise Unreachable(f"cannot reach the API server at {self.kube.server} for {path}: "
                              f"{type(e).__name__}: {e}",
                              hint="is k3s running on the servers? is the address right?") from e
        return resp.status_code, resp.text[:4000], time.monotonic() - started

    def server_certificate(self) -> tuple[str, str, datetime]:
        """The API server's serving certificate (subject CN, issuer CN, notAfter in UTC).

        The handshake does not verify the chain: an expired certificate is exactly what this
        must be able to read.

        Raises:
            Unreachable: no TLS connection could be made.
            AdapterError: the server is not https or presented no certificate.
        """
        parts = urlsplit(self.kube.server)
        if parts.scheme != "https" or not parts.hostname:
            raise AdapterError(f"API server {self.kube.server} is not https: no certificate")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection((parts.hostname, parts.port or 443),
                                          timeout=self.timeout) as sock, \
                    ctx.wrap_socket(sock, server_hostname=parts.hostname) as tls:
                der = tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError) as e:
            raise Unreachable(f"no TLS connection to {self.kube.server}: {e}",
                              hint="is the API server listening?") from e
        if not der:
            raise AdapterError(f"API server {self.kube.server} presented no certificate")
        cert = x509.load_der_x509_certificate(der)
        return _name(cert.subject), _name(cert.issuer), cert.not_valid_after_utc.astimezone(UTC)

    def _check(self, resp: httpx2.Response, what: str) -> None:
        if resp.status_code < 400:
            return
        try:
            reason = str(resp.json().get("message", ""))
        except ValueError:
            reason = resp.text[:200]
        if resp.status_code == 404:
            raise NotFound(f"{what}: not found on {self.kube.server}: {reason}")
        if resp.status_code in (401, 403):
            raise Unauthorized(f"API server {self.kube.server} refused to {what} "
                               f"(HTTP {resp.status_code}): {reason}",
                               hint=f"check the RBAC permissions of context "
                                    f"{self.kube.context!r}")
        raise AdapterError(f"{what} failed on {self.kube.server} (HTTP {resp.status_code}): "
                           f"{reason}")

    def _send(self, method: str, path: str, what: str, namespace: str,
              body: Any = None, params: dict[str, str] | None = None) -> httpx2.Response:
        with self.kube.errors(what.split(" ", maxsplit=1)[0], what.split(" ", 1)[-1], namespace):
            resp = self._client().request(method, f"{self.kube.server.rstrip('/')}{path}",
                                          json=body, params=params)
        self._check(resp, f"{what} in namespace {namespace}")
        return resp

    def create_pod(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create a pod; its JSON as the API server stored it."""
        data: dict[str, Any] = self._send("POST", f"/api/v1/namespaces/{namespace}/pods",
                                          "create pods", namespace, body=manifest).json()
        return data

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A pod's JSON, or None when it does not exist."""
        try:
            data: dict[str, Any] = self._send(
                "GET", f"/api/v1/namespaces/{namespace}/pods/{name}", f"get pods/{name}",
                namespace).json()
        except NotFound:
            return None
        return data

    def get_node(self, name: str) -> dict[str, Any] | None:
        """A node's JSON, or None when it does not exist."""
        try:
            data: dict[str, Any] = self._send("GET", f"/api/v1/nodes/{name}",
                                              f"get nodes/{name}", "").json()
        except NotFound:
            return None
        return data

    def delete_pod(self, namespace: str, name: str) -> bool:
        """Delete a pod at once (grace 0); False when it was already gone."""
        try:
            self._send("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}",
                       f"delete pods/{name}", namespace,
                       body={"kind": "DeleteOptions", "apiVersion": "v1",
                             "gracePeriodSeconds": 0})
        except NotFound:
            return False
        return True

    def pod_log(self, namespace: str, name: str, tail: int = 50) -> list[str]:
        """The pod's log lines (its only container)."""
        resp = self._send("GET", f"/api/v1/namespaces/{namespace}/pods/{name}/log",
                          f"get pods/{name}/log", namespace, params={"tailLines": str(tail)})
        return resp.text.splitlines()
