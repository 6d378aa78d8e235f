"""Start-up stays lean: what `k3sops --version`, `--help` and a command's help import.

Structural (which modules end up in sys.modules of a fresh interpreter), never wall-clock: the
start-up times themselves are measured by bench/startup.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer.main

from k3sops.cli import app, tree

pytestmark = pytest.mark.unit

PROBE = """
import json, sys
from k3sops.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
sys.stderr.write("\\nMODULES " + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
HEAVY = ("k3sops.services", "k3sops.adapters", "k3sops.domain", "k3sops.config", "pydantic",
         "lightkube", "httpx2", "httpcore2", "yaml")


def _imports(*args: str) -> tuple[int, str, set[str]]:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                       timeout=60, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"})
    _, _, tail = r.stderr.rpartition("\nMODULES ")
    assert tail, r.stderr
    data = json.loads(tail)
    return data["code"], r.stdout, set(data["modules"])


def _loaded(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_version_imports_no_typer_rich_or_pydantic() -> None:
    code, out, modules = _imports("--version")
    assert code == 0 and out.startswith("k3sops ")
    assert _loaded(modules, (*HEAVY, "typer", "rich", "k3sops.cli.tree")) == []


def test_version_behind_root_options_is_answered_the_same_way() -> None:
    code, out, modules = _imports("-c", "x.yaml", "-o", "json", "--version")
    assert code == 0 and out.startswith("k3sops ")
    assert _loaded(modules, ("typer", "rich")) == []


def test_help_imports_no_command_module_and_no_services() -> None:
    code, out, modules = _imports("--help")
    assert code == 0
    for name in app.COMMANDS:  # every command is listed ...
        assert f" {name} " in out, name
    assert _loaded(modules, HEAVY) == []  # ... without importing any of them
    assert [m for m in modules if m.startswith("k3sops.cli.") and m.endswith("_cmd")] == []


def test_a_command_help_loads_only_that_command() -> None:
    code, out, modules = _imports("check", "--help")
    assert code == 0 and "--monthly" in out
    cmds = sorted(m for m in modules if m.startswith("k3sops.cli.") and m.endswith("_cmd"))
    assert cmds == ["k3sops.cli.check_cmd"]
    # Its services are imported when it runs, not to print its help.
    assert _loaded(modules, ("k3sops.services", "k3sops.adapters", "lightkube", "httpx2")) == []


def test_root_help_lines_are_the_commands_own_help() -> None:
    """The static one-line help of the root listing matches each command's docstring/help."""
    for name, cmd in tree.load_all().items():
        own = (cmd.short_help or cmd.help or "").strip()
        assert own.split("\n\n")[0].replace("\n", " ") == app.COMMANDS[name].help, name


def test_every_command_of_the_tree_is_reachable_through_the_root() -> None:
    root = tree.full_tree()
    assert list(root.commands) == list(app.COMMANDS)
    lazy = typer.main.get_group(tree.app)
    assert list(lazy.list_commands(None)) == list(app.COMMANDS)  # type: ignore[arg-type]
