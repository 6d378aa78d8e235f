"""bench/fault_matrix.py: scoring k3sops and Popeye on the fault matrix.

Small inputs are cut from one recorded run (tests/data/popeye/): every fault type of
`k3sops lab fault apply all` on a lab, then, one right after the other, `k3sops -o json check
--weekly --no-history` (faults-k3sops-check.json: its findings without evidence) and Popeye
v0.22.1 `-A -o json` (faults-lab.json, as printed), with `k3sops lab fault expected -o json`
(faults-expected.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import fault_matrix as fm  # noqa: E402
import peers  # noqa: E402

pytestmark = pytest.mark.unit
DATA = ROOT / "tests" / "data" / "popeye"


def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return {"expected": _load("faults-expected.json"),
            "k3sops": fm.k3sops_issues(_load("faults-k3sops-check.json")),
            "popeye": peers.parse_popeye(_load("faults-lab.json"))}


def _cut(recorded: dict[str, Any], faults: set[str]) -> tuple[list[fm.Expected],
                                                                dict[str, list[peers.Issue]]]:
    """The expected entries of these fault types and both tools' findings in their scope."""
    entries = [e for e in recorded["expected"] if e["fault"] in faults]
    namespaces = {e["namespace"] for e in entries if e["namespace"]}
    names = {(e["kind"], e["name"]) for e in entries if not e["namespace"]}
    tools = {t: [f for f in recorded[t]
                 if f["namespace"] in namespaces or (f["kind"], f["name"]) in names]
             for t in ("k3sops", "popeye")}
    return fm.load_expected(entries), tools


def test_recorded_k3sops_findings_in_the_common_shape(recorded):
    k3s = recorded["k3sops"]
    crash = [f for f in k3s if f["namespace"] == "fault-crashloop"]
    assert {(f["kind"], f["name"], f["code"], f["level"]) for f in crash} >= {
        ("Pod", "worker-0", "pod-crashloop", "error")}
    assert all(f["tool"] == "k3sops" and f["level"] in fm.RANK for f in k3s)
    nodes = [f for f in k3s if f["kind"] == "Node"]
    assert nodes and all(f["namespace"] is None for f in nodes)


def test_recall_per_fault_type_on_a_cut_of_the_recorded_run(recorded):
    faults = {"crashloop", "ingress-tls-secret-missing", "image-latest", "container-no-probes",
              "configmap-missing"}
    expected, tools = _cut(recorded, faults)
    r = fm.score(expected, tools)
    row = {f: {t: (c["strict"], c["lenient"]) for t, c in v["tools"].items()}
           for f, v in r["faults"].items()}
    # Both see the crash loop on the pod the matrix names (k3sops pod-crashloop, Popeye POP-203).
    assert row["crashloop"] == {"k3sops": (True, True), "popeye": (True, True)}
    # Popeye does not look at Ingress TLS secrets; k3sops does.
    assert row["ingress-tls-secret-missing"] == {"k3sops": (True, True),
                                                 "popeye": (False, False)}
    # POP-101 on the Deployment's template; k3sops' image-latest is weekly info, and was not
    # reported in this run.
    assert row["image-latest"]["popeye"] == (True, True)
    # Popeye checks probes on pods only: its POP-102 is on catalog-<hash>, not the Deployment.
    assert row["container-no-probes"]["popeye"] == (False, True)
    # Neither: a missing ConfigMap volume (kwok starts the pod anyway; Popeye does not check).
    assert row["configmap-missing"]["popeye"] == (False, False)
    s = r["summary"]
    k3s_seen = sum(v["k3sops"][0] for v in row.values())
    pop_seen = sum(v["popeye"][0] for v in row.values())
    assert s["tools"]["k3sops"]["seen_strict"] == k3s_seen
    assert s["tools"]["popeye"]["seen_strict"] == pop_seen
    assert s["tools"]["popeye"]["recall_strict"] == round(pop_seen / 5, 4)
    either = s["either"]["strict"]
    assert "ingress-tls-secret-missing" in either["only"]["k3sops"]
    assert "image-latest" in either["only"]["popeye"]
    assert "crashloop" not in either["only"]["k3sops"] + either["only"]["popeye"]
    assert either["fault_types"] == len({f for f, v in row.items()
                                         if v["k3sops"][0] or v["popeye"][0]})


def test_exact_check_ids_only_for_k3sops(recorded):
    expected, tools = _cut(recorded, {"crashloop"})
    r = fm.score(expected, tools)
    assert r["faults"]["crashloop"]["tools"]["k3sops"]["exact_check"] is True
    assert r["summary"]["tools"]["k3sops"]["seen_exact_check"] == 1
    assert "seen_exact_check" not in r["summary"]["tools"]["popeye"]


def test_posture_codes_neither_detect_nor_count_against_precision(recorded):
    # configmap-missing's pod web-0 gets only posture warnings from Popeye (POP-1204, 300...).
    expected, tools = _cut(recorded, {"configmap-missing"})
    web0 = {f["code"] for f in tools["popeye"] if f["name"] == "web-0"}
    assert web0 and web0 <= fm.POSTURE["popeye"]
    assert not fm.score(expected, tools)["faults"]["configmap-missing"]["tools"]["popeye"][
        "strict"]
    counted = fm.score(expected, tools, count_posture=True)
    assert counted["faults"]["configmap-missing"]["tools"]["popeye"]["strict"]
    pr = fm.score(expected, tools)["summary"]["tools"]["popeye"]
    assert pr["precision_without_posture"]["in_scope"] == 0
    assert pr["precision"]["in_scope"] == pr["precision"]["expected"] > 0  # all on web-0


def _issue(tool: str, kind: str, ns: str | None, name: str, level: str,
           code: str) -> peers.Issue:
    return peers.Issue(tool=tool, kind=kind, namespace=ns, name=name, level=level, code=code,
                       message="", container=None)


def test_levels_globs_codes_and_due_time():
    expected = fm.load_expected([
        {"fault": "a", "namespace": "fault-a", "kind": "Job", "name": "nightly-*",
         "severity": "warning", "due_after": 0},
        {"fault": "b", "namespace": None, "kind": "Node", "name": "n1", "severity": "info"},
        {"fault": "c", "namespace": "fault-c", "kind": "Service", "name": "s",
         "severity": "critical", "codes": {"popeye": ["POP-1100"]}},
        {"fault": "d", "namespace": "fault-d", "kind": "Pod", "name": "p",
         "severity": "warning", "due_after": 600},
    ])
    pop = [
        _issue("popeye", "Job", "fault-a", "nightly-29941057", "warning", "POP-1503"),
        _issue("popeye", "Node", None, "n1", "info", "POP-400"),
        _issue("popeye", "Service", "fault-c", "s", "warning", "POP-1110"),  # not in codes
        _issue("popeye", "Pod", "fault-d", "p", "error", "POP-207"),
        _issue("popeye", "Pod", "fault-x", "other", "error", "POP-207"),  # out of scope
        _issue("popeye", "Pod", "fault-a", "stray", "warning", "POP-208"),  # unexpected
    ]
    r = fm.score(expected, {"popeye": pop})
    seen = {f: v["tools"]["popeye"]["strict"] for f, v in r["faults"].items()}
    assert seen == {"a": True, "b": True, "c": False, "d": True}
    strict = fm.score(expected, {"popeye": pop}, min_level="warning")
    assert strict["faults"]["b"]["tools"]["popeye"]["strict"] is False  # info is not enough
    early = fm.score(expected, {"popeye": pop}, age=300)
    assert "d" not in early["faults"] and early["summary"]["not_due"] == ["d"]
    assert early["summary"]["fault_types"] == 3
    p = r["summary"]["tools"]["popeye"]["precision"]
    # In scope at warning+: a's Job, c's Service, d's Pod, the stray pod (fault-x is no fault
    # namespace; n1's issue is info). The stray one is unexpected.
    assert (p["in_scope"], p["expected"], p["precision"]) == (4, 3, 0.75)
    assert p["unexpected"] == [{"kind": "Pod", "namespace": "fault-a", "name": "stray",
                                "code": "POP-208"}]


def test_lenient_takes_a_workloads_pods_and_also_lists_objects():
    expected = fm.load_expected([
        {"fault": "w", "namespace": "fault-w", "kind": "Deployment", "name": "api",
         "severity": "warning"},
        {"fault": "v", "namespace": "fault-v", "kind": "PodDisruptionBudget", "name": "pdb",
         "severity": "warning", "also": [{"kind": "Pod", "name": "cache-*"}]},
    ])
    pop = [_issue("popeye", "Pod", "fault-w", "api-5d8f-x1", "error", "POP-204"),
           _issue("popeye", "Pod", "fault-w", "apiary-1", "error", "POP-204"),
           _issue("popeye", "Pod", "fault-v", "cache-7db5-a", "warning", "POP-209")]
    r = fm.score(expected, {"popeye": pop})
    assert r["faults"]["w"]["tools"]["popeye"]["strict"] is False
    assert r["faults"]["w"]["tools"]["popeye"]["lenient"] is True
    assert r["faults"]["v"]["tools"]["popeye"]["strict"] is True  # "also" is strict
    hits = r["faults"]["w"]["tools"]["popeye"]["hits"]
    assert [h["name"] for h in hits] == ["api-5d8f-x1"]  # "apiary-1" is not api-*
    assert r["summary"]["tools"]["popeye"]["precision"]["expected"] == 2  # api-* and cache-*


@pytest.mark.parametrize(("doc", "words"), [
    ({}, "non-empty JSON list"),
    ([], "non-empty JSON list"),
    (["x"], r"\[0\]: expected an object"),
    ([{"namespace": "n", "kind": "Pod", "name": "p", "severity": "warning"}], "'fault'"),
    ([{"fault": "f", "namespace": "n", "kind": "Pod", "name": "p", "severity": "high"}],
     r"\[0\] \(f\): 'severity' must be one of info, warning, critical, got 'high'"),
    ([{"fault": "f", "namespace": 3, "kind": "Pod", "name": "p", "severity": "info"}],
     "'namespace' must be a string or null"),
    ([{"fault": "f", "namespace": "n", "kind": "", "name": "p", "severity": "info"}],
     "'kind' and 'name'"),
    ([{"fault": "f", "namespace": "n", "kind": "Pod", "name": "p", "severity": "info",
       "due_after": -1}], "'due_after'"),
    ([{"fault": "f", "namespace": "n", "kind": "Pod", "name": "p", "severity": "info",
       "codes": {"popeye": "POP-1"}}], "'codes'"),
])
def test_bad_expected_entries_name_the_entry_and_the_rule(doc, words):
    with pytest.raises(fm.MatrixError, match=words):
        fm.load_expected(doc, "m.json")


def test_not_a_k3sops_report():
    with pytest.raises(fm.MatrixError, match="not a k3sops check report"):
        fm.k3sops_issues({"popeye": {}})


def test_command_line_scores_recorded_files(tmp_path, capsys):
    out = tmp_path / "score.json"
    code = fm.main(["--expected", str(DATA / "faults-expected.json"),
                    "--k3sops", str(DATA / "faults-k3sops-check.json"),
                    "--popeye", str(DATA / "faults-lab.json"), "--age", "240",
                    "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result["summary"]["tools"]) == {"k3sops", "popeye"}
    assert result["summary"]["fault_types"] == len(result["faults"]) > 40
    printed = capsys.readouterr().out
    assert "k3sops: recall strict" in printed and "popeye: recall strict" in printed


def test_command_line_bad_input_exits_2_with_the_file(tmp_path, capsys):
    bad = tmp_path / "expected.json"
    bad.write_text('[{"fault": "f"}]')
    assert fm.main(["--expected", str(bad), "--popeye", str(DATA / "faults-lab.json")]) == 2
    assert f"{bad}[0] (f): 'severity'" in capsys.readouterr().err
    assert fm.main(["--expected", str(tmp_path / "none.json"), "--popeye", "x"]) == 2
    assert "cannot read" in capsys.readouterr().err
