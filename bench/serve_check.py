"""A check answered by `k3sops serve` from its watch cache, against the CLI's LISTs and Popeye.

    .venv/bin/python bench/serve_check.py --nodes 1000 --pods 30000

Starts (or reuses, --reuse-lab) the benchmark lab of bench/check_scale.py (run dir
/tmp/k3sops-bench-lab, port base 20000; never the dev or test lab), grows it to the size asked,
then measures in one run, on the same cluster:

- the service: `serve.runner.build(..., background=False)` — the watch cache of every kind the
  checks read — the time to sync it; then the background evaluator `k3sops serve` runs
  (serve.evaluator, started as runner.build starts it) and, median of --repeat each:
  ``GET /api/v1/report`` through the service's ASGI app with a reader ServiceAccount's token
  (TokenReview + SubjectAccessReview cached as the service caches them; the latest background
  report) — what a client waits for; one background run (``Evaluator.fresh``: what a change
  waits for); and the daily check judged per request as before the evaluator
  (``Reports.run("daily")``, Prometheus and Alertmanager asked per run as the CLI does);
- `k3sops -o json check --no-history` as a child process (LISTs everything each time);
- Popeye (when found: --peers-bin or PATH) as a child process;
- memory: the RSS this process grew by while the cache synced (after a gc, before the
  evaluator starts), against the bytes of JSON the API server sent for the same objects (one
  paginated LIST per kind with a bare client, counted, not kept) and against the JSON of the
  objects as the cache keeps them.

Prints a table and writes bench/results/serve_check-<date>.json. Reports ratios; asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import _cluster  # noqa: E402
import _measure  # noqa: E402
import check_scale  # noqa: E402
import serve_report  # noqa: E402

from k3sops.serve import runner  # noqa: E402
from k3sops.serve.cache import WatchCache  # noqa: E402
from k3sops.serve.evaluator import Evaluator  # noqa: E402
from k3sops.services.context import resolve  # noqa: E402


def rss_mb() -> float:
    """This process's resident set, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def json_bytes(lab: _cluster.Lab, paths: dict[str, str]) -> tuple[int, int]:
    """(bytes, objects) the API server sends for one paginated LIST of every kind."""
    total = objects = 0
    with lab.client() as http:
        for path in paths.values():
            params: dict[str, str | int] = {"limit": _cluster.PAGE}
            while True:
                r = http.get(path, params=params)
                if r.status_code == 404:
                    break
                r.raise_for_status()
                body = r.json()
                total += len(r.content)
                objects += len(body.get("items") or [])
                cont = (body.get("metadata") or {}).get("continue")
                if not cont:
                    break
                params = {"limit": _cluster.PAGE, "continue": cont}
    return total, objects


def cached_json_mb(cache: WatchCache) -> float:
    """MiB of the JSON of the objects as the cache keeps them (compact separators)."""
    snap = cache.snapshot(dt.datetime.now(dt.UTC))
    return sum(len(json.dumps(o, separators=(",", ":"))) for items in snap.objects.values()
               for o in items) / 2**20


def held_mb(cache: WatchCache) -> float:
    """MiB of the objects the cache holds (sys.getsizeof, each Python object counted once).

    Not counted: the cache's per-kind index (one dict entry and one key string per object).

    What the cache itself keeps, without the allocator's free lists and fragmentation that
    RSS also holds (the LIST pages decoded during the sync are freed, not returned).
    """
    snap = cache.snapshot(dt.datetime.now(dt.UTC))
    seen: set[int] = set()
    total = 0
    stack: list[Any] = [o for items in snap.objects.values() for o in items]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return total / 2**20


def answer(service: runner.Service, token: str, repeat: int) -> tuple[list[float], int]:
    """Seconds of each ``GET /api/v1/report`` through the service's ASGI app, and findings.

    The whole route runs: the reader's TokenReview and SubjectAccessReview (asked of the API
    server once, then cached as the service caches them), the latest background report, the
    response. One warm-up request is not counted (it pays the reviews).
    """
    from k3sops.serve.app import create_app

    app = create_app(service.context)

    async def go() -> tuple[list[float], int]:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                      base_url="http://serve", timeout=600) as client:
            (await client.get("/api/v1/report", headers=headers)).raise_for_status()
            times = []
            for _ in range(repeat):
                t = time.monotonic()
                r = await client.get("/api/v1/report", headers=headers)
                r.raise_for_status()
                body = r.json()
                times.append(time.monotonic() - t)
            return times, len(body["findings"])

    return asyncio.run(go())


def measure(args: argparse.Namespace, lab: _cluster.Lab, work: Path,  # noqa: PLR0915
            nodes: int, pods: int) -> dict[str, Any]:
    step: dict[str, Any] = {"target": {"bench_nodes": nodes, "bench_pods": pods}}
    check_scale.say(f"growing to {nodes} bench nodes and {pods} bench pods")
    step["creation"] = ({} if args.no_grow else
                        _cluster.grow(lab, nodes, pods, args.namespaces, check_scale.say))
    step["settled"] = _cluster.wait_settled(lab, check_scale.say, args.settle_timeout)
    time.sleep(args.quiet)
    platform_file = args.lab_dir / "platform.yaml"
    env = check_scale.lab_env(args)
    settings = resolve(None, None, platform_file, env, ROOT)

    gc.collect()
    before = rss_mb()
    t0 = time.monotonic()
    service = runner.build(settings, env, Path.home(), state_dir=work / "state",
                           background=False, evaluate=False)
    try:
        synced = service.cache.wait_synced(600)
        sync_s = time.monotonic() - t0
        gc.collect()
        cache_mb = rss_mb() - before
        objects = sum(s.objects for s in service.cache.status().values())
        kept_mb = cached_json_mb(service.cache)
        objects_mb = held_mb(service.cache)
        # the evaluator as `k3sops serve` starts it (runner.build), once the memory is read
        evaluator = Evaluator(service.context.reports, lambda: service.cache.generation,
                              ready=service.cache.in_sync)
        service.cache.on_generation(evaluator.poke)
        evaluator.start()
        service.evaluator = service.context.evaluator = evaluator
        first = evaluator.wait("daily", 600)  # the first background run after the sync
        with lab.client() as http:
            token = serve_report.reader_token(http)
        answered, findings = answer(service, token, args.repeat)
        # the background run: what a change waits for (the staleness bench measures it under
        # churn); each fresh() is a run started after the call
        judged = [evaluator.fresh("daily", 600).seconds for _ in range(args.repeat)]
        # judging on each request, as before the evaluator (for comparison)
        on_demand: list[float] = []
        for _ in range(args.repeat):
            t = time.monotonic()
            service.context.reports.run("daily")
            on_demand.append(time.monotonic() - t)
    finally:
        service.stop()
    step["service"] = {"synced": synced, "sync_seconds": round(sync_s, 2),
                       "first_run_seconds": round(first.seconds, 3) if first else None,
                       "check_seconds": [round(x, 4) for x in answered],
                       "check_median": round(statistics.median(answered), 4),
                       "background_run_seconds": [round(x, 3) for x in judged],
                       "background_run_median": round(statistics.median(judged), 3),
                       "on_demand_seconds": [round(x, 3) for x in on_demand],
                       "on_demand_median": round(statistics.median(on_demand), 3),
                       "findings": findings, "objects": objects,
                       "cache_rss_mb": round(cache_mb, 1),
                       "cached_objects_json_mb": round(kept_mb, 1),
                       "cache_objects_mb": round(objects_mb, 1)}

    raw, listed = json_bytes(lab, {**check_scale.CORE_PATHS, **check_scale.CUSTOM_PATHS})
    step["json"] = {"bytes_mb": round(raw / 2**20, 1), "objects": listed,
                    "cache_rss_per_json": round(cache_mb / (raw / 2**20), 2) if raw else None,
                    "cache_rss_per_cached_json": round(cache_mb / kept_mb, 2) if kept_mb
                    else None,
                    "cache_objects_per_json": round(step["service"]["cache_objects_mb"]
                                                    / (raw / 2**20), 2) if raw else None}

    k3sops = str(Path(sys.executable).with_name("k3sops"))
    tools = {"cli": [k3sops, "-c", str(platform_file), "-o", "json", "check", "--no-history"]}
    tools.update({k: v for k, v in check_scale.peers(args, args.lab_dir / "kubeconfig").items()
                  if k == "popeye"})
    with lab.client() as metrics:
        for tool, argv in tools.items():
            repeat = args.repeat if tool == "cli" else 1
            runs = [_measure.run(tool, argv, metrics, work / f"{tool}-{i}.out", env=env,
                                 rss_limit_mb=args.peer_rss_limit_mb)
                    for i in range(repeat)]
            ok = [r.wall for r in runs if r.exit_code == 0 and not r.killed]
            step[tool] = {"wall": [round(r.wall, 2) for r in runs],
                          "median": round(statistics.median(ok), 2) if ok else None,
                          "max_rss_mb": round(max(r.max_rss_kb for r in runs) / 1024, 1),
                          "exit_codes": [r.exit_code for r in runs]}
    served_median = step["service"]["check_median"]
    run_median = step["service"]["background_run_median"]
    step["ratios"] = {f"{tool}_vs_service": round(step[tool]["median"] / served_median, 1)
                      for tool in tools if step[tool]["median"] and served_median}
    step["ratios"].update({f"{tool}_vs_background_run": round(step[tool]["median"] / run_median,
                                                              1)
                           for tool in tools if step[tool]["median"] and run_median})
    return step


def table(step: dict[str, Any]) -> str:
    s, j = step["service"], step["json"]
    lines = [f"-- {step['target']['bench_nodes']} nodes / {step['target']['bench_pods']} pods "
             f"({s['objects']} objects cached)",
             f"service: cache synced in {s['sync_seconds']} s; GET /api/v1/report "
             f"{s['check_median']} s (median of {len(s['check_seconds'])}), "
             f"{s['findings']} findings; background run {s['background_run_median']} s; "
             f"judged per request {s['on_demand_median']} s",
             f"cache RSS {s['cache_rss_mb']} MiB for {j['bytes_mb']} MiB of JSON listed "
             f"(ratio {j['cache_rss_per_json']}); {s['cached_objects_json_mb']} MiB as kept "
             f"(ratio {j['cache_rss_per_cached_json']}); objects held "
             f"{s['cache_objects_mb']} MiB (ratio to the JSON listed "
             f"{j['cache_objects_per_json']})"]
    for tool in ("cli", "popeye"):
        if tool in step:
            lines.append(f"{tool}: median {step[tool]['median']} s, max RSS "
                         f"{step[tool]['max_rss_mb']} MiB, exits {step[tool]['exit_codes']}")
    lines += [f"{k}: {v}x" for k, v in step["ratios"].items()]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description="serve's check from the cache vs CLI and Popeye")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=30000)
    p.add_argument("--namespaces", type=int, default=30)
    p.add_argument("--steps", default="0.1,1", help="fractions of full size to measure at")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--quiet", type=float, default=20.0)
    p.add_argument("--settle-timeout", type=float, default=900.0,
                   help="how long to wait for kwok to run the pods (the state is recorded)")
    p.add_argument("--no-grow", action="store_true",
                   help="measure the lab as it is (--reuse-lab: its size is recorded)")
    p.add_argument("--peer-rss-limit-mb", type=float, default=12000)
    p.add_argument("--lab-dir", type=Path, default=Path("/tmp/k3sops-bench-lab"))  # noqa: S108
    p.add_argument("--port-base", type=int, default=20000)
    p.add_argument("--reuse-lab", action="store_true")
    p.add_argument("--keep-lab", action="store_true")
    p.add_argument("--peers-bin", type=Path)
    p.add_argument("--out", type=Path, default=BENCH / "results")
    args = p.parse_args()
    if args.port_base in check_scale.FORBIDDEN_PORT_BASES:
        p.error(f"port base {args.port_base} belongs to another lab; use another")
    result: dict[str, Any] = {"benchmark": "serve_check", "machine": check_scale.machine(),
                              "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "args": {k: str(v) for k, v in vars(args).items()}, "steps": []}
    started_here = False
    try:
        if not check_scale.lab_is_up(args):
            if args.reuse_lab:
                p.error(f"no running lab in {args.lab_dir}")
            check_scale.lab_up(args)
            started_here = True
        lab = _cluster.Lab.from_run_dir(args.lab_dir, args.port_base)
        with tempfile.TemporaryDirectory(prefix="k3sops-bench-serve-") as tmp:
            for frac in (float(f) for f in args.steps.split(",")):
                work = Path(tmp) / f"step-{frac:g}"
                work.mkdir()
                step = measure(args, lab, work, round(args.nodes * frac),
                               round(args.pods * frac))
                result["steps"].append(step)
                print(table(step), flush=True)
    finally:
        if started_here and not args.keep_lab:
            check_scale.lab_down(args)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"serve_check-{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"written: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
