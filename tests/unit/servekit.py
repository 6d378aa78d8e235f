"""What the serve unit tests share: the lab API server's recorded answers to TokenReviews and
SubjectAccessReviews replayed through a real :class:`KubeClient`, a watch cache stand-in, and
requests through the ASGI app.

The review answers were recorded by tests/lab/test_serve_reviews_lab.py (run it with
``K3SOPS_RECORD_REVIEWS=1`` to record them again): real ServiceAccount tokens of a reader
(``get`` on the k3sops.io resources), a nobody (no rights), an invalid token, a deleted
ServiceAccount's token, and the reader after its binding was deleted. The tokens here are
made up; each stands for one recorded token, and any other token gets the invalid token's
answer (the API server knows neither).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2

from k3sops.adapters.kube import KubeClient, KubeconfigSource
from k3sops.domain.findings import Source
from k3sops.domain.snapshot import ClusterSnapshot
from k3sops.serve.cache import KindStatus

REVIEWS = Path(__file__).parent.parent / "data" / "serve_reviews"
RECORDED: dict[str, Any] = json.loads((REVIEWS / "reviews.json").read_text())

READER = "reader-token-0123456789"
NOBODY = "nobody-token-9876543210"
GONE = "token-of-a-deleted-service-account"
TOKENS = {READER: "reader", NOBODY: "nobody", GONE: "deleted"}
READER_USER: str = RECORDED["users"]["reader"]
NOBODY_USER: str = RECORDED["users"]["nobody"]


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


class Cache:
    def __init__(self, synced: bool) -> None:
        self.synced = synced

    def snapshot(self, now: datetime, kinds: Any = None) -> ClusterSnapshot:
        return ClusterSnapshot(now=now, objects={})

    def in_sync(self) -> bool:
        return self.synced

    def status(self) -> dict[str, KindStatus]:
        return {"pods": KindStatus(synced=self.synced, objects=3, resource_version="7",
                                   last_event_age=1.5, relists=0, error=None)}

    def source(self, kinds: Any = None) -> Source:
        return Source(name="kubernetes", ok=True, endpoint="https://127.0.0.1:6443")


def asgi_get(app: Any, path: str, token: str | None = None, method: str = "GET",
         body: bytes = b"") -> httpx2.Response:
    async def go() -> httpx2.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                      base_url="http://serve") as client:
            return await client.request(method, path, headers=headers, content=body)
    return asyncio.run(go())
