"""Differences between environments' values, and the intended ones (DEVIATIONS.yaml)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from k3sops.domain.gitops.layout import DEVIATIONS_FILE, Path_
from k3sops.domain.gitops.values import load
from k3sops.errors import ConfigError


@dataclass(frozen=True)
class Deviation:
    """An intended difference: values under ``path`` (``*`` matches one key) may differ."""

    path: Path_
    reason: str
    environments: tuple[str, ...] = ()
    """Environments the deviation is about; empty: any."""

    def covers(self, path: Path_, env_a: str, env_b: str) -> bool:
        """Whether a difference at ``path`` between the two environments is documented."""
        if self.environments and not {env_a, env_b} <= set(self.environments):
            return False
        return len(path) >= len(self.path) and all(
            fnmatch.fnmatchcase(seg, pat) for seg, pat in zip(path, self.path, strict=False))


def parse_deviations(text: str) -> list[Deviation]:
    """Read DEVIATIONS.yaml: ``deviations: [{path: a.*.b, reason: ..., environments: [...]}]``.

    Raises:
        ConfigError: the file is not in that shape (names the entry).
    """
    data = load(text) or {}
    items = data.get("deviations") if isinstance(data, Mapping) else None
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConfigError(f"{DEVIATIONS_FILE}: deviations is not a list",
                          hint="deviations: [{path: apps.*.replicas, reason: why}]")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not item.get("path") or not item.get("reason"):
            raise ConfigError(f"{DEVIATIONS_FILE}: deviations[{i}] needs path and reason",
                              hint="e.g. {path: apps.*.replicas, reason: production has more}")
        envs = item.get("environments") or []
        out.append(Deviation(path=tuple(str(item["path"]).split(".")), reason=str(item["reason"]),
                             environments=tuple(str(e) for e in envs)))
    return out


class ValueDiff(BaseModel):
    """One key whose value differs between two environments."""

    path: str
    left: Any
    right: Any
    documented: bool
    reason: str | None = None


_MISSING = object()


def diff_values(left: Mapping[Path_, Any], right: Mapping[Path_, Any],
                deviations: Sequence[Deviation], env_left: str, env_right: str,
                ) -> list[ValueDiff]:
    """Every key path whose value differs (or exists on one side only), sorted by path."""
    out = []
    for path in sorted(left.keys() | right.keys()):
        a, b = left.get(path, _MISSING), right.get(path, _MISSING)
        if a == b:
            continue
        dev = next((d for d in deviations if d.covers(path, env_left, env_right)), None)
        out.append(ValueDiff(path=".".join(path), left=None if a is _MISSING else a,
                             right=None if b is _MISSING else b, documented=dev is not None,
                             reason=dev.reason if dev else None))
    return out
