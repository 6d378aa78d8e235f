"""What the serve unit tests share: the lab API server's recorded answers to TokenReviews and
SubjectAccessReviews, and to a watch cache's LIST and WATCH of the nodes, replayed through a
real :class:`KubeClient` (the cache is the real :class:`WatchCache`), and requests through
the ASGI app; and :class:`JsonServer`, the real HTTP(S) server on which the CLI's ``--server``
tests replay the service's recorded answers.

The review answers were recorded by tests/lab/test_serve_reviews_lab.py (run it with
``K3SOPS_RECORD_REVIEWS=1`` to record them again): real ServiceAccount tokens of a reader
(``get`` on the k3sops.io resources), an acker (also ``create`` acks), two users who may get
only reports or only backups, a nobody (no rights), an invalid token, a deleted
ServiceAccount's token, and the reader after its binding was deleted; the nodes through the
service's own account. The tokens here are made up; each stands for one recorded token, and
any other token gets the invalid token's answer (the API server knows neither).
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2

from k3sops.adapters.kube import KubeClient, KubeconfigSource
from k3sops.adapters.kube.recorded import ReplayTransport
from k3sops.serve.cache import WatchCache

REVIEWS = Path(__file__).parent.parent / "data" / "serve_reviews"
RECORDED: dict[str, Any] = json.loads((REVIEWS / "reviews.json").read_text())

READER = "reader-token-0123456789"
"""``get`` on reports, findings, metrics, diagnoses, backups, environments, alerts,
remediations, capacity, silences; no ``create``."""
ACKER = "acker-token-0123456789"
"""The reader's rights and ``create`` on acks."""
OPERATOR = "operator-token-0123456789"
"""The reader's rights and ``create`` on approvals and silences, ``delete`` on silences."""
REPORTS_ONLY = "reports-only-token-0123456789"
BACKUPS_ONLY = "backups-only-token-0123456789"
NOBODY = "nobody-token-9876543210"
GONE = "token-of-a-deleted-service-account"
TOKENS = {READER: "reader", ACKER: "acker", OPERATOR: "operator", REPORTS_ONLY: "reports-only",
          BACKUPS_ONLY: "backups-only", NOBODY: "nobody", GONE: "deleted"}
READER_USER: str = RECORDED["users"]["reader"]
NOBODY_USER: str = RECORDED["users"]["nobody"]
USERS: dict[str, str] = {token: RECORDED["users"][name] for token, name in TOKENS.items()
                         if name in RECORDED["users"]}
"""The user name the API server gave each token's ServiceAccount."""


class Reviews(httpx2.BaseTransport):
    """Answers review POSTs with the recorded answer to the same request body.

    ``revoke()`` moves to the answers recorded after the reader's binding was deleted.
    A request nobody recorded fails the test.
    """

    def __init__(self) -> None:
        self.scenes = ["granted"]
        self.bodies: list[dict[str, Any]] = []

    def revoke(self) -> None:
        """From now on answer as the API server did once the reader lost its grants."""
        self.scenes = ["revoked", "granted"]

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """The recorded answer (status, content type, body) to this method, path and body."""
        body = json.loads(request.read())
        self.bodies.append(body)
        spec = dict(body["spec"])
        if "token" in spec:
            spec["token"] = f"<token:{TOKENS.get(spec['token'], 'invalid')}>"
        key = {**body, "spec": spec}
        for scene in self.scenes:
            for x in RECORDED["exchanges"]:
                if (x["scene"], x["request"]["method"], x["request"]["path"],
                        x["request"]["body"]) == (scene, request.method, request.url.path, key):
                    r = x["response"]
                    return httpx2.Response(r["status"], content=r["body"].encode(),
                                           headers={"content-type": r["content_type"]},
                                           request=request)
        shown = {k: ("..." if k == "token" else v) for k, v in spec.items()}
        raise AssertionError(f"no recorded answer to {request.method} {request.url.path} "
                             f"{json.dumps(shown)}")


def review_client(reviews: Reviews | None = None) -> KubeClient:
    """A client of the recorded API server (``reviews``: to revoke or read the bodies)."""
    return KubeClient(KubeconfigSource(REVIEWS / "replay.kubeconfig", "test"),
                      transport=reviews or Reviews())


def unreachable_client() -> KubeClient:
    """A client of an API server nobody listens for (a real refused connection)."""
    return KubeClient(KubeconfigSource(REVIEWS / "unreachable.kubeconfig", "test"), timeout=5)


class _QuietServer(httpx2.BaseTransport):
    """The recorded LIST and WATCH; then that quiet WATCH again, as long as it lasted.

    Nothing changed on the recorded server during its one-second watch, and nothing changes
    here: each further watch gets the same (empty) answer, as the server would have sent.
    """

    def __init__(self, path: Path) -> None:
        self.replay = ReplayTransport.load(path)
        self.quiet = next(x["response"] for x in reversed(self.replay.unused)
                          if "watch=true" in x["request"]["query"])

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """The recorded answer; a further watch gets the quiet watch's answer after 1 s."""
        try:
            return self.replay.handle_request(request)
        except LookupError:
            if "watch=true" not in request.url.query.decode():
                raise
            time.sleep(1)  # the recorded watch's timeoutSeconds
            return httpx2.Response(self.quiet["status"], content=self.quiet["body"].encode(),
                                   headers={"content-type": self.quiet["content_type"]},
                                   request=request)


CACHED_NODES = int(json.loads((REVIEWS / "cache-nodes.json").read_text())["nodes"])
"""How many nodes the recorded LIST holds."""


@functools.cache
def synced_cache() -> WatchCache:
    """A real watch cache of the nodes on the recorded answers, synced; one per process (the
    tests only read it; its thread is a daemon)."""
    client = KubeClient(KubeconfigSource(REVIEWS / "replay.kubeconfig", "test"),
                        transport=_QuietServer(REVIEWS / "cache-nodes.json"))
    cache = WatchCache(client, ["nodes"], watch_seconds=1)
    cache.start()
    assert cache.wait_synced(30), cache.status()
    return cache


@functools.cache
def lagging_cache() -> WatchCache:
    """A real watch cache of the nodes whose API server refuses the connection: never synced."""
    cache = WatchCache(unreachable_client(), ["nodes"], retry_seconds=30)
    cache.start()
    return cache


def asgi_get(app: Any, path: str, token: str | None = None, method: str = "GET",
         body: bytes = b"") -> httpx2.Response:
    async def go() -> httpx2.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                      base_url="http://serve") as client:
            return await client.request(method, path, headers=headers, content=body)
    return asyncio.run(go())


class JsonServer:
    """A real HTTP(S) server on a free port of 127.0.0.1 that answers each GET with
    ``answer(path, Authorization header)`` as JSON, and keeps each request in ``requests``
    (``path``, parsed ``query``, ``auth``).

    ``tls``: the certificate and key files to serve HTTPS with.
    """

    def __init__(self, answer: Callable[[str, str | None], tuple[int, Any]],
                 tls: tuple[Path, Path] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        kept = self.requests

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass  # keep pytest's output clean

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                auth = self.headers.get("Authorization")
                kept.append({"path": parts.path, "query": parse_qs(parts.query), "auth": auth})
                status, body = answer(parts.path, auth)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
