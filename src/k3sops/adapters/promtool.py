"""promtool (checks and unit tests of rule files) and the rule files a local Prometheus reads.

promtool is Prometheus' own tool, so a rule that passes here is read by Prometheus the same
way. Files handed to promtool are written to a private temporary directory that is removed
afterwards; rule files for a Prometheus on this host are replaced atomically (write a hidden
temporary file next to the target, fsync, rename), so Prometheus never reads half a file.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from k3sops.adapters.files import write_atomic
from k3sops.errors import AdapterError, NotFound, Timeout

__all__ = ["Promtool", "ToolRun", "remove_rule_file", "rules_found", "write_rule_file"]

_INSTALL_HINT = ("install Prometheus' promtool: `apt-get install prometheus` on Debian/Ubuntu, "
                 "or put the promtool of a Prometheus release on PATH")


@dataclass(frozen=True)
class ToolRun:
    """The outcome of one promtool invocation."""

    args: tuple[str, ...]
    returncode: int
    output: str
    """stdout and stderr together, in that order (promtool prints failures on stderr)."""

    @property
    def ok(self) -> bool:
        """Whether promtool exited 0."""
        return self.returncode == 0


class Promtool:
    """A promtool binary.

    Args:
        path: the executable.
        timeout: seconds one invocation may take before it is killed.
    """

    def __init__(self, path: Path, timeout: float = 120.0) -> None:
        self.path = path
        self.timeout = timeout

    @classmethod
    def find(cls, search_path: str | None = None, timeout: float = 120.0) -> Promtool:
        """Find promtool on ``search_path`` (a PATH-style string; None: the process PATH).

        Raises:
            NotFound: promtool is not installed; the hint says how to install it.
        """
        found = shutil.which("promtool", path=search_path)
        if found is None:
            raise NotFound("promtool was not found on PATH", hint=_INSTALL_HINT)
        return cls(Path(found), timeout)

    def _run(self, args: Sequence[str], cwd: Path | None = None) -> ToolRun:
        argv = (str(self.path), *args)
        try:
            proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise Timeout(f"promtool {' '.join(args[:2])} did not finish within "
                          f"{self.timeout:g}s", hint="is the machine overloaded?") from e
        except OSError as e:
            raise AdapterError(f"cannot run promtool at {self.path}: "
                               f"{e.strerror or type(e).__name__}", hint=_INSTALL_HINT) from e
        return ToolRun(tuple(args), proc.returncode, proc.stdout + proc.stderr)

    def version(self) -> str:
        """Return promtool's name and version, e.g. ``promtool 2.42.0+ds``."""
        run = self._run(["--version"])
        m = re.search(r"version (\S+)", run.output)
        return f"promtool {m.group(1)}" if m else "promtool (unknown version)"

    def check_rules(self, files: Mapping[str, str]) -> dict[str, ToolRun]:
        """Run ``promtool check rules`` on each file (name → YAML text).

        Returns:
            name → result; ``rules_found`` reads the rule count from a result.
        """
        with _scratch(files) as d:
            return {name: self._run(["check", "rules", name], cwd=d) for name in files}

    def test_rules(self, files: Mapping[str, str], tests: Sequence[str],
                   workers: int = 4) -> dict[str, ToolRun]:
        """Run ``promtool test rules`` once per test file, so each result is its own.

        ``files`` (name → text) are written to a temporary directory first; ``tests`` names
        the test files among them.

        Returns:
            test file name → result.
        """
        with _scratch(files) as d, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            runs = pool.map(lambda t: self._run(["test", "rules", t], cwd=d), tests)
            return dict(zip(tests, runs, strict=True))


def rules_found(run: ToolRun) -> int | None:
    """The "N rules found" count of a ``check rules`` run (None when promtool gave none)."""
    m = re.search(r"SUCCESS: (\d+) rules found", run.output)
    return int(m.group(1)) if m else None


@contextlib.contextmanager
def _scratch(files: Mapping[str, str]) -> Iterator[Path]:
    try:
        tmp = tempfile.TemporaryDirectory(prefix="k3sops-promtool-")
    except OSError as e:
        raise AdapterError(f"cannot create a temporary directory for promtool: "
                           f"{e.strerror or type(e).__name__}",
                           hint="check $TMPDIR and free disk space") from e
    with tmp as name:
        d = Path(name)
        for fname, text in files.items():
            if Path(fname).name != fname:
                raise ValueError(f"file name {fname!r} must not contain a directory")
            try:
                (d / fname).write_text(text, encoding="utf-8")
            except OSError as e:
                raise AdapterError(f"cannot write {d / fname}: {e.strerror}",
                                   hint="check $TMPDIR and free disk space") from e
        yield d


def write_rule_file(directory: Path, name: str, text: str) -> Path:
    """Replace ``directory/name`` with ``text`` atomically and return its path.

    The temporary file starts with a dot and does not end in ``.yml``, so a ``*.yml`` glob in
    Prometheus' ``rule_files`` never picks it up.

    Raises:
        NotFound: the directory does not exist.
        AdapterError: it cannot be written.
    """
    if not directory.is_dir():
        raise NotFound(f"rule directory {directory} does not exist",
                       hint="create it, or fix monitoring.rule_files_dir in platform.yaml")
    target = directory / name
    try:
        write_atomic(target, text)  # 0644: Prometheus may run as another user
    except OSError as e:
        raise AdapterError(f"cannot write rule file {target}: {e.strerror or type(e).__name__}",
                           hint=f"check the permissions of {directory}") from e
    return target


def remove_rule_file(directory: Path, name: str) -> bool:
    """Delete ``directory/name``; return whether it existed.

    Raises:
        AdapterError: it exists but cannot be removed.
    """
    target = directory / name
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    except OSError as e:
        raise AdapterError(f"cannot remove rule file {target}: {e.strerror}",
                           hint=f"check the permissions of {directory}") from e
    return True
