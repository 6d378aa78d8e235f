"""The one rule for every password k3sops reads: from a named variable or a named file.

Unset and empty are the same everywhere: a required password is then an error naming the
setting and the variable or file (never a value); an optional one (a database that may find
its password in ``~/.pgpass``) is None.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from k3sops.errors import ConfigError


def env_secret(env: Mapping[str, str], variable: str | None, setting: str, *,
               required: bool) -> SecretStr | None:
    """The password in environment variable ``variable`` (named by ``setting``).

    Raises:
        ConfigError: ``required`` and the variable is unset or empty.
    """
    value = env.get(variable) if variable else None
    if value:
        return SecretStr(value)
    if required:
        raise ConfigError(f"environment variable {variable} ({setting}) is not set or "
                          "empty", hint="export it with the password")
    return None


def file_secret(path: Path, setting: str) -> SecretStr:
    """The password in file ``path`` (named by ``setting``), without its line end.

    A Kubernetes Secret mounted as a file, or a file written by ``echo``, both read right.

    Raises:
        ConfigError: the file cannot be read or is empty.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the password file {path} ({setting}): {e.strerror}",
                          hint="create it (mode 0600) or fix the path") from e
    value = text.rstrip("\r\n")
    if not value:
        raise ConfigError(f"the password file {path} ({setting}) is empty",
                          hint="write the password into it")
    return SecretStr(value)
