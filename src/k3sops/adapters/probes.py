"""Probes of a cluster in trouble: health endpoints and the serving certificate.

Health endpoints go through :class:`KubeClient` (its credentials, TLS and error mapping), each
with its own short timeout: an emergency procedure must not hang on a dead API server. Their
error answers (``/readyz`` failing with 500) are the probe's result, not an error.
"""

from __future__ import annotations

import socket
import ssl
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from k3sops.adapters.kube import KubeClient
from k3sops.errors import AdapterError, Unreachable


def _name(n: x509.Name) -> str:
    cn = n.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cn[0].value) if cn else n.rfc4514_string()


class Probes:
    """Health endpoints and the TLS certificate of one cluster's API server."""

    def __init__(self, kube: KubeClient, timeout: float = 5.0) -> None:
        self.kube = kube
        self.timeout = timeout

    def get_path(self, path: str) -> tuple[int, str, float]:
        """GET an API server path; (HTTP status, body text, seconds taken).

        Raises:
            Unreachable, Timeout: the API server did not answer.
        """
        started = time.monotonic()
        resp = self.kube.request("GET", path, what=path, timeout=self.timeout,
                                 accept=tuple(range(400, 600)))
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
