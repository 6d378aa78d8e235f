"""The fault matrix on the lab: every fault type becomes real (its state is read back with plain
kubectl), none leaks findings outside its own namespace and objects, `check` finds what each
fault expects, `diagnose` names each root cause, and reset leaves the lab as it was.

All faults are applied at once and waited for in one loop. The check and diagnose tests need
the rules of issue 12: they are skipped until every check id the matrix expects is registered.
Findings with a grace period (``due_after``) are judged once the faults have been visible that
long, up to K3SOPS_FAULT_SETTLE seconds (default 330: the five-minute graces); longer ones
(15-minute job-stuck, one-hour unused objects) are reported as not due, never as missing.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import Lab
from k3sops.domain.checks import REGISTRY
from k3sops.lab.faults import Fault, load_faults
from k3sops.lab.faults.model import CLUSTER_KINDS, Condition

pytestmark = pytest.mark.lab
FAULTS = load_faults()
EXPECTED = [e for f in FAULTS.values() for e in f.findings]
SETTLE = float(os.environ.get("K3SOPS_FAULT_SETTLE", "330"))
SERIOUS = ("warning", "critical")


def _rules_ready() -> bool:
    return all(e.check in REGISTRY for e in EXPECTED)


rules_ready = pytest.mark.skipif(
    not _rules_ready(), reason="rules of issue 12 not registered yet: " + ", ".join(
        sorted({e.check for e in EXPECTED if e.check not in REGISTRY})))


@dataclass
class Matrix:
    """The applied matrix, as the tests see it."""

    lab: Lab
    apply: dict[str, Any]
    visible_at: float
    """time.monotonic() when apply returned: every fault was visible then."""
    platform_file: str
    baseline: list[dict[str, Any]]
    """warning/critical findings of the lab right before the faults were applied."""
    state_dir: Path
    cache: dict[str, Any] = field(default_factory=dict)

    def elapsed(self) -> float:
        return time.monotonic() - self.visible_at

    def settle(self, wanted: float) -> float:
        """Wait until the faults have been visible ``wanted`` seconds (at most SETTLE)."""
        wait = min(wanted, SETTLE) - self.elapsed()
        if wait > 0:
            time.sleep(wait)
        return self.elapsed()

    def check(self) -> dict[str, Any]:
        r = self.lab.k3sops("-c", self.platform_file, "-o", "json", "check", "--weekly",
                            "--state-dir", str(self.state_dir), timeout=300)
        assert r.returncode in (0, 3), r.stderr[-3000:]
        return json.loads(r.stdout)  # type: ignore[no-any-return]


def _key(f: dict[str, Any]) -> tuple[str, str, str | None, str]:
    res = f["resource"]
    return (f["check"], res["kind"], res.get("namespace"), res["name"])


def _matches(e: Any, f: dict[str, Any]) -> bool:
    res = f["resource"]
    return (f["check"] == e.check and res["kind"] == e.kind
            and res.get("namespace") == e.namespace
            and fnmatch.fnmatchcase(str(res["name"]), e.name))


def _ours(f: dict[str, Any]) -> bool:
    """A finding on an object of the matrix (its namespaces, its cluster objects)."""
    res = f["resource"]
    if str(res.get("namespace") or "").startswith("fault-"):
        return True
    own = {(k, n) for fault in FAULTS.values() for k, n in fault.cluster_objects()}
    own |= {("Namespace", fault.namespace) for fault in FAULTS.values()}
    return ((res["kind"], res["name"]) in own
            or any(_matches(e, f) for e in EXPECTED if e.namespace is None))


@pytest.fixture(scope="module")
def matrix(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    state = tmp_path_factory.mktemp("fault-matrix-state")
    before = lab.k3sops("-o", "json", "check", "--weekly", "--state-dir", str(state),
                        timeout=300)
    assert before.returncode in (0, 3, 4), before.stderr[-3000:]
    baseline = [f for f in json.loads(before.stdout)["findings"] if f["severity"] in SERIOUS]
    r = lab.k3sops("lab", "fault", "apply", "all", "--timeout", "420", "-o", "json",
                   timeout=600)
    try:
        assert r.returncode == 0, r.stderr[-4000:]
        applied = json.loads(r.stdout)
        yield Matrix(lab=lab, apply=applied, visible_at=time.monotonic(),
                     platform_file=applied["platform_file"], baseline=baseline,
                     state_dir=state)
    finally:
        # Also when a test failed half-way: the lab is shared with the session's other tests.
        lab.k3sops("lab", "fault", "reset", timeout=420)


def _kubectl_value(lab: Lab, c: Condition) -> str | None:
    """What plain kubectl prints for a condition (None: the object does not exist)."""
    args = ["get", c.kind, c.name, "-o", f"jsonpath={c.jsonpath}"]
    if c.namespace:
        args[3:3] = ["-n", c.namespace]
    r = lab.kubectl(*args, check=False)
    if r.returncode != 0:
        assert "NotFound" in r.stderr, r.stderr
        return None
    return r.stdout


def test_every_fault_becomes_visible(matrix: Matrix) -> None:
    """apply --wait returned for all faults; plain kubectl reads the same states back."""
    assert set(matrix.apply["applied"]) == set(FAULTS), matrix.apply["skipped"]
    assert set(matrix.apply["visible_after_seconds"]) == set(FAULTS)
    wrong = []
    for f in FAULTS.values():
        for c in f.visible:
            if "*" in c.name:
                continue  # generated names: kubectl needs the exact name
            got = _kubectl_value(matrix.lab, c)
            if c.exists is not None:
                ok = bool(got) == c.exists
            elif c.equals is not None:  # kubectl prints several values space-separated
                ok = got is not None and (got == c.equals or c.equals in got.split())
            else:
                ok = got is not None and re.search(str(c.matches), got) is not None
            if not ok:
                wrong.append(f"{f.id}: {c.describe()} -> kubectl printed {got!r}")
    assert not wrong, "\n".join(wrong)


def test_no_finding_leaks_outside_the_faults(matrix: Matrix) -> None:
    """Warning/critical findings outside the faults' objects are those the lab had before."""
    report = matrix.cache.setdefault("first", matrix.check())
    before = {_key(f) for f in matrix.baseline}
    leaked = [f for f in report["findings"] if f["severity"] in SERIOUS and not _ours(f)
              and _key(f) not in before]
    assert leaked == [], json.dumps(leaked, indent=1)[:4000]


def _due(e: Any, elapsed: float) -> bool:
    return e.due_after <= elapsed


@rules_ready
def test_check_finds_every_fault(matrix: Matrix) -> None:
    elapsed = matrix.settle(max(e.due_after for e in EXPECTED))
    report = matrix.check()
    matrix.cache["settled"] = report
    findings = report["findings"]
    missing, wrong_severity = [], []
    for f in FAULTS.values():
        for e in f.findings:
            hits = [x for x in findings if _matches(e, x)]
            if not hits:
                if _due(e, elapsed):
                    missing.append(f"{f.id}: {e.severity} {e.check} {e.kind}/{e.name}")
            elif any(x["severity"] != e.severity for x in hits):
                wrong_severity.append(f"{f.id}: {e.check} {e.kind}/{e.name} expected "
                                      f"{e.severity}, got {[x['severity'] for x in hits]}")
    unexpected = [f"{x['severity']} {x['check']} {x['resource']}" for x in findings
                  if x["severity"] in SERIOUS and _ours(x)
                  and not any(_matches(e, x) for e in EXPECTED)]
    not_due = sorted({f"{e.check} (due after {e.due_after}s)" for e in EXPECTED
                      if not _due(e, elapsed)})
    print(f"judged after {elapsed:.0f}s; not yet due: {', '.join(not_due) or 'none'}")
    assert not (missing or wrong_severity or unexpected), "\n".join(
        ["missing:", *missing, "wrong severity:", *wrong_severity, "unexpected:", *unexpected])


def _diagnose_target(f: Fault) -> list[str]:
    kind = f.diagnose.split("/", 1)[0]
    cluster = {k.lower() for k in CLUSTER_KINDS}
    return [f.diagnose] if kind in cluster else [f.diagnose, "-n", f.namespace]


@rules_ready
def test_diagnose_names_every_root(matrix: Matrix) -> None:
    elapsed = matrix.settle(max(f.root.due_after for f in FAULTS.values()))
    wrong = []
    for f in FAULTS.values():
        if f.root.due_after > elapsed:
            continue
        r = matrix.lab.k3sops("-c", matrix.platform_file, "-o", "json", "diagnose",
                              *_diagnose_target(f), timeout=180)
        if r.returncode not in (0, 4):
            wrong.append(f"{f.id}: diagnose {f.diagnose} exited {r.returncode}: "
                         f"{r.stderr.strip()[-300:]}")
            continue
        report = json.loads(r.stdout)
        # A fault's root cause is among the report's root causes; a hygiene or info finding
        # (nothing broken) is no cause of anything: the diagnosis holds it among its findings.
        severity = next(e.severity for e in f.findings if (e.check, e.kind, e.name) == (
            f.root.check, f.root.kind, f.root.name))
        hygiene = REGISTRY[f.root.check].category != "fault" or severity == "info"
        candidates = (report["findings"] if hygiene or "root_causes" not in report else
                      [{"check": rc.get("check"), "resource": rc["resource"]}
                       for rc in report["root_causes"]])
        if not any(_matches(f.root, c) for c in candidates):
            named = [f"{c.get('check')} {c['resource']['kind']}/{c['resource']['name']}"
                     for c in candidates]
            wrong.append(f"{f.id}: diagnose {f.diagnose} named {named or 'no root'}, "
                         f"expected {f.root.check} {f.root.kind}/{f.root.name}")
    assert not wrong, "\n".join(wrong)


def test_reset_removes_every_fault(matrix: Matrix) -> None:
    """Runs last in this module: reset, then nothing of the matrix is left in the lab."""
    r = matrix.lab.k3sops("lab", "fault", "reset", timeout=420)
    assert r.returncode == 0, r.stderr[-3000:]
    left = matrix.lab.kubectl("get", "namespaces", "-l", "k3sops.io/fault", "-o", "name").stdout
    assert left.strip() == ""
    kinds = sorted({k.lower() for f in FAULTS.values() for k, _ in f.cluster_objects()}
                   - {"cluster"})
    left = matrix.lab.kubectl("get", ",".join(kinds), "-l", "k3sops.io/fault", "-o",
                              "name").stdout
    assert left.strip() == ""
    pods = json.loads(matrix.lab.kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
    assert [p["metadata"]["name"] for p in pods
            if p["metadata"]["namespace"].startswith("fault-")] == []
    nodes = matrix.lab.kubectl("get", "nodes", "-o", "name").stdout.split()
    assert not [n for n in nodes if "fault" in n]
    # And the lab's own findings are what they were before the matrix.
    after = matrix.check()
    serious = {_key(f) for f in after["findings"] if f["severity"] in SERIOUS}
    assert serious <= {_key(f) for f in matrix.baseline}, serious
