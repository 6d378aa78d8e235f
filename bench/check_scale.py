"""Speed of `k3sops check` on a big cluster, against the floor of listing the same objects.

    .venv/bin/python bench/check_scale.py --nodes 1000 --pods 30000

Starts its own lab (run dir /tmp/k3sops-bench-lab, port base 20000; never the dev or test lab),
grows it in steps (default: 10% then 100% of --nodes/--pods), and at each step measures, in the
same run and interleaved:

- the floor: a bare httpx2 client LISTing the kinds of services/check.py (CORE_PATHS +
  CUSTOM_PATHS), paginated at 500, sequentially and with 8 threads (bench/floor.py);
- `k3sops -o json check --no-history` as a child process;
- Popeye and K8sGPT when their binaries are found (--peers-bin or PATH).

For each: wall time (median of --repeat runs), peak RSS of the process (os.wait4), and API
requests from the API server's own apiserver_request_total (delta around the run; LISTs are
exact because nothing else LISTs in steady state, totals have the idle rate subtracted); for
k3sops also a client-side count of every HTTP request (bench/_counted.py, an untimed run).
Prints a table, writes bench/results/check_scale-<date>.json. Reports ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import _cluster  # noqa: E402
import _measure  # noqa: E402

from k3sops.services.check import CORE_PATHS, CUSTOM_PATHS  # noqa: E402

FORBIDDEN_PORT_BASES = (17000, 27000)  # the dev lab and the test lab: never touch them


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def lab_env(args: argparse.Namespace) -> dict[str, str]:
    return {**os.environ, "K3SOPS_LAB_DIR": str(args.lab_dir),
            "K3SOPS_LAB_PORT_BASE": str(args.port_base)}


def lab_is_up(args: argparse.Namespace) -> bool:
    return (args.lab_dir / "state.json").is_file() and (args.lab_dir / "pki" / "ca.crt").is_file()


def lab_up(args: argparse.Namespace) -> None:
    say(f"starting the bench lab in {args.lab_dir} (port base {args.port_base})")
    subprocess.run([sys.executable, "-m", "k3sops", "lab", "up", "--servers", "3",
                    "--agents", "0"], env=lab_env(args), check=True, cwd=ROOT)


def lab_down(args: argparse.Namespace) -> None:
    say("stopping the bench lab (down --purge)")
    subprocess.run([sys.executable, "-m", "k3sops", "lab", "down", "--purge"],
                   env=lab_env(args), check=False, cwd=ROOT)


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "memory_gb": round(mem_kb / 1024**2, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "load_average_at_start": list(os.getloadavg())}


def peers(args: argparse.Namespace, kubeconfig: Path) -> dict[str, list[str]]:
    """Peer commands whose binary exists (Popeye, K8sGPT analyze without an AI backend)."""
    found: dict[str, list[str]] = {}
    for name, argv in (
        ("popeye", ["--kubeconfig", str(kubeconfig), "-A", "-o", "json", "--force-exit-zero"]),
        ("k8sgpt", ["analyze", "--kubeconfig", str(kubeconfig), "-o", "json", "--no-cache"]),
    ):
        exe = (args.peers_bin / name) if args.peers_bin else None
        path = str(exe) if exe and exe.is_file() else shutil.which(name)
        if path:
            found[name] = [path, *argv]
    return found


FLOORS = ("floor-sequential", "floor-concurrent")
"""The floor is the faster of these two (paginated at 500, like k3sops)."""
INFO_ONLY = ("list-unpaginated",)
"""Measured for context, not a floor: one LIST per kind without a limit, 8 threads."""


def measure_step(args: argparse.Namespace, lab: _cluster.Lab, work: Path,
                 nodes: int, pods: int) -> dict[str, Any]:
    """Grow the cluster to this step's size and measure every tool on it."""
    step: dict[str, Any] = {"target": {"bench_nodes": nodes, "bench_pods": pods}}
    say(f"growing to {nodes} bench nodes and {pods} bench pods")
    step["creation"] = _cluster.grow(lab, nodes, pods, args.namespaces, say)
    step["settled"] = _cluster.wait_settled(lab, say)
    say(f"quiet period {args.quiet:g}s (controllers catch up)")
    time.sleep(args.quiet)

    paths = {**CORE_PATHS, **CUSTOM_PATHS}
    paths_file = work / "paths.json"
    paths_file.write_text(json.dumps(paths))
    py = sys.executable
    k3sops = str(Path(sys.executable).with_name("k3sops"))
    check_args = ["-c", str(args.lab_dir / "platform.yaml"), "-o", "json", "check",
                  "--no-history"]

    def floor(mode: str, page: int) -> list[str]:
        return [py, str(BENCH / "floor.py"), "--server", lab.server, "--pki",
                str(args.lab_dir / "pki"), "--paths", str(paths_file), "--mode", mode,
                "--workers", "8", "--page", str(page)]

    tools: dict[str, list[str]] = {
        "floor-sequential": floor("sequential", _cluster.PAGE),
        "floor-concurrent": floor("concurrent", _cluster.PAGE),
        "list-unpaginated": floor("concurrent", 0),
        "k3sops-check": [k3sops, *check_args],
    }
    peer_cmds = peers(args, args.lab_dir / "kubeconfig")
    tools.update(peer_cmds)
    env = {**os.environ, "NO_COLOR": "1", "HOME": str(work)}  # no history, no user config

    with lab.client(connections=1) as metrics:
        say(f"idle baseline {args.idle:g}s")
        idle, idle_seconds = _measure.idle_rates(metrics, args.idle)
        runs: dict[str, list[_measure.Run]] = {t: [] for t in tools}
        for i in range(args.repeat):
            for tool, argv in tools.items():  # interleaved: drift hits every tool alike
                peer = tool in peer_cmds
                if peer and i >= args.peer_repeat:
                    continue
                r = _measure.run(tool, argv, metrics, work / f"{tool}-{i}.out", env=env,
                                 rss_limit_mb=args.peer_rss_limit_mb if peer else None)
                say(f"  {tool} #{i + 1}: {r.wall:.2f}s, {r.max_rss_kb / 1024:.0f} MB, "
                    f"{r.lists} LIST, exit {r.exit_code} {r.killed}")
                runs[tool].append(r)
        # Client-side count, right after a floor run so both see (nearly) the same objects.
        ref = _measure.run("floor-ref", floor("sequential", _cluster.PAGE), metrics,
                           work / "floor-ref.out", env=env)
        counted = work / "counted.json"
        _measure.run("k3sops-counted", [py, str(BENCH / "_counted.py"), str(counted),
                                        *check_args], metrics, work / "counted.out", env=env)

    step["idle"] = {"seconds": round(idle_seconds, 2),
                    "requests_per_second": round(sum(idle.values()) / idle_seconds, 2),
                    "list_requests": sum(v for (verb, _, _), v in idle.items()
                                         if verb == "LIST"),
                    "top": {f"{verb} {res}": v for (verb, res, _), v in idle.most_common(12)}}
    step["tools"] = {t: _measure.summarize(rs, idle, idle_seconds) for t, rs in runs.items()}
    ref_kinds = json.loads(_text(ref))["kinds"]
    objects = {k: v["items"] for k, v in ref_kinds.items()}
    step["objects"] = objects
    step["objects_total"] = sum(objects.values())
    step["in_process_list_seconds"] = {
        t: statistics.median(json.loads(_text(r))["list_seconds"] for r in runs[t])
        for t in (*FLOORS, *INFO_ONLY)}
    step["pages_theoretical"] = sum(_cluster.pages(n) for n in objects.values())
    step["k3sops_client_requests"] = client_requests(lab, counted, paths, ref_kinds)
    report = json.loads(_text(runs["k3sops-check"][-1]) or "{}")
    step["k3sops_report"] = {
        "summary": report.get("summary"),
        "findings_by_check": _count_by(report.get("findings") or [], "check"),
        "sources": report.get("sources"),
    }
    if "popeye" in runs and runs["popeye"][-1].exit_code == 0:
        pop = json.loads(_text(runs["popeye"][-1]) or "{}").get("popeye") or {}
        step["popeye_report"] = {"score": pop.get("score"), "grade": pop.get("grade"),
                                 "sections": len(pop.get("sections") or [])}
    step["ratios"] = ratios(step)
    return step


def _text(r: _measure.Run) -> str:
    return r.stdout.read_text() if r.stdout else ""


def client_requests(lab: _cluster.Lab, counted: Path, paths: dict[str, str],
                    ref_kinds: dict[str, dict[str, int]]) -> dict[str, Any]:
    """k3sops' own count of its requests, per kind against the pages the floor needed."""
    client: dict[str, int] = json.loads(counted.read_text()) if counted.is_file() else {}
    api = f" {lab.server.removeprefix('https://')} "
    per_kind = {}
    for kind, path in paths.items():
        got = sum(v for k, v in client.items() if api in k and k.endswith(" " + path))
        per_kind[kind] = {"k3sops_requests": got, "floor_pages": ref_kinds[kind]["pages"],
                          "objects": ref_kinds[kind]["items"]}
    return {
        "api_server": sum(v for k, v in client.items() if api in k),
        "api_server_lists": sum(d["k3sops_requests"] for d in per_kind.values()),
        "api_server_other": {k: v for k, v in client.items()
                             if api in k and not any(k.endswith(" " + p)
                                                     for p in paths.values())},
        "per_kind": per_kind,
        # A kind that grew between the two runs (events do) can need one more page.
        "excess_over_floor_pages": sum(max(0, d["k3sops_requests"] - d["floor_pages"])
                                       for d in per_kind.values()),
        "prometheus_and_alertmanager": {k: v for k, v in client.items() if api not in k},
    }


def _count_by(items: list[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        out[str(it.get(key))] = out.get(str(it.get(key)), 0) + 1
    return out


def ratios(step: dict[str, Any]) -> dict[str, Any]:
    """Every tool against the floor (the faster of sequential and concurrent LISTing)."""
    t = step["tools"]
    floor_name = min(FLOORS, key=lambda n: t[n]["wall_median"])
    floor = t[floor_name]
    out: dict[str, Any] = {"floor": floor_name}
    for name, s in t.items():
        out[name] = {"time": round(s["wall_median"] / floor["wall_median"], 2),
                     # min/min: the runs least disturbed by the other labs on the machine
                     "time_min": round(s["wall_min"] / floor["wall_min"], 2),
                     "rss": round(s["max_rss_mb"] / floor["max_rss_mb"], 2),
                     "list_requests": round(s["api_list_requests"]
                                            / max(1, floor["api_list_requests"]), 2)}
    check = t["k3sops-check"]
    for peer in ("popeye", "k8sgpt"):
        if peer in t:
            out[f"{peer}_vs_k3sops"] = {
                "time": round(t[peer]["wall_median"] / check["wall_median"], 2),
                "rss": round(t[peer]["max_rss_mb"] / check["max_rss_mb"], 2)}
    c = step["k3sops_client_requests"]
    out["k3sops_list_requests_minus_pages"] = c["excess_over_floor_pages"]
    out["k3sops_requests_per_500_objects"] = round(
        c["api_server"] / (step["objects_total"] / _cluster.PAGE), 3)
    big = c["per_kind"]["pods"]
    out["k3sops_pod_requests_per_500_pods"] = round(
        big["k3sops_requests"] / (big["objects"] / _cluster.PAGE), 3)
    return out


def table(result: dict[str, Any]) -> str:
    lines = []
    for step in result["steps"]:
        s = step["settled"]
        lines.append(f"\n== {s['nodes']} nodes, {s['pods']} pods; {step['objects_total']} "
                     f"objects in {len(step['objects'])} kinds (pages at 500: "
                     f"{step['pages_theoretical']})")
        lines.append(f"{'tool':<18}{'runs':>5}{'wall med':>10}{'min':>8}{'max':>8}"
                     f"{'RSS MB':>9}{'LISTs':>7}{'x floor':>9}{'min x':>7}{'RSS x':>7}")
        r = step["ratios"]
        for name, t in step["tools"].items():
            ratio = r[name]
            lines.append(
                f"{name:<18}{t['runs']:>5}{t['wall_median']:>9.2f}s{t['wall_min']:>7.2f}s"
                f"{t['wall_max']:>7.2f}s{t['max_rss_mb']:>9.0f}{t['api_list_requests']:>7.0f}"
                f"{ratio['time']:>9.2f}{ratio['time_min']:>7.2f}{ratio['rss']:>7.2f}")
            if t["killed"] or t["exit_codes"] != [0]:
                lines.append(f"  note: {name} exit codes {t['exit_codes']} {t['killed']}")
        fl = step["in_process_list_seconds"]
        summ = step["k3sops_report"].get("summary") or {}
        lines.append(f"floor = {r['floor']}; LIST time inside the process: "
                     + ", ".join(f"{k} {v:.2f}s" for k, v in fl.items())
                     + f"; k3sops' own duration_seconds {summ.get('duration_seconds')}")
        c = step["k3sops_client_requests"]
        lines.append(f"k3sops client-side: {c['api_server']} API requests = "
                     f"{c['api_server_lists']} LIST pages + {c['api_server_other']}; "
                     f"over the floor's pages: {c['excess_over_floor_pages']}; "
                     f"requests per 500 pods: {r['k3sops_pod_requests_per_500_pods']}, "
                     f"per 500 objects: {r['k3sops_requests_per_500_objects']}")
        lines.append(f"k3sops other requests: {c['prometheus_and_alertmanager']}")
        for peer in ("popeye", "k8sgpt"):
            if f"{peer}_vs_k3sops" in r:
                v = r[f"{peer}_vs_k3sops"]
                lines.append(f"{peer} / k3sops: time {v['time']}x, RSS {v['rss']}x")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description="k3sops check at scale vs the LIST floor")
    p.add_argument("--nodes", type=int, default=1000, help="fake bench nodes at full size")
    p.add_argument("--pods", type=int, default=30000, help="bench pods at full size")
    p.add_argument("--namespaces", type=int, default=30)
    p.add_argument("--steps", default="0.1,1", help="fractions of full size to measure at")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--peer-repeat", type=int, default=1, help="runs of each peer (slow)")
    p.add_argument("--peer-rss-limit-mb", type=float, default=12000,
                   help="kill a peer above this RSS (the machine is shared with other labs)")
    p.add_argument("--idle", type=float, default=20.0, help="idle baseline seconds")
    p.add_argument("--quiet", type=float, default=30.0, help="wait after growing, seconds")
    # A fixed, documented run dir of its own (never the dev or the test lab).
    p.add_argument("--lab-dir", type=Path, default=Path("/tmp/k3sops-bench-lab"))  # noqa: S108
    p.add_argument("--port-base", type=int, default=20000)
    p.add_argument("--reuse-lab", action="store_true", help="use a running bench lab")
    p.add_argument("--keep-lab", action="store_true", help="leave the lab running at the end")
    p.add_argument("--peers-bin", type=Path, help="directory with popeye and/or k8sgpt")
    p.add_argument("--out", type=Path, default=BENCH / "results")
    args = p.parse_args()
    if args.port_base in FORBIDDEN_PORT_BASES:
        p.error(f"port base {args.port_base} belongs to another lab; use another")

    started_here = False
    result: dict[str, Any] = {"benchmark": "check_scale", "machine": machine(),
                              "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "args": {k: str(v) for k, v in vars(args).items()},
                              "steps": []}
    try:
        if not lab_is_up(args):
            if args.reuse_lab:
                p.error(f"no running lab in {args.lab_dir}")
            lab_up(args)
            started_here = True
        lab = _cluster.Lab.from_run_dir(args.lab_dir, args.port_base)
        with tempfile.TemporaryDirectory(prefix="k3sops-bench-") as tmp:
            for frac in (float(f) for f in args.steps.split(",")):
                work = Path(tmp) / f"step-{frac:g}"
                work.mkdir()
                step = measure_step(args, lab, work, round(args.nodes * frac),
                                    round(args.pods * frac))
                result["steps"].append(step)
                print(table({"steps": [step]}), flush=True)
    finally:
        if started_here and not args.keep_lab:
            lab_down(args)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"check_scale-{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(table(result))
    print(f"\nwritten: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
