"""`lab scenario apply` waits until `k3sops check` can see each fault it applied.

The README's first command is `lab scenario apply crashloop pending failed-pod svc-no-endpoints
&& k3sops check`: the check that follows must report all four faults, not the two that happened
to be visible already. A file of its own: it resets the lab's scenarios before and after.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Lab

pytestmark = pytest.mark.lab
NS = "development"
README_FAULTS = ("crashloop", "pending", "failed-pod", "svc-no-endpoints")
EXPECTED = {
    ("pod-crashloop", "Pod", NS, "checkout-"),
    ("pod-pending", "Pod", NS, "batch-big-"),
    ("pod-failed", "Pod", NS, "report-generator"),
    ("service-no-endpoints", "Service", NS, "payments"),
}


@pytest.fixture
def clean(lab: Lab) -> Iterator[Lab]:
    r = lab.k3sops("lab", "scenario", "reset", timeout=300)
    assert r.returncode == 0, r.stderr
    yield lab
    r = lab.k3sops("lab", "scenario", "reset", timeout=300)
    assert r.returncode == 0, r.stderr


def test_too_short_a_wait_fails_naming_what_is_not_visible(clean: Lab) -> None:
    from k3sops.domain.checks.storage import PVC_GRACE_SECONDS

    # pvc-pending reports a claim only after its grace: a 2 s wait cannot see it.
    assert PVC_GRACE_SECONDS > 10, "this test needs a PVC grace longer than its wait"
    r = clean.k3sops("lab", "scenario", "apply", "pvc-pending", "--timeout", "2s",
                     timeout=120)
    assert r.returncode == 1, r.stderr
    assert "cannot see these scenarios yet: pvc-pending (PVC data-orders is" in r.stderr
    assert "pvc-pending: waiting" in r.stderr  # progress on stderr


def test_check_right_after_apply_reports_every_fault(clean: Lab, tmp_path: Path) -> None:

    # The default: wait (progress on stderr), then one check, no polling, sees all four.
    r = clean.k3sops("lab", "scenario", "apply", *README_FAULTS, timeout=400)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "visible: " + ", ".join(README_FAULTS)
    for name in README_FAULTS:
        assert f"{name}: visible" in r.stderr, r.stderr
    c = clean.k3sops("-o", "json", "check", "--state-dir", str(tmp_path), timeout=180)
    assert c.returncode in (0, 4), c.stderr
    got = {(f["check"], f["resource"]["kind"], f["resource"]["namespace"],
            f["resource"]["name"]) for f in json.loads(c.stdout)["findings"]}
    missing = {e for e in EXPECTED
               if not any(g[:3] == e[:3] and g[3].startswith(e[3]) for g in got)}
    assert not missing, f"not reported right after apply: {sorted(missing)}; got {sorted(got)}"
