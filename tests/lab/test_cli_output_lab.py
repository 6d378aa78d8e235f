"""`-o` after the command against the lab, as kubectl users type it (issue 12's example)."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import Lab

pytestmark = pytest.mark.lab


def test_metrics_nodes_with_output_last(lab: Lab) -> None:
    r = lab.k3sops("metrics", "nodes", "-o", "json", timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["scopes"] == ["nodes"] and report["nodes"]


def test_status_and_capacity_with_output_last(lab: Lab) -> None:
    r = lab.k3sops("status", "-o", "json", timeout=120)
    assert r.returncode in (0, 4), r.stderr
    assert {n["name"] for n in json.loads(r.stdout)["nodes"]} >= {"k3s-server-1", "k3s-agent-1"}
    r = lab.k3sops("capacity", "--output", "yaml", timeout=120)
    assert r.returncode in (0, 4), r.stderr
    assert yaml.safe_load(r.stdout)["nodes"]


def test_own_output_of_check_and_the_last_one_wins(lab: Lab) -> None:
    # check defines its own -o; given before the command as well, the last one wins.
    r = lab.k3sops("-o", "yaml", "check", "--no-history", "-o", "json", timeout=180)
    assert r.returncode in (0, 3, 4), r.stderr
    assert "summary" in json.loads(r.stdout)
