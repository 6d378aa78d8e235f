"""Start-up of the k3sops CLI, against `python -c pass` and (when built) Popeye, same run.

Measures, as child processes run in interleaved rounds (every tool once per round, in a
rotating order, so that load from other work on the machine hits all of them alike):

- ``floor``: ``python -c pass`` with the interpreter k3sops runs on;
- ``version``: ``k3sops --version``;  ``help``: ``k3sops --help``;
- ``check-help``: ``k3sops check --help``;
- ``check``: ``k3sops -c <lab>/platform.yaml -o json check`` on a running lab (history kept in
  a scratch state directory, so the run does what a user's does);
- ``popeye``: ``popeye -A -o json --kubeconfig <lab>/kubeconfig`` on the same lab, when the
  binary is in ``--peers-bin`` (skipped, and said so, when it is not).

Reports medians (and min/p90) in seconds, each median as a ratio to the floor's, and
``check / popeye``; writes ``bench/results/startup-<date>.json``. Bytecode is written and
warm-up rounds run first, as for an installed package (a venv created with
PYTHONDONTWRITEBYTECODE=1 would otherwise recompile changed modules on every run).

Usage::

    .venv/bin/python bench/startup.py --lab-dir /tmp/lab-h1 [--repeat 20] [--peers-bin DIR]

Targets (issue 12): --version <= 0.15 s, --help <= 0.3 s, check <= 2x Popeye's wall. The
script prints whether they were met in this run; it never fails on them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PEERS = Path.home() / ".cache" / "k3sops" / "peers" / "bin"


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10)[-1] if len(xs) >= 2 else (xs[0] if xs else 0.0)


def _run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, timeout=timeout, check=False)
    wall = time.perf_counter() - t0
    return wall, r.returncode, r.stderr.decode(errors="replace")[-400:]


def _version(argv: list[str], env: dict[str, str]) -> str:
    try:
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30,
                           check=False)
    except OSError as e:
        return f"unknown ({e})"
    lines = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout or r.stderr).strip().splitlines()
    # popeye prints a banner first: take its "Version:" line when there is one.
    tagged = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Version:")]
    return tagged[0] if tagged else (lines[0] if lines else "?")


def _git(*args: str) -> str:
    r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                       check=False)
    return r.stdout.strip()


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--lab-dir", type=Path, default=Path(os.environ.get(
        "K3SOPS_LAB_DIR", Path.home() / ".local/state/k3sops/lab")),
        help="a running lab (its platform.yaml and kubeconfig); without one, check and "
             "popeye are skipped")
    p.add_argument("--k3sops", type=Path, default=Path(sys.executable).with_name("k3sops"),
                   help="the installed console script (default: next to this python)")
    p.add_argument("--peers-bin", type=Path, default=DEFAULT_PEERS,
                   help=f"where popeye is (default {DEFAULT_PEERS})")
    p.add_argument("--repeat", type=int, default=20, help="measured rounds")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured rounds first")
    p.add_argument("--out", type=Path, default=None, help="result file (default: "
                   "bench/results/startup-<date>.json)")
    p.add_argument("--baseline", type=Path, default=None,
                   help="another k3sops entry script (e.g. an older commit's) measured in the "
                        "same rounds, as base-version, base-help, ...")
    p.add_argument("--baseline-label", default="",
                   help="what --baseline is (e.g. the commit it was archived from)")
    return p.parse_args()


def _tools(a: argparse.Namespace) -> tuple[dict[str, list[str]], dict[str, str]]:
    k3s = str(a.k3sops)
    tools: dict[str, list[str]] = {
        "floor": [sys.executable, "-c", "pass"],
        "version": [k3s, "--version"],
        "help": [k3s, "--help"],
        "check-help": [k3s, "check", "--help"],
    }
    if a.baseline is not None:
        for t in ("version", "help", "check-help"):
            tools[f"base-{t}"] = [str(a.baseline), *tools[t][1:]]
    skipped: dict[str, str] = {}
    platform_file = a.lab_dir / "platform.yaml"
    kubeconfig = a.lab_dir / "kubeconfig"
    if not (platform_file.is_file() and kubeconfig.is_file()):
        skipped["check"] = skipped["popeye"] = f"no running lab at {a.lab_dir}"
        return tools, skipped
    tools["check"] = [k3s, "-c", str(platform_file), "-o", "json", "check"]
    if a.baseline is not None:
        tools["base-check"] = [str(a.baseline), *tools["check"][1:]]
    popeye = a.peers_bin / "popeye"
    if popeye.is_file() and os.access(popeye, os.X_OK):
        tools["popeye"] = [str(popeye), "-A", "-o", "json", "--kubeconfig", str(kubeconfig)]
    else:
        skipped["popeye"] = f"no executable {popeye}"
    return tools, skipped


def _measure(tools: dict[str, list[str]], env: dict[str, str], warmup: int, repeat: int
             ) -> tuple[dict[str, list[float]], dict[str, set[int]], dict[str, str]]:
    walls: dict[str, list[float]] = {t: [] for t in tools}
    codes: dict[str, set[int]] = {t: set() for t in tools}
    errors: dict[str, str] = {}
    names = list(tools)
    for rnd in range(warmup + repeat):
        # Rotate the order each round: no tool always runs right after the same one.
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for t in order:
            wall, code, err = _run(tools[t], env, timeout=120)
            if rnd < warmup:
                continue
            walls[t].append(wall)
            codes[t].add(code)
            # check exits 3/4 on findings/partial results; popeye's code counts its issues.
            if code not in (0, 3, 4) and t != "popeye":
                errors[t] = err
    return walls, codes, errors


def _summary(walls: dict[str, list[float]], codes: dict[str, set[int]]) -> dict[str, Any]:
    floor = _median(walls["floor"])
    out: dict[str, Any] = {}
    for t, xs in walls.items():
        med = _median(xs)
        out[t] = {"median_s": round(med, 4), "min_s": round(min(xs), 4),
                  "p90_s": round(_p90(xs), 4), "ratio_to_floor": round(med / floor, 2),
                  "exit_codes": sorted(codes[t]), "runs": [round(x, 4) for x in xs]}
    return out


def _print(result: dict[str, Any], out: Path) -> None:
    print(f"{'tool':<16} {'median s':>9} {'min s':>7} {'p90 s':>7} {'x floor':>8}  exit")
    for t, s in result["summary"].items():
        print(f"{t:<16} {s['median_s']:>9.3f} {s['min_s']:>7.3f} {s['p90_s']:>7.3f} "
              f"{s['ratio_to_floor']:>8.1f}  {','.join(map(str, s['exit_codes']))}")
    for t, why in result["skipped"].items():
        print(f"{t:<16} skipped: {why}")
    for k, v in result["ratios"].items():
        print(f"{k}: {v}")
    print("targets met: " + ", ".join(f"{k}={'yes' if v else 'NO'}"
                                      for k, v in result["targets_met"].items()))
    print(f"wrote {out}")


def main() -> int:
    """Measure, print the table, write the JSON; 0 unless a tool failed outright."""
    a = _args()
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("K3SOPS_")}
    env["COLUMNS"] = "100"
    scratch = Path(tempfile.mkdtemp(prefix="k3sops-startup-"))
    env["K3SOPS_STATE_DIR"] = str(scratch / "state")
    tools, skipped = _tools(a)
    load_before = os.getloadavg()
    try:
        walls, codes, errors = _measure(tools, env, a.warmup, a.repeat)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load_after = os.getloadavg()
    summary = _summary(walls, codes)
    ratios: dict[str, float] = {}
    if "check" in walls and "popeye" in walls:
        ratios["check_over_popeye"] = round(_median(walls["check"]) / _median(walls["popeye"]),
                                            2)
    for t in ("version", "help", "check-help", "check"):
        if f"base-{t}" in walls and t in walls:
            ratios[f"{t}_baseline_over_current"] = round(
                _median(walls[f"base-{t}"]) / _median(walls[t]), 2)
    targets = {"version_le_0.15s": summary["version"]["median_s"] <= 0.15,
               "help_le_0.3s": summary["help"]["median_s"] <= 0.3}
    if "check_over_popeye" in ratios:
        targets["check_le_2x_popeye"] = ratios["check_over_popeye"] <= 2.0
    result = {
        "benchmark": "startup",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "src_dirty": bool(_git("status", "--porcelain", "--", "src")),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": load_after},
        "versions": {"k3sops": _version([str(a.k3sops), "--version"], env),
                     **({"popeye": _version([tools["popeye"][0], "version"], env)}
                        if "popeye" in tools else {})},
        "baseline": a.baseline_label or (str(a.baseline) if a.baseline else None),
        "rounds": a.repeat, "warmup": a.warmup,
        "tools": {t: " ".join(argv) for t, argv in tools.items()},
        "skipped": skipped, "errors": errors,
        "summary": summary, "ratios": ratios, "targets_met": targets,
    }
    out = a.out or ROOT / "bench" / "results" / f"startup-{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    _print(result, out)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
