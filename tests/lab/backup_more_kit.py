"""Shared set-up of the volume, K3s snapshot and etcd restore lab tests: a platform file with
a backup section of the test's own (fresh restic repository, state dir, work dir) and the
backup context the services take, as the CLI builds it."""

from __future__ import annotations

import secrets
from pathlib import Path

import yaml

from conftest import Lab
from k3sops.services import context
from k3sops.services.backup.context import BackupContext

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
