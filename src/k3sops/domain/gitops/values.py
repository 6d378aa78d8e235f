"""Values files: round-trip YAML edits that keep comments and layout, flatten, merge."""

from __future__ import annotations

import difflib
import io
from collections.abc import Mapping
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from k3sops.domain.gitops.layout import Path_
from k3sops.errors import ConfigError


def _mapping_indent(text: str) -> int:
    """How far a nested mapping is indented in ``text`` (2 when it has none)."""
    prev: str | None = None
    for line in text.splitlines():
        body = line.split(" #", 1)[0].rstrip()
        if not body.strip() or body.lstrip().startswith("#"):
            continue
        if prev is not None and prev.endswith(":") and not body.lstrip().startswith("-"):
            step = (len(body) - len(body.lstrip())) - (len(prev) - len(prev.lstrip()))
            if step > 0:
                return step
        prev = body
    return 2


def _rt(text: str) -> tuple[YAML, Any]:
    """A round-trip loader/dumper set up like ``text`` is written, and its data."""
    try:
        _, seq_indent, block_seq_indent = load_yaml_guess_indent(text)
        y = YAML(typ="rt")
        y.preserve_quotes = True
        y.width = 4096  # never re-wrap long lines
        mapping = _mapping_indent(text)
        if block_seq_indent is None:  # no block sequence yet: "- " under its key
            y.indent(mapping=mapping, sequence=mapping, offset=0)
        else:
            y.indent(mapping=mapping, sequence=seq_indent, offset=block_seq_indent)
        return y, y.load(text)
    except YAMLError as e:
        raise ConfigError(f"values file is not valid YAML: {e}".splitlines()[0],
                          hint="fix the file in the GitOps repository") from e


def load(text: str) -> Any:
    """Parse YAML text into plain Python data (None for an empty document)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}".splitlines()[0],
                          hint="fix the file in the GitOps repository") from e


def _plain_is_str(value: str) -> bool:
    """Whether ``value`` written without quotes reads back as the same string."""
    try:
        return yaml.safe_load(value) == value and bool(value.strip())
    except yaml.YAMLError:
        return False


def _styled(old: Any, value: Any) -> Any:
    """``value`` in the quoting style of the value it replaces (quoted when it must be)."""
    if not isinstance(value, str):
        return value
    if isinstance(old, SingleQuotedScalarString):
        return SingleQuotedScalarString(value)
    if isinstance(old, DoubleQuotedScalarString) or not _plain_is_str(value):
        # "1.28" unquoted would read back as a number
        return DoubleQuotedScalarString(value)
    return value


def get_path(data: Any, path: Path_) -> Any:
    """The value at ``path`` in nested mappings, or None."""
    node = data
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def set_values(text: str, updates: Mapping[Path_, Any], where: str = "values file") -> str:
    """Set values at key paths in YAML ``text``, keeping everything else as written.

    Missing mappings on the way are created. The result is verified: parsed, it differs from
    the original in exactly the updated paths, and no line changed other than theirs.

    Args:
        text: the file's content.
        updates: key path -> new value (scalars, or plain lists/mappings).
        where: the file's name, for messages.

    Raises:
        ConfigError: the text is not YAML, a path crosses a non-mapping, or the round trip
            would change anything else (the file is then left for a person to edit).
    """
    y, data = _rt(text)
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise ConfigError(f"{where}: the top level is not a mapping",
                          hint="a values file is a mapping of keys to values")
    for path, value in updates.items():
        node = data
        for i, key in enumerate(path[:-1]):
            child = node.get(key)
            if child is None:
                child = CommentedMap()
                node[key] = child
            elif not isinstance(child, CommentedMap):
                raise ConfigError(f"{where}: {'.'.join(path[:i + 1])} is not a mapping, cannot "
                                  f"set {'.'.join(path)}", hint="fix the file's structure")
            node = child
        node[path[-1]] = _styled(node.get(path[-1]), value)
    out = io.StringIO()
    y.dump(data, out)
    new = out.getvalue()
    _verify(text, new, updates, where)
    return new


def _verify(old: str, new: str, updates: Mapping[Path_, Any], where: str) -> None:
    before, after = flatten(load(old) or {}), flatten(load(new) or {})
    touched = set(updates)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    stray = {k for k in changed if not any(k[:len(t)] == t for t in touched)}
    if stray:
        raise ConfigError(f"{where}: editing it would also change "
                          f"{', '.join('.'.join(k) for k in sorted(stray))}; nothing written",
                          hint="edit the file by hand")
    removed = [line for line in difflib.ndiff(old.splitlines(), new.splitlines())
               if line.startswith("- ")]
    if len(removed) > len(updates):
        raise ConfigError(f"{where}: the YAML round trip would reformat {len(removed)} lines "
                          f"for {len(updates)} value(s); nothing written",
                          hint="edit the file by hand, or normalise its formatting once")


def append_to_list(text: str, path: Path_, item: Mapping[str, Any], keep: int | None = None,
                   where: str = "file") -> str:
    """Append ``item`` to the list at ``path`` (created when missing), round trip.

    ``keep`` drops the oldest entries beyond that many.
    """
    y, data = _rt(text)
    if data is None:
        data = CommentedMap()
    node = data
    for key in path[:-1]:
        if key not in node or node[key] is None:
            node[key] = CommentedMap()
        node = node[key]
    seq = node.get(path[-1])
    if seq is None:
        seq = CommentedSeq()
        node[path[-1]] = seq
    if not isinstance(seq, CommentedSeq):
        raise ConfigError(f"{where}: {'.'.join(path)} is not a list", hint="fix the file")
    entry = CommentedMap()
    for k, v in item.items():
        entry[k] = _styled(None, v)
    seq.append(entry)
    if keep is not None:
        while len(seq) > keep:
            del seq[0]
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue()


def changed_lines(old: str, new: str) -> list[str]:
    """The unified diff of two texts (without headers), for reports."""
    return [line for line in difflib.unified_diff(old.splitlines(), new.splitlines(),
                                                   lineterm="", n=0)
            if not line.startswith(("---", "+++"))]


def flatten(data: Any, prefix: Path_ = ()) -> dict[Path_, Any]:
    """Nested mappings as key path -> leaf (lists are leaves)."""
    if isinstance(data, Mapping) and data:
        out: dict[Path_, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, (*prefix, str(k))))
        return out
    return {prefix: plain(data)} if prefix else {}


def plain(value: Any) -> Any:
    """``value`` as plain Python data (ruamel's mapping, list and string types unwrapped)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged onto ``base`` (mappings merged key by key, as Helm merges values)."""
    out = {k: plain(v) for k, v in base.items()}
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = plain(v)
    return out
