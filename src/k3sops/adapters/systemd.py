"""systemd unit files: written atomically into a directory, checked by ``systemd-analyze``."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from k3sops.adapters.files import write_atomic
from k3sops.errors import AdapterError


def analyze_available() -> bool:
    """Whether ``systemd-analyze`` is installed here."""
    return shutil.which("systemd-analyze") is not None


def verify_units(units: Mapping[str, str], timeout: float = 60) -> list[str]:
    """Run ``systemd-analyze verify`` on the units (in a scratch dir); its complaints, if any.

    Raises:
        AdapterError: systemd-analyze is missing or could not run.
    """
    exe = shutil.which("systemd-analyze")
    if exe is None:
        raise AdapterError("systemd-analyze is not installed: the units cannot be verified",
                           hint="install systemd, or check the rendered units by hand")
    with tempfile.TemporaryDirectory(prefix="k3sops-units-") as tmp:
        paths = []
        for name, text in units.items():
            p = Path(tmp) / name
            p.write_text(text)
            paths.append(str(p))
        try:
            r = subprocess.run([exe, "verify", "--man=no", *paths], capture_output=True,
                               text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise AdapterError(f"systemd-analyze verify could not run: {e}") from e
    lines = [ln.replace(tmp + "/", "") for ln in (r.stderr + r.stdout).splitlines()
             if ln.strip()]
    if r.returncode != 0 and not lines:
        lines = [f"systemd-analyze verify exited {r.returncode}"]
    return lines if r.returncode != 0 else []


def write_units(directory: Path, units: Mapping[str, str]) -> list[Path]:
    """Write each unit file (0644) into ``directory``; returns the paths.

    Raises:
        AdapterError: the directory cannot be written.
    """
    out = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in units.items():
            write_atomic(directory / name, text, 0o644)
            out.append(directory / name)
    except OSError as e:
        raise AdapterError(f"cannot write unit files into {directory}: {e.strerror}",
                           hint="pass --out DIR pointing at a writable directory") from e
    return out
