"""Alert enrichment latency: webhook body received -> enriched alert stored and forwarded.

Replays the recorded Alertmanager delivery (tests/data/alertmanager/crashloop-firing.json) as
``--deliveries`` synthetic deliveries at ``--rate`` per second, each a new alert (its own
fingerprint, naming one of ``--crashing`` crash-looping copies of the recorded pod among
``--pods`` copies, the others running fine on the recorded node),
through :class:`k3sops.serve.alerts.AlertIntake`: parse, find the pod, diagnose it with the
engine, attach the runbook, store in SQLite, forward to a local HTTP receiver (127.0.0.1).

The snapshot source builds a new :class:`ClusterSnapshot` from the object lists on every call,
as the watch cache's ``snapshot()`` does, so the engine runs again whenever the enricher's
snapshot is older than ``--max-age`` seconds: the cost of a refresh is in the numbers.

Latency of one delivery = its completion minus its *scheduled* arrival (so queueing behind a
slow one counts, as it would for Alertmanager). The floor is the same paced replay doing only
``json.loads`` of the body and ``record_alert`` of an un-enriched record into SQLite. Reports
p50/p99/max in ms and each as a ratio to the floor's; writes
``bench/results/alert_enrich-<date>.json``. Asserts nothing about time.

Usage::

    .venv/bin/python bench/alert_enrich.py [--deliveries 200] [--rate 20] [--pods 1000]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from k3sops.adapters.store import AlertRecord, SqliteStore
from k3sops.domain.snapshot import ClusterSnapshot
from k3sops.serve.alerts import MAX_SNAPSHOT_AGE, AlertIntake, Receiver, enricher
from k3sops.services.context import Settings
from k3sops.timeparse import parse_rfc3339

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "alertmanager"


class _Receiver(BaseHTTPRequestHandler):
    count = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Receiver.count += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _healthy(pod: dict[str, Any]) -> None:
    """The recorded pod as it would be running fine (Ready, no restarts)."""
    st = pod["status"]
    for c in st["conditions"]:
        c["status"] = "True"
        c.pop("reason", None)
    for cs in st["containerStatuses"]:
        cs.update(ready=True, started=True, restartCount=0, lastState={},
                  state={"running": {"startedAt": st["startTime"]}})


def _pods(template: dict[str, Any], n: int, crashing: int) -> list[dict[str, Any]]:
    """``n`` copies of the recorded pod; the first ``crashing`` crash-loop, the rest run."""
    out = []
    for i in range(n):
        p = copy.deepcopy(template)
        p["metadata"]["name"] = f"{template['metadata']['name']}-{i:05d}"
        p["metadata"]["uid"] = f"{i:08d}-0000-0000-0000-000000000000"
        if i >= crashing:
            _healthy(p)
        out.append(p)
    return out


def _bodies(n: int, pods: list[dict[str, Any]], crashing: int) -> list[bytes]:
    msg = json.loads((DATA / "crashloop-firing.json").read_bytes())
    out = []
    for i in range(n):
        m = copy.deepcopy(msg)
        a = m["alerts"][0]
        a["fingerprint"] = f"{i:016x}"
        a["labels"]["pod"] = pods[i % crashing]["metadata"]["name"]
        out.append(json.dumps(m).encode())
    return out


def _paced(bodies: list[bytes], rate: float, handle: Callable[[bytes], Any]) -> list[float]:
    """Seconds from each body's scheduled arrival to the end of its handling."""
    start = time.perf_counter() + 0.05
    out = []
    for i, body in enumerate(bodies):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        handle(body)
        out.append(time.perf_counter() - due)
    return out


def _stats(xs: list[float]) -> dict[str, float]:
    s = sorted(xs)
    p99 = s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]
    return {"p50_ms": statistics.median(s) * 1e3, "p99_ms": p99 * 1e3, "max_ms": s[-1] * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deliveries", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20.0, help="deliveries per second")
    ap.add_argument("--pods", type=int, default=1000, help="pods in the snapshot")
    ap.add_argument("--crashing", type=int, default=200,
                    help="of which crash-loop (the alerts name these)")
    ap.add_argument("--max-age", type=float, default=MAX_SNAPSHOT_AGE,
                    help="seconds one snapshot serves (default: the enricher's)")
    ap.add_argument("--cold", action="store_true",
                    help="do not warm the enricher first (serve warms it once in sync)")
    args = ap.parse_args()

    template = json.loads((DATA / "crashloop-pod.json").read_text())
    last = max(parse_rfc3339(cs["lastState"]["terminated"]["finishedAt"])
               for cs in template["status"]["containerStatuses"])
    node = json.loads((DATA / "crashloop-node.json").read_text())
    pods = _pods(template, args.pods, min(args.crashing, args.pods))
    bodies = _bodies(args.deliveries, pods, min(args.crashing, args.pods))
    now = last + dt.timedelta(seconds=5)
    snapshots = 0

    def snapshot() -> ClusterSnapshot:
        nonlocal snapshots
        snapshots += 1
        return ClusterSnapshot(now=now, objects={"pods": list(pods), "nodes": [node]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = SecretStr(f"http://127.0.0.1:{server.server_address[1]}/hook")

    with tempfile.TemporaryDirectory() as tmp:
        with SqliteStore.open_file(Path(tmp) / "floor.db") as store:
            def floor(body: bytes) -> None:
                a = json.loads(body)["alerts"][0]
                store.record_alert(AlertRecord(
                    fingerprint=a["fingerprint"], starts_at=parse_rfc3339(a["startsAt"]),
                    alertname=a["labels"]["alertname"], received_at=dt.datetime.now(dt.UTC),
                    labels=a["labels"]))
            floor_lat = _paced(bodies, args.rate, floor)
        with SqliteStore.open_file(Path(tmp) / "intake.db") as store:
            enrich = enricher(snapshot, Settings(None, None, None), max_age=args.max_age)
            if not args.cold:
                enrich.warm()
            intake = AlertIntake(store, enrich, [Receiver("bench", "webhook", url)])
            intake_lat = _paced(bodies, args.rate, intake.receive)
            stored = len(store.alerts(limit=args.deliveries + 1))
            intake.close()
    server.shutdown()

    f, k = _stats(floor_lat), _stats(intake_lat)
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "args": vars(args), "floor": f, "intake": k,
        "ratio": {m: k[m] / f[m] for m in f},
        "stored": stored, "forwarded": _Receiver.count, "enriched": intake.enriched,
        "snapshots_built": snapshots,
    }
    print(f"{args.deliveries} deliveries at {args.rate:g}/s, {args.pods} pods "
          f"({args.crashing} crash-looping), {'cold' if args.cold else 'warmed'}, "
          f"{snapshots} snapshots built; stored {stored}, enriched {intake.enriched}, "
          f"forwarded {_Receiver.count}")
    print(f"{'':8} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for name, s in (("floor", f), ("intake", k)):
        print(f"{name:8} {s['p50_ms']:9.2f} {s['p99_ms']:9.2f} {s['max_ms']:9.2f}")
    print(f"{'ratio':8} {result['ratio']['p50_ms']:9.1f} {result['ratio']['p99_ms']:9.1f} "
          f"{result['ratio']['max_ms']:9.1f}")
    out = ROOT / "bench" / "results" / f"alert_enrich-{dt.date.today().isoformat()}.json"
    runs = json.loads(out.read_text()) if out.exists() else []
    out.write_text(json.dumps([*runs, result], indent=1) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
