"""Shared set-up of the volume, K3s snapshot and etcd restore lab tests: a platform file with
a backup section of the test's own (fresh restic repository, state dir, work dir) and the
backup context the services take, as the CLI builds it."""

from __future__ import annotations

import secrets
from pathlib import Path

import yaml

from conftest import Lab
from k3sops.services import backup, context

PASSWORD_ENV = "K3SOPS_TEST_BACKUP_MORE_PW"


def backup_context(lab: Lab, tmp: Path) -> backup.BackupContext:
    """A BackupContext on a new repository under ``tmp`` (initialised)."""
    doc = yaml.safe_load(lab.layout.platform_file.read_text())
    bins = {k: str(lab.binaries[k]) for k in ("etcdctl", "etcdutl", "etcd", "kubectl")
            if k in lab.binaries}
    doc["backup"] = {"repository": str(tmp / "repo"), "password_env": PASSWORD_ENV,
                     "binaries": bins, "etcd": {"endpoints": [lab.layout.url("etcd")]},
                     "work_dir": str(tmp / "work")}
    (tmp / "work").mkdir(parents=True, exist_ok=True)
    config = tmp / "platform.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {**lab.env, PASSWORD_ENV: secrets.token_hex(16), "K3SOPS_CONFIG": str(config)}
    settings = context.resolve(None, None, config, env, tmp)
    ctx = backup.BackupContext(settings, env, Path.home(), state=tmp / "state")
    ctx.restic.init_if_missing()
    return ctx
