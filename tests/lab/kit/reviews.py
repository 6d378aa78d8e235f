"""Recording the lab API server's real TokenReview and SubjectAccessReview answers.

The serve unit tests (tests/unit/servekit.py) replay them instead of a hand-written table.
A review's request body holds the token, so each token is replaced by ``<token:NAME>`` in what
is kept, in the request and in the answer (a TokenReview answer echoes its spec).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2

from k3sops.adapters.kube.recorded import RecordingTransport

DATA = Path(__file__).parent.parent.parent / "data" / "serve_reviews"
FILE = DATA / "reviews.json"


def placeholder(name: str) -> str:
    """What a token named ``name`` is replaced by in a recording."""
    return f"<token:{name}>"


class BodyRecordingTransport(RecordingTransport):
    """A :class:`RecordingTransport` that keeps the request body too (reviews are POSTs)."""

    def __init__(self, inner: httpx2.BaseTransport) -> None:
        super().__init__(inner)
        self.scene = "granted"
        """The name the next exchanges are kept under (the state of RBAC when asked)."""

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send and keep the exchange with the request's body and the current scene."""
        body = request.read().decode()
        resp = super().handle_request(request)
        self.exchanges[-1]["request"]["body"] = body
        self.exchanges[-1]["scene"] = self.scene
        return resp


def redact(text: str, tokens: dict[str, str]) -> str:
    """``text`` with every token replaced by its placeholder."""
    for name, token in tokens.items():
        text = text.replace(token, placeholder(name))
    return text


def save(exchanges: list[dict[str, Any]], tokens: dict[str, str], **facts: Any) -> None:
    """Write the recording, tokens redacted; refuses to write anything still token-like."""
    kept = [{"scene": x["scene"],
             "request": {"method": x["request"]["method"], "path": x["request"]["path"],
                         "body": json.loads(redact(x["request"]["body"], tokens))},
             "response": {"status": x["response"]["status"],
                          "content_type": x["response"]["content_type"],
                          "body": redact(x["response"]["body"], tokens)}}
            for x in exchanges]
    text = json.dumps({**facts, "exchanges": kept}, indent=1, sort_keys=True) + "\n"
    # ServiceAccount tokens are JWTs: a header always starts "eyJ" (base64 of '{"')
    if any(t in text for t in tokens.values()) or "eyJ" in text:
        raise AssertionError("a token is left in the recording: not written")
    DATA.mkdir(parents=True, exist_ok=True)
    FILE.write_text(text)
