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
    platform_file = args.lab_dir / "platform.yaml"
    check_args = ["-c", str(platform_file), "-o", "json", "check", "--no-history"]
    tools: dict[str, list[str]] = {
        f"floor-{mode}": [py, str(BENCH / "floor.py"), "--server", lab.server,
                          "--pki", str(args.lab_dir / "pki"), "--paths", str(paths_file),
                          "--mode", mode, "--workers", "8"]
        for mode in ("sequential", "concurrent")
    }
    tools["k3sops-check"] = [k3sops, *check_args]
    tools.update(peers(args, args.lab_dir / "kubeconfig"))
    env = {**os.environ, "NO_COLOR": "1", "HOME": str(work)}  # no history, no user config

    with lab.client(connections=1) as metrics:
        say(f"idle baseline {args.idle:g}s")
        idle, idle_seconds = _measure.idle_rates(metrics, args.idle)
        runs: dict[str, list[_measure.Run]] = {t: [] for t in tools}
        for i in range(args.repeat):
            for tool, argv in tools.items():  # interleaved: drift hits every tool alike
                peer = tool not in ("floor-sequential", "floor-concurrent", "k3sops-check")
                if peer and i >= args.peer_repeat:
                    continue
                r = _measure.run(tool, argv, metrics, work / f"{tool}-{i}.out", env=env,
                                 rss_limit_mb=args.peer_rss_limit_mb if peer else None)
                say(f"  {tool} #{i + 1}: {r.wall:.2f}s, {r.max_rss_kb / 1024:.0f} MB, "
                    f"{r.lists} LIST, exit {r.exit_code}")
                runs[tool].append(r)
        counted = work / "counted.json"
        _measure.run("k3sops-counted", [py, str(BENCH / "_counted.py"), str(counted),
                                        *check_args], metrics, work / "counted.out", env=env)

    step["idle"] = {"seconds": round(idle_seconds, 2),
                    "requests_per_second": round(sum(idle.values()) / idle_seconds, 2),
                    "list_requests": sum(v for (verb, _, _), v in idle.items()
                                         if verb == "LIST")}
    step["tools"] = {t: _measure.summarize(rs, idle, idle_seconds) for t, rs in runs.items()}
    floor_out = json.loads(runs["floor-sequential"][-1].stdout.read_text())  # type: ignore[union-attr]
    objects = {k: v["items"] for k, v in floor_out["kinds"].items()}
    step["objects"] = objects
    step["objects_total"] = sum(objects.values())
    step["floor_list_seconds"] = {
        mode: statistics.median(json.loads(r.stdout.read_text())["list_seconds"]  # type: ignore[union-attr]
                                for r in runs[f"floor-{mode}"])
        for mode in ("sequential", "concurrent")}
    step["pages_theoretical"] = sum(_cluster.pages(n) for n in objects.values())
    client = json.loads(counted.read_text()) if counted.is_file() else {}
    api_host = lab.server.removeprefix("https://")
    step["k3sops_client_requests"] = {
        "api_server": sum(v for k, v in client.items() if f" {api_host} " in k),
        "api_server_lists": sum(v for k, v in client.items()
                                if f" {api_host} " in k and not k.endswith(" /version")),
        "other": {k: v for k, v in client.items() if f" {api_host} " not in k},
        "by_path": client,
    }
    report = json.loads(runs["k3sops-check"][-1].stdout.read_text() or "{}")  # type: ignore[union-attr]
    step["k3sops_report"] = {
        "summary": report.get("summary"),
        "findings_by_check": _count_by(report.get("findings") or [], "check"),
        "sources": report.get("sources"),
    }
    step["ratios"] = ratios(step)
    return step


def _count_by(items: list[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        out[str(it.get(key))] = out.get(str(it.get(key)), 0) + 1
    return out


def ratios(step: dict[str, Any]) -> dict[str, Any]:
    """Every tool against the floor (the faster of sequential and concurrent LISTing)."""
    t = step["tools"]
    floor_name = min(("floor-sequential", "floor-concurrent"), key=lambda n: t[n]["wall_median"])
    floor = t[floor_name]
    out: dict[str, Any] = {"floor": floor_name}
    for name, s in t.items():
        if name.startswith("floor-"):
            continue
        out[name] = {"time": round(s["wall_median"] / floor["wall_median"], 2),
                     "rss": round(s["max_rss_mb"] / floor["max_rss_mb"], 2),
                     "list_requests": round(s["api_list_requests"]
                                            / max(1, floor["api_list_requests"]), 2)}
    check = t["k3sops-check"]
    for peer in ("popeye", "k8sgpt"):
        if peer in t:
            out[f"{peer}_vs_k3sops"] = {
                "time": round(t[peer]["wall_median"] / check["wall_median"], 2),
                "rss": round(t[peer]["max_rss_mb"] / check["max_rss_mb"], 2)}
    pages = step["pages_theoretical"]
    client_api = step["k3sops_client_requests"]["api_server_lists"]
    out["k3sops_list_requests_minus_pages"] = client_api - pages
    out["k3sops_requests_per_500_objects"] = round(
        check["api_list_requests"] / (step["objects_total"] / _cluster.PAGE), 3)
    return out


def table(result: dict[str, Any]) -> str:
    lines = []
    for step in result["steps"]:
        s = step["settled"]
        lines.append(f"\n== {s['nodes']} nodes, {s['pods']} pods, {step['objects_total']} "
                     f"objects listed in {len(step['objects'])} kinds "
                     f"(pages at 500: {step['pages_theoretical']})")
        lines.append(f"{'tool':<18}{'wall med':>10}{'min':>8}{'max':>8}{'RSS MB':>9}"
                     f"{'LISTs':>7}{'req-idle':>10}{'x floor':>9}{'RSS x':>7}")
        r = step["ratios"]
        for name, t in step["tools"].items():
            ratio = r.get(name, {})
            lines.append(
                f"{name:<18}{t['wall_median']:>9.2f}s{t['wall_min']:>7.2f}s"
                f"{t['wall_max']:>7.2f}s{t['max_rss_mb']:>9.0f}{t['api_list_requests']:>7.0f}"
                f"{t['api_requests_minus_idle']:>10.0f}"
                f"{ratio.get('time', 1.0 if name == r['floor'] else float('nan')):>9.2f}"
                f"{ratio.get('rss', 1.0 if name == r['floor'] else float('nan')):>7.2f}")
        for name, t in step["tools"].items():
            if t["killed"] or t["exit_codes"] != [0]:
                lines.append(f"  note: {name} exit codes {t['exit_codes']} {t['killed']}")
        fl = step["floor_list_seconds"]
        summ = (step["k3sops_report"].get("summary") or {})
        lines.append(f"floor = {r['floor']}; in-process LIST time: sequential "
                     f"{fl['sequential']:.2f}s, concurrent {fl['concurrent']:.2f}s; "
                     f"k3sops internal duration {summ.get('duration_seconds')}s")
        c = step["k3sops_client_requests"]
        lines.append(f"k3sops client-side: {c['api_server']} API requests "
                     f"({c['api_server_lists']} LIST pages + /version), pages needed "
                     f"{step['pages_theoretical']}, excess {r['k3sops_list_requests_minus_pages']};"
                     f" other: {c['other']}")
        lines.append(f"requests per 500 objects listed: {r['k3sops_requests_per_500_objects']}")
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
