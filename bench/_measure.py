"""Run one command as a child process and measure it: wall time, peak RSS, API requests."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from _cluster import delta, request_counters

Key = tuple[str, str, str]


@dataclass
class Run:
    """One measured run of a tool."""

    tool: str
    wall: float
    max_rss_kb: int
    exit_code: int
    requests: Counter[Key] = field(default_factory=Counter)
    stdout: Path | None = None
    killed: str = ""

    @property
    def lists(self) -> int:
        """LIST requests seen by the API server during the run (nothing else LISTs when idle)."""
        return sum(v for (verb, _, _), v in self.requests.items() if verb == "LIST")

    @property
    def total(self) -> int:
        return sum(self.requests.values())


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run(tool: str, argv: list[str], metrics: httpx2.Client, stdout: Path,
        env: dict[str, str] | None = None, timeout: float = 900,
        rss_limit_mb: float | None = None) -> Run:
    """Run argv to completion; rusage of that child only (os.wait4), counters around it.

    A child over ``timeout`` seconds or over ``rss_limit_mb`` of RSS is killed (exit code -9
    and ``killed`` in the run) so a peer cannot exhaust the machine the labs share.
    """
    before = request_counters(metrics)
    t0 = time.monotonic()
    with stdout.open("wb") as out, open(stdout.with_suffix(".err"), "wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        deadline = t0 + timeout
        killed = ""
        polls = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            polls += 1
            if time.monotonic() > deadline:
                killed = f"timeout {timeout:g}s"
            elif rss_limit_mb and polls % 40 == 0 and _rss_mb(proc.pid) > rss_limit_mb:
                killed = f"RSS over {rss_limit_mb:g} MB"
            if killed:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, tell Popen
    after = request_counters(metrics)
    return Run(tool=tool, wall=wall, max_rss_kb=usage.ru_maxrss, exit_code=proc.returncode,
               requests=delta(after, before), stdout=stdout, killed=killed)


def idle_rates(metrics: httpx2.Client, seconds: float) -> tuple[Counter[Key], float]:
    """Requests the API server serves with no tool running (kwok, controllers, scrapes)."""
    before = request_counters(metrics)
    t0 = time.monotonic()
    time.sleep(seconds)
    after = request_counters(metrics)
    return delta(after, before), time.monotonic() - t0


def summarize(runs: list[Run], idle: Counter[Key], idle_seconds: float) -> dict[str, Any]:
    """Median wall, max peak RSS and request counts of repeated runs of one tool."""
    idle_total = sum(idle.values()) / idle_seconds
    idle_lists = sum(v for (verb, _, _), v in idle.items() if verb == "LIST") / idle_seconds
    walls = [r.wall for r in runs]
    return {
        "runs": len(runs),
        "exit_codes": sorted({r.exit_code for r in runs}),
        "killed": sorted({r.killed for r in runs if r.killed}),
        "wall_median": statistics.median(walls),
        "wall_min": min(walls),
        "wall_max": max(walls),
        "max_rss_mb": max(r.max_rss_kb for r in runs) / 1024,
        "api_list_requests": statistics.median(r.lists for r in runs),
        "api_list_requests_idle_estimate": round(idle_lists * statistics.median(walls), 2),
        # Totals include what kwok and the controllers did meanwhile (idle_rps x wall); only
        # the LIST counts are the tool's alone.
        "api_requests_total_incl_background": statistics.median(r.total for r in runs),
        "idle_requests_per_second": round(idle_total, 1),
        "api_list_requests_by_kind": {res: v for (verb, res, _), v in sorted(
            runs[-1].requests.items()) if verb == "LIST"},
    }
