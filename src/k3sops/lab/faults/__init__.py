"""The lab's fault matrix: one YAML file per fault type in this package (see README.md).

``load_faults()`` reads and checks them all; ``ops`` applies them to the running lab, waits
until each is visible through the API, and removes them again.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from k3sops.errors import LabError, UsageError
from k3sops.lab.faults.model import Fault, namespace_of, parse

__all__ = ["Fault", "expected_rows", "load_faults", "namespace_of", "select"]


def load_faults() -> dict[str, Fault]:
    """Every fault of the matrix by id, in id order; LabError names a bad file and field."""
    out: dict[str, Fault] = {}
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        try:
            doc = yaml.safe_load(entry.read_text())
        except yaml.YAMLError as e:
            raise LabError(f"fault file {entry.name} is not valid YAML: {e}") from e
        fault = parse(doc, entry.name)
        if entry.name != f"{fault.id}.yaml":
            raise LabError(f"fault file {entry.name} has id {fault.id}: name the file "
                           f"{fault.id}.yaml")
        out[fault.id] = fault
    return dict(sorted(out.items()))


def select(faults: dict[str, Fault], ids: list[str]) -> list[Fault]:
    """The faults named (``all`` for every one); UsageError lists unknown ids."""
    if ids == ["all"]:
        return list(faults.values())
    unknown = [i for i in ids if i not in faults]
    if unknown:
        raise UsageError(f"unknown fault(s): {', '.join(unknown)}",
                       hint="`k3sops lab fault list` shows them (or use `all`)")
    return [faults[i] for i in dict.fromkeys(ids)]


def expected_rows(faults: list[Fault]) -> list[dict[str, Any]]:
    """Every expected finding: {fault, namespace, kind, name, severity, check, due_after}."""
    return [row for f in faults for row in f.expected_rows()]
