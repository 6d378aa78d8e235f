"""The CLI against the lab: status, API errors mapped to exit codes, lab up/down failure modes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kit.users import user_kubeconfig

from conftest import Lab
from k3sops.errors import LabError
from k3sops.lab import runner
from k3sops.lab.build import COMPONENTS, build_component, find_go_root
from k3sops.lab.layout import LabLayout

pytestmark = pytest.mark.lab


def test_status_json_shows_nodes_pods_and_targets(lab: Lab) -> None:
    r = lab.k3sops("-o", "json", "status")
    assert r.returncode in (0, 4), r.stderr
    data = json.loads(r.stdout)
    assert {n["name"] for n in data["nodes"]} >= {"k3s-server-1", "k3s-agent-1"}
    assert any(c["namespace"] == "monitoring" and c["running"] > 0 for c in data["pods"])
    assert {t["job"] for t in data["targets"]} >= {"apiserver", "etcd", "kube-state-metrics"}
    assert data["sources"][0] == {"name": "kubernetes", "ok": True,
                                  "endpoint": data["cluster"], "error": None}


def test_unreachable_api_server_exits_1_naming_the_address(lab: Lab, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kc = lab.layout.kubeconfig.read_text().replace(
        f"https://127.0.0.1:{lab.layout.port('apiserver')}", f"https://127.0.0.1:{port}")
    f = tmp_path / "kc"
    f.write_text(kc)
    env = {k: v for k, v in lab.env.items() if k != "K3SOPS_CONFIG"}
    r = subprocess.run([sys.executable, "-m", "k3sops", "--kubeconfig", str(f), "status"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"127.0.0.1:{port}" in r.stderr and "hint" in r.stderr
    assert "Traceback" not in r.stderr


def test_forbidden_names_verb_and_resource(lab: Lab, tmp_path: Path) -> None:
    """A user the lab CA vouches for but RBAC grants nothing: 403 names what was refused."""
    f = user_kubeconfig(lab, "nobody", tmp_path / "kc")
    env = {k: v for k, v in lab.env.items() if k != "K3SOPS_CONFIG"}
    r = subprocess.run([sys.executable, "-m", "k3sops", "--kubeconfig", str(f), "status"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "refused to list" in r.stderr and "403" in r.stderr
    assert ("nodes" in r.stderr) or ("pods" in r.stderr)
    assert "BEGIN" not in r.stderr  # no key material in messages


def test_prometheus_unreachable_is_a_partial_result(lab: Lab, tmp_path: Path) -> None:
    text = lab.layout.platform_file.read_text().replace(
        lab.layout.url("prometheus"), "http://127.0.0.1:1")
    f = tmp_path / "platform.yaml"
    f.write_text(text)
    r = lab.k3sops("--config", str(f), "status")
    assert r.returncode == 4, r.stderr
    assert "127.0.0.1:1" in r.stderr and "prometheus" in r.stderr.lower()
    assert "k3s-server-1" in r.stdout  # the rest is still shown


def test_lab_up_on_a_busy_port_fails_clearly_and_starts_nothing(lab: Lab, tmp_path: Path) -> None:
    layout = LabLayout(cache_dir=lab.layout.cache_dir, run_dir=tmp_path / "lab2",
                       port_base=lab.layout.port_base)  # same ports as the running lab
    with pytest.raises(LabError) as e:
        runner.up(layout, lab.env)
    assert "already in use" in str(e.value) and str(lab.layout.port("etcd")) in str(e.value)
    assert runner.status(layout)["processes"] == []


def test_half_started_lab_is_refused_and_down_cleans_it(lab: Lab, tmp_path: Path) -> None:
    layout = LabLayout(cache_dir=lab.layout.cache_dir, run_dir=tmp_path / "lab3",
                       port_base=lab.layout.port_base + 1500)
    layout.pid_dir.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    (layout.pid_dir / "etcd.pid").write_text(f"{sleeper.pid}\n")
    (layout.pid_dir / "apiserver.pid").write_text("999999\n")
    with pytest.raises(LabError) as e:
        runner.up(layout, lab.env)
    assert "half-started" in str(e.value) and "lab down" in str(e.value)
    runner.down(layout)
    assert sleeper.wait(timeout=15) is not None
    assert runner.status(layout)["processes"] == []


def test_build_without_go_says_so(tmp_path: Path) -> None:
    layout = LabLayout(cache_dir=tmp_path / "cache", run_dir=tmp_path / "run")
    env = {**os.environ, "PATH": "/nonexistent"}
    with pytest.raises(LabError) as e:
        build_component(layout, COMPONENTS[1], find_go_root(os.environ), env)
    assert "Go is not installed" in str(e.value)


def test_down_stops_lab_processes_whose_pid_files_were_lost(lab: Lab, tmp_path: Path) -> None:
    """`lab down` leaves no process behind even without pid files (found by directory)."""
    import shutil

    layout = LabLayout(cache_dir=lab.layout.cache_dir, run_dir=tmp_path / "lab4",
                       port_base=lab.layout.port_base + 1600)
    (layout.run_dir / "data").mkdir(parents=True)
    (layout.run_dir / "data" / "wal").write_text("x")
    fake = tmp_path / "bin" / "etcd"  # named like a lab process, follows a file in the run dir
    fake.parent.mkdir()
    shutil.copy("/usr/bin/tail", fake)
    proc = subprocess.Popen([str(fake), "-f", str(layout.run_dir / "data" / "wal")],
                            start_new_session=True, stdout=subprocess.DEVNULL)
    stopped = runner.down(layout)
    assert proc.wait(timeout=15) is not None
    assert any(str(proc.pid) in s for s in stopped)
