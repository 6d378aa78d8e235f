"""Every error class of k3sops is in errors.py's diagram and its exit code in README's table;
every command that exits 3 is named in one of the table's rows for 3."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import k3sops
from k3sops import errors
from k3sops.errors import ExitCode, K3sopsError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "src" / "k3sops" / "cli"


def _exit_code_rows() -> list[tuple[int, str]]:
    """(code, meaning) of each row of README's "Exit codes" table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    return [(int(m[1]), m[2]) for m in re.finditer(r"^\| (\d+) \| (.+) \|$", section, re.M)]


def _subclasses(cls: type[K3sopsError]) -> list[type[K3sopsError]]:
    found: list[type[K3sopsError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _every_error() -> list[type[K3sopsError]]:
    """K3sopsError and every subclass defined anywhere in k3sops (all modules imported)."""
    for info in pkgutil.walk_packages(k3sops.__path__, "k3sops."):
        if not info.name.endswith(".__main__"):  # that one runs the CLI when imported
            importlib.import_module(info.name)
    return [K3sopsError, *(c for c in _subclasses(K3sopsError)
                           if c.__module__.startswith("k3sops."))]


def test_readme_documents_every_exit_code_once_per_meaning() -> None:
    rows = _exit_code_rows()
    assert {code for code, _ in rows} == {int(c) for c in ExitCode}
    assert len({meaning for _, meaning in rows}) == len(rows)


@pytest.mark.parametrize("cls", _every_error(), ids=lambda c: c.__name__)
def test_error_class_is_drawn_and_its_code_documented(cls: type[K3sopsError]) -> None:
    assert int(cls.exit_code) in {code for code, _ in _exit_code_rows()}, (
        f"{cls.__name__} exits {int(cls.exit_code)}, which README's exit-code table lacks")
    diagram = errors.__doc__ or ""
    assert re.search(rf"── {cls.__name__}\b|^\s+{cls.__name__} \(", diagram, re.M), (
        f"{cls.__name__} is missing from errors.py's diagram")
    parent = cls.__mro__[1]
    if cls is not K3sopsError and cls.exit_code != getattr(parent, "exit_code", None):
        # A class whose code differs from its parent's shows it in the diagram.
        assert re.search(rf"{cls.__name__} \({int(cls.exit_code)}\)", diagram), (
            f"errors.py's diagram does not show {cls.__name__}'s code {int(cls.exit_code)}")


def test_error_classes_live_in_errors_py_or_are_accounted_for() -> None:
    outside = {c.__name__ for c in _every_error() if c.__module__ != "k3sops.errors"}
    # It carries the domain's Refusal models, which errors.py (importing nothing) cannot.
    assert outside <= {"PromotionRefused"}


def _commands_exiting_3() -> dict[str, set[str]]:
    """CLI module -> the code-3 error classes it raises (read from the source)."""
    three = {c.__name__ for c in _every_error() if c.exit_code == ExitCode.FINDINGS}
    found: dict[str, set[str]] = {}
    for path in sorted(CLI.rglob("*.py")):
        raised = {m for m in re.findall(r"raise (?:\w+\.)*(\w+)\(", path.read_text()) if m in three}
        if raised:  # cli/GROUP_cmd.py, or a module of the package cli/GROUP/
            group = path.stem if path.parent == CLI else path.relative_to(CLI).parts[0]
            found.setdefault(group.removesuffix("_cmd"), set()).update(raised)
    return found


def test_every_command_exiting_3_is_named_in_a_row_for_3() -> None:
    rows_3 = " ".join(meaning for code, meaning in _exit_code_rows() if code == 3)
    found = _commands_exiting_3()
    assert {"check", "backup", "dashboards", "env", "emergency"} <= set(found)
    missing = [group for group in found if f"`{group}" not in rows_3]
    assert not missing, f"README's rows for exit 3 do not name: {missing}"


def test_lab_status_on_a_lab_that_is_not_up_exits_1_through_the_error_tree(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from k3sops.cli.app import main

    monkeypatch.setenv("K3SOPS_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.delenv("K3SOPS_OUTPUT", raising=False)
    with pytest.raises(SystemExit) as e:
        main(["lab", "status"])
    assert e.value.code == int(errors.LabError.exit_code) == 1
    err = capsys.readouterr().err
    assert "error: the lab is not fully up" in err
    assert "hint: start it with `k3sops lab up`" in err and str(tmp_path / "lab") in err
