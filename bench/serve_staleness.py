"""How stale `k3sops serve`'s report is: a change to its finding in /api/v1/report, under churn.

    .venv/bin/python bench/serve_staleness.py --reuse-lab --churn 50 --probes 15

On the benchmark lab of bench/check_scale.py (run dir /tmp/k3sops-bench-lab, port base 20000;
grown to --nodes/--pods like serve_check.py), this starts `k3sops serve` as a child process
(the lab's admin kubeconfig, its own state dir) and, while a thread changes --churn objects a
second (a merge-patch of an annotation on the bench pods, round-robin: watch events no rule
turns into a finding), repeats --probes times:

- cordon a bench node (``spec.unschedulable: true``) and poll
  ``GET /api/v1/findings?check=node-cordoned`` (the kept report, filtered) every --poll
  seconds until the finding about it is in the answer: the time from
  the PATCH's answer (the change is stored) to the first answer holding the finding;
- uncordon it and poll until the finding is gone.

The service answers the report its background evaluator keeps current (serve.evaluator), so
the delay is the wait for the run in progress plus one run (plus the watch event's own delay
and half a poll interval on average). Prints median, p99 and max of both directions and the
churn rate achieved, and writes bench/results/serve_staleness-<date>.json. Asserts nothing.
With fewer than 100 samples (two per probe) the p99, by nearest rank, is the maximum.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx2

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import _cluster  # noqa: E402
import check_scale  # noqa: E402
import serve_report  # noqa: E402

CHURN_KEY = "bench.k3sops.io/churn"
MERGE = {"Content-Type": "application/merge-patch+json"}


class Churn(threading.Thread):
    """Merge-patches one bench pod's annotation ``rate`` times a second, round-robin."""

    def __init__(self, lab: _cluster.Lab, rate: float, pods: int, namespaces: int) -> None:
        super().__init__(daemon=True, name="churn")
        self.lab, self.rate, self.pods, self.namespaces = lab, rate, pods, namespaces
        self.stop = threading.Event()
        self.done = 0
        self.failed = 0
        self.seconds = 0.0

    def run(self) -> None:
        if self.rate <= 0:
            return
        t0 = time.monotonic()
        with self.lab.client(connections=4) as http:
            i = 0
            while not self.stop.is_set():
                # paced on the schedule, not after each answer: a slow answer is caught up
                due = t0 + i / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    self.stop.wait(delay)
                n = i % self.pods
                path = (f"/api/v1/namespaces/{_cluster.ns_name(n % self.namespaces)}/pods/"
                        f"pod-{n:05d}")
                try:
                    r = http.patch(path, content=json.dumps(
                        {"metadata": {"annotations": {CHURN_KEY: str(i)}}}), headers=MERGE)
                    ok = r.status_code == 200
                except httpx2.HTTPError:
                    ok = False
                self.done += ok
                self.failed += not ok
                i += 1
        self.seconds = time.monotonic() - t0


def cordoned(client: httpx2.Client, node: str) -> bool:
    """Whether the served report holds node-cordoned for ``node``.

    ``/api/v1/findings`` answers from the same kept report as ``/api/v1/report`` (filtered):
    polling the whole report, thousands of findings ten times a second, would load the
    service it measures.
    """
    r = client.get("/api/v1/findings", params={"check": "node-cordoned"})
    r.raise_for_status()
    return any(f["resource"]["name"] == node for f in r.json()["findings"])


def findings_reader(http: httpx2.Client) -> None:
    """Let serve_report's reader account get findings too (it may get reports)."""
    docs = [("/apis/rbac.authorization.k8s.io/v1/clusterroles",
             {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
              "metadata": {"name": "bench-staleness-findings"},
              "rules": [{"apiGroups": ["k3sops.io"], "resources": ["findings"],
                         "verbs": ["get"]}]}),
            ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
             {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
              "metadata": {"name": "bench-staleness-findings"},
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                          "name": "bench-staleness-findings"},
              "subjects": [{"kind": "ServiceAccount", "name": "reader",
                            "namespace": serve_report.NS}]})]
    for path, body in docs:
        r = http.post(path, json=body)
        if r.status_code not in (201, 409):
            raise SystemExit(f"creating {path}: {r.status_code} {r.text[:200]}")


def until(client: httpx2.Client, node: str, present: bool, poll: float,
          timeout: float) -> float | None:
    """Seconds from now until the report says ``present`` for ``node`` (None: timed out)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cordoned(client, node) is present:
            return time.monotonic() - t0
        time.sleep(poll)
    return None


def set_cordon(http: httpx2.Client, node: str, on: bool) -> None:
    r = http.patch(f"/api/v1/nodes/{node}", headers=MERGE,
                   content=json.dumps({"spec": {"unschedulable": True if on else None}}))
    r.raise_for_status()


def p99(xs: list[float]) -> float:
    """The 99th percentile (nearest rank)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(0.99 * len(s) + 0.5) - 1))]


def summary(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "median": round(statistics.median(xs), 3),
            "p99": round(p99(xs), 3), "max": round(max(xs), 3),
            "all": [round(x, 3) for x in xs]}


def start_serve(args: argparse.Namespace, env: dict[str, str]) -> tuple[Any, str, Path]:
    port = args.port_base + 721
    log = args.lab_dir / "logs" / "bench-staleness-serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "k3sops", "-c",
                                 str(args.lab_dir / "platform.yaml"), "serve", "--listen",
                                 f"127.0.0.1:{port}", "--state-dir",
                                 str(args.lab_dir / "bench-staleness-state")],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}", log


def main() -> int:  # noqa: PLR0912, PLR0915 - one linear script
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=30000)
    p.add_argument("--namespaces", type=int, default=30)
    p.add_argument("--churn", type=float, default=50.0, help="object changes per second")
    p.add_argument("--probes", type=int, default=15)
    p.add_argument("--poll", type=float, default=0.1)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--settle-timeout", type=float, default=900.0,
                   help="how long to wait for kwok to run the pods (the state is recorded)")
    p.add_argument("--lab-dir", type=Path, default=Path("/tmp/k3sops-bench-lab"))  # noqa: S108
    p.add_argument("--port-base", type=int, default=20000)
    p.add_argument("--reuse-lab", action="store_true")
    p.add_argument("--no-grow", action="store_true",
                   help="measure the lab as it is (its size is recorded)")
    p.add_argument("--out", type=Path, default=BENCH / "results")
    args = p.parse_args()
    if args.port_base in check_scale.FORBIDDEN_PORT_BASES:
        p.error(f"port base {args.port_base} belongs to another lab; use another")
    if not check_scale.lab_is_up(args):
        if args.reuse_lab:
            p.error(f"no running lab in {args.lab_dir}")
        check_scale.lab_up(args)
    lab = _cluster.Lab.from_run_dir(args.lab_dir, args.port_base)
    if not args.no_grow:
        _cluster.grow(lab, args.nodes, args.pods, args.namespaces, check_scale.say)
    settled = _cluster.wait_settled(lab, check_scale.say, args.settle_timeout)
    env = check_scale.lab_env(args)
    env.pop("KUBECONFIG", None)
    with lab.client() as http:
        token = serve_report.reader_token(http)
        findings_reader(http)
    proc, url, log = start_serve(args, env)
    result: dict[str, Any] = {"benchmark": "serve_staleness", "machine": check_scale.machine(),
                              "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "args": {k: str(v) for k, v in vars(args).items()},
                              "settled": settled}
    churn = Churn(lab, args.churn, args.pods, args.namespaces)
    probed: list[str] = []
    appear: list[float] = []
    vanish: list[float] = []
    timeouts = 0
    try:
        t0 = time.monotonic()
        headers = {"Authorization": f"Bearer {token}"}
        with httpx2.Client(base_url=url, headers=headers, timeout=300) as client:
            while True:  # ready, then the first background report
                try:
                    if client.get("/readyz", timeout=5).status_code == 200 and \
                            client.get("/api/v1/report").status_code == 200:
                        break
                except httpx2.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() - t0 > 900:
                    raise SystemExit(f"serve did not get ready: {log.read_text()[-2000:]}")
                time.sleep(1)
            result["ready_seconds"] = round(time.monotonic() - t0, 1)
            check_scale.say(f"serve ready in {result['ready_seconds']} s; churn "
                            f"{args.churn}/s, {args.probes} probes")
            churn.start()
            time.sleep(5)  # the churn runs before the first probe
            with lab.client(connections=2) as http:
                for i in range(args.probes):
                    node = _cluster.node_name(i * 37 % args.nodes)
                    probed.append(node)
                    for on, out in ((True, appear), (False, vanish)):
                        set_cordon(http, node, on)
                        took = until(client, node, on, args.poll, args.timeout)
                        if took is None:
                            timeouts += 1
                            check_scale.say(f"  {node}: not seen within {args.timeout} s")
                        else:
                            out.append(took)
                    check_scale.say(f"  probe {i + 1}: appeared {appear[-1:]} s, "
                                    f"gone {vanish[-1:]} s")
                    set_cordon(http, node, False)
    finally:
        churn.stop.set()
        churn.join(10)
        proc.terminate()
        proc.wait(60)
        with lab.client(connections=2) as http:
            for node in probed:  # none left cordoned, also when stopped mid-probe
                set_cordon(http, node, False)
    result["churn"] = {"asked_per_second": args.churn, "patched": churn.done,
                       "failed": churn.failed,
                       "achieved_per_second": round(churn.done / churn.seconds, 1)
                       if churn.seconds else 0.0}
    result["appear_seconds"] = summary(appear)
    result["disappear_seconds"] = summary(vanish)
    result["both_seconds"] = summary(appear + vanish)
    result["timeouts"] = timeouts
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / f"serve_staleness-{dt.date.today().isoformat()}.json"
    out_file.write_text(json.dumps(result, indent=1, default=str) + "\n")
    for name in ("appear_seconds", "disappear_seconds", "both_seconds"):
        s = result[name]
        print(f"{name:>18}: median {s.get('median')} s, p99 {s.get('p99')} s, "
              f"max {s.get('max')} s (n={s['n']})")
    print(f"{'churn':>18}: {result['churn']}; timeouts {timeouts}")
    print(f"written: {out_file.relative_to(ROOT) if out_file.is_relative_to(ROOT) else out_file}")
    return 0


def _stopped(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # the finally blocks stop the churn and the service


if __name__ == "__main__":
    os.environ.pop("K3SOPS_CONFIG", None)
    signal.signal(signal.SIGTERM, _stopped)
    raise SystemExit(main())
