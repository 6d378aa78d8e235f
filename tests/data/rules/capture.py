"""Capture a lab's objects as a rule-test snapshot (``{"captured_at", "objects"}``).

Usage (the lab's kubectl on PATH, KUBECONFIG pointing at the lab)::

    .venv/bin/python tests/data/rules/capture.py OUT.json --events r1- [--kinds pods,events,...]

Every kind is read with ``kubectl get KIND -A -o json`` and reduced as the collector reduces it
(:func:`k3sops.domain.projection.project`: Secrets keep type, key names and certificate facts,
managedFields go). ConfigMap values are emptied (the rules read key names only) and the
last-applied annotation is dropped. Events are kept for the namespaces starting with one of
the ``--events`` prefixes, ``default`` and ``kube-system``. ``captured_at`` is this machine's
clock when the reads end (the lab runs on the same machine: it is the cluster's clock).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from k3sops.domain.projection import project, strip_meta

KINDS = ("nodes,namespaces,pods,events,services,endpointslices,deployments,replicasets,"
         "statefulsets,daemonsets,jobs,cronjobs,horizontalpodautoscalers,poddisruptionbudgets,"
         "resourcequotas,serviceaccounts,priorityclasses,configmaps,secrets,"
         "persistentvolumeclaims,validatingwebhookconfigurations,mutatingwebhookconfigurations,"
         "apiservices")
RESOURCE = {"endpointslices": "endpointslices.discovery.k8s.io",
            "apiservices": "apiservices.apiregistration.k8s.io"}


def main() -> None:
    """Read the kinds and write the capture."""
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--events", default="r1-", help="comma-separated namespace prefixes")
    ap.add_argument("--kinds", default=KINDS)
    args = ap.parse_args()
    prefixes = tuple(p for p in args.events.split(",") if p)
    objects: dict[str, list[dict[str, Any]]] = {}
    for kind in args.kinds.split(","):
        out = subprocess.run(["kubectl", "get", RESOURCE.get(kind, kind), "-A", "-o", "json"],
                             check=True, capture_output=True, text=True).stdout
        items = project(kind, json.loads(out)["items"])
        for o in items:
            o["metadata"] = strip_meta(o.get("metadata") or {})
            if kind == "configmaps":
                o["data"] = {k: "" for k in o.get("data") or {}}
                if o.get("binaryData"):
                    o["binaryData"] = {k: "" for k in o["binaryData"]}
        if kind == "events":
            items = [e for e in items if (e["metadata"].get("namespace") or "").startswith(
                (*prefixes, "default", "kube-system"))]
        objects[kind] = items
    captured = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    args.out.write_text(json.dumps({"captured_at": captured, "objects": objects}, indent=None,
                                   separators=(",", ":")) + "\n")
    print(f"{args.out}: {captured}, " + ", ".join(f"{k} {len(v)}" for k, v in objects.items()))


if __name__ == "__main__":
    main()
