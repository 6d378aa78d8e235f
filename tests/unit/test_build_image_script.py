"""scripts/build-image.sh refuses bad usage before it touches anything (exit 2, a clear line).

The build itself (root, debootstrap, umoci) is tested by tests/lab/test_image_lab.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build-image.sh"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=30, check=False)


@pytest.mark.parametrize(("args", "message"), [
    (("--archive", "zip"), "--archive must be oci or docker, not 'zip'"),
    (("--tag", "bad tag!"), "--tag 'bad tag!' is not a valid tag"),
    (("--extra-packages", "git;rm"), "--extra-packages: Debian package names"),
    (("--frobnicate",), "unknown argument '--frobnicate'"),
])
def test_bad_usage_exits_2_naming_the_option(args: tuple[str, ...], message: str) -> None:
    r = _run(*args)
    assert r.returncode == 2
    assert r.stderr.startswith(f"build-image: error: {message}")
    assert r.stdout == ""


def test_help_names_every_option_and_exit_code() -> None:
    r = _run("--help")
    assert r.returncode == 0
    for option in ("--out", "--tag", "--archive", "--cache", "--source", "--extra-packages",
                   "--rebuild-base", "Exit codes: 0 built; 1", "2 bad usage"):
        assert option in r.stdout
