"""The floor: LIST the same kinds as `k3sops check` with a bare httpx2 client, nothing else.

Run as its own process (like `k3sops check`), so its wall time and peak RSS include the
interpreter start and the import of httpx2, and nothing of k3sops is imported. Each page is
decoded as JSON (a client has to read the continue token and hold the objects, as k3sops does).

    python bench/floor.py --server https://127.0.0.1:20443 --pki DIR --paths FILE.json \
        --mode sequential|concurrent [--workers 8] [--page 500]

Prints one JSON object: list_seconds (from the first request to the last page), items and
pages per kind.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2

PAGE = 500


HELD: list[list[dict[str, Any]]] = []
"""Every page's objects, kept to the end as k3sops keeps its snapshot (a fair memory floor)."""


def list_kind(http: httpx2.Client, path: str, page: int) -> tuple[int, int, int]:
    """(items, pages, status) of one paginated LIST; 404 (CRD not installed) is one page.

    ``page`` 0 sends no limit: one unpaginated LIST (informative, not the floor).
    """
    items = pages = 0
    params: dict[str, str | int] = {"limit": page} if page else {}
    while True:
        r = http.get(path, params=params)
        pages += 1
        if r.status_code == 404:
            return 0, pages, 404
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        page_items = body.get("items") or []
        HELD.append(page_items)
        items += len(page_items)
        cont = (body.get("metadata") or {}).get("continue")
        if not cont:
            return items, pages, r.status_code
        params = {"limit": page, "continue": cont}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True)
    p.add_argument("--pki", type=Path, required=True, help="dir with ca.crt, admin.crt/.key")
    p.add_argument("--paths", type=Path, required=True, help="JSON {kind: path}")
    p.add_argument("--mode", choices=("sequential", "concurrent"), default="sequential")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--page", type=int, default=PAGE, help="limit per page; 0: unpaginated")
    a = p.parse_args()
    if not a.server.startswith("https://127.0.0.1:"):
        print("refusing a non-loopback API server", file=sys.stderr)
        return 2
    paths: dict[str, str] = json.loads(a.paths.read_text())
    ctx = ssl.create_default_context(cafile=str(a.pki / "ca.crt"))
    ctx.load_cert_chain(str(a.pki / "admin.crt"), str(a.pki / "admin.key"))
    workers = a.workers if a.mode == "concurrent" else 1
    with httpx2.Client(base_url=a.server, verify=ctx, timeout=60.0, trust_env=False,
                       limits=httpx2.Limits(max_connections=workers)) as http:
        t0 = time.monotonic()
        if workers == 1:
            results = [list_kind(http, path, a.page) for path in paths.values()]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(lambda path: list_kind(http, path, a.page),
                                        paths.values()))
        elapsed = time.monotonic() - t0
    out = {"mode": a.mode, "workers": workers, "page": a.page,
           "list_seconds": round(elapsed, 4),
           "kinds": {k: {"items": r[0], "pages": r[1], "status": r[2]}
                     for k, r in zip(paths, results, strict=True)}}
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
