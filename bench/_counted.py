"""Run the k3sops CLI with every HTTP request it sends counted (client side).

    python bench/_counted.py OUT.json k3sops-args...

Wraps httpx2's transport (the one place every request of lightkube, the raw LIST client and the
Prometheus/Alertmanager clients goes through) and writes {"METHOD host path": count} to OUT.json
at exit. Only for counting: the timed runs use the plain `k3sops` entry point.
"""

from __future__ import annotations

import atexit
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2

COUNTS: Counter[str] = Counter()
_send = httpx2.HTTPTransport.handle_request


def _counting(self: httpx2.HTTPTransport, request: httpx2.Request) -> Any:
    url = request.url
    COUNTS[f"{request.method} {url.host}:{url.port} {url.path}"] += 1
    return _send(self, request)


def _write(out: Path) -> None:
    out.write_text(json.dumps(dict(sorted(COUNTS.items())), indent=1))


if __name__ == "__main__":
    target = Path(sys.argv[1])
    httpx2.HTTPTransport.handle_request = _counting  # type: ignore[method-assign]
    atexit.register(_write, target)
    from k3sops.cli.app import main

    main(sys.argv[2:])
