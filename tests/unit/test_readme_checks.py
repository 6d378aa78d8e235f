"""The README's table of checks lists exactly the registered checks, with their periods."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from k3sops.domain.checks import REGISTRY

pytestmark = pytest.mark.unit
README = Path(__file__).parent.parent.parent / "README.md"


def test_every_check_is_in_the_readme_table_and_nothing_else() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### The checks"):text.index("### Measured on the fault matrix")]
    rows = re.findall(r"^\| ([a-z0-9-]+) \| .* \| ([dwm]) \|$", section, re.M)
    assert len(rows) > 80
    listed = {cid: period for cid, period in rows}
    assert set(listed) == set(REGISTRY)
    for cid, spec in REGISTRY.items():
        assert listed[cid] == spec.periods[0][0], cid
