"""`scale nodes add|remove` (mounted by the `scale` group) and `provision`.

Both print their plan and change nothing without ``--apply``; applied steps go to the audit log.
Progress (Ansible plays and changed tasks) goes to stderr, the report to stdout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import get_options
from k3sops.cli.remediate_cmd import COLOURS, Apply, StateDir
from k3sops.errors import AdapterError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.services.provision import Provisioner, ProvisionReport

app = typer.Typer(help="Add and remove K3s nodes through Ansible (dry-run unless --apply).",
                  no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Attach `provision` to the root app (`scale nodes` is mounted by cli/scale_cmd.py)."""
    root.command("provision")(provision_cmd)


def _provisioner(ctx: typer.Context, apply: bool, state_dir: Path | None,
                 drain_timeout: float = 120.0) -> Provisioner:
    from rich.console import Console

    from k3sops.services import context
    from k3sops.services.provision import Provisioner

    opts = get_options(ctx)
    settings = context.resolve(opts.kubeconfig, opts.context, opts.config, os.environ,
                               Path.cwd())
    err = Console(stderr=True, highlight=False)
    quiet = opts.verbosity < 0
    return Provisioner(settings, os.environ, Path.home(), apply=apply, state=state_dir,
                       progress=None if quiet else lambda m: err.print(f"[dim]{m}[/]"),
                       drain_timeout=drain_timeout)


def _table(r: ProvisionReport, out: Console) -> None:
    from rich.table import Table

    mode = "applied" if r.applied else "plan (dry run; pass --apply to make these changes)"
    t = Table("#", "action", "target", "detail", "result", "error", title=f"{r.title}: {mode}")
    for i, s in enumerate(r.steps, 1):
        colour = COLOURS.get(s.result, "white")
        t.add_row(str(i), s.step.action, s.step.target, s.step.detail,
                  f"[{colour}]{s.result}[/]", s.error or "")
    if r.steps:
        out.print(t)
    else:
        out.print(f"{r.title}: nothing to do")
    if r.changed is not None:
        out.print(f"ansible: {r.changed} task(s) changed")
    for name, ready in r.ready.items():
        out.print(f"node {name}: {'Ready' if ready else 'not Ready'}")
    for f in r.findings:
        out.print(f"[yellow]{f.severity}[/] {f.check}: {f.message}")
    for n in r.notes:
        out.print(f"[dim]note:[/] {n}")
    if r.audit_log:
        out.print(f"[dim]audit log:[/] {r.audit_log}")


def _finish(ctx: typer.Context, report: ProvisionReport) -> None:
    from k3sops.output.render import render

    render(report, get_options(ctx).output.value, _table)
    if report.failures:
        failed = report.failures[0]
        raise AdapterError(f"{failed.step.action} {failed.step.target} failed: {failed.error}",
                           hint="fix the cause and run the same command again")


def _addresses(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, addr = v.partition("=")
        if not sep or not name or not addr:
            raise UsageError(f"--address {v!r} is not NAME=ADDRESS",
                             hint="e.g. --address node4=10.0.0.14")
        out[name] = addr
    return out


@app.command("add")
def add_cmd(
    ctx: typer.Context,
    nodes: Annotated[list[str], typer.Argument(help="Names of the nodes to add.")],
    server: Annotated[bool, typer.Option("--server/--agent",
                                         help="Add as servers (etcd members) or agents.")
                      ] = False,
    address: Annotated[list[str] | None, typer.Option(
        "--address", help="NAME=ADDRESS for a host the inventory and DNS do not know "
                          "(repeatable).")] = None,
    apply: Apply = False,
    state_dir: StateDir = None,
) -> None:
    """Add nodes: inventory (comments kept), scale-cluster playbook, wait Ready, node checks."""
    p = _provisioner(ctx, apply, state_dir)
    _finish(ctx, p.add(nodes, "server" if server else "agent", _addresses(address or [])))


@app.command("remove")
def remove_cmd(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="Name of the node to remove.")],
    apply: Apply = False,
    state_dir: StateDir = None,
    skip_host: Annotated[bool, typer.Option(
        "--skip-host", help="Do not touch the host (it is gone): only Kubernetes and the "
                            "inventory.")] = False,
    timeout: Annotated[str, typer.Option(help="Give up draining after this long.")] = "120s",
) -> None:
    """Remove a node: drain, etcd member out first (server), delete the Node, uninstall k3s."""
    from k3sops.domain.alerting import parse_duration

    p = _provisioner(ctx, apply, state_dir, parse_duration(timeout).total_seconds())
    _finish(ctx, p.remove(node, skip_host=skip_host))


def provision_cmd(ctx: typer.Context, apply: Apply = False, state_dir: StateDir = None) -> None:
    """Install K3s on every inventory host (site playbook), wait for the Nodes, check them."""
    p = _provisioner(ctx, apply, state_dir)
    _finish(ctx, p.provision())
