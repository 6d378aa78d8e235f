"""The `upgrade` group: rolling K3s upgrades.

`upgrade plan` is read-only; `upgrade apply` changes nothing without ``--yes``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from k3sops.cli.options import OutputOpt, StateDir, get_options, get_settings, output_format
from k3sops.errors import UpgradeRefused, UpgradeStopped, UsageError

# The options `plan` and `apply` share (apply plans first, with the same meaning).
ToOpt = Annotated[str, typer.Option("--to", help="The K3s version to upgrade to "
                                                 "(vX.Y.Z+k3sN, e.g. v1.34.4+k3s1).")]
MaxUnavailableOpt = Annotated[int, typer.Option(
    "--max-unavailable", help="Agents drained and upgraded at a time (servers: one).")]
BackupMaxAgeOpt = Annotated[str, typer.Option(
    "--backup-max-age", help="How old the newest verified etcd backup may be.")]

upgrade_app = typer.Typer(
    no_args_is_help=True,
    help="Rolling K3s upgrades: servers first, one node at a time, preflight checks first.")


def register(app: typer.Typer) -> None:
    """Attach `upgrade` to the root app."""
    app.add_typer(upgrade_app, name="upgrade")


@upgrade_app.command("plan")
def plan_cmd(
    ctx: typer.Context,
    to: ToOpt,
    max_unavailable: MaxUnavailableOpt = 1,
    backup_max_age: BackupMaxAgeOpt = "24h",
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


def _duration(flag: str, text: str) -> float:
    from k3sops.timeparse import duration_seconds

    try:
        return duration_seconds(text)
    except ValueError as e:
        raise UsageError(f"{flag} {text!r} is not a duration", hint="e.g. 24h, 90m, 120s") from e


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str], None]]:
    """A spinner with the current step on a terminal (each step also printed); lines otherwise."""
    from rich.console import Console

    err = Console(stderr=True, highlight=False)
    if quiet:
        yield lambda _m: None
    elif err.is_terminal:
        from rich.markup import escape

        with err.status("upgrade") as st:
            def say(msg: str) -> None:
                err.print(f"[dim]{escape(msg)}[/]")
                st.update(f"upgrade: {escape(msg.strip())}")
            yield say
    else:
        yield lambda m: print(m, file=sys.stderr, flush=True)


@upgrade_app.command("apply")
def apply_cmd(
    ctx: typer.Context,
    to: ToOpt,
    max_unavailable: MaxUnavailableOpt = 1,
    yes: Annotated[bool, typer.Option(
        "--yes", help="Run the upgrade (default: print the plan and the steps).")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue a stopped upgrade from its recorded progress.")] = False,
    drain_timeout: Annotated[str, typer.Option(
        "--drain-timeout", help="How long a node's drain may wait on its evictions.")] = "120s",
    ready_timeout: Annotated[str, typer.Option(
        "--ready-timeout", help="How long to wait for the new version and Ready.")] = "5m",
    backup_max_age: BackupMaxAgeOpt = "24h",
    state_dir: StateDir = None,
    output: OutputOpt = None,
) -> None:
    """Upgrade K3s node by node: cordon, drain, upgrade (Ansible), wait, uncordon, check.

    Preflight first (as `upgrade plan`; a refusal exits 3 before anything changes). Without
    --yes only the plan and the steps are printed. The first failure stops the run (exit 1),
    naming the node, the step, whether it is left cordoned, and the resume command.
    """
    from k3sops.output.render import render
    from k3sops.services import upgrade_apply

    drain = _duration("--drain-timeout", drain_timeout)
    ready = _duration("--ready-timeout", ready_timeout)
    max_age = _duration("--backup-max-age", backup_max_age)
    fmt = output_format(ctx, output)
    with _progress(get_options(ctx).verbosity < 0) as say:
        try:
            report = upgrade_apply.apply(
                get_settings(ctx), os.environ, Path.home(), to=to,
                max_unavailable=max_unavailable, yes=yes, resume=resume, drain_timeout=drain,
                ready_timeout=ready, backup_max_age=max_age, state=state_dir, progress=say)
        except UpgradeStopped as e:
            render(e.report, fmt)
            raise
    render(report, fmt)
