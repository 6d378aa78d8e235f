"""Kubeconfig discovery order and error wrapping (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from k3sops.adapters.kube import discover_kubeconfig
from k3sops.errors import ConfigError, ExitCode

pytestmark = pytest.mark.unit


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("apiVersion: v1\n")
    return p


def test_flag_wins(tmp_path: Path) -> None:
    flag = _touch(tmp_path / "flag")
    plat = _touch(tmp_path / "plat")
    src = discover_kubeconfig(flag, plat, {"KUBECONFIG": str(plat)}, tmp_path)
    assert src.path == flag and src.origin == "--kubeconfig"


def test_platform_then_env_then_home(tmp_path: Path) -> None:
    plat = _touch(tmp_path / "plat")
    env_kc = _touch(tmp_path / "envkc")
    home = tmp_path / "home"
    _touch(home / ".kube" / "config")
    assert discover_kubeconfig(None, plat, {"KUBECONFIG": str(env_kc)}, home).path == plat
    got = discover_kubeconfig(None, None, {"KUBECONFIG": f"/nope:{env_kc}"}, home)
    assert got.path == env_kc and got.origin == "$KUBECONFIG"
    assert discover_kubeconfig(None, None, {}, home).path == home / ".kube" / "config"


def test_missing_explicit_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        discover_kubeconfig(tmp_path / "nope", None, {}, tmp_path)
    assert e.value.exit_code == ExitCode.USAGE and "nope" in str(e.value)


def test_nothing_found_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        discover_kubeconfig(None, None, {}, tmp_path,
                            k3s_kubeconfig=tmp_path / "absent-k3s.yaml",
                            service_account_dir=tmp_path / "absent-sa")
    assert "~/.kube/config" in str(e.value) and "lab up" in str(e.value)


def test_k3s_default_then_in_cluster(tmp_path: Path) -> None:
    k3s = _touch(tmp_path / "k3s.yaml")
    sa = tmp_path / "sa"
    _touch(sa / "token")
    got = discover_kubeconfig(None, None, {}, tmp_path / "home", k3s_kubeconfig=k3s,
                              service_account_dir=sa)
    assert got.path == k3s and got.origin == "K3s default"
    got = discover_kubeconfig(None, None, {}, tmp_path / "home",
                              k3s_kubeconfig=tmp_path / "absent", service_account_dir=sa)
    assert got.path is None and got.origin == "in-cluster service account"
