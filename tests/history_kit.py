"""What the history-store tests share: the captured report, and fresh databases on the lab.

The report is tests/data/check-report.json, a real `k3sops -o json check --no-history` output
captured from the dev lab with the crashloop, pending, failed-pod, oomkilled, stuck-rollout and
node-notready scenarios applied. PostgreSQL databases are created on the lab's real server
(trust authentication on 127.0.0.1) and dropped after the test.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from k3sops.domain.findings import CheckReport

if TYPE_CHECKING:
    from conftest import Lab

DATA = Path(__file__).parent / "data" / "check-report.json"


def load_report() -> CheckReport:
    """The captured report."""
    return CheckReport.model_validate_json(DATA.read_text())


def at(report: CheckReport, when: datetime, period: str = "daily",
       environment: str | None = None) -> CheckReport:
    """The captured report as if run at ``when`` for ``period`` / ``environment``."""
    summary = report.summary.model_copy(update={
        "started_at": when.isoformat(timespec="seconds"), "period": period,
        "environment": environment})
    return report.model_copy(update={"summary": summary})


def admin_url(lab: Lab, database: str = "postgres") -> str:
    """The lab server's superuser, on ``database``."""
    return f"postgresql://postgres@127.0.0.1:{lab.layout.port('postgres')}/{database}"


@contextlib.contextmanager
def fresh_database(lab: Lab, prefix: str = "k3sops_t") -> Iterator[str]:
    """A new, empty database on the lab's PostgreSQL; yields its URL, drops it after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url(lab), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url(lab, name)
    finally:
        with psycopg.connect(admin_url(lab), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
