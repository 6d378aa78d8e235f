"""Leader failover of `k3sops serve`: how long the Lease is without a leader, as ratios.

Runs on a running lab of its own (``--lab-dir``, ``--port-base``; never the dev lab at 17000
nor the test labs at 27000/28000). Each round starts two replicas (tests/lab/kit/elector.py:
a real LeaderElector as its own process) with a ServiceAccount that may only touch Leases in
one namespace, then:

1. ``kill -9`` the leader. **kill gap** = the new holder's ``acquireTime`` - the dead holder's
   last ``renewTime`` (both from the Lease on the API server). Floor: the lease duration (the
   follower may not take it earlier); bound: lease + renew period (its next round after).
2. Start a third replica, SIGTERM the leader: it releases the Lease (holderIdentity cleared).
   **release gap** = the new ``acquireTime`` - the release's ``renewTime``. Bound: one renew
   period (the follower's next round), whatever the lease duration.

It prints median and max of each gap and the ratios ``kill/lease``, ``kill/(lease+renew)``,
``release/renew`` and ``release/kill`` (how much SIGTERM's release saves over a crash), and
writes ``bench/results/serve_failover-<date>.json``. Nothing asserts a time.

    .venv/bin/python bench/serve_failover.py --lab-dir /tmp/lab-x --port-base 22000 \\
        [--rounds 10] [--lease 3] [--renew 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from k3sops.adapters.kube import KubeClient, KubeconfigSource
from k3sops.lab.layout import LabLayout
from k3sops.serve.leader import LEASE_API

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests" / "lab"))
from kit.replicas import LeaseLog, Replica, elector_kubeconfig, lease_time  # noqa: E402

RESERVED_PORTS = {17000, 27000, 28000}


def _wait(fn: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the replicas did not get there within {timeout:g}s")
        time.sleep(0.05)


def one_round(admin: KubeClient, env: dict[str, str], kubeconfig: Path, ns: str, k: int,
              lease_s: float, renew_s: float, log_dir: Path) -> dict[str, float]:
    """One kill -9 failover and one SIGTERM handover on a Lease of their own."""
    lease = f"failover-{k}"
    log = LeaseLog(admin, ns, lease)

    def start(name: str) -> Replica:
        return Replica.start(env, kubeconfig, ns, lease, f"r{k}-{name}", log_dir,
                             lease_seconds=lease_s, renew_seconds=renew_s)
    replicas = [start("a"), start("b")]
    try:
        _wait(lambda: any(r.leading() for r in replicas), 60)
        # A random phase against the follower's rounds: the gaps are sampled, not pinned to
        # where a fixed sleep happens to fall.
        time.sleep(2 * renew_s + random.uniform(0, renew_s))  # noqa: S311  # a phase, not a secret
        leader = next(r for r in replicas if r.leading())
        follower = next(r for r in replicas if r is not leader)
        n = len(log.revisions)
        leader.end(signal.SIGKILL)
        last_renew = lease_time(admin.get(LEASE_API, "leases", lease, ns)["spec"], "renewTime")
        _wait(lambda: log.first(follower.identity, n), 60)
        took = log.first(follower.identity, n) or {}
        kill_gap = (lease_time(took, "acquireTime") - last_renew).total_seconds()

        third = start("c")
        replicas.append(third)
        _wait(lambda: third.saw("started"), 60)
        time.sleep(2 * renew_s + random.uniform(0, renew_s))  # noqa: S311  # a phase, not a secret
        n = len(log.revisions)
        follower.end(signal.SIGTERM)
        _wait(lambda: log.first(third.identity, n), 60)
        released = log.first("", n)
        if released is None:
            raise RuntimeError(f"round {k}: the Lease was not released on SIGTERM")
        took = log.first(third.identity, n) or {}
        release_gap = (lease_time(took, "acquireTime")
                       - lease_time(released, "renewTime")).total_seconds()
    finally:
        for r in replicas:
            r.end(signal.SIGKILL)
        log.stop()
    return {"kill_gap": kill_gap, "release_gap": release_gap}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab-dir", required=True)
    ap.add_argument("--port-base", type=int, required=True)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--lease", type=float, default=3.0)
    ap.add_argument("--renew", type=float, default=1.0)
    args = ap.parse_args(argv)
    if args.port_base in RESERVED_PORTS:
        ap.error(f"port base {args.port_base} belongs to the dev or test labs: use your own")
    env = {**os.environ, "K3SOPS_LAB_DIR": args.lab_dir,
           "K3SOPS_LAB_PORT_BASE": str(args.port_base)}
    layout = LabLayout.from_env(env, Path.home())
    admin = KubeClient(KubeconfigSource(layout.kubeconfig, "bench"))
    ns = f"bench-failover-{uuid.uuid4().hex[:6]}"
    admin.create("v1", "namespaces", None, {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": ns}})
    rounds: list[dict[str, float]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            kc = elector_kubeconfig(admin, ns, "serve-elector", layout.pki_dir / "ca.crt",
                                    Path(tmp) / "sa.kubeconfig")
            for k in range(args.rounds):
                r = one_round(admin, env, kc, ns, k, args.lease, args.renew, Path(tmp))
                rounds.append(r)
                print(f"round {k + 1}/{args.rounds}: kill -9 gap {r['kill_gap']:.3f}s, "
                      f"SIGTERM gap {r['release_gap']:.3f}s", flush=True)
    finally:
        admin.delete("v1", "namespaces", ns)
        admin.close()

    kill = [r["kill_gap"] for r in rounds]
    rel = [r["release_gap"] for r in rounds]
    summary: dict[str, Any] = {
        "lease_seconds": args.lease, "renew_seconds": args.renew, "rounds": len(rounds),
        "kill_gap": {"median": statistics.median(kill), "max": max(kill), "min": min(kill)},
        "release_gap": {"median": statistics.median(rel), "max": max(rel), "min": min(rel)},
        "ratios": {
            "kill_over_lease_min": min(kill) / args.lease,
            "kill_over_lease_plus_renew_max": max(kill) / (args.lease + args.renew),
            "release_over_renew_max": max(rel) / args.renew,
            "release_over_kill_median": statistics.median(rel) / statistics.median(kill)}}
    print(json.dumps(summary, indent=2))
    out = ROOT / "results" / f"serve_failover-{dt.date.today().isoformat()}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
