"""`-o/--output` is accepted after the command, as kubectl users type it, on every command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.core import TyperGroup

from k3sops.cli import tree
from k3sops.cli.app import main

pytestmark = pytest.mark.unit


def _paths() -> list[list[str]]:
    """Every command a user can run: leaves, and groups that run without a sub-command."""
    out: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        if isinstance(cmd, TyperGroup):
            if cmd.invoke_without_command:
                out.append(path)
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            out.append(path)

    for name, cmd in tree.full_tree().commands.items():
        walk(cmd, [name])
    return out


def test_every_command_help_shows_output(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    paths = _paths()
    assert len(paths) > 60  # the whole tree, not a part of it
    for path in paths:
        assert tree.run([*path, "--help"]) == 0, path
        out = capsys.readouterr().out
        assert "--output" in out and "-o" in out, path


def test_commands_with_their_own_output_keep_it() -> None:
    own = {" ".join(p) for p in _paths() if _own_output(p)}
    # check, diagnose, emergency, logs, runbook and the alert silences define -o themselves.
    assert {"check", "diagnose", "emergency app-down", "logs", "runbook list",
            "alerts list"} <= own


def _own_output(path: list[str]) -> bool:
    cmd: object = tree.full_tree()
    for name in path:
        assert isinstance(cmd, TyperGroup)
        cmd = cmd.commands[name]
    return any(p is not tree.output_param() and {"-o", "--output"} & set(getattr(p, "opts", ()))
               for p in cmd.params)  # type: ignore[attr-defined]


def _lab_status(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("K3SOPS_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.delenv("K3SOPS_OUTPUT", raising=False)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["-o", "json", "lab", "status"],
    ["lab", "status", "-o", "json"],
    ["lab", "status", "--output", "json"],
    ["lab", "status", "--output=json"],
    ["-o", "yaml", "lab", "status", "-o", "json"],  # the last one wins, as in kubectl
])
def test_output_before_or_after_the_command(argv: list[str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    data = json.loads(_lab_status(argv, tmp_path, capsys, monkeypatch))
    assert data["up"] is False


def test_output_after_the_command_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data = yaml.safe_load(_lab_status(["lab", "status", "-o", "yaml"], tmp_path, capsys,
                                      monkeypatch))
    assert data["up"] is False


def test_own_output_of_a_command_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["runbook", "list", "-o", "json"])
    assert e.value.code == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["runbooks"]


def test_bad_output_after_the_command_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K3SOPS_LAB_DIR", str(tmp_path / "lab"))
    with pytest.raises(SystemExit) as e:
        main(["lab", "status", "-o", "xml"])
    assert e.value.code == 2
    assert "xml" in capsys.readouterr().err
