"""A stand-in resource metrics API (metrics.k8s.io/v1beta1) for the autoscaling capture.

metrics-server cannot run in the lab (kwok pods have no cgroups to read). This server answers
the two requests the HPA controller and the aggregator's availability check make — discovery
of ``/apis/metrics.k8s.io/v1beta1`` and ``PodMetricsList`` of a namespace for a label selector —
with each pod's CPU taken from its annotation ``r1.example/cpu`` (default ``1m``), looking the
pods up with kubectl. It is reached through a Service of type ExternalName ``localhost``,
which the aggregator resolves to https://localhost:26991 (see autoscaling-lab.yaml)::

    python metrics-api.py cert.pem key.pem &
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

GV = "metrics.k8s.io/v1beta1"


def _pods(namespace: str, selector: str) -> list[dict[str, object]]:
    cmd = ["kubectl", "get", "pods", "-n", namespace, "-o", "json"]
    if selector:
        cmd += ["-l", selector]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=20).stdout
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    items: list[dict[str, object]] = []
    for p in json.loads(out)["items"]:
        if p.get("status", {}).get("phase") != "Running":
            continue
        cpu = p["metadata"].get("annotations", {}).get("r1.example/cpu", "1m")
        items.append({"metadata": {"name": p["metadata"]["name"], "namespace": namespace,
                                   "labels": p["metadata"].get("labels", {})},
                      "timestamp": now, "window": "30s",
                      "containers": [{"name": c["name"], "usage": {"cpu": cpu,
                                                                    "memory": "20Mi"}}
                                     for c in p["spec"]["containers"]]})
    return items


class Metrics(BaseHTTPRequestHandler):
    """Discovery and pod metrics."""

    def _send(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """Answer discovery and PodMetrics lists."""
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if url.path.rstrip("/") == f"/apis/{GV}":
            self._send(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GV,
                             "resources": [
                                 {"name": "pods", "singularName": "", "namespaced": True,
                                  "kind": "PodMetrics", "verbs": ["get", "list"]},
                                 {"name": "nodes", "singularName": "", "namespaced": False,
                                  "kind": "NodeMetrics", "verbs": ["get", "list"]}]})
        elif len(parts) == 6 and parts[3] == "namespaces" and parts[5] == "pods":
            selector = parse_qs(url.query).get("labelSelector", [""])[0]
            self._send(200, {"kind": "PodMetricsList", "apiVersion": GV, "metadata": {},
                             "items": _pods(parts[4], selector)})
        else:
            self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "reason": "NotFound", "code": 404})

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 26991), Metrics)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[1], sys.argv[2])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
