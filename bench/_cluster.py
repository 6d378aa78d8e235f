"""Talk to the benchmark lab's API server with a bare httpx2 client (admin client certificate).

Used to grow the cluster (fake nodes, pods created already bound) and to read the API server's
own request counters. Everything goes to the lab on 127.0.0.1 only.
"""

from __future__ import annotations

import math
import re
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from k3sops.lab.shape import node

PAGE = 500
"""Objects per page, as k3sops' KubeAdapter.list_raw asks (LIST_CHUNK)."""

NODE_PREFIX = "bench-node-"
NS_PREFIX = "bench-"


@dataclass(frozen=True)
class Lab:
    """Where the benchmark lab's API server is and which files authenticate to it."""

    server: str
    ca: Path
    cert: Path
    key: Path
    run_dir: Path

    @classmethod
    def from_run_dir(cls, run_dir: Path, port_base: int) -> Lab:
        pki = run_dir / "pki"
        return cls(server=f"https://127.0.0.1:{port_base + 443}", ca=pki / "ca.crt",
                   cert=pki / "admin.crt", key=pki / "admin.key", run_dir=run_dir)

    def client(self, connections: int = 16, timeout: float = 60.0) -> httpx2.Client:
        """A bare client: the lab CA, the admin client certificate, a pool of connections."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        if not self.server.startswith("https://127.0.0.1:"):
            raise SystemExit(f"refusing a non-loopback API server {self.server}")
        return httpx2.Client(base_url=self.server, verify=ctx, timeout=timeout,
                             trust_env=False,
                             limits=httpx2.Limits(max_connections=connections,
                                                  max_keepalive_connections=connections))


# -- growing the cluster ----------------------------------------------------------------------

def node_name(i: int) -> str:
    return f"{NODE_PREFIX}{i:04d}"


def ns_name(i: int) -> str:
    return f"{NS_PREFIX}{i:02d}"


def bench_node(i: int) -> dict[str, Any]:
    """A fake agent node from the lab's own helper, managed by the lab's kwok (annotation)."""
    doc = node(node_name(i), server=False, ip_index=0)
    # TEST-NET addresses run out after 245 nodes; the benchmark range 198.18.0.0/15 does not.
    doc["metadata"]["annotations"]["k3s.io/internal-ip"] = f"198.18.{i // 250}.{10 + i % 250}"
    doc["metadata"]["labels"]["k3sops.io/bench"] = "true"
    return doc


def bench_pod(i: int, nodes: int, namespaces: int) -> dict[str, Any]:
    """A pod bound to a node already (spec.nodeName), so the scheduler does no work."""
    app = f"app-{i % 50:02d}"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"pod-{i:05d}", "namespace": ns_name(i % namespaces),
                     "labels": {"app.kubernetes.io/name": app, "k3sops.io/bench": "true"}},
        "spec": {
            "nodeName": node_name(i % nodes),
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "app", "image": f"registry.example/bench/{app}:1.0",
                "ports": [{"containerPort": 8080, "name": "http"}],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                              "limits": {"memory": "64Mi"}},
            }],
        },
    }


def _create_all(http: httpx2.Client, items: Iterable[tuple[str, dict[str, Any]]],
                workers: int, say: Callable[[str], None], what: str) -> int:
    """POST each (path, body); an object that exists already (409) counts as done."""
    todo = list(items)
    failures: Counter[str] = Counter()

    def one(item: tuple[str, dict[str, Any]]) -> bool:
        path, body = item
        for attempt in range(5):  # bounded: a 429/5xx from a busy API server is retried briefly
            try:
                r = http.post(path, json=body)
            except httpx2.TransportError as e:
                failures[type(e).__name__] += 1
                time.sleep(0.5 * (attempt + 1))
                continue
            if r.status_code in (201, 409):
                return r.status_code == 201
            if r.status_code in (429, 500, 503, 504):
                time.sleep(0.5 * (attempt + 1))
                continue
            failures[f"HTTP {r.status_code}: {r.text[:160]}"] += 1
            return False
        return False

    t0 = time.monotonic()
    created = 0
    step = max(1, len(todo) // 10)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for n, ok in enumerate(pool.map(one, todo), start=1):
            created += ok
            if n % step == 0 or n == len(todo):
                rate = n / max(time.monotonic() - t0, 1e-6)
                say(f"  {what}: {n}/{len(todo)} ({rate:.0f}/s)")
    if failures:
        say(f"  {what}: failures {dict(failures)}")
    return created


def count(http: httpx2.Client, path: str, params: dict[str, str] | None = None) -> int:
    """Number of objects at a LIST path.

    One limit=1 request gives remainingItemCount + 1; the API server leaves remainingItemCount
    out when a label selector is given, so then the pages are counted (names only matter).
    """
    r = http.get(path, params={"limit": "1", **(params or {})})
    r.raise_for_status()
    body = r.json()
    meta = body["metadata"]
    if "remainingItemCount" in meta or not meta.get("continue"):
        return len(body.get("items") or []) + int(meta.get("remainingItemCount") or 0)
    total, cont = 0, ""
    while True:
        r = http.get(path, params={"limit": str(PAGE), **(params or {}),
                                   **({"continue": cont} if cont else {})})
        r.raise_for_status()
        body = r.json()
        total += len(body.get("items") or [])
        cont = body["metadata"].get("continue") or ""
        if not cont:
            return total


def grow(lab: Lab, nodes: int, pods: int, namespaces: int, say: Callable[[str], None],
         workers: int = 24) -> dict[str, float]:
    """Bring the cluster to ``nodes`` bench nodes and ``pods`` bench pods (idempotent)."""
    timings: dict[str, float] = {}
    with lab.client(connections=workers) as http:
        t0 = time.monotonic()
        _create_all(http, (("/api/v1/namespaces",
                            {"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": ns_name(i),
                                          "labels": {"k3sops.io/bench": "true"}}})
                           for i in range(namespaces)), workers, say, "namespaces")
        # Pods are admitted only once the namespace's default ServiceAccount exists.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            missing = [i for i in range(namespaces)
                       if http.get(f"/api/v1/namespaces/{ns_name(i)}/serviceaccounts/default"
                                   ).status_code != 200]
            if not missing:
                break
            time.sleep(1)
        sel = {"labelSelector": "k3sops.io/bench=true"}
        if count(http, "/api/v1/nodes", sel) < nodes:  # a re-run on a grown lab creates nothing
            _create_all(http, (("/api/v1/nodes", bench_node(i)) for i in range(nodes)),
                        workers, say, "nodes")
        timings["nodes_seconds"] = time.monotonic() - t0
        t1 = time.monotonic()
        if count(http, "/api/v1/pods", sel) < pods:
            _create_all(http, ((f"/api/v1/namespaces/{ns_name(i % namespaces)}/pods",
                                bench_pod(i, nodes, namespaces)) for i in range(pods)),
                        workers, say, "pods")
        timings["pods_seconds"] = time.monotonic() - t1
    return timings


def wait_settled(lab: Lab, say: Callable[[str], None], timeout: float = 900) -> dict[str, int]:
    """Wait until kwok has marked the bench nodes Ready and (nearly) all pods Running."""
    with lab.client(connections=2) as http:
        t0 = time.monotonic()
        state: dict[str, int] = {}
        while time.monotonic() - t0 < timeout:
            total = count(http, "/api/v1/pods")
            not_running = count(http, "/api/v1/pods", {"fieldSelector": "status.phase!=Running"})
            state = {"pods": total, "pods_not_running": not_running,
                     "nodes": count(http, "/api/v1/nodes")}
            say(f"  settling: {state}")
            if not_running <= max(5, total // 1000):
                break
            time.sleep(10)
        return state


# -- the API server's own request counters ----------------------------------------------------

_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def request_counters(http: httpx2.Client) -> Counter[tuple[str, str, str]]:
    """apiserver_request_total summed by (verb, group/resource, scope) from /metrics."""
    r = http.get("/metrics")
    r.raise_for_status()
    out: Counter[tuple[str, str, str]] = Counter()
    for line in r.text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m["labels"]))
        res = labels.get("resource", "")
        if labels.get("subresource"):
            res += "/" + labels["subresource"]
        if labels.get("group"):
            res = f"{res}.{labels['group']}"
        out[(labels.get("verb", ""), res or "(non-resource)", labels.get("scope", ""))] += int(
            float(m["value"]))
    return out


def delta(after: Counter[tuple[str, str, str]], before: Counter[tuple[str, str, str]],
          ) -> Counter[tuple[str, str, str]]:
    out: Counter[tuple[str, str, str]] = Counter()
    for k, v in after.items():
        if v - before.get(k, 0) > 0:
            out[k] = v - before.get(k, 0)
    return out


def pages(n: int) -> int:
    """Requests a paginated LIST of n objects needs (an empty LIST is still one request)."""
    return max(1, math.ceil(n / PAGE))
