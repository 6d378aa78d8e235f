"""A check answered by `k3sops serve` (watch cache) vs `k3sops check` (LISTs), same lab, same run.

Issue 14: the service answers a check from its cache instead of listing every object again.
This grows a lab to ``--nodes``/``--pods`` bench objects (the same objects as check_scale.py),
starts ``k3sops serve`` against it, and times, alternately, ``GET /api/v1/report?period=daily``
(HTTP, TokenReview + SubjectAccessReview cached, the rules, Prometheus and Alertmanager asked)
and ``k3sops check --daily --no-history`` (a CLI process: LISTs, the same rules, the same
queries). It reports the medians and their ratio, and the service's resident memory against
the size of the JSON its cache was filled from (both measured here, never asserted).

```sh
.venv/bin/python bench/serve_report.py --lab-dir /tmp/lab-app --port-base 21000 --reuse-lab \\
    --nodes 100 --pods 3000
```
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cluster  # bench/ is not a package: found through sys.path above

BENCH = Path(__file__).resolve().parent
RESERVED = {17000: "the dev lab", 20000: "check_scale's lab", 27000: "the test lab",
            28000: "the test lab"}
NS = "bench-serve"


def _env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ, K3SOPS_LAB_DIR=str(args.lab_dir),
               K3SOPS_LAB_PORT_BASE=str(args.port_base))
    env.pop("KUBECONFIG", None)
    env.pop("K3SOPS_CONFIG", None)
    return env


def _k3sops(args: argparse.Namespace, *argv: str, timeout: float = 900,
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "k3sops", *argv], env=_env(args),
                          capture_output=True, text=True, timeout=timeout, check=False)


def reader_token(http: httpx2.Client, ns: str = NS,
                 resources: tuple[str, ...] = ("reports",)) -> str:
    """A ServiceAccount ``reader`` in ``ns`` allowed ``get`` on ``resources`` of k3sops.io;
    a token of it."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    docs: list[tuple[str, dict[str, Any]]] = [
        ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": ns}}),
        (f"/api/v1/namespaces/{ns}/serviceaccounts",
         {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}),
        (f"{rbac}/clusterroles",
         {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
          "metadata": {"name": f"{ns}-reader"},
          "rules": [{"apiGroups": ["k3sops.io"], "resources": list(resources),
                     "verbs": ["get"]}]}),
        (f"{rbac}/clusterrolebindings",
         {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
          "metadata": {"name": f"{ns}-reader"},
          "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                      "name": f"{ns}-reader"},
          "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]}),
    ]
    for path, body in docs:
        r = http.post(path, json=body)
        if r.status_code not in (201, 409):
            raise SystemExit(f"creating {path}: {r.status_code} {r.text[:200]}")
    r = http.post(f"/api/v1/namespaces/{ns}/serviceaccounts/reader/token",
                  json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                        "spec": {"expirationSeconds": 3600}})
    r.raise_for_status()
    return str(r.json()["status"]["token"])


def start_serve(args: argparse.Namespace, port: int, name: str,
                ) -> tuple[subprocess.Popen[bytes], Path, float]:
    """`k3sops serve` on the lab's platform.yaml at 127.0.0.1:``port``, state and log named
    ``name``; waited until /readyz answers 200: (process, log, seconds until ready)."""
    log = args.lab_dir / "logs" / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "k3sops", "-c",
                                 str(args.lab_dir / "platform.yaml"), "serve",
                                 "--listen", f"127.0.0.1:{port}", "--state-dir",
                                 str(args.lab_dir / f"{name}-state")],
                                env=_env(args), stdout=out, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while True:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return proc, log, time.monotonic() - t0
        except httpx2.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() - t0 > 900:
            proc.kill()
            raise SystemExit(f"serve did not get ready: {log.read_text()[-2000:]}")
        time.sleep(0.5)


def lab_parser(description: str) -> argparse.ArgumentParser:
    """The options every serve bench on a grown lab takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--lab-dir", type=Path, required=True)
    p.add_argument("--port-base", type=int, required=True)
    p.add_argument("--reuse-lab", action="store_true")
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--pods", type=int, default=3000)
    p.add_argument("--namespaces", type=int, default=30)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", type=Path, default=BENCH / "results")
    return p


def grown_lab(args: argparse.Namespace, say: Callable[[str], None],
              ) -> tuple[_cluster.Lab, dict[str, float], dict[str, int]]:
    """The lab (started unless --reuse-lab), grown to the asked size and settled."""
    if args.port_base in RESERVED:
        raise SystemExit(f"port base {args.port_base} is {RESERVED[args.port_base]}'s")
    if not args.reuse_lab:
        up = _k3sops(args, "lab", "up", "--servers", "3", "--agents", "0")
        if up.returncode:
            raise SystemExit(up.stderr)
    lab = _cluster.Lab.from_run_dir(args.lab_dir, args.port_base)
    grow = _cluster.grow(lab, args.nodes, args.pods, args.namespaces, say)
    settled = _cluster.wait_settled(lab, say)
    return lab, grow, settled


def _json_bytes(http: httpx2.Client, paths: list[str]) -> int:
    """Bytes of the JSON a LIST of each path returns (what the cache was filled from)."""
    total = 0
    for path in paths:
        cont = ""
        while True:
            r = http.get(path, params={"limit": "500", **({"continue": cont} if cont else {})})
            if r.status_code != 200:
                break
            total += len(r.content)
            cont = r.json().get("metadata", {}).get("continue") or ""
            if not cont:
                break
    return total


def _rss_mb(pid: int) -> tuple[float, float]:
    """(resident, peak resident) MiB of ``pid``."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def main() -> int:
    args = lab_parser(__doc__.splitlines()[0]).parse_args()

    def say(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    lab, grow, settled = grown_lab(args, say)
    with lab.client() as http:
        token = reader_token(http)
        json_mb = _json_bytes(http, ["/api/v1/pods", "/api/v1/nodes"]) / 2**20
    port = args.port_base + 720
    url = f"http://127.0.0.1:{port}"
    proc, _, sync_seconds = start_serve(args, port, "bench-serve")
    try:
        headers = {"Authorization": f"Bearer {token}"}
        service: list[float] = []
        cli: list[float] = []
        findings: dict[str, int] = {}
        with httpx2.Client(base_url=url, headers=headers, timeout=300) as client:
            client.get("/api/v1/report?period=daily").raise_for_status()  # warm-up, not counted
            for _ in range(args.repeat):
                t = time.monotonic()
                r = client.get("/api/v1/report?period=daily")
                service.append(time.monotonic() - t)
                r.raise_for_status()
                findings["service"] = r.json()["summary"]["total"]
                t = time.monotonic()
                c = _k3sops(args, "-c", str(args.lab_dir / "platform.yaml"), "-o", "json",
                            "check", "--daily", "--no-history")
                cli.append(time.monotonic() - t)
                if c.returncode not in (0, 3, 4):
                    raise SystemExit(c.stderr)
                findings["cli"] = json.loads(c.stdout)["summary"]["total"]
        rss, peak = _rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    result = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"), "nodes": args.nodes,
        "pods": args.pods, "settled": settled, "grow": grow,
        "sync_seconds": round(sync_seconds, 2),
        "service_seconds": [round(x, 3) for x in service],
        "cli_seconds": [round(x, 3) for x in cli],
        "service_median": round(statistics.median(service), 3),
        "cli_median": round(statistics.median(cli), 3),
        "ratio_cli_over_service": round(statistics.median(cli) / statistics.median(service), 1),
        "findings": findings, "service_rss_mb": round(rss, 1), "service_peak_mb": round(peak, 1),
        "pods_nodes_json_mb": round(json_mb, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"serve_report-{result['at'][:10]}.json").write_text(json.dumps(result, indent=2))
    print(f"{'objects':>22}: {settled}")
    print(f"{'service report median':>22}: {result['service_median']} s  (HTTP, from the cache)")
    print(f"{'CLI check median':>22}: {result['cli_median']} s  (process, LISTs)")
    print(f"{'ratio':>22}: {result['ratio_cli_over_service']}x")
    print(f"{'findings':>22}: {findings}")
    print(f"{'service memory':>22}: {rss:.0f} MiB resident, {peak:.0f} MiB peak; the pods' and "
          f"nodes' JSON {json_mb:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
