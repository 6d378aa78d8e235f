"""Findings tables at 80 columns keep every object whole and wrap the message instead.

Rendered with rich exactly as `k3sops check` / `k3sops diagnose` print them, from the check
report captured on the lab (tests/data/check-report.json).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from k3sops.domain.diagnose import DiagnosisReport, RootCause
from k3sops.domain.findings import CheckReport, Finding, ResourceRef
from k3sops.output.tables import Row, findings_table, resource_ref
from k3sops.output.tables.check import check_table
from k3sops.output.tables.diagnose import diagnosis_table

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data" / "check-report.json"


@pytest.fixture
def report() -> CheckReport:
    return CheckReport.model_validate_json(DATA.read_text())


def _ref(f: Finding | RootCause) -> str:
    return resource_ref(f.resource.kind, f.resource.namespace, f.resource.name)


def _render(draw: object, model: object, width: int) -> list[str]:
    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    draw(model, console)  # type: ignore[operator]
    return console.export_text().splitlines()


def _assert_whole(lines: list[str], refs: list[str], messages: list[str], width: int) -> None:
    text = "\n".join(lines)
    assert "…" not in text  # nothing is cut
    for ref in refs:  # each object on one line, never folded or cut
        assert any(ref in line for line in lines), ref
    # Every word of every message is printed (wrapped, not truncated).
    words = set(" ".join(text.split()).split())
    for m in messages:
        for word in m.split():
            assert word in words or word in text, (word, m)
    assert all(len(line) <= width for line in lines)


def test_check_table_at_80_columns_keeps_objects_whole(report: CheckReport) -> None:
    lines = _render(check_table, report, 80)
    refs = [_ref(f) for f in report.findings]
    assert refs and max(map(len, refs)) >= 40  # the captured report has long names
    _assert_whole(lines, refs, [f.message for f in report.findings], 80)
    # The message gets the width: at least 50 characters a line (the 172-character message of
    # deployment-rollout-stuck took 15 lines when the table squeezed the message column).
    longest = max(report.findings, key=lambda f: len(f.message))
    start = next(i for i, line in enumerate(lines) if _ref(longest) in line)
    rest = lines[start + 1:]
    height = 1 + next(i for i, line in enumerate(rest) if not line.startswith("│          │"))
    assert height - 1 <= len(longest.message) // 50 + 1, lines[start:start + height]
    # The check id and (when it differs from it) the runbook are still shown.
    for f in report.findings:
        assert any(_ref(f) in line and f.check in line for line in lines), f.check


def test_check_table_wide_has_one_column_per_field(report: CheckReport) -> None:
    lines = _render(check_table, report, 200)
    header = next(line for line in lines if "message" in line)
    assert [h.strip() for h in header.strip("┃").split("┃")] == [
        "sev", "check", "resource", "message", "runbook"]
    _assert_whole(lines, [_ref(f) for f in report.findings], [f.message for f in report.findings],
                  200)
    for f in report.findings:
        assert any(_ref(f) in line and f.check in line and f.runbook in line for line in lines)


def test_diagnose_tables_at_80_columns(report: CheckReport) -> None:
    findings = report.findings[:12]
    roots = [RootCause(resource=f.resource, check=f.check, severity=f.severity,
                       message=f.message, runbook=f.runbook) for f in findings[:4]]
    roots.append(RootCause(resource=ResourceRef(kind="PersistentVolumeClaim",
                                                namespace="development",
                                                name="data-search-statefulset-0"),
                           message="could not read storageclasses: forbidden",
                           determined=False, missing="storageclasses"))
    diag = DiagnosisReport(target="cluster", findings=findings, root_causes=roots)
    lines = _render(diagnosis_table, diag, 80)
    _assert_whole(lines, [_ref(r) for r in roots] + [_ref(f) for f in findings],
                  [r.message for r in roots] + [f.message for f in findings], 80)
    # A root cause has no check column: its runbook goes under the message.
    start = next(i for i, line in enumerate(lines) if "Root causes" in line)
    assert any("runbook: " + roots[0].runbook in line for line in lines[start:])  # type: ignore[operator]
    undetermined = next(line for line in lines if "data-search-statefulset-0" in line)
    assert undetermined.startswith("│ ?")


def test_a_name_longer_than_the_terminal_is_folded_not_cut() -> None:
    name = "x" * 120
    table = findings_table([Row("warning", f"Pod/ns/{name}", "too long", check="c")],
                           title="Findings", width=80)
    console = Console(width=80, record=True, color_system=None)
    console.print(table)
    text = console.export_text()
    assert "…" not in text
    assert "".join(line.strip("│ ") for line in text.splitlines()).count("x") == 120
