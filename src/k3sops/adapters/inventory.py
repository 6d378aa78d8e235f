"""The Ansible inventory file, edited round-trip: comments, order and quoting are kept.

Only YAML inventories can be edited (``hosts.yaml``/``hosts.yml``, or a directory holding one);
an INI inventory is refused with a clear error rather than rewritten. Writes are atomic (a
reader never sees half a file) and keep the file's mode.
"""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from k3sops.adapters.files import write_atomic
from k3sops.errors import AdapterError, ConfigError, NotFound

_NAMES = ("hosts.yaml", "hosts.yml", "inventory.yaml", "inventory.yml")


def resolve_inventory(path: Path) -> Path:
    """The YAML file behind ``path`` (a file, or a directory holding hosts.yaml).

    Raises:
        NotFound: nothing there.
        ConfigError: not a YAML inventory.
    """
    if path.is_dir():
        for name in _NAMES:
            if (path / name).is_file():
                return path / name
        raise NotFound(f"inventory directory {path} has no {' or '.join(_NAMES[:2])}",
                       hint="point ansible.inventory in platform.yaml at your hosts.yaml")
    if not path.is_file():
        raise NotFound(f"inventory {path} does not exist",
                       hint="point ansible.inventory in platform.yaml at your hosts.yaml")
    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"inventory {path} is not a YAML file: only YAML inventories "
                          "(k3s-ansible's hosts.yaml layout) can be edited",
                          hint="convert it with `ansible-inventory -i FILE --list -y`")
    return path


def resolve_host(name: str) -> str | None:
    """The first address ``name`` resolves to (DNS, /etc/hosts), or None when it does not."""
    try:
        infos = socket.getaddrinfo(name, 22, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        return None
    return str(infos[0][4][0]) if infos else None


class InventoryFile:
    """One YAML inventory, loaded for round-trip editing."""

    def __init__(self, path: Path) -> None:
        self.path = resolve_inventory(path)
        self._yaml = YAML()
        self._yaml.preserve_quotes = True
        self._yaml.indent(mapping=2, sequence=4, offset=2)
        try:
            self.doc: Any = self._yaml.load(self.path.read_text())
        except YAMLError as e:
            raise ConfigError(f"{self.path}: not valid YAML: {e}".splitlines()[0],
                              hint="fix the file, then retry") from e
        except OSError as e:
            raise AdapterError(f"cannot read inventory {self.path}: {e.strerror}") from e
        if self.doc is None:
            self.doc = CommentedMap()

    def data(self) -> Any:
        """The inventory as plain dicts and lists (for the pure planners)."""
        return json.loads(json.dumps(self.doc, default=str))

    def _group(self, role: str) -> CommentedMap:
        cluster = self.doc.get("k3s_cluster")
        if cluster is None:
            cluster = self.doc.setdefault("k3s_cluster", CommentedMap())
        children = cluster.setdefault("children", CommentedMap())
        group = children.get(role)
        if group is None:
            group = CommentedMap()
            children[role] = group
        hosts = group.get("hosts")
        if hosts is None:
            hosts = CommentedMap()
            group["hosts"] = hosts
        return hosts  # type: ignore[no-any-return]

    def add_host(self, role: str, name: str, address: str | None) -> None:
        """Add ``name`` under ``k3s_cluster.children.ROLE.hosts`` (with ansible_host)."""
        hosts = self._group(role)
        entry = CommentedMap()
        if address is not None and address != name:
            entry["ansible_host"] = address
        hosts[name] = entry if entry else None

    def remove_host(self, name: str) -> bool:
        """Remove ``name`` from the server and agent groups; False when it was not there."""
        children = (self.doc.get("k3s_cluster") or {}).get("children") or {}
        removed = False
        for role in ("server", "agent"):
            hosts = (children.get(role) or {}).get("hosts")
            if hosts is not None and name in hosts:
                del hosts[name]
                removed = True
        return removed

    def render(self) -> str:
        """The document as text (comments kept)."""
        buf = io.StringIO()
        self._yaml.dump(self.doc, buf)
        return buf.getvalue()

    def save(self, path: Path | None = None) -> None:
        """Write the document atomically (to ``path``, default the file it came from).

        Raises:
            AdapterError: the file cannot be written.
        """
        target = path or self.path
        try:
            mode = target.stat().st_mode & 0o777 if target.exists() else 0o600
            write_atomic(target, self.render(), mode)
        except OSError as e:
            raise AdapterError(f"cannot write inventory {target}: {e.strerror}",
                               hint="check the file's permissions") from e
