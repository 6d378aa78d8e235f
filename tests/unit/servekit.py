"""What the serve unit tests share: a table of users and grants answering TokenReviews and
SubjectAccessReviews as an API server would, a watch cache stand-in, and requests through
the ASGI app (the lab tests, tests/lab/test_serve_lab.py, run the real reviews)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx2

from k3sops.domain.findings import Source
from k3sops.domain.snapshot import ClusterSnapshot
from k3sops.errors import Unreachable
from k3sops.serve.cache import KindStatus

ALICE = "alice-token-0123456789"
BOB = "bob-token-9876543210"
DOWN = "token-while-the-api-server-is-down"


class Reviewer:
    """Answers reviews as an API server with these users and grants would."""

    def __init__(self) -> None:
        self.users = {ALICE: "alice", BOB: "bob"}
        self.grants = {("alice", "get", "reports"), ("alice", "get", "metrics")}
        self.bodies: list[dict[str, Any]] = []

    def create(self, group_version: str, plural: str, namespace: str | None,
               obj: Mapping[str, Any]) -> dict[str, Any]:
        self.bodies.append(dict(obj))
        spec = obj["spec"]
        if plural == "tokenreviews":
            if spec["token"] == DOWN:
                raise Unreachable("https://127.0.0.1:6443 refused the connection")
            name = self.users.get(spec["token"])
            return {"status": {"authenticated": name is not None,
                               "user": {"username": name, "uid": f"uid-{name}",
                                        "groups": ["system:authenticated"]}}}
        attrs = spec["resourceAttributes"]
        assert attrs["group"] == "k3sops.io"
        return {"status": {"allowed": (spec["user"], attrs["verb"], attrs["resource"])
                           in self.grants}}


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
