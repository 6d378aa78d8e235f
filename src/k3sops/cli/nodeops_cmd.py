"""`node logs|oom-kills|restart-k3s|prune-images|vacuum-journal NODE`: steps on the host over SSH.

Mounted on the `node` group of cli/remediate_cmd.py. Read-only steps run straight away; the
others print what they would run unless ``--apply``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import Apply, StateDir, get_options, get_settings

if TYPE_CHECKING:

    from k3sops.services.nodeops import Step

Node = Annotated[str, typer.Argument(help="Node name, as in the Ansible inventory.")]


def register(node_app: typer.Typer) -> None:
    """Attach the node-level steps to the `node` group."""
    node_app.command("logs")(logs_cmd)
    node_app.command("oom-kills")(oom_kills_cmd)
    node_app.command("restart-k3s")(restart_cmd)
    node_app.command("prune-images")(prune_cmd)
    node_app.command("vacuum-journal")(vacuum_cmd)


def _run(ctx: typer.Context, step: Step, node: str, apply: bool = True,
         state_dir: Path | None = None, *, lines: int = 200, since: str | None = None,
         keep: str = "7d") -> None:
    from k3sops.output.render import render
    from k3sops.services import nodeops

    opts = get_options(ctx)
    settings = get_settings(ctx)
    report = nodeops.run_step(settings, os.environ, Path.home(), step, node, apply=apply,
                              state=state_dir, lines=lines, since=since, keep=keep)
    render(report, opts.output.value)


def logs_cmd(
    ctx: typer.Context, node: Node,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Last N lines.")] = 200,
    since: Annotated[str | None, typer.Option(help="journalctl time, e.g. -1h, today.")] = None,
) -> None:
    """K3s service logs from the node's journal (journalctl -u k3s / k3s-agent)."""
    _run(ctx, "logs", node, lines=lines, since=since)


def oom_kills_cmd(ctx: typer.Context, node: Node) -> None:
    """Processes the kernel OOM killer killed on the node (dmesg)."""
    _run(ctx, "oom-kills", node)


def restart_cmd(ctx: typer.Context, node: Node, apply: Apply = False,
                state_dir: StateDir = None) -> None:
    """Restart the K3s service on the node (systemctl restart k3s / k3s-agent)."""
    _run(ctx, "restart-k3s", node, apply, state_dir)


def prune_cmd(ctx: typer.Context, node: Node, apply: Apply = False,
              state_dir: StateDir = None) -> None:
    """Remove unused container images on the node (k3s crictl rmi --prune)."""
    _run(ctx, "prune-images", node, apply, state_dir)


def vacuum_cmd(
    ctx: typer.Context, node: Node, apply: Apply = False, state_dir: StateDir = None,
    keep: Annotated[str, typer.Option(help="Keep this much journal.")] = "7d",
) -> None:
    """Shrink the node's journal (journalctl --vacuum-time=7d)."""
    _run(ctx, "vacuum-journal", node, apply, state_dir, keep=keep)
