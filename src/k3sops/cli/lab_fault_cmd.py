"""`k3sops lab fault list | apply | reset | expected`: the fault matrix in the lab.

Every fault type is one YAML file in k3sops.lab.faults (its README.md describes the format);
these commands only load, apply, wait and report. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import OutputFormat, get_options

if TYPE_CHECKING:
    from k3sops.lab.layout import LabLayout

fault = typer.Typer(help="The fault matrix: one namespace per fault type, each with the "
                         "findings k3sops must make.", no_args_is_help=True)

def _layout() -> LabLayout:
    from k3sops.lab.layout import LabLayout

    return LabLayout.from_env(os.environ, Path.home())


def _say(msg: str) -> None:
    print(f"[faults] {msg}", file=sys.stderr, flush=True)


def _emit(data: object, fmt: OutputFormat) -> None:
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        import yaml

        typer.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), nl=False)


@fault.command("list")
def list_cmd(ctx: typer.Context) -> None:
    """List the fault types: id, namespace, what it does and the findings expected."""
    from k3sops.lab.faults import load_faults

    faults = load_faults()
    fmt = get_options(ctx).output
    if fmt is not OutputFormat.table:
        _emit([{"id": f.id, "namespace": f.namespace, "description": f.description,
                "environment": f.environment, "diagnose": f.diagnose,
                "fake_status": f.fake_status,
                "expected": [{k: v for k, v in r.items() if k != "fault"}
                             for r in f.expected_rows()],
                "root": {"check": f.root.check, "kind": f.root.kind, "name": f.root.name}}
               for f in faults.values()], fmt)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{len(faults)} fault types")
    for col in ("fault", "what it does", "expected findings"):
        t.add_column(col, overflow="fold")
    for f in faults.values():
        t.add_row(f.id, f.description, "\n".join(
            f"{e.severity} {e.check} {e.kind}/{e.name}" for e in f.findings))
    Console().print(t)


@fault.command("expected")
def expected_cmd(ctx: typer.Context) -> None:
    """Every expected finding: {fault, namespace, kind, name, severity, check, due_after}.

    ``name`` is an fnmatch pattern when the object's name is generated (a Deployment's pods);
    ``due_after`` is the rule's grace period in seconds after the fault is visible.
    """
    from k3sops.lab.faults import expected_rows, load_faults

    rows = expected_rows(list(load_faults().values()))
    fmt = get_options(ctx).output
    if fmt is OutputFormat.table:
        from rich.console import Console
        from rich.table import Table

        t = Table(title="expected findings (namespace: fault-FAULT unless cluster-scoped)")
        for col in ("fault", "severity", "check", "object", "due after"):
            t.add_column(col, overflow="fold")
        for r in rows:
            t.add_row(str(r["fault"]), str(r["severity"]), str(r["check"]),
                      f"{r['kind']}/{r['name']}", f"{r['due_after']}s" if r["due_after"] else "")
        Console().print(t)
        return
    _emit(rows, fmt)


@fault.command("apply")
def apply_cmd(
    ctx: typer.Context,
    ids: Annotated[list[str], typer.Argument(help="Fault ids, or all.")],
    wait: Annotated[bool, typer.Option(
        "--wait/--no-wait", help="Return when every fault is visible through the API.")] = True,
    timeout: Annotated[float, typer.Option(
        help="Seconds to wait for the faults' steps and visibility.")] = 300.0,
) -> None:
    """Apply fault types to the running lab, each in its namespace fault-ID.

    Writes <run>/platform-faults.yaml (the lab's platform file with the faults'
    environments) for `k3sops -c THAT check`.
    """
    from k3sops.lab.faults import load_faults, select
    from k3sops.lab.faults.ops import apply_faults

    chosen = select(load_faults(), ids)
    res = apply_faults(_layout(), os.environ, chosen, wait=wait, timeout=timeout,
                       progress=_say)
    out = {"applied": res.applied, "skipped": res.skipped, "seconds": res.seconds,
           "visible_after_seconds": res.visible, "platform_file": str(res.platform_file)}
    fmt = get_options(ctx).output
    if fmt is not OutputFormat.table:
        _emit(out, fmt)
        return
    typer.echo(f"applied {len(res.applied)} fault(s) in {res.seconds}s"
               + (f", {len(res.visible)} visible" if wait
                  else " (not waiting for them to be visible)"))
    for fid, why in res.skipped.items():
        typer.echo(f"  skipped {fid}: {why}")
    typer.echo(f"  platform file: {res.platform_file}\n"
               f"  try: k3sops -c {res.platform_file} check --weekly")


@fault.command("reset")
def reset_cmd(timeout: Annotated[float, typer.Option(
        help="Seconds to wait until everything is gone.")] = 300.0) -> None:
    """Remove every fault: their namespaces and labelled cluster-scoped objects."""
    from k3sops.lab.faults import load_faults
    from k3sops.lab.faults.ops import reset_faults

    removed = reset_faults(_layout(), os.environ, list(load_faults().values()),
                           timeout=timeout, progress=_say)
    typer.echo(f"removed {len(removed)}: {', '.join(removed)}" if removed
               else "no fault was applied")
