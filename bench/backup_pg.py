"""Backing up a >= 1 GB PostgreSQL database: `k3sops backup app` vs the bare pipeline.

The floor is what an operator would type: ``pg_dump -Fc DSN | restic backup --stdin``. k3sops
does the same dump (through a pipe, sha256 on the way) plus what makes the backup provable:
per-table row counts and a content fingerprint taken in the snapshot ``pg_dump`` dumps, a
Running manifest first and the final manifest last, the leftover scan and the metrics file.
Both run in the same process tree shape, alternately, against the same database and the same
kind of repository (a fresh one per run, so deduplication never favours either).

Everything is local: a throwaway PostgreSQL cluster on a free 127.0.0.1 port (initdb, as the
`postgres` user when run as root), filled with one table of hex text (``--data md5``, the
default; scale 70 is about 1.1 GB and dumps to about half of that) or ``pgbench -i -s SCALE``
(``--data pgbench``: 1.1 GB that dumps to 20 MB), removed at the end. Memory is the peak RSS
of the whole process tree of each run (k3sops: python + restic + pg_dump + psql; floor:
bash + pg_dump + restic), sampled every 20 ms.

    .venv/bin/python bench/backup_pg.py [--scale 70] [--repeat 2] [--data md5|pgbench]

``--via exec --lab-dir DIR --lab-port-base N``: the database lives in a running lab's
PostgreSQL and is backed up as the pod target production/postgres-0 (kwok runs the exec'd
command against it); the floor is then ``kubectl exec POD -- pg_dump -Fc | restic backup
--stdin``. ``--baseline SRC`` runs k3sops from another source tree (its ``src``) in the same
rounds, reported as ``base`` with the ratio ``throughput_vs_base`` (base time / this time).

Writes ``bench/results/backup_pg-<data>[-exec]-<date>.json`` and prints a table. Nothing asserts
a time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from k3sops.adapters.postgres import PgBinaries, ScratchCluster

ROOT = Path(__file__).resolve().parent
PASSWORD = "bench-repo-password"  # noqa: S105  # a throwaway repository of the bench


def _tree_rss_mb(root_pid: int) -> float:
    """RSS of ``root_pid`` and all its descendants, MiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        ppid = vm = 0
        for line in status.splitlines():
            if line.startswith("PPid:"):
                ppid = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                vm = int(line.split()[1])
        children.setdefault(ppid, []).append(int(p))
        rss[int(p)] = vm
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total / 1024


def measure(argv: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run argv; wall time and peak process-tree RSS."""
    t0 = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _tree_rss_mb(proc.pid))
            time.sleep(0.02)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}); see {log}")
    return {"wall_s": round(wall, 2), "peak_tree_rss_mb": round(peak, 1)}


def restic_init(repo: Path) -> None:
    subprocess.run(["restic", "init", "-q"], check=True, env=dict(
        os.environ, RESTIC_REPOSITORY=str(repo), RESTIC_PASSWORD=PASSWORD))


@dataclass(frozen=True)
class Where:
    """The database: a DSN (local pg_dump), or the lab pod through exec."""

    dsn: str
    target: dict[str, Any]
    platform: dict[str, Any]
    floor: str
    """The bare pipeline's producer (its stdout is the dump)."""


def k3sops_run(name: str, i: int, where: Where, work: Path,
               src: Path | None = None) -> dict[str, Any]:
    """``k3sops backup app`` (from ``src`` when given) into a fresh repository."""
    repo_k = work / f"repo-{name}-{i}"
    restic_init(repo_k)
    platform = work / f"platform-{name}-{i}.yaml"
    backup = {**where.platform.get("backup", {}), "repository": str(repo_k),
              "password_env": "BENCH_RESTIC_PW", "metrics_file": str(work / "metrics.prom"),
              "targets": [{"name": "bench-db", **where.target}]}
    backup.pop("password_file", None)
    platform.write_text(yaml.safe_dump({**where.platform, "backup": backup}))
    env = dict(os.environ, BENCH_RESTIC_PW=PASSWORD, K3SOPS_CONFIG=str(platform),
               K3SOPS_STATE_DIR=str(work / "state"))
    env.pop("KUBECONFIG", None)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    k = measure([sys.executable, "-m", "k3sops", "-o", "json", "backup", "app", "bench-db"],
                env, work / f"{name}-{i}.log")
    text = (work / f"{name}-{i}.log").read_text()
    manifest = json.JSONDecoder().raw_decode(text[text.index("{"):])[0]["manifest"]
    k["dump_bytes"] = manifest["size"]
    shutil.rmtree(repo_k, ignore_errors=True)
    return k


def one_run(i: int, where: Where, work: Path, baseline: Path | None) -> dict[str, Any]:
    """k3sops (and the baseline tree), then the bare pipeline, each into a fresh repository.

    The order rotates from run to run, so that neither is always first on a warm cache.
    """
    def bare() -> dict[str, Any]:
        repo_b = work / f"repo-bare-{i}"
        restic_init(repo_b)
        benv = dict(os.environ, RESTIC_REPOSITORY=str(repo_b), RESTIC_PASSWORD=PASSWORD)
        pipe = f"set -o pipefail; {where.floor} | restic backup -q --stdin --stdin-filename db.dump"
        b = measure(["bash", "-c", pipe], benv, work / f"bare-{i}.log")
        shutil.rmtree(repo_b, ignore_errors=True)
        return b

    todo: list[tuple[str, Any]] = [("k3sops", lambda: k3sops_run("k3sops", i, where, work)),
                                   ("bare", bare)]
    if baseline is not None:
        todo.append(("base", lambda: k3sops_run("base", i, where, work, baseline)))
    shift = i % len(todo)
    got = {name: fn() for name, fn in todo[shift:] + todo[:shift]}
    k, b = got["k3sops"], got["bare"]
    run = {**got, "order": [n for n, _ in todo[shift:] + todo[:shift]],
           "wall_ratio": round(k["wall_s"] / b["wall_s"], 3),
           "throughput_ratio": round(b["wall_s"] / k["wall_s"], 3),
           "memory_ratio": round(k["peak_tree_rss_mb"] / b["peak_tree_rss_mb"], 3)}
    if "base" in got:
        run["throughput_vs_base"] = round(got["base"]["wall_s"] / k["wall_s"], 3)
    print(json.dumps(run), file=sys.stderr)
    return run


@contextlib.contextmanager
def database(args: argparse.Namespace, bins: PgBinaries) -> Iterator[Where]:
    """A throwaway cluster (DSN), or a throwaway database in the lab (exec); removed after."""
    if args.via == "dsn":
        with ScratchCluster(bins, Path(tempfile.gettempdir())).running() as server:
            yield Where(server.dsn, {"kind": "postgres", "dsn": server.dsn},
                        {"name": "bench", "environments": {"production": {}}},
                        f"{bins.path('pg_dump')} -Fc -d '{server.dsn}'")
        return
    from k3sops.lab.layout import LabLayout  # only the exec mode needs a lab

    layout = LabLayout.from_env({"K3SOPS_LAB_DIR": str(args.lab_dir),
                                 "K3SOPS_LAB_PORT_BASE": str(args.lab_port_base)}, Path.home())
    platform = yaml.safe_load(layout.platform_file.with_name("platform-backup.yaml").read_text())
    db = f"bench_pg_{os.getpid()}"
    admin = f"host={layout.host} port={layout.port('postgres')} user=postgres dbname=postgres"
    subprocess.run([bins.path("psql"), "-XAtq", "-d", admin, "-c", f"CREATE DATABASE {db}"],
                   check=True, capture_output=True)
    kubectl = platform["backup"]["binaries"]["kubectl"]
    try:
        yield Where(admin.replace("dbname=postgres", f"dbname={db}"),
                    {"kind": "postgres", "environment": "production", "namespace": "production",
                     "pod": "postgres-0", "database": db}, platform,
                    f"{kubectl} --kubeconfig {layout.kubeconfig} exec -n production postgres-0 "
                    f"-- pg_dump -Fc -d {db}")
    finally:
        subprocess.run([bins.path("psql"), "-XAtq", "-d", admin, "-c",
                        f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], check=False,
                       capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=70, help="pgbench scale (70 ~ 1.05 GB)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--data", choices=("md5", "pgbench"), default="md5",
                    help="md5: one table of hex text (dumps to about half its size, so the "
                         "stream really carries hundreds of MB); pgbench: pgbench -i tables "
                         "(their filler compresses to almost nothing)")
    ap.add_argument("--via", choices=("dsn", "exec"), default="dsn",
                    help="dsn: a throwaway local cluster; exec: a database in a running lab, "
                         "backed up through the pod production/postgres-0")
    ap.add_argument("--lab-dir", type=Path, help="with --via exec: the lab's directory")
    ap.add_argument("--lab-port-base", type=int, default=17000,
                    help="with --via exec: the lab's port base")
    ap.add_argument("--baseline", type=Path,
                    help="another tree's src directory, run as 'base' in the same rounds")
    args = ap.parse_args()
    if args.via == "exec" and args.lab_dir is None:
        ap.error("--via exec needs --lab-dir")
    # SIGTERM runs the cleanup (the throwaway cluster is stopped and removed).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    bins = PgBinaries.find(None)
    work = Path(tempfile.mkdtemp(prefix="k3sops-bench-pg-", dir=args.work))
    out: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "scale": args.scale, "data": args.data, "via": args.via,
                           "baseline": str(args.baseline) if args.baseline else None,
                           "runs": []}
    try:
        with database(args, bins) as where:
            dsn = where.dsn
            print(f"filling {dsn} ({args.data}, scale {args.scale}) ...", file=sys.stderr)
            t0 = time.monotonic()
            if args.data == "pgbench":
                subprocess.run([bins.path("pgbench"), "-i", "-q", "-s", str(args.scale), "-d",
                                dsn], check=True, capture_output=True)
            else:
                rows = args.scale * 100_000  # ~15 MB per scale unit, like pgbench
                sql = ("CREATE TABLE events AS SELECT g AS id, "  # noqa: S608  # rows is an int
                       "md5(g::text) || md5((g * 7)::text) AS a, md5((g * 13)::text) AS b, "
                       "g % 1000 AS shard, now() - g * interval '1 second' AS at "
                       f"FROM generate_series(1, {rows}) g")
                subprocess.run([bins.path("psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", dsn,
                                "-c", sql], check=True, capture_output=True)
            size = subprocess.run([bins.path("psql"), "-XAtq", "-d", dsn, "-c",
                                   "SELECT pg_database_size(current_database())"],
                                  check=True, capture_output=True, text=True).stdout.strip()
            out["db_bytes"] = int(size)
            out["fill_s"] = round(time.monotonic() - t0, 1)
            print(f"database: {int(size) / 1e9:.2f} GB", file=sys.stderr)

            for i in range(args.repeat):
                out["runs"].append(one_run(i, where, work, args.baseline))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(key: str) -> float:
        vals = sorted(r[key] for r in out["runs"])
        return vals[len(vals) // 2]

    db = out["db_bytes"]
    out["summary"] = {
        "throughput_ratio_median": med("throughput_ratio"),
        "memory_ratio_median": med("memory_ratio"),
        "k3sops_MBps": [round(db / 1e6 / r["k3sops"]["wall_s"], 1) for r in out["runs"]],
        "bare_MBps": [round(db / 1e6 / r["bare"]["wall_s"], 1) for r in out["runs"]],
    }
    if args.baseline:
        out["summary"]["throughput_vs_base_median"] = med("throughput_vs_base")
        out["summary"]["base_MBps"] = [round(db / 1e6 / r["base"]["wall_s"], 1)
                                       for r in out["runs"]]
    via = "-exec" if args.via == "exec" else ""
    dest = ROOT / "results" / f"backup_pg-{args.data}{via}-{dt.date.today().isoformat()}.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'run':>4} {'k3sops s':>9} {'bare s':>7} {'base s':>7} {'k3sops MiB':>11} "
          f"{'bare MiB':>9} {'base MiB':>9} {'thr.ratio':>9} {'vs base':>8}")
    for i, r in enumerate(out["runs"]):
        base = r.get("base") or {}
        print(f"{i:>4} {r['k3sops']['wall_s']:>9} {r['bare']['wall_s']:>7} "
              f"{base.get('wall_s', '-'):>7} {r['k3sops']['peak_tree_rss_mb']:>11} "
              f"{r['bare']['peak_tree_rss_mb']:>9} {base.get('peak_tree_rss_mb', '-'):>9} "
              f"{r['throughput_ratio']:>9} {r.get('throughput_vs_base', '-'):>8}")
    print(f"database {db / 1e9:.2f} GB; summary {out['summary']}; written to {dest}")


if __name__ == "__main__":
    main()
