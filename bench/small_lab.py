"""`k3sops check` against Popeye on the default (small) lab: paired, interleaved runs.

    .venv/bin/python bench/small_lab.py --lab-dir /tmp/lab-h3 --port-base 23000 [--repeat 15]

Issue 12: "check on the default lab <= 2x Popeye's wall in the same run". Each round runs both
tools once, as child processes, one right after the other, alternating which goes first
(ABBA...), so that load from other work on the shared machine hits both alike:

- ``k3sops``: ``k3sops -c <lab>/platform.yaml -o json check --no-history`` (the daily check,
  no history written: nothing changes between rounds), HOME a scratch directory;
- ``popeye``: ``popeye --kubeconfig <lab>/kubeconfig -A -o json --force-exit-zero`` (the same
  admin credentials as k3sops), from ``--peers-bin`` (default ~/.cache/k3sops/peers/bin).

Per run: wall time (monotonic, around the child), CPU time (user + system) and peak RSS of
that child (``getrusage(RUSAGE_CHILDREN)`` delta, ``ru_maxrss``), the LIST requests the lab's
API server counted during it (``apiserver_request_total`` before and after; nothing else on the
lab LISTs in steady state, so the delta is the tool's own) and the exit code. Reported:
medians, min, max, the ratio k3sops / Popeye of the medians, of the minima, the median of the
per-round ratios (the paired figure) and of the CPU medians; both outputs of the last round
are parsed (k3sops' summary, Popeye's issues through bench/peers.py) to show both did the work.
Writes ``bench/results/small_lab-<date>.json``. Asserts nothing; exit 1 only when a tool failed.

This is not bench/startup.py (``--version``/``--help`` start-up); that one also times
``check`` and Popeye, without the paired ratio, RSS and API requests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import _cluster  # noqa: E402
import _measure  # noqa: E402
import peers  # noqa: E402

FORBIDDEN_PORT_BASES = (17000, 27000, 28000)
"""The dev lab and the lead's test labs: this benchmark only reads, but never measures those."""

TARGET_RATIO = 2.0
"""Issue 12: check on the default lab within 2x Popeye's wall."""


def _git(*args: str) -> str:
    r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                       check=False)
    return r.stdout.strip()


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--lab-dir", type=Path, default=Path(os.environ.get(
        "K3SOPS_LAB_DIR", Path.home() / ".local/state/k3sops/lab")),
        help="a running lab (platform.yaml, kubeconfig, pki/)")
    p.add_argument("--port-base", type=int, default=int(os.environ.get(
        "K3SOPS_LAB_PORT_BASE", "17000")), help="the lab's port base (its API server is "
                                                "on base+443)")
    p.add_argument("--k3sops", type=Path, default=Path(sys.executable).with_name("k3sops"))
    p.add_argument("--peers-bin", type=Path, default=peers.DEFAULT_PEERS_BIN)
    p.add_argument("--repeat", type=int, default=15, help="measured rounds")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured rounds first")
    p.add_argument("--out", type=Path, default=None,
                   help="result file (default bench/results/small_lab-<date>.json)")
    a = p.parse_args(argv)
    if a.port_base in FORBIDDEN_PORT_BASES:
        p.error(f"port base {a.port_base} is another lab's (dev/test); use your own")
    for f in ("platform.yaml", "kubeconfig", "pki/admin.crt"):
        if not (a.lab_dir / f).is_file():
            p.error(f"no running lab at {a.lab_dir} (missing {f}); start one with "
                    "K3SOPS_LAB_DIR=... K3SOPS_LAB_PORT_BASE=... k3sops lab up")
    if peers.find_popeye(a.peers_bin) is None:
        p.error(f"no executable popeye in {a.peers_bin}; build it (bench/README.md, "
                "Building Popeye)")
    return a


def _cpu_seconds() -> float:
    """User + system CPU of every child reaped so far (os.wait4 in _measure.run reaps them)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _summary(runs: list[_measure.Run], cpu: list[float]) -> dict[str, Any]:
    walls = [r.wall for r in runs]
    return {"runs": len(runs), "exit_codes": sorted({r.exit_code for r in runs}),
            "wall_median_s": round(statistics.median(walls), 4),
            "wall_min_s": round(min(walls), 4), "wall_max_s": round(max(walls), 4),
            "cpu_median_s": round(statistics.median(cpu), 4),
            "max_rss_mb": round(max(r.max_rss_kb for r in runs) / 1024, 1),
            "rss_median_mb": round(statistics.median(r.max_rss_kb for r in runs) / 1024, 1),
            "list_requests_median": statistics.median(r.lists for r in runs),
            "walls_s": [round(w, 4) for w in walls]}


def _outputs(k3s: _measure.Run, pop: _measure.Run) -> dict[str, Any]:
    """What each tool reported in the last round (shows that both did the whole job)."""
    out: dict[str, Any] = {}
    try:
        report = json.loads(k3s.stdout.read_text() if k3s.stdout else "")
        out["k3sops"] = {"summary": report.get("summary"),
                         "not_evaluated": len(report.get("not_evaluated") or []),
                         "sources": [s.get("name") for s in report.get("sources") or []
                                     if s.get("ok")]}
    except ValueError as e:
        out["k3sops"] = {"error": f"output is not JSON: {e}"}
    try:
        raw = json.loads(pop.stdout.read_text() if pop.stdout else "")
        issues = peers.parse_popeye(raw)
        by_level: dict[str, int] = {}
        for i in issues:
            by_level[i["level"]] = by_level.get(i["level"], 0) + 1
        out["popeye"] = {**peers.popeye_summary(raw), "issues": len(issues),
                         "by_level": by_level}
    except (ValueError, peers.PeerError) as e:
        out["popeye"] = {"error": str(e)}
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write the JSON."""
    a = _args(argv)
    lab = _cluster.Lab.from_run_dir(a.lab_dir, a.port_base)
    popeye = peers.find_popeye(a.peers_bin)
    assert popeye is not None  # _args refused to start without it
    scratch = Path(tempfile.mkdtemp(prefix="k3sops-small-lab-"))
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("K3SOPS_")}
    env |= {"HOME": str(scratch), "NO_COLOR": "1", "K3SOPS_STATE_DIR": str(scratch / "state")}
    tools = {
        "k3sops": [str(a.k3sops), "-c", str(a.lab_dir / "platform.yaml"), "-o", "json",
                   "check", "--no-history"],
        "popeye": peers.popeye_argv(popeye, a.lab_dir / "kubeconfig", scratch / "popeye.log"),
    }
    runs: dict[str, list[_measure.Run]] = {t: [] for t in tools}
    cpu: dict[str, list[float]] = {t: [] for t in tools}
    load_before = os.getloadavg()
    try:
        with lab.client(connections=1) as metrics:
            for rnd in range(a.warmup + a.repeat):
                order = list(tools) if rnd % 2 == 0 else list(reversed(tools))
                for t in order:
                    cpu0 = _cpu_seconds()
                    r = _measure.run(t, tools[t], metrics, scratch / f"{t}-{rnd}.out",
                                     env=env, timeout=300)
                    used = _cpu_seconds() - cpu0
                    if rnd >= a.warmup:
                        runs[t].append(r)
                        cpu[t].append(used)
                    print(f"round {rnd + 1 - a.warmup:>3} {t:<7} {r.wall:6.3f}s {used:6.3f}s CPU "
                          f"{r.max_rss_kb / 1024:6.0f} MB {r.lists:>3} LIST exit "
                          f"{r.exit_code}{' (warm-up)' if rnd < a.warmup else ''}",
                          file=sys.stderr, flush=True)
        outputs = _outputs(runs["k3sops"][-1], runs["popeye"][-1])
        errors = {t: (rs[-1].stdout.with_suffix(".err").read_text()[-400:]
                      if rs[-1].stdout else "")
                  for t, rs in runs.items()
                  # check: 0 ok, 3 findings over --fail-on, 4 partial; Popeye: forced 0
                  if any(r.exit_code not in ((0, 3, 4) if t == "k3sops" else (0,))
                         for r in rs)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = {t: _summary(rs, cpu[t]) for t, rs in runs.items()}
    k, p = summary["k3sops"], summary["popeye"]
    paired = [kr.wall / pr.wall for kr, pr in zip(runs["k3sops"], runs["popeye"], strict=True)]
    ratios = {"k3sops_over_popeye_median": round(k["wall_median_s"] / p["wall_median_s"], 3),
              "k3sops_over_popeye_min": round(k["wall_min_s"] / p["wall_min_s"], 3),
              "k3sops_over_popeye_paired_median": round(statistics.median(paired), 3),
              # CPU time is what each tool itself costs: less sensitive than wall to the
              # other work on the machine (Popeye spreads over cores others are using).
              "k3sops_over_popeye_cpu": round(k["cpu_median_s"] / p["cpu_median_s"], 3),
              "k3sops_over_popeye_rss": round(k["max_rss_mb"] / p["max_rss_mb"], 3)}
    result = {
        "benchmark": "small_lab",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *(argv or sys.argv)]),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "src_dirty": bool(_git("status", "--porcelain", "--", "src")),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "lab": {"dir": str(a.lab_dir), "api_server": lab.server},
        "versions": {"popeye": peers.popeye_version(popeye)},
        "rounds": a.repeat, "warmup": a.warmup,
        "tools": {t: " ".join(argv_) for t, argv_ in tools.items()},
        "summary": summary, "ratios": ratios,
        "paired_ratios": [round(x, 3) for x in paired],
        "target": {"k3sops_le_2x_popeye": ratios["k3sops_over_popeye_median"] <= TARGET_RATIO},
        "outputs_last_round": outputs, "errors": errors,
    }
    out = a.out or BENCH / "results" / f"small_lab-{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'tool':<8}{'median s':>10}{'min s':>8}{'max s':>8}{'CPU s':>8}{'RSS MB':>8}"
          f"{'LISTs':>7}  exit")
    for t, s in summary.items():
        print(f"{t:<8}{s['wall_median_s']:>10.3f}{s['wall_min_s']:>8.3f}{s['wall_max_s']:>8.3f}"
              f"{s['cpu_median_s']:>8.3f}{s['max_rss_mb']:>8.0f}{s['list_requests_median']:>7.0f}  "
              f"{','.join(map(str, s['exit_codes']))}")
    print("k3sops / popeye: " + ", ".join(f"{k.removeprefix('k3sops_over_popeye_')} {v}"
                                          for k, v in ratios.items()))
    print(f"target check <= {TARGET_RATIO:g}x Popeye (medians): "
          f"{'met' if result['target']['k3sops_le_2x_popeye'] else 'NOT met'}")
    for t, why in errors.items():
        print(f"{t} failed: {why}", file=sys.stderr)
    print(f"wrote {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
