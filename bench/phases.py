"""Where `k3sops check`'s time and memory go: its phases timed one by one, in one process.

    .venv/bin/python bench/phases.py /tmp/k3sops-bench-lab/platform.yaml [--repeat 3]

Imports, then the same calls `services.check.check` makes — the LISTs (KubeAdapter.
list_raw_many over CORE_PATHS + CUSTOM_PATHS), the Prometheus batch, the Alertmanager read,
the checks — then the JSON rendering, each timed, with the process' RSS after each phase.
For finding the part to make faster; check_scale.py measures the command as a user runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("platform", type=Path)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    t0 = time.monotonic()
    from k3sops.domain import checks as registry
    from k3sops.services import check as svc
    from k3sops.services import context
    from k3sops.services.check import CORE_PATHS, CUSTOM_PATHS

    phases: dict[str, list[float]] = {"import": [time.monotonic() - t0]}
    mem: dict[str, float] = {"import": rss_mb()}
    settings = context.resolve(None, None, a.platform, os.environ, Path.cwd())
    specs = registry.selected("daily")
    for _ in range(a.repeat):
        k = context.kube(settings, os.environ, Path.home())
        sources: list[svc.Source] = []
        t = time.monotonic()
        objects = k.list_raw_many({**CORE_PATHS, **CUSTOM_PATHS})
        phases.setdefault("lists", []).append(time.monotonic() - t)
        mem["lists"] = rss_mb()
        del objects
        t = time.monotonic()
        snap, sources = svc.collect(k, settings, specs, datetime.now(UTC))
        phases.setdefault("collect (lists+prometheus+alertmanager)", []).append(
            time.monotonic() - t)
        mem["collect"] = rss_mb()
        ctx = registry.CheckContext(snapshot=snap, platform=settings.platform, period="daily",
                                    environment=None, last_check=None, history={})
        t = time.monotonic()
        findings, _ = svc.run_checks(ctx, specs, sources)
        phases.setdefault("checks", []).append(time.monotonic() - t)
        mem["checks"] = rss_mb()
        t = time.monotonic()
        json.dumps([f.model_dump(mode="json") for f in findings])
        phases.setdefault("render findings", []).append(time.monotonic() - t)
        k.close()
        del snap, ctx
    out = {name: round(statistics.median(v), 3) for name, v in phases.items()}
    print(json.dumps({"seconds_median": out, "rss_mb_after": {k: round(v) for k, v in
                                                               mem.items()},
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                           / 1024)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
