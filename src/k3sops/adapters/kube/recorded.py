"""Record an API server's answers, and replay them through :class:`KubeClient`'s transport.

A recording is JSON: ``{"recorded_from": ..., "exchanges": [{"request": {"method", "path",
"query"}, "response": {"status", "content_type", "body"}}]}`` — the body as the server sent
it (a watch stream's lines included), never a request header (credentials stay out).
:class:`ReplayTransport` answers each request with the first unused exchange of the same
method, path and query, and fails loudly on a request nobody recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx2
from lightkube.config.client_adapter import verify_cluster

from k3sops.adapters.kube._client import KubeClient
from k3sops.adapters.kube._config import KubeconfigSource, load_single


def _query(raw: str) -> list[tuple[str, str]]:
    return sorted(parse_qsl(raw, keep_blank_values=True))


class RecordingTransport(httpx2.BaseTransport):
    """Passes requests to ``inner`` and keeps each exchange (the answer read in full)."""

    def __init__(self, inner: httpx2.BaseTransport) -> None:
        self.inner = inner
        self.exchanges: list[dict[str, Any]] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send, read the whole answer, keep it, and hand it on."""
        resp = self.inner.handle_request(request)
        body = resp.read()
        self.exchanges.append({
            "request": {"method": request.method, "path": request.url.path,
                        "query": request.url.query.decode()},
            "response": {"status": resp.status_code,
                         "content_type": resp.headers.get("content-type", ""),
                         # the body is kept decoded; this says how it travelled
                         "content_encoding": resp.headers.get("content-encoding", ""),
                         "body": body.decode("utf-8", "replace")}})
        # read() decoded the body: a large LIST comes gzip-compressed (kube-apiserver
        # compresses answers over 128 KiB), and handing the decoded bytes on under the
        # server's content-encoding/length would make the client decode them again and fail
        headers = [(k, v) for k, v in resp.headers.multi_items()
                   if k.lower() not in ("content-encoding", "content-length")]
        return httpx2.Response(resp.status_code, headers=headers, content=body,
                               request=request)

    def close(self) -> None:
        """Close the inner transport."""
        self.inner.close()


def recording_client(source: KubeconfigSource, context: str | None = None,
                     timeout: float = 30.0) -> tuple[KubeClient, RecordingTransport]:
    """A client of a real cluster whose exchanges are kept (``transport.exchanges``)."""
    single = load_single(source, context)
    assert single.user is not None  # noqa: S101  # load_single returns a complete context
    verify = verify_cluster(single.cluster, single.user, single.abs_file)
    rec = RecordingTransport(httpx2.HTTPTransport(verify=verify))
    return KubeClient(source, context, timeout, transport=rec), rec


def save(path: Path, exchanges: Iterable[dict[str, Any]], recorded_from: str,
         **facts: str) -> None:
    """Write a recording (``facts``: what a replaying test needs, such as the namespace)."""
    path.write_text(json.dumps({"recorded_from": recorded_from, **facts,
                                "exchanges": list(exchanges)}, indent=1) + "\n")


class ReplayTransport(httpx2.BaseTransport):
    """Answers requests from recorded exchanges, each used once, in recorded order."""

    def __init__(self, exchanges: Iterable[dict[str, Any]]) -> None:
        self.unused = list(exchanges)
        self.requests: list[httpx2.Request] = []

    @classmethod
    def load(cls, *paths: Path) -> ReplayTransport:
        """Replay the exchanges of recordings, in order."""
        return cls([e for p in paths for e in json.loads(p.read_text())["exchanges"]])

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """The recorded answer to this request.

        Raises:
            LookupError: nothing recorded answers it (the test is wrong, not the server).
        """
        self.requests.append(request)
        query = _query(request.url.query.decode())
        for i, ex in enumerate(self.unused):
            req = ex["request"]
            if (req["method"] == request.method and req["path"] == request.url.path
                    and _query(req["query"]) == query):
                del self.unused[i]
                r = ex["response"]
                return httpx2.Response(r["status"], content=r["body"].encode(),
                                       headers={"content-type": r["content_type"]},
                                       request=request)
        raise LookupError(f"no recorded answer to {request.method} {request.url.path}"
                          f"?{request.url.query.decode()}")
