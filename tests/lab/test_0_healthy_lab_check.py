"""A healthy lab gives no warning or critical finding.

Later tests post alerts, load alert rules and inject faults, and Alertmanager keeps resolved
alerts for a few minutes; with pytest-xdist any test file may run first on a worker's lab. So
the lab fixture runs this check right after it started the lab, before any test, and this test
asserts on that run (with --lab-reuse on an already running lab, it checks the lab as it is).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Lab

pytestmark = pytest.mark.lab


def test_healthy_lab_has_no_warning_or_critical_finding(lab: Lab, tmp_path: Path) -> None:
    r = lab.first_check or lab.k3sops("-o", "json", "check", "--monthly", "--state-dir",
                                      str(tmp_path), timeout=180)
    assert r.returncode in (0, 4), r.stderr
    report = json.loads(r.stdout)
    bad = [f for f in report["findings"] if f["severity"] in ("warning", "critical")]
    assert bad == [], json.dumps(bad, indent=1)[:3000]
    assert report["summary"]["checks_run"] > 10
    assert {s["name"] for s in report["sources"] if s["ok"]} >= {"kubernetes", "prometheus",
                                                                "alertmanager"}
