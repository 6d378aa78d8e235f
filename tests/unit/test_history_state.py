"""platform.yaml's ``state`` section and how the services open the history it names.

Real SQLite files in a temporary directory; the PostgreSQL cases stop before connecting (a
refused URL or a missing password), so they need no server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from configkit import MINIMAL, parse_error

from k3sops.adapters.store import SqliteStore, open_store
from k3sops.config import parse_platform
from k3sops.errors import ConfigError
from k3sops.services.history import open_history

pytestmark = pytest.mark.unit


def test_no_state_section_keeps_sqlite_in_the_state_directory(tmp_path: Path) -> None:
    platform = parse_platform(MINIMAL, "platform.yaml")
    assert platform.state.database_url is None
    with open_history(platform, tmp_path / "s", {}, tmp_path) as store:
        assert isinstance(store, SqliteStore)
        assert store.location == str(tmp_path / "s" / "k3sops.db")


def test_a_sqlite_url_names_the_file(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "h.db"
    platform = parse_platform(MINIMAL + f"state:\n  database_url: sqlite://{db}\n",
                              "platform.yaml")
    with open_history(platform, tmp_path / "s", {}, tmp_path) as store:
        assert store.location == str(db)
    assert db.exists() and not (tmp_path / "s" / "k3sops.db").exists()


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql://k3sops:hunter2@db:5432/k3sops", "carries a password"),
    ("postgresql://db/k3sops?password=hunter2", "carries a password"),
    ("mysql://db/k3sops", "unknown scheme 'mysql'"),
    ("sqlite://relative.db", "absolute path"),
    ("postgresql:///k3sops", "names no host"),
])
def test_a_bad_database_url_is_refused_at_load_without_echoing_it(url: str,
                                                                   problem: str) -> None:
    err = parse_error(MINIMAL + f"state:\n  database_url: '{url}'\n")
    assert "platform.yaml:6: state.database_url: " in err.message
    assert problem in err.message
    assert "hunter2" not in str(err) and "hunter2" not in (err.hint or "")


def test_open_store_refuses_the_same_urls_when_called_directly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="carries a password") as info:
        open_store("postgres://u:hunter2@db/x", None, tmp_path)
    assert "hunter2" not in str(info.value)


def test_both_password_sources_are_refused() -> None:
    err = parse_error(MINIMAL + "state:\n  database_url: postgresql://k@db/k\n"
                 "  password_env: DBPW\n  password_file: /run/pw\n")
    assert "both password_env and password_file" in err.message


def test_a_password_key_gets_the_hint_to_name_a_variable() -> None:
    err = parse_error(MINIMAL + "state:\n  password: hunter2\n")
    assert err.hint is not None and "state.password_env" in err.hint
    assert "hunter2" not in str(err)


def test_a_named_but_unset_password_variable_is_an_error_before_connecting(
        tmp_path: Path) -> None:
    platform = parse_platform(MINIMAL + "state:\n  database_url: postgresql://k@db.invalid/k\n"
                              "  password_env: K3SOPS_DB_PASSWORD\n", "platform.yaml")
    for env in ({}, {"K3SOPS_DB_PASSWORD": ""}):
        with pytest.raises(ConfigError, match=r"K3SOPS_DB_PASSWORD \(state.password_env\) is "
                                              "not set or empty"):
            open_history(platform, None, env, tmp_path)


def test_an_empty_password_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("\n")
    platform = parse_platform(MINIMAL + "state:\n  database_url: postgresql://k@db.invalid/k\n"
                              f"  password_file: {pw}\n", "platform.yaml")
    with pytest.raises(ConfigError, match=r"password file .*pw \(state.password_file\) is "
                                          "empty"):
        open_history(platform, None, {}, tmp_path)
