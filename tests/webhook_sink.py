"""A real HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it.

The alert tests use it as a webhook receiver (what k3sops forwards to) and, in the lab test,
as the endpoint Alertmanager delivers to. ``status`` sets the HTTP answer (500: a failing
receiver); ``on_body`` handles each body and its return value is sent back as JSON.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Sink:
    """Records POSTed bodies (raw bytes and paths) until closed."""

    def __init__(self, status: int = 200,
                 on_body: Callable[[bytes], tuple[int, Any]] | None = None) -> None:
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self.status = status
        self.on_body = on_body
        self.received = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code, answer = sink.status, {"ok": sink.status < 300}
                if sink.on_body is not None:
                    code, answer = sink.on_body(body)
                with sink.received:
                    sink.bodies.append(body)
                    sink.paths.append(self.path)
                    sink.received.notify_all()
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass  # keep test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """The base URL (http://127.0.0.1:PORT)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def json(self) -> list[Any]:
        """Every body received, decoded."""
        with self.received:
            return [json.loads(b) for b in self.bodies]

    def wait(self, predicate: Callable[[list[bytes]], bool], timeout: float) -> bool:
        """Wait until ``predicate(bodies)`` holds; False after ``timeout`` seconds."""
        with self.received:
            return self.received.wait_for(lambda: predicate(list(self.bodies)), timeout)

    def close(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()
