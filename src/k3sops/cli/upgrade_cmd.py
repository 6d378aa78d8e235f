"""The `upgrade` group: rolling K3s upgrades. `upgrade plan` is read-only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from k3sops.cli.options import OutputOpt, get_settings, output_format
from k3sops.errors import UpgradeRefused, UsageError

upgrade_app = typer.Typer(
    no_args_is_help=True,
    help="Rolling K3s upgrades: servers first, one node at a time, preflight checks first.")


def register(app: typer.Typer) -> None:
    """Attach `upgrade` to the root app."""
    app.add_typer(upgrade_app, name="upgrade")


@upgrade_app.command("plan")
def plan_cmd(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="The K3s version to upgrade to "
                                                 "(vX.Y.Z+k3sN, e.g. v1.34.4+k3s1).")],
    max_unavailable: Annotated[int, typer.Option(
        "--max-unavailable", help="Agents drained and upgraded at a time (servers: one).")] = 1,
    backup_max_age: Annotated[str, typer.Option(
        "--backup-max-age", help="How old the newest verified etcd backup may be.")] = "24h",
    output: OutputOpt = None,
) -> None:
    """Read-only: each node's version, the upgrade order and the preflight checks.

    Exit 3 when a preflight check fails: the reason and the command that fixes it are shown.
    """
    from k3sops.output.render import render
    from k3sops.services import upgrade
    from k3sops.timeparse import duration_seconds

    try:
        max_age = duration_seconds(backup_max_age)
    except ValueError as e:
        raise UsageError(f"--backup-max-age {backup_max_age!r} is not a duration",
                         hint="e.g. 24h, 90m, 2d") from e
    report = upgrade.plan(get_settings(ctx), os.environ, Path.home(), to=to,
                          max_unavailable=max_unavailable, backup_max_age=max_age)
    render(report, output_format(ctx, output))
    refused = report.refused
    if refused:
        first = refused[0]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise UpgradeRefused(
            f"upgrade to {report.target} refused by preflight {first.rule}: "
            f"{first.reason}{more}",
            hint=f"run: {first.command}" if first.command else None)
