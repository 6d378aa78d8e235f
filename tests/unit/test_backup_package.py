"""services.backup: one rule for passwords from the environment, no private name crosses
modules, and every backup report finds its table view by type."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest

import k3sops.services.backup as pkg
from k3sops.config import parse_platform
from k3sops.errors import ConfigError
from k3sops.output.render import TABLES, table_of
from k3sops.services.backup.context import BackupContext
from k3sops.services.context import Settings

pytestmark = pytest.mark.unit

PLATFORM = """name: shop
environments:
  production: {namespaces: [shop]}
backup: {repository: /srv/restic, password_env: RESTIC_PW}
"""


def _ctx(env: dict[str, str], tmp_path: Path) -> BackupContext:
    p = parse_platform(PLATFORM, "platform.yaml")
    return BackupContext(Settings(kubeconfig=None, context=None, platform=p), env, tmp_path,
                         state=tmp_path / "state")


@pytest.mark.parametrize("value", [None, ""])
def test_an_unset_or_empty_repository_password_is_refused_naming_the_variable(
        value: str | None, tmp_path: Path) -> None:
    env = {} if value is None else {"RESTIC_PW": value}
    with pytest.raises(ConfigError, match=r"RESTIC_PW \(backup.password_env\) is not set or "
                                          "empty"):
        _ctx(env, tmp_path)


def test_secret_has_one_rule_for_optional_and_required_passwords(tmp_path: Path) -> None:
    ctx = _ctx({"RESTIC_PW": "s3cret", "DB_PW": "", "OTHER": "pw"}, tmp_path)
    assert ctx.secret("DB_PW", "x", required=False) is None  # empty is unset
    assert ctx.secret(None, "x", required=False) is None
    got = ctx.secret("OTHER", "x", required=True)
    assert got is not None and got.get_secret_value() == "pw"
    with pytest.raises(ConfigError) as e:
        ctx.secret("DB_PW", "password_env of target db", required=True)
    assert "DB_PW" in e.value.message and "target db" in e.value.message
    assert "s3cret" not in repr(ctx.secret("RESTIC_PW", "x", required=True))


def _modules() -> list[tuple[str, ast.Module]]:
    return [(info.name, ast.parse(Path(pkg.__path__[0], f"{info.name}.py").read_text()))
            for info in pkgutil.iter_modules(pkg.__path__)]


def test_no_module_imports_a_private_name_of_a_sibling() -> None:
    siblings = {name for name, _ in _modules()}
    for name, tree in _modules():
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(pkg.__name__):
                for a in node.names:
                    assert not a.name.startswith("_"), f"{name} imports {node.module}.{a.name}"
                    if a.name in siblings:
                        aliases.add(a.asname or a.name)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases):
                assert not node.attr.startswith("_"), f"{name} uses {node.value.id}.{node.attr}"


@pytest.mark.parametrize("key", [
    "k3sops.services.backup.run.BackupResult",
    "k3sops.services.backup.repository.ListReport",
    "k3sops.services.backup.repository.PruneReport",
    "k3sops.services.backup.verify.VerifyReport",
    "k3sops.services.backup.restore.RestoreReport",
    "k3sops.services.backup.volume.VolumeBackupResult",
    "k3sops.services.backup.volume.VolumeRestoreReport",
    "k3sops.services.backup.etcd.K3sSnapshotResult",
    "k3sops.services.backup.etcd_restore.EtcdRestoreReport",
    "k3sops.services.backup.schedule.ScheduleReport",
])
def test_every_backup_report_has_a_table_view(key: str) -> None:
    from k3sops.services.backup.repository import ListReport

    table_of(ListReport(repository="r"))  # loads every view module
    assert key in TABLES
