"""Regenerate what the k3sops chart copies from k3sops itself, and its README's values table.

    python scripts/chart_files.py

* ``deploy/helm/k3sops/files/prometheusrule.yaml``: ``k3sops alerts render --format
  prometheusrule`` on the default platform (no platform.yaml);
* ``deploy/helm/k3sops/files/dashboards/*.json``: ``k3sops dashboards render --out``;
* the table between the ``values-table`` markers of ``deploy/helm/k3sops/README.md``, from the
  ``# --`` comments of values.yaml (helm-docs' convention: the comment above a key documents
  it; a documented map is one row, its keys are not listed apart).

``tests/unit/test_chart_files.py`` fails when any of them is out of step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "k3sops"
BEGIN, END = "<!-- values-table:begin -->", "<!-- values-table:end -->"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


def k3sops_env() -> dict[str, str]:
    """The environment the chart's copies are rendered in: no platform file, no kubeconfig."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"K3SOPS_CONFIG", "KUBECONFIG", "K3SOPS_KUBECONFIG", "K3SOPS_CONTEXT"}}
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


def render_rules(cwd: Path) -> str:
    """``k3sops alerts render --format prometheusrule`` on the default platform."""
    return subprocess.run([sys.executable, "-m", "k3sops", "alerts", "render", "--format",
                           "prometheusrule"], cwd=cwd, env=k3sops_env(), check=True,
                          capture_output=True, text=True).stdout


def render_dashboards(cwd: Path, out: Path) -> None:
    """``k3sops dashboards render --out OUT`` on the default platform."""
    subprocess.run([sys.executable, "-m", "k3sops", "dashboards", "render", "--out", str(out)],
                   cwd=cwd, env=k3sops_env(), check=True, capture_output=True, text=True)


def documented(values_text: str) -> list[tuple[str, str]]:
    """``(dotted key, description)`` of each key values.yaml documents with ``# --``."""
    rows: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped[1:].strip())
            continue
        match = _KEY.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [match["key"]])
        stack.append((indent, match["key"]))
        if pending is not None:
            rows.append((path, " ".join(pending)))
            pending = None
    return rows


def lookup(values: dict[str, Any], path: str) -> Any:
    """The value at a dotted key."""
    node: Any = values
    for part in path.split("."):
        node = node[part]
    return node


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


def values_table(values_text: str) -> str:
    """The README's markdown table of every documented value."""
    values = yaml.safe_load(values_text)
    lines = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for path, text in documented(values_text):
        default = json.dumps(lookup(values, path), separators=(",", ":"))
        lines.append(f"| {path} | {_type(lookup(values, path))} | `{default}` | "
                     f"{text.replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


def readme_with_table(readme: str, table: str) -> str:
    """The README with its values table replaced."""
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def main() -> None:
    """Write the generated files into the chart."""
    with tempfile.TemporaryDirectory() as tmp:
        (CHART / "files" / "prometheusrule.yaml").write_text(render_rules(Path(tmp)))
        shutil.rmtree(CHART / "files" / "dashboards", ignore_errors=True)
        render_dashboards(Path(tmp), CHART / "files" / "dashboards")
    readme = CHART / "README.md"
    table = values_table((CHART / "values.yaml").read_text())
    readme.write_text(readme_with_table(readme.read_text(), table))


if __name__ == "__main__":
    main()
