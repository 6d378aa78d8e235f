"""The validating webhook of admission-lab.yaml: refuses images not from registry.example/.

Run on the lab machine before applying admission-lab.yaml (the API server calls it on
https://127.0.0.1:26990/validate)::

    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout key.pem -out cert.pem -days 2 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1
    python admission-webhook.py cert.pem key.pem &
    sed "s/CA_BUNDLE/$(base64 -w0 cert.pem)/" admission-lab.yaml | kubectl apply -f -
"""

from __future__ import annotations

import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Review(BaseHTTPRequestHandler):
    """Answers an AdmissionReview: allowed unless a container image is from elsewhere."""

    def do_POST(self) -> None:
        """Judge the pod in the review."""
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        req = review["request"]
        pod = req.get("object") or {}
        images = [c.get("image", "") for c in pod.get("spec", {}).get("containers", [])]
        bad = [i for i in images if not i.startswith("registry.example/")]
        resp: dict[str, object] = {"uid": req["uid"], "allowed": not bad}
        if bad:
            resp["status"] = {"code": 403,
                              "message": f"image {bad[0]} is not from an approved registry"}
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": resp}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    server = HTTPServer(("127.0.0.1", 26990), Review)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[1], sys.argv[2])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
