"""`k3sops logs` against the lab: pod logs through the real API server, served by kwok.

The API server fetches a pod's logs from the "kubelet" of the pod's node, which in the lab is
kwok (its ClusterLogs rule serves the CRI log files the lab writes for every pod). Loki cannot
run here: its client is tested in tests/unit/test_logs.py against recorded Loki answers.
"""

from __future__ import annotations

import json

import pytest

from conftest import Lab

pytestmark = pytest.mark.lab

PREVIOUS = [
    'level=info msg="starting" component=app',
    'level=error msg="cannot connect to database" '
    'err="dial tcp 10.43.12.7:5432: connect: connection refused"',
    "panic: dial tcp: connection refused",
]
CURRENT = ['level=info msg="starting" component=app', 'level=info msg="listening" addr=:8080']


def test_previous_logs_of_postgres(lab: Lab) -> None:
    r = lab.k3sops("--config", str(lab.layout.platform_file), "logs", "postgres-0", "-n",
                   "production", "--previous")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == PREVIOUS


def test_logs_json_has_timestamps_and_tail(lab: Lab) -> None:
    r = lab.k3sops("logs", "postgres-0", "-n", "production", "--tail", "1", "-o", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["source"] == "kubernetes" and data["target"] == "production/postgres-0"
    assert [(x["timestamp"], x["line"]) for x in data["lines"]] == [
        ("2026-01-01T00:00:01Z", CURRENT[-1])]


def test_logs_with_timestamps_flag(lab: Lab) -> None:
    r = lab.k3sops("logs", "postgres-0", "-n", "production", "--timestamps")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"2026-01-01T00:00:0{i}Z {line}"
                                     for i, line in enumerate(CURRENT)]


def test_unknown_pod_and_container_fail_clearly(lab: Lab) -> None:
    r = lab.k3sops("logs", "no-such-pod", "-n", "production")
    assert r.returncode == 1
    assert 'pods "no-such-pod" not found' in r.stderr and "Traceback" not in r.stderr
    r = lab.k3sops("logs", "postgres-0", "-n", "production", "-c", "no-such-container")
    assert r.returncode == 2
    assert "no-such-container" in r.stderr and "hint" in r.stderr
    r = lab.k3sops("logs", "postgres-0", "-n", "production", "--since", "soon")
    assert r.returncode == 2 and "30m, 2h, 1d" in r.stderr


def test_loki_options_without_loki_configured(lab: Lab) -> None:
    r = lab.k3sops("logs", "--query", '{namespace="production"}')
    assert r.returncode == 2
    assert "Loki is not configured" in r.stderr and "monitoring.loki" in r.stderr
