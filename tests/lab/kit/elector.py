"""One `k3sops serve` replica's election and scheduler as its own process (tests/lab only).

tests/lab/test_leader_lab.py starts several of these against the lab's API server and kills
them (``kill -9``, SIGTERM) to watch failover. Each runs a real
:class:`~k3sops.serve.leader.LeaderElector` on one Lease and, with ``--database``, a real
:class:`~k3sops.serve.scheduler.Scheduler` on the shared PostgreSQL store that schedules only
while its elector leads. It prints one JSON line per event on stdout:

- ``{"event": "leading"|"following", "at": ...}`` when leadership changes;
- ``{"event": "ran", "due": ..., "at": ...}`` when its scheduler runs a due time;
- ``{"event": "stopped", "at": ...}`` after SIGTERM: scheduler stopped, Lease released.

Run: ``python tests/lab/kit/elector.py --kubeconfig K --namespace N --name L --identity I
[--lease 3 --renew 1] [--database postgresql://... --every 10]``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from k3sops.adapters.kube import KubeClient, KubeconfigSource
from k3sops.adapters.store.postgres import PostgresStore
from k3sops.domain.findings import Period
from k3sops.serve.leader import LeaderElector
from k3sops.serve.scheduler import Scheduler

_out = threading.Lock()


def say(event: str, **kw: Any) -> None:
    """One JSON line on stdout, flushed at once (the test reads it as it comes)."""
    with _out:
        print(json.dumps({"event": event, "at": datetime.now(UTC).isoformat(), **kw}),
              flush=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--identity", required=True)
    ap.add_argument("--lease", type=float, default=3.0)
    ap.add_argument("--renew", type=float, default=1.0)
    ap.add_argument("--database")
    ap.add_argument("--every", type=int, default=10)
    args = ap.parse_args(argv)

    client = KubeClient(KubeconfigSource(Path(args.kubeconfig), "test"), timeout=5)
    elector = LeaderElector(client, args.namespace, args.name, args.identity,
                            lease_seconds=args.lease, renew_seconds=args.renew)
    elector.on_change(lambda leading: say("leading" if leading else "following"))
    scheduler: Scheduler | None = None
    if args.database:
        store = PostgresStore.open(args.database)

        def run(period: Period, due_at: datetime) -> int | None:
            say("ran", period=period, due=due_at.isoformat())
            return None
        scheduler = Scheduler({"daily": f"@every {args.every}s"}, "UTC", store, run,
                              elector.is_leader, args.identity, interval=0.2)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    elector.start()
    if scheduler is not None:
        scheduler.start()
    say("started", identity=args.identity)
    done.wait()
    # As the service's runner does on SIGTERM: no new scheduled run, then give up the Lease.
    if scheduler is not None:
        scheduler.stop()
    elector.stop(release=True)
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
