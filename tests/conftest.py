"""Shared fixtures: the lab is started once per test run (or reused with --lab-reuse)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import settings

# test_hosts: network namespaces with their own root and sshd, for the Ansible tests.
from hosts import test_hosts  # noqa: F401
from k3sops.lab.build import installed_binaries
from k3sops.lab.layout import LabLayout

TEST_PORT_BASE = "27000"
T = TypeVar("T")

# Tests never assert wall-clock times: Hypothesis' per-example deadline (200 ms) failed a config
# property test on a loaded 2-core machine (297 ms once, 16 ms on the rerun).
settings.register_profile("k3sops", deadline=None)
settings.load_profile("k3sops")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--lab-reuse", action="store_true",
                     help="use a running test lab if there is one, and leave it running")
    parser.addoption("--no-lab", action="store_true", help="skip tests marked lab")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--no-lab"):
        skip = pytest.mark.skip(reason="--no-lab")
        for item in items:
            if "lab" in item.keywords:
                item.add_marker(skip)


@dataclass(frozen=True)
class Lab:
    """A running lab, as tests see it."""

    layout: LabLayout
    env: dict[str, str]
    binaries: dict[str, Path]
    first_check: subprocess.CompletedProcess[str] | None = None
    """`k3sops -o json check --monthly` run before any test touched this lab (None when
    --lab-reuse found it already running): tests run in any order, this one first."""

    def k3sops(self, *args: str, check: bool = False,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the k3sops CLI as a user would, against this lab."""
        return subprocess.run([sys.executable, "-m", "k3sops", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=check)

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run plain kubectl (the lab's, built from Kubernetes) with the lab kubeconfig."""
        return subprocess.run([str(self.binaries["kubectl"]), "--kubeconfig",
                               str(self.layout.kubeconfig), *args], capture_output=True,
                              text=True, timeout=timeout, check=check, input=input)


def wait_for(fn: Callable[[], T], timeout: float = 90, every: float = 1.0) -> T:
    """Poll ``fn`` until it returns something truthy; return the last value either way."""
    deadline = time.monotonic() + timeout
    last = fn()
    while not last and time.monotonic() < deadline:
        time.sleep(every)
        last = fn()
    return last


def _worker_index() -> int:
    """0, or N for pytest-xdist worker gwN: each worker runs its own lab."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


def lab_env(tmp_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("K3SOPS_LAB_DIR", str(tmp_root))
    env.setdefault("K3SOPS_LAB_PORT_BASE", TEST_PORT_BASE)
    index = _worker_index()
    if index:
        # Another xdist worker: its own directory and ports 1000 above the first worker's
        # (lab ports use base+0..500 and must stay below the ephemeral range at 32768).
        env["K3SOPS_LAB_DIR"] = f"{env['K3SOPS_LAB_DIR']}-gw{index}"
        env["K3SOPS_LAB_PORT_BASE"] = str(int(env["K3SOPS_LAB_PORT_BASE"]) + 1000 * index)
    env.pop("K3SOPS_CONFIG", None)
    env.pop("KUBECONFIG", None)
    return env


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The lab, up for the whole session; started here unless --lab-reuse finds one running."""
    from k3sops.lab import runner

    root = Path(os.environ.get("K3SOPS_TEST_LAB_DIR", "/tmp/k3sops-test-lab"))
    env = lab_env(root)
    layout = LabLayout.from_env(env, Path.home())
    reuse = bool(request.config.getoption("--lab-reuse"))
    started = False
    if not (reuse and runner.is_up(layout)):
        runner.down(layout, purge=True)
        runner.up(layout, env, progress=lambda m: print(f"[lab] {m}", file=sys.stderr))
        started = True
    env["K3SOPS_CONFIG"] = str(layout.platform_file)
    lab = Lab(layout=layout, env=env, binaries=installed_binaries(layout, env))
    if started:
        state = layout.run_dir / "first-check-state"
        lab = dataclasses.replace(lab, first_check=lab.k3sops(
            "-o", "json", "check", "--monthly", "--state-dir", str(state), timeout=180))
    yield lab
    if started and not reuse:
        runner.down(layout, purge=True)
