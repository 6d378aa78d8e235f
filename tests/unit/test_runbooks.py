"""Runbook catalogue: coverage of every id findings and alerts name, shape, CLI and export."""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import k3sops.domain.checks as checks_pkg
from k3sops.cli import runbook_cmd, tree
from k3sops.cli.options import GlobalOptions, OutputFormat
from k3sops.domain import runbooks
from k3sops.domain.checks import controlplane, nodes
from k3sops.domain.rules.catalogue import CATALOGUE as RULES

pytestmark = pytest.mark.unit

KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
EMERGENCIES = {"emergency-cluster-down", "emergency-etcd-restore", "emergency-node-lost",
               "emergency-certificate-expired", "emergency-disk-full",
               "emergency-high-memory-oom"}
# Position of the runbook id among the positional arguments of the calls that carry one:
# CheckContext.finding(check, severity, kind, namespace, name, message, runbook, ...) and the
# check modules' helpers that pass their argument on as the runbook.
RUNBOOK_ARG = {"finding": 6, "_finding": 2, "_longhorn": 2, "add": 5}


def _check_runbook_ids() -> set[str]:
    """Runbook ids the checks can emit: literals at the runbook position, plus computed ones."""
    ids: set[str] = set()
    check_dir = Path(checks_pkg.__file__).parent
    sources = [*sorted(check_dir.glob("*.py")),
               *sorted((check_dir.parent / "diagnose").glob("*.py"))]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            pos = RUNBOOK_ARG.get(name or "")
            if pos is None or len(node.args) <= pos:
                continue
            # Every kebab-case literal in the expression: covers `a if x else b` and
            # `annotations.get("runbook_id") or "alert-firing"`.
            ids |= {c.value for c in ast.walk(node.args[pos])
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                    and KEBAB.match(c.value) and "-" in c.value}
    # Computed through module tables.
    ids |= set(controlplane.RUNBOOKS.values()) | set(nodes.PRESSURES.values())
    return ids


def _app() -> typer.Typer:
    """The real root app's commands plus the runbook group (not wired into cli/app.py yet)."""
    test_app = typer.Typer(no_args_is_help=True)

    @test_app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = GlobalOptions(kubeconfig=None, context=None, config=None,
                                output=OutputFormat.table, verbosity=0)

    runbook_cmd.register(test_app)
    return test_app


def test_every_id_a_check_emits_has_a_runbook() -> None:
    emitted = _check_runbook_ids()
    # The extraction must actually see the checks (guards against a silently empty set).
    assert {"pod-crashloop", "pod-evicted", "pod-failed", "alert-firing", "node-disk-pressure",
            "target-down", "longhorn-volume-faulted", "argocd-app-out-of-sync"} <= emitted
    missing = emitted - runbooks.by_id().keys()
    assert not missing, f"findings name runbooks that do not exist: {sorted(missing)}"


def test_every_alert_rule_runbook_exists() -> None:
    wanted = {r.runbook_id for r in RULES}
    assert len(wanted) > 20
    assert not wanted - runbooks.by_id().keys()


def test_emergency_runbooks_exist() -> None:
    assert runbooks.by_id().keys() >= EMERGENCIES


def test_related_ids_exist() -> None:
    known = runbooks.by_id().keys()
    dangling = {(r.id, x) for r in runbooks.CATALOGUE for x in r.related if x not in known}
    assert not dangling


def test_ids_are_kebab_case_and_unique() -> None:
    ids = [r.id for r in runbooks.CATALOGUE]
    assert len(ids) == len(set(ids))
    assert all(KEBAB.match(i) for i in ids), [i for i in ids if not KEBAB.match(i)]


def test_every_runbook_has_steps_with_look_for() -> None:
    for rb in runbooks.CATALOGUE:
        assert len(rb.steps) >= 2, rb.id
        assert rb.title and rb.summary, rb.id
        for s in rb.steps:
            assert s.look_for.strip() and s.title.strip() and s.why.strip(), (rb.id, s.title)


def _is_group(cmd: object) -> bool:
    # Typer vendors its own click: recognise groups by their sub-command table.
    return isinstance(getattr(cmd, "commands", None), dict)


def _resolve(cmd: Any, tokens: list[str]) -> Any:
    """Walk group/sub-command tokens; raise KeyError at the first unknown sub-command."""
    for tok in tokens:
        if not _is_group(cmd) or tok.startswith(("-", "<", "'")):
            break
        sub = cmd.commands.get(tok)
        if sub is None:
            raise KeyError(tok)
        cmd = sub
    return cmd


def test_automated_by_names_existing_commands() -> None:
    real = tree.full_tree()  # the root loads commands lazily: load them all to walk them
    assert _is_group(real)
    seen = 0
    for rb in runbooks.CATALOGUE:
        for s in rb.steps:
            if not s.automated_by:
                continue
            tokens = shlex.split(s.automated_by)
            assert tokens[0] == "k3sops", s.automated_by
            assert tokens[1] not in ("lab", "runbook"), s.automated_by  # not for users' steps
            assert tokens[1] in real.commands, s.automated_by
            try:
                cmd = _resolve(real, tokens[1:])
            except KeyError as e:
                pytest.fail(f"{rb.id}: {s.automated_by!r}: no sub-command {e}")
            assert not _is_group(cmd) or cmd.invoke_without_command, \
                f"{rb.id}: {s.automated_by!r} names a group, not a command"
            # Every long option written must be an option of that command.
            opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
            for tok in tokens:
                if tok.startswith("-"):
                    assert tok.split("=")[0] in opts, (rb.id, s.automated_by, tok)
            seen += 1
    assert seen > 50


def test_markdown_of_one_runbook() -> None:
    md = runbooks.to_markdown(runbooks.by_id()["emergency-etcd-restore"])
    assert md.startswith("# EMERGENCY: restore etcd from a snapshot\n")
    assert "### 3. Reset the cluster from the snapshot on ONE server" in md
    assert "```sh\nsudo k3s server --cluster-reset --cluster-reset-restore-path=" in md
    assert "**Look for:**" in md
    assert "**k3sops can do this:** `k3sops status`" in md
    assert "- [emergency-cluster-down](emergency-cluster-down.md)" in md


def test_cli_list_json() -> None:
    res = CliRunner().invoke(_app(), ["runbook", "list", "-o", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["runbooks"]
    assert len(rows) == len(runbooks.CATALOGUE)
    row = next(r for r in rows if r["id"] == "pod-crashloop")
    assert row["steps"] == 4 and row["automated_steps"] >= 2
    assert set(row) == {"id", "title", "severity_hint", "steps", "automated_steps"}


def test_cli_show_table_and_markdown() -> None:
    runner = CliRunner()
    res = runner.invoke(_app(), ["runbook", "show", "pod-crashloop"])
    assert res.exit_code == 0, res.output
    assert "1. Describe the pod" in res.stdout
    assert "k3sops can do this: k3sops logs <pod> -n <namespace> --previous" in res.stdout
    res = runner.invoke(_app(), ["runbook", "show", "pod-crashloop", "--markdown"])
    assert res.exit_code == 0
    assert res.stdout == runbooks.to_markdown(runbooks.by_id()["pod-crashloop"])


def test_unknown_id_is_usage_error_with_suggestions() -> None:
    res = CliRunner().invoke(_app(), ["runbook", "show", "pod-crashlop"])
    assert isinstance(res.exception, runbook_cmd.UsageError)
    assert res.exception.exit_code == 2
    assert "pod-crashloop" in str(res.exception)
    assert "k3sops runbook list" in str(res.exception)


def test_export_writes_one_page_per_runbook_and_an_index(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "runbooks"
    res = CliRunner().invoke(_app(), ["runbook", "export", str(out)])
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([f"{r.id}.md" for r in runbooks.CATALOGUE] + ["index.md"])
    index = (out / "index.md").read_text(encoding="utf-8")
    assert "| [etcd-no-leader](etcd-no-leader.md) |" in index
    assert (out / "node-not-ready.md").read_text(encoding="utf-8") == runbooks.to_markdown(
        runbooks.by_id()["node-not-ready"])


def test_every_runbook_a_diagnosis_names_exists() -> None:
    """`Diagnosis.add(check, severity, kind, namespace, name, message, runbook, ...)`: the
    probes a diagnosis runs besides the checks (DNS probe, etcd membership, performance)."""
    domain = Path(checks_pkg.__file__).parent.parent
    named: set[str] = set()
    modules = [domain / m for m in ("dnsprobe.py", "etcdmember.py", "performance.py")]
    for path in [*modules, *sorted((domain / "diagnose").glob("*.py"))]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("add", "finding") and len(node.args) > 6):
                named |= {c.value for c in ast.walk(node.args[6])
                          if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    assert "dns-coredns-unavailable" in named  # the extraction sees the probes
    assert not named - runbooks.by_id().keys()
