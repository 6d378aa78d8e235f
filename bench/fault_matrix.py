"""Score `k3sops check` and Popeye on the fault matrix: recall per fault type, precision.

    # from recorded outputs
    .venv/bin/python bench/fault_matrix.py --expected expected.json \\
        --k3sops check.json --popeye popeye.json [--age 900]
    # or run both tools now on a lab with the faults applied (same run, one after the other)
    .venv/bin/python bench/fault_matrix.py --expected expected.json --run \\
        --lab-dir /tmp/lab-h3 --port-base 23000 [--platform FILE] [--save-outputs DIR]

Input ``--expected``: a JSON list, one entry per expected finding (what
``k3sops lab fault expected -o json`` prints)::

    {"fault": "crashloop",             # fault type: the unit of recall
     "namespace": "fault-crashloop",   # null for a cluster-scoped object
     "kind": "Pod",                    # Kubernetes kind (or "Cluster" for a cluster-wide fact)
     "name": "worker-0",               # exact name or a glob (fnmatch: "nightly-*")
     "severity": "critical",           # info | warning | critical
     # optional:
     "check": "pod-crashloop",         # k3sops' check id: also scored as an exact match
     "due_after": 150,                 # seconds after applying before it is due (see --age)
     "also": [{"kind": "Pod", "name": "worker-*"}],  # objects that count as the same one
     "codes": {"popeye": ["POP-204"]}} # only these codes of that tool count for this entry

Tools' findings are compared in one shape ({tool, kind, namespace, name, level: info | warning
| error, code, message}): k3sops' ``findings[]`` (severity critical -> error, code = check id)
and Popeye's issues (bench/peers.py).

Rules (documented in bench/README.md, "fault_matrix.py"):

- A finding **hits** an entry when kind (case-insensitive), namespace and name (glob) are the
  entry's (or one of its ``also``), its level is at least the entry's threshold (warning for
  warning/critical entries, info for info entries; ``--min-level warning`` makes it warning for
  all, as for a strict "warning/critical only" reading), and its code is not one of the tool's
  posture codes (Popeye codes raised on every object of a default cluster whatever its state,
  ``POSTURE``; ``--count-posture`` counts them) nor outside the entry's ``codes`` for that tool.
- **strict**: only the entry's objects. **lenient**: for an entry on a workload
  (Deployment/StatefulSet/DaemonSet/ReplicaSet/Job/CronJob), also the Pods, ReplicaSets and Jobs
  named ``<workload>-*`` in its namespace (Popeye reports most container faults on pods, k3sops
  on the workload). Both are computed; recall is reported for each.
- A tool **sees a fault type** when it hits at least one of its entries.
- **Recall** of a tool: fault types seen / fault types scored. **Either**: the fault types at
  least one tool sees, with each tool's recall over them and the types only one tool sees.
- **Precision** of a tool: of its distinct (kind, namespace, name, code) at warning or error
  (k3sops: warning/critical) in scope — objects in the fault namespaces, the Namespace objects
  of those, and the cluster-scoped objects the entries name — the share on an expected object
  (lenient matching, any severity, due or not: a finding made before its grace is still
  right). Reported with and without the posture codes.
- ``--age S``: the faults were applied S seconds ago; entries with ``due_after`` > S are not
  scored (listed as not due), and a fault type with no due entry is left out. With ``--run``
  and no ``--age``: the age of the newest of the entries' namespaces on the lab.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import peers  # noqa: E402
from peers import Issue  # noqa: E402

RANK = {"info": 1, "warning": 2, "error": 3}
K3SOPS_LEVEL = {"info": "info", "warning": "warning", "critical": "error"}
SEVERITIES = ("info", "warning", "critical")
WORKLOADS = frozenset({"deployment", "statefulset", "daemonset", "replicaset", "job",
                       "cronjob"})
CHILD_KINDS = ("Pod", "ReplicaSet", "Job")

POSTURE: dict[str, frozenset[str]] = {
    # Raised on (nearly) every object of a default cluster whatever its state: the healthy lab
    # gets POP-1204/300/1109/206 on every pod or single-pod Service. They say nothing about a
    # fault on that object. See /tmp/briefs/popeye-codes.md and bench/README.md.
    "popeye": frozenset({
        "POP-105", "POP-108",                          # port by number / unnamed
        "POP-206",                                     # pod without a PDB
        "POP-300", "POP-301", "POP-302", "POP-303", "POP-306",  # default SA, token, root
        "POP-402", "POP-406", "POP-708", "POP-712",    # metrics-server, version, one master
        "POP-1101", "POP-1102", "POP-1103", "POP-1104", "POP-1107", "POP-1108",  # svc ports
        "POP-1109",                                    # single endpoint
        "POP-1203", "POP-1204", "POP-1205",            # network policy coverage
        "POP-1403",                                    # ingress backend by port number
    }),
}


class MatrixError(Exception):
    """Bad input: the message names the file, the entry and what is expected."""


@dataclass(frozen=True)
class Target:
    """An object a finding must be on: kind, namespace (None: cluster-scoped), name glob."""

    kind: str
    namespace: str | None
    name: str

    def matches(self, f: Issue) -> bool:
        return (f["kind"].lower() == self.kind.lower()
                and (f["namespace"] or None) == self.namespace
                and fnmatch.fnmatchcase(f["name"], self.name))


@dataclass(frozen=True)
class Expected:
    """One expected finding of the matrix."""

    fault: str
    target: Target
    severity: str
    check: str | None = None
    due_after: float = 0.0
    also: tuple[Target, ...] = ()
    codes: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def targets(self, lenient: bool) -> tuple[Target, ...]:
        out = (self.target, *self.also)
        if lenient and self.target.kind.lower() in WORKLOADS:
            out += tuple(Target(k, self.target.namespace, f"{self.target.name}-*")
                         for k in CHILD_KINDS)
        return out

    def threshold(self, min_level: str) -> int:
        if min_level == "warning":
            return RANK["warning"]
        return RANK["info"] if self.severity == "info" else RANK["warning"]


def _target(raw: Mapping[str, Any], where: str, default_ns: str | None) -> Target:
    kind, name = raw.get("kind"), raw.get("name")
    if not isinstance(kind, str) or not kind or not isinstance(name, str) or not name:
        raise MatrixError(f"{where}: 'kind' and 'name' must be non-empty strings, got "
                          f"kind={kind!r} name={name!r}")
    ns = raw.get("namespace", default_ns)
    if ns is not None and not isinstance(ns, str):
        raise MatrixError(f"{where}: 'namespace' must be a string or null, got {ns!r}")
    return Target(kind, ns or None, name)


def load_expected(doc: Any, source: str = "expected") -> list[Expected]:
    """Validate and read the expected findings (a JSON list, format in the module doc).

    Raises:
        MatrixError: not a list, or an entry lacks fault/kind/name/severity or has a bad one.
    """
    if not isinstance(doc, list) or not doc:
        raise MatrixError(f"{source}: expected a non-empty JSON list of "
                          "{fault, namespace, kind, name, severity} objects")
    out: list[Expected] = []
    for i, raw in enumerate(doc):
        where = f"{source}[{i}]"
        if not isinstance(raw, Mapping):
            raise MatrixError(f"{where}: expected an object, got {type(raw).__name__}")
        fault, severity = raw.get("fault"), raw.get("severity")
        if not isinstance(fault, str) or not fault:
            raise MatrixError(f"{where}: 'fault' must be a non-empty string")
        if severity not in SEVERITIES:
            raise MatrixError(f"{where} ({fault}): 'severity' must be one of "
                              f"{', '.join(SEVERITIES)}, got {severity!r}")
        target = _target(raw, where, None)
        also = tuple(_target(a, f"{where}.also[{j}]", target.namespace)
                     for j, a in enumerate(raw.get("also") or []))
        codes_raw = raw.get("codes") or {}
        if not isinstance(codes_raw, Mapping) or not all(
                isinstance(v, list) for v in codes_raw.values()):
            raise MatrixError(f"{where} ({fault}): 'codes' must map a tool to a list of codes")
        due = raw.get("due_after") or 0
        if not isinstance(due, int | float) or due < 0:
            raise MatrixError(f"{where} ({fault}): 'due_after' must be seconds >= 0")
        out.append(Expected(fault=fault, target=target, severity=str(severity),
                            check=raw.get("check"), due_after=float(due), also=also,
                            codes={t: frozenset(map(str, c)) for t, c in codes_raw.items()}))
    return out


def k3sops_issues(report: Mapping[str, Any]) -> list[Issue]:
    """k3sops' ``-o json check`` findings in the peers' shape (code = check id).

    Raises:
        MatrixError: not a k3sops check report (no ``findings`` list).
    """
    findings = report.get("findings") if isinstance(report, Mapping) else None
    if not isinstance(findings, list):
        raise MatrixError("not a k3sops check report: expected {'findings': [...]} "
                          "(k3sops -o json check --weekly)")
    out: list[Issue] = []
    for f in findings:
        res = f.get("resource") or {}
        out.append(Issue(tool="k3sops", kind=str(res.get("kind") or ""),
                         namespace=res.get("namespace") or None,
                         name=str(res.get("name") or ""),
                         level=K3SOPS_LEVEL.get(str(f.get("severity")), "info"),
                         code=f.get("check"), message=str(f.get("message") or ""),
                         container=None))
    return out


def _counts(f: Issue, tool: str, entry: Expected, count_posture: bool) -> bool:
    code = f["code"] or ""
    if not count_posture and code in POSTURE.get(tool, frozenset()):
        return False
    allowed = entry.codes.get(tool)
    return allowed is None or code in allowed


def hits(entry: Expected, tool: str, findings: Iterable[Issue], *, lenient: bool = False,
         min_level: str = "auto", count_posture: bool = False) -> list[Issue]:
    """The findings of ``tool`` that hit ``entry`` (object, level, code rules above)."""
    targets = entry.targets(lenient)
    need = entry.threshold(min_level)
    return [f for f in findings
            if RANK[f["level"]] >= need and any(t.matches(f) for t in targets)
            and _counts(f, tool, entry, count_posture)]


def _scope(expected: Sequence[Expected]) -> tuple[set[str], list[Target]]:
    namespaces = {e.target.namespace for e in expected if e.target.namespace}
    cluster = [t for e in expected for t in (e.target, *e.also) if t.namespace is None]
    cluster += [Target("Namespace", None, ns) for ns in sorted(namespaces)]
    return namespaces, cluster


def precision(expected: Sequence[Expected], tool: str, findings: Iterable[Issue],
              count_posture: bool) -> dict[str, Any]:
    """Share of the tool's warning+ findings in scope that are on an expected object."""
    namespaces, cluster = _scope(expected)
    in_scope: dict[tuple[str, str | None, str, str | None], Issue] = {}
    for f in findings:
        if RANK[f["level"]] < RANK["warning"]:
            continue
        if not count_posture and (f["code"] or "") in POSTURE.get(tool, frozenset()):
            continue
        if (f["namespace"] in namespaces if f["namespace"]
                else any(t.matches(f) for t in cluster)):
            in_scope.setdefault((f["kind"], f["namespace"], f["name"], f["code"]), f)
    good = [k for k, f in in_scope.items()
            if any(t.matches(f) for e in expected for t in e.targets(lenient=True))]
    bad = sorted(set(in_scope) - set(good), key=lambda k: tuple(map(str, k)))
    n = len(in_scope)
    return {"in_scope": n, "expected": len(good),
            "precision": round(len(good) / n, 4) if n else None,
            "unexpected": [{"kind": k[0], "namespace": k[1], "name": k[2], "code": k[3]}
                           for k in bad]}


def score(expected: Sequence[Expected], tools: Mapping[str, Sequence[Issue]], *,
          age: float | None = None, min_level: str = "auto",
          count_posture: bool = False) -> dict[str, Any]:
    """Recall per fault type and tool (strict and lenient), either-tool view, precision."""
    due = [e for e in expected if age is None or e.due_after <= age]
    not_due = sorted({e.fault for e in expected} - {e.fault for e in due})
    faults: dict[str, dict[str, Any]] = {}
    for e in due:
        row = faults.setdefault(e.fault, {"entries": 0, "tools": {
            t: {"strict": False, "lenient": False, "exact_check": False, "hits": []}
            for t in tools}})
        row["entries"] += 1
        for tool, findings in tools.items():
            cell = row["tools"][tool]
            strict = hits(e, tool, findings, min_level=min_level, count_posture=count_posture)
            lenient = strict or hits(e, tool, findings, lenient=True, min_level=min_level,
                                     count_posture=count_posture)
            cell["strict"] |= bool(strict)
            cell["lenient"] |= bool(lenient)
            if e.check and any(f["code"] == e.check for f in strict):
                cell["exact_check"] = True
            for f in strict or lenient:
                h = {"kind": f["kind"], "namespace": f["namespace"], "name": f["name"],
                     "level": f["level"], "code": f["code"], "strict": bool(strict)}
                if h not in cell["hits"]:
                    cell["hits"].append(h)
    total = len(faults)
    summary: dict[str, Any] = {"fault_types": total, "not_due": not_due, "tools": {},
                               "either": {}}
    for mode in ("strict", "lenient"):
        seen = {t: sorted(f for f, r in faults.items() if r["tools"][t][mode]) for t in tools}
        either = sorted(set().union(*seen.values())) if seen else []
        for t in tools:
            s = summary["tools"].setdefault(t, {})
            s[f"seen_{mode}"] = len(seen[t])
            s[f"recall_{mode}"] = round(len(seen[t]) / total, 4) if total else None
        summary["either"][mode] = {
            "fault_types": len(either),
            "recall": {t: round(len(seen[t]) / len(either), 4) if either else None
                       for t in tools},
            "only": {t: sorted(set(seen[t]) - set().union(*(seen[o] for o in tools
                                                            if o != t)))
                     for t in tools},
            "missed_by_all": sorted(set(faults) - set(either)),
        }
    for t, findings in tools.items():
        s = summary["tools"][t]
        if t == "k3sops" and any(e.check for e in due):  # check ids are k3sops' codes
            exact = [f for f, r in faults.items() if r["tools"][t]["exact_check"]]
            s["seen_exact_check"] = len(exact)
        # Every entry, due or not: a finding on a fault's object before its grace is right.
        s["precision"] = precision(expected, t, findings, count_posture=True)
        if t in POSTURE:
            s["precision_without_posture"] = precision(expected, t, findings,
                                                       count_posture=False)
    return {"rules": {"min_level": min_level, "count_posture": count_posture, "age": age,
                      "posture_codes": {t: sorted(c) for t, c in POSTURE.items()}},
            "summary": summary, "faults": faults}


# -- command line -----------------------------------------------------------------------------

def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise MatrixError(f"{what} {path}: cannot read ({e.strerror})") from e
    except ValueError as e:
        raise MatrixError(f"{what} {path}: not JSON ({e})") from e


def _run_tools(args: argparse.Namespace, out_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """Run k3sops check --weekly and Popeye now, one after the other; keep their outputs."""
    platform_file = args.platform or args.lab_dir / "platform-faults.yaml"
    if not platform_file.is_file():
        platform_file = args.lab_dir / "platform.yaml"
    kubeconfig = args.lab_dir / "kubeconfig"
    k3sops = Path(sys.executable).with_name("k3sops")
    env = {k: v for k, v in os.environ.items() if not k.startswith("K3SOPS_")}
    argv = [str(k3sops), "-c", str(platform_file), "-o", "json", "check", "--weekly",
            "--no-history"]
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, env=env, timeout=600, check=False)
    k3s_wall = time.monotonic() - t0
    if r.returncode not in (0, 3, 4):
        raise MatrixError(f"k3sops check exited {r.returncode}: {r.stderr.decode()[-400:]}")
    (out_dir / "k3sops.json").write_bytes(r.stdout)
    exe = peers.find_popeye(args.peers_bin)
    if exe is None:
        raise MatrixError(f"no popeye in {args.peers_bin or peers.DEFAULT_PEERS_BIN}; "
                          "build it (bench/README.md, Building Popeye)")
    run = peers.run_popeye(kubeconfig, exe)
    (out_dir / "popeye.json").write_text(json.dumps(run.raw))
    meta = {"k3sops": {"argv": argv, "exit_code": r.returncode,
                       "wall_seconds": round(k3s_wall, 3)},
            "popeye": {"argv": run.argv, "wall_seconds": round(run.wall_seconds, 3),
                       "version": peers.popeye_version(exe), **run.summary}}
    return json.loads(r.stdout), run.raw, meta


def _fault_age(args: argparse.Namespace, expected: Sequence[Expected]) -> float | None:
    """Seconds since the newest fault namespace was created (the last fault applied)."""
    import _cluster  # httpx2 and the lab's PKI: only needed with --run

    wanted = {e.target.namespace for e in expected if e.target.namespace}
    lab = _cluster.Lab.from_run_dir(args.lab_dir, args.port_base)
    with lab.client(connections=1) as http:
        r = http.get("/api/v1/namespaces")
        r.raise_for_status()
        created = [dt.datetime.fromisoformat(ns["metadata"]["creationTimestamp"])
                   for ns in r.json()["items"] if ns["metadata"]["name"] in wanted]
    if not created:
        return None
    return (dt.datetime.now(dt.UTC) - max(created)).total_seconds()


def _print(result: dict[str, Any]) -> None:
    s = result["summary"]
    tools = list(s["tools"])
    print(f"{'fault type':<34}" + "".join(f"{t:>16}" for t in tools))
    for fault, row in sorted(result["faults"].items()):
        cells = []
        for t in tools:
            c = row["tools"][t]
            cells.append("strict" if c["strict"] else "lenient" if c["lenient"] else "-")
        print(f"{fault:<34}" + "".join(f"{c:>16}" for c in cells))
    print(f"\n{s['fault_types']} fault types scored" + (
        f"; not due yet: {', '.join(s['not_due'])}" if s["not_due"] else ""))
    for t, v in s["tools"].items():
        p, pp = v["precision"], v.get("precision_without_posture")
        line = (f"{t}: recall strict {v['recall_strict']} ({v['seen_strict']}), lenient "
                f"{v['recall_lenient']} ({v['seen_lenient']}); precision {p['precision']} "
                f"({p['expected']}/{p['in_scope']})")
        if pp:
            line += f", without posture codes {pp['precision']} ({pp['expected']}/" \
                    f"{pp['in_scope']})"
        if "seen_exact_check" in v:
            line += f"; right check id on {v['seen_exact_check']}"
        print(line)
    for mode, e in s["either"].items():
        print(f"either ({mode}): {e['fault_types']} fault types; recall "
              + ", ".join(f"{t} {r}" for t, r in e["recall"].items())
              + "; only " + "; ".join(f"{t}: {', '.join(v) or '-'}"
                                      for t, v in e["only"].items()))


def main(argv: Sequence[str] | None = None) -> int:
    """Score; exit 0, or 2 with a message naming the bad input."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--expected", type=Path, required=True,
                   help="JSON list of expected findings (k3sops lab fault expected -o json)")
    p.add_argument("--k3sops", type=Path, help="k3sops -o json check --weekly output")
    p.add_argument("--popeye", type=Path, help="popeye -A -o json output")
    p.add_argument("--run", action="store_true", help="run both tools now on --lab-dir")
    p.add_argument("--lab-dir", type=Path, default=Path(os.environ.get(
        "K3SOPS_LAB_DIR", Path.home() / ".local/state/k3sops/lab")))
    p.add_argument("--port-base", type=int, default=int(os.environ.get(
        "K3SOPS_LAB_PORT_BASE", "17000")), help="the lab's port base, for --run (its API "
                                                "server is on base+443)")
    p.add_argument("--platform", type=Path, help="platform file for --run (default "
                   "<lab>/platform-faults.yaml, else <lab>/platform.yaml)")
    p.add_argument("--peers-bin", type=Path, default=None)
    p.add_argument("--save-outputs", type=Path, default=None,
                   help="with --run: keep k3sops.json and popeye.json in this directory")
    p.add_argument("--age", type=float, default=None,
                   help="seconds since the faults were applied: entries not yet due are "
                        "not scored (with --run: from the newest fault namespace)")
    p.add_argument("--min-level", choices=("auto", "warning"), default="auto")
    p.add_argument("--count-posture", action="store_true",
                   help="let Popeye's posture codes count as detections")
    p.add_argument("--out", type=Path, default=None, help="result JSON (default with --run: "
                   "bench/results/fault_matrix-<date>.json; else none)")
    a = p.parse_args(argv)
    try:
        expected = load_expected(_load_json(a.expected, "--expected"), str(a.expected))
        meta: dict[str, Any] = {}
        if a.run:
            with tempfile.TemporaryDirectory(prefix="k3sops-matrix-") as tmp:
                raw_dir = a.save_outputs or Path(tmp)
                raw_dir.mkdir(parents=True, exist_ok=True)
                k3s_doc, pop_doc, meta = _run_tools(a, raw_dir)
            if a.save_outputs:
                meta["outputs"] = str(a.save_outputs)
            if a.age is None:
                a.age = _fault_age(a, expected)
                meta["age_from_namespaces"] = a.age
        else:
            if not (a.k3sops or a.popeye):
                p.error("give --k3sops and/or --popeye files, or --run")
            k3s_doc = _load_json(a.k3sops, "--k3sops") if a.k3sops else None
            pop_doc = _load_json(a.popeye, "--popeye") if a.popeye else None
        tools: dict[str, list[Issue]] = {}
        if k3s_doc is not None:
            tools["k3sops"] = k3sops_issues(k3s_doc)
        if pop_doc is not None:
            tools["popeye"] = peers.parse_popeye(pop_doc)
        result = score(expected, tools, age=a.age, min_level=a.min_level,
                       count_posture=a.count_posture)
    except (MatrixError, peers.PeerError) as e:
        print(f"fault_matrix: {e}", file=sys.stderr)
        return 2
    result = {"benchmark": "fault_matrix",
              "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "expected_file": str(a.expected), "runs": meta, **result}
    _print(result)
    out = a.out or (BENCH / "results" / f"fault_matrix-{dt.date.today().isoformat()}.json"
                    if a.run else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
