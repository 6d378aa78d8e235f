"""Backup lab tests' set-up: platform files with a backup section of the test's own, a scratch
PostgreSQL database, and the backup context the services take (as the CLI builds it)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Lab
from k3sops.services import context
from k3sops.services.backup.context import BackupContext

PASSWORD = "lab-test-repo-password-7d1c"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class Setup:
    """A platform file with its own repository, state dir and metrics file."""

    lab: Lab
    dir: Path
    config: Path
    repo: Path
    state: Path
    metrics: Path
    db: str

    @property
    def env(self) -> dict[str, str]:
        env = dict(self.lab.env)
        env.update(K3SOPS_CONFIG=str(self.config), K3SOPS_STATE_DIR=str(self.state),
                   TEST_RESTIC_PASSWORD=PASSWORD)
        env.pop("K3SOPS_FAILPOINTS", None)
        return env

    def k3sops(self, *args: str, env: dict[str, str] | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "k3sops", *args], env=env or self.env,
                              capture_output=True, text=True, timeout=timeout)

    def ok(self, *args: str) -> Any:
        r = self.k3sops("-o", "json", *args)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout.strip() else None

    def restic(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, RESTIC_REPOSITORY=str(self.repo), RESTIC_PASSWORD=PASSWORD)
        return subprocess.run(["restic", *args], env=env, capture_output=True, text=True,
                              timeout=300, check=check)

    def snapshots(self) -> list[dict[str, Any]]:
        return json.loads(self.restic("snapshots", "--json", "--no-lock").stdout or "[]")

    def listed(self) -> dict[str, dict[str, Any]]:
        return {b["id"]: b for b in self.ok("backup", "list")["backups"]}

    def psql(self, sql: str, db: str | None = None) -> str:
        return psql(self.lab, sql, db or self.db)


def psql(lab: Lab, sql: str, db: str = "postgres") -> str:
    """Run SQL in the lab's PostgreSQL (trust auth on loopback)."""
    r = subprocess.run([str(PG_BIN / "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                        "-h", "127.0.0.1", "-p", str(lab.layout.port("postgres")),
                        "-U", "postgres", "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def make_setup(lab: Lab, tmp: Path, db: str, extra_targets: list[dict[str, Any]] | None = None,
               backup_overrides: dict[str, Any] | None = None) -> Setup:
    """Write a platform file: the lab's, with a backup section of this test's own."""
    doc = yaml.safe_load(lab.layout.platform_file.read_text())
    # The lab writes the backup settings (binaries, etcd endpoint) to a second file.
    base = yaml.safe_load(lab.layout.platform_file.with_name("platform-backup.yaml")
                          .read_text())["backup"]
    repo, state, metrics = tmp / "repo", tmp / "state", tmp / "textfile" / "k3sops_backup.prom"
    targets = [{"name": "shop-db", "kind": "postgres", "environment": "production",
                "namespace": "production", "pod": "postgres-0", "database": db},
               {"name": "shop-dsn", "kind": "postgres", "environment": "production",
                "dsn": f"host=127.0.0.1 port={lab.layout.port('postgres')} user=postgres "
                       f"dbname={db}"}]
    doc["backup"] = {"repository": str(repo), "password_env": "TEST_RESTIC_PASSWORD",
                     "binaries": base["binaries"], "etcd": base["etcd"],
                     "metrics_file": str(metrics), "work_dir": str(tmp / "work"),
                     "drill": {"read_data_subset": "100%"},
                     "targets": targets + (extra_targets or [])}
    doc["backup"].update(backup_overrides or {})
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "platform.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    s = Setup(lab, tmp, config, repo, state, metrics, db)
    s.restic("init")
    return s


@pytest.fixture
def scratch_db(lab: Lab) -> Iterator[str]:
    """A database in the lab's PostgreSQL with two tables of data; dropped afterwards."""
    db = f"k3sops_test_{uuid.uuid4().hex[:8]}"
    psql(lab, f"CREATE DATABASE {db}")
    psql(lab, "CREATE TABLE orders (id serial PRIMARY KEY, item text, qty int, price numeric);"
              "INSERT INTO orders (item, qty, price) SELECT 'item-' || g, g % 7, g * 1.5 "
              "FROM generate_series(1, 5000) g;"
              "CREATE SCHEMA shop; CREATE TABLE shop.customers (id int, name text, note jsonb);"
              "INSERT INTO shop.customers SELECT g, 'c' || g, jsonb_build_object('n', g) "
              "FROM generate_series(1, 1200) g;", db)
    yield db
    psql(lab, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@pytest.fixture
def setup(lab: Lab, tmp_path: Path, scratch_db: str) -> Setup:
    return make_setup(lab, tmp_path, scratch_db)


PASSWORD_ENV = "K3SOPS_TEST_BACKUP_MORE_PW"


def backup_context(lab: Lab, tmp: Path, *, inventory: Path | None = None,
                   etcd: bool = True) -> BackupContext:
    """A BackupContext on a new repository under ``tmp`` (initialised).

    ``inventory``: an ``ansible:`` section with it; ``etcd=False``: no ``backup.etcd`` (then
    `backup etcd` takes the K3s way when there is an inventory).
    """
    doc = yaml.safe_load(lab.layout.platform_file.read_text())
    if inventory is not None:
        doc["ansible"] = {"inventory": str(inventory)}
    bins = {k: str(lab.binaries[k]) for k in ("etcdctl", "etcdutl", "etcd", "kubectl")
            if k in lab.binaries}
    doc["backup"] = {"repository": str(tmp / "repo"), "password_env": PASSWORD_ENV,
                     "binaries": bins, "work_dir": str(tmp / "work")}
    if etcd:
        doc["backup"]["etcd"] = {"endpoints": [lab.layout.url("etcd")]}
    (tmp / "work").mkdir(parents=True, exist_ok=True)
    config = tmp / "platform.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {**lab.env, PASSWORD_ENV: secrets.token_hex(16), "K3SOPS_CONFIG": str(config)}
    settings = context.resolve(None, None, config, env, tmp)
    ctx = BackupContext(settings, env, Path.home(), state=tmp / "state")
    ctx.restic.init_if_missing()
    return ctx
