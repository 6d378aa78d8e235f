"""`k3sops node`: cordon, uncordon, drain (Kubernetes API) and the steps on the host (SSH).

The host steps are logs, oom-kills, restart-k3s, prune-images and vacuum-journal NODE.

Read-only steps run straight away; the others print their plan and change nothing unless
``--apply``; applied steps go to the audit log under ``--state-dir``/K3SOPS_STATE_DIR.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import Apply, StateDir, get_options, get_settings
from k3sops.cli.remediate_cmd import finish, open_runner
from k3sops.errors import UsageError

if TYPE_CHECKING:
    from k3sops.services.nodeops import Step

node_app = typer.Typer(help="Cordon, uncordon and drain nodes (dry-run unless --apply).",
                       no_args_is_help=True)

Node = Annotated[str, typer.Argument(help="Node name, as in the Ansible inventory.")]


def register(app: typer.Typer) -> None:
    """Attach the `node` group, with the host steps, to the root app."""
    node_app.command("logs")(logs_cmd)
    node_app.command("oom-kills")(oom_kills_cmd)
    node_app.command("restart-k3s")(restart_cmd)
    node_app.command("prune-images")(prune_cmd)
    node_app.command("vacuum-journal")(vacuum_cmd)
    app.add_typer(node_app, name="node")


@node_app.command("cordon")
def cordon_cmd(ctx: typer.Context, name: str, apply: Apply = False,
               state_dir: StateDir = None) -> None:
    """Mark a node unschedulable."""
    from k3sops.services import remediate

    finish(ctx, remediate.cordon(open_runner(ctx, apply, state_dir), name))


@node_app.command("uncordon")
def uncordon_cmd(ctx: typer.Context, name: str, apply: Apply = False,
                 state_dir: StateDir = None) -> None:
    """Mark a node schedulable again."""
    from k3sops.services import remediate

    finish(ctx, remediate.uncordon(open_runner(ctx, apply, state_dir), name))


def _selector(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--pod-selector {text!r}: {part!r} is not key=value",
                             hint="use equality selectors, e.g. app=web,tier=front")
        out[key.strip()] = value.strip()
    return out


@node_app.command("drain")
def drain_cmd(
    ctx: typer.Context,
    name: str,
    apply: Apply = False,
    state_dir: StateDir = None,
    timeout: Annotated[str, typer.Option(help="Give up evicting after this long.")] = "120s",
    ignore_daemonsets: Annotated[bool, typer.Option(
        "--ignore-daemonsets/--no-ignore-daemonsets",
        help="Leave DaemonSet pods in place (on by default, like kubectl).")] = True,
    delete_emptydir_data: Annotated[bool, typer.Option(
        "--delete-emptydir-data", help="Evict pods using emptyDir (their data is lost).")
    ] = False,
    pod_selector: Annotated[str | None, typer.Option(
        "--pod-selector", help="Only evict pods with these labels (key=value,...).")] = None,
) -> None:
    """Cordon a node and evict its pods through the Eviction API (PDBs are respected)."""
    from k3sops.domain.alerting import parse_duration
    from k3sops.services import remediate

    seconds = parse_duration(timeout).total_seconds()
    runner = open_runner(ctx, apply, state_dir, seconds)
    finish(ctx, remediate.drain(runner, name, ignore_daemonsets=ignore_daemonsets,
                                delete_emptydir_data=delete_emptydir_data,
                                selector=_selector(pod_selector)))


# --- steps on the host over SSH ----------------------------------------------------------

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
