"""The k3sops chart's copies of k3sops' own renders, and its values documentation (no Helm).

The PrometheusRule objects and the dashboards the chart installs are files copied from
`k3sops alerts render --format prometheusrule` and `k3sops dashboards render --out`; these
tests run the commands and require the copies to be byte for byte what they print, so a rule
or panel change cannot leave the chart behind (`python scripts/chart_files.py` rewrites them).
The README's values table must list every value of values.yaml, and nothing else.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "k3sops"
REGENERATE = "run `python scripts/chart_files.py` and commit the result"


def _script() -> ModuleType:
    path = ROOT / "scripts" / "chart_files.py"
    spec = importlib.util.spec_from_file_location("chart_files", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _leaves(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of values.yaml's leaves (scalars, lists, empty maps)."""
    if isinstance(node, dict) and node:
        return [leaf for key, value in node.items()
                for leaf in _leaves(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def test_prometheusrule_is_the_commands_output(tmp_path: Path) -> None:
    chart_copy = (CHART / "files" / "prometheusrule.yaml").read_text()
    rendered = _script().render_rules(tmp_path)
    assert chart_copy == rendered, f"files/prometheusrule.yaml is stale: {REGENERATE}"
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered) if d]
    assert kinds and set(kinds) == {"PrometheusRule"}


def test_dashboards_are_the_commands_output(tmp_path: Path) -> None:
    _script().render_dashboards(tmp_path, tmp_path / "out")
    rendered = {p.name: p.read_text() for p in (tmp_path / "out").iterdir()}
    chart_copy = {p.name: p.read_text() for p in (CHART / "files" / "dashboards").iterdir()}
    assert sorted(chart_copy) == sorted(rendered) == [
        "k3sops-applications.json", "k3sops-backups.json", "k3sops-cluster.json",
        "k3sops-nodes.json"]
    stale = [name for name in rendered if rendered[name] != chart_copy[name]]
    assert not stale, f"files/dashboards/{stale} stale: {REGENERATE}"


def test_readme_table_lists_every_value_and_nothing_else() -> None:
    script = _script()
    values_text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(values_text)
    readme = (CHART / "README.md").read_text()
    rows = re.findall(r"^\| ([A-Za-z0-9_.]+) \| (?:string|int|bool|list|object) \|", readme,
                      re.MULTILINE)
    assert len(rows) == len(set(rows)), "a value is listed twice"
    for key in rows:  # no stale row: each names a value of values.yaml
        try:
            script.lookup(values, key)
        except (KeyError, TypeError):
            raise AssertionError(f"README lists {key}, which values.yaml does not have") from None
    documented = set(rows)
    undocumented = [leaf for leaf in _leaves(values)
                    if not any(leaf == key or leaf.startswith(key + ".") for key in documented)]
    assert not undocumented, f"values missing from README's table: {undocumented}"
    assert documented == {key for key, _ in script.documented(values_text)}, \
        "README's rows differ from values.yaml's `# --` comments"
    assert script.values_table(values_text) in readme, f"README's table is stale: {REGENERATE}"


def test_table_parser_reads_nested_keys_and_continued_comments() -> None:
    text = ("a:\n  # -- first\n  # and more\n  b: 1\n  c:\n    # -- deep\n    d: [x]\n"
            "# -- top\ne: {}\n")
    assert _script().documented(text) == [("a.b", "first and more"), ("a.c.d", "deep"),
                                           ("e", "top")]


def test_the_default_image_tag_is_this_release() -> None:
    import tomllib

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    assert yaml.safe_load((CHART / "values.yaml").read_text())["image"]["tag"] == ""
