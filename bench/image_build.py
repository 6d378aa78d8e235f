"""Build time and size of the k3sops OCI image (scripts/build-image.sh), and a run of it.

Measures, in one run:

- ``cold``: a build with an empty cache directory of its own (debootstrap of the bookworm
  minbase root and every Python download included; skip with ``--no-cold``);
- ``warm``: ``--repeat`` builds with the caches warm (the base root and uv's downloads kept),
  which is what a rebuild after a code change costs;
- each build's phases, timed from the script's progress lines as they arrive (debootstrap,
  copy of the base root, wheel + export, install into the chroot, umoci assembly);
- sizes of the last image: compressed (the layer and config a node downloads, from the
  manifest), unpacked (``du -sb`` of the rootfs ``umoci unpack`` makes), against the floor of
  the debootstrapped base root alone (Debian + python3 + git + restic) and the virtualenv;
- ``k3sops --version`` and ``k3sops check --help`` run in the unpacked image with crun (or the
  way tests/lab/kit/image.py finds, with the exact error of each way that refused).

Prints a table and writes ``bench/results/image_build-<date>.json``. Needs root and the
tools scripts/install-deps.sh installs; the cold build needs the Debian and PyPI archives.

Usage::

    .venv/bin/python bench/image_build.py [--repeat 2] [--no-cold] [--cache DIR]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "lab"))
from kit import image as img  # noqa: E402

# The script's progress lines, in order: the phase each one starts.
PHASES = (("debootstrap", "debootstrap"), ("copying the base root", "copy"),
          ("building the k3sops wheel", "wheel"), ("installing", "install"),
          ("assembling", "assemble"), ("built ", "done"))


def _phase(line: str) -> str | None:
    text = line.removeprefix("build-image: ")
    return next((name for start, name in PHASES if text.startswith(start)), None)


def build(out: Path, cache: Path) -> dict[str, Any]:
    """One build; wall time and per-phase seconds from the progress lines' arrival."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(["bash", str(img.SCRIPT), "--out", str(out), "--cache", str(cache)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None and proc.stdout is not None
    marks: list[tuple[str, float]] = [("setup", 0.0)]
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line.rstrip())
        if name := _phase(line):
            marks.append((name, time.perf_counter() - t0))
    ref = proc.stdout.read().strip()
    code = proc.wait()
    wall = time.perf_counter() - t0
    phases = {name: round((marks[i + 1][1] if i + 1 < len(marks) else wall) - at, 2)
              for i, (name, at) in enumerate(marks) if name != "done"}
    return {"wall_s": round(wall, 2), "exit_code": code, "phases_s": phases, "ref": ref,
            "stderr_tail": lines[-5:] if code else []}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=2, help="warm builds (default 2)")
    p.add_argument("--no-cold", action="store_true", help="skip the cold build")
    p.add_argument("--cache", type=Path, default=img.CACHE,
                   help=f"the warm builds' cache (default {img.CACHE}; the cold build always "
                        "gets a new empty one)")
    p.add_argument("--out", type=Path, default=None,
                   help="result file (default bench/results/image_build-<date>.json)")
    return p.parse_args()


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=False).stdout.strip()


def main() -> int:
    """Build cold and warm, measure sizes, run the image; 1 when a build or run failed."""
    a = _args()
    if os.geteuid() != 0 or img.missing_tools():
        print(f"needs root and {', '.join(img.TOOLS)} (missing: {img.missing_tools()}): "
              "run scripts/install-deps.sh as root", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="k3sops-image-bench-"))
    load_before = os.getloadavg()
    runs: dict[str, Any] = {}
    try:
        if not a.no_cold:
            runs["cold"] = build(scratch / "cold-out", scratch / "cold-cache")
            shutil.rmtree(scratch / "cold-cache", ignore_errors=True)
            shutil.rmtree(scratch / "cold-out", ignore_errors=True)
        runs["warm"] = []
        if a.repeat > 0 and not any(a.cache.glob("base-*/.k3sops-ready")):
            build(scratch / "prime", a.cache)  # warm means warm: fill the cache first
        for i in range(a.repeat):
            runs["warm"].append(build(scratch / f"warm-{i}", a.cache))
        last = img.Built(scratch / f"warm-{a.repeat - 1}", img.version())
        bundle = img.unpack(last, scratch / "bundle")
        rootfs = bundle / "rootfs"
        bases = sorted(a.cache.glob("base-*/.k3sops-ready"), key=lambda p: p.stat().st_mtime)
        sizes = {"compressed_bytes": img.compressed_size(last),
                 "unpacked_bytes": img.tree_size(rootfs),
                 "venv_bytes": img.tree_size(rootfs / "opt" / "k3sops"),
                 "base_root_bytes": img.tree_size(bases[-1].parent) if bases else None,
                 "python_packages": len((last.out / "packages.txt").read_text().splitlines()),
                 "debian_packages": len(
                     (last.out / "debian-packages.txt").read_text().splitlines())}
        entry = img.inspect(last)["config"]["Entrypoint"]
        how, refused = img.runtime(bundle)
        checks = {}
        for name, argv in (("version", [*entry, "--version"]),
                           ("check-help", [*entry, "check", "--help"])):
            t0 = time.perf_counter()
            r = img.run_in(bundle, argv).proc
            checks[name] = {"exit_code": r.returncode, "wall_s": round(time.perf_counter() - t0,
                                                                        3),
                            "stdout_head": r.stdout.strip().splitlines()[:2],
                            "stderr_tail": r.stderr.strip().splitlines()[-3:]}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    warm = [r["wall_s"] for r in runs["warm"]]
    ratios: dict[str, float] = {
        "unpacked_over_compressed": round(sizes["unpacked_bytes"] / sizes["compressed_bytes"], 2),
        "venv_share_of_unpacked": round(sizes["venv_bytes"] / sizes["unpacked_bytes"], 2)}
    if sizes["base_root_bytes"]:
        ratios["unpacked_over_base_root"] = round(
            sizes["unpacked_bytes"] / sizes["base_root_bytes"], 2)
    if "cold" in runs and warm:
        ratios["cold_over_warm"] = round(runs["cold"]["wall_s"] / statistics.median(warm), 2)
    result = {
        "benchmark": "image_build",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "src_dirty": bool(_git("status", "--porcelain", "--", "src", "scripts", "uv.lock")),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "builds": runs,
        "warm_median_s": round(statistics.median(warm), 2) if warm else None,
        "sizes": sizes, "ratios": ratios,
        "run": {"runtime": how, "refused": list(refused), "checks": checks},
    }
    out = a.out or ROOT / "bench" / "results" / f"image_build-{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    _print(result, out)
    failed = any(r["exit_code"] for r in [*runs["warm"], *([runs["cold"]] if "cold" in runs
                                                            else [])])
    return 1 if failed or any(c["exit_code"] for c in checks.values()) else 0


def _print(result: dict[str, Any], out: Path) -> None:
    def row(name: str, r: dict[str, Any]) -> None:
        phases = " ".join(f"{k}={v}" for k, v in r["phases_s"].items())
        print(f"{name:<8} {r['wall_s']:>8.1f} s  exit {r['exit_code']}  {phases}")

    if "cold" in result["builds"]:
        row("cold", result["builds"]["cold"])
    for i, r in enumerate(result["builds"]["warm"]):
        row(f"warm-{i}", r)
    s = result["sizes"]
    mb = 1024 * 1024
    print(f"compressed {s['compressed_bytes'] / mb:.1f} MiB, unpacked "
          f"{s['unpacked_bytes'] / mb:.1f} MiB (venv {s['venv_bytes'] / mb:.1f} MiB), base root "
          f"{(s['base_root_bytes'] or 0) / mb:.1f} MiB; {s['python_packages']} Python and "
          f"{s['debian_packages']} Debian packages")
    print("ratios: " + ", ".join(f"{k}={v}" for k, v in result["ratios"].items()))
    run = result["run"]
    print(f"ran with: {run['runtime']}" + (f" (refused first: {run['refused']})"
                                          if run["refused"] else ""))
    for name, c in run["checks"].items():
        print(f"  {name}: exit {c['exit_code']}, {c['stdout_head'][:1]}")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
