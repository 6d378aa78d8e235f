"""`k3sops check history` and `k3sops check ack`: past runs and manual-step acknowledgements."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import get_options
from k3sops.errors import UsageError

if TYPE_CHECKING:

    pass

StateDir = Annotated[Path | None, typer.Option(
    help="Where the history database lives (default: ~/.local/state/k3sops).",
    envvar="K3SOPS_STATE_DIR")]


def register(check_app: typer.Typer) -> None:
    """Add `history` and `ack` to the `check` group."""
    check_app.command("history")(history_cmd)
    check_app.command("ack")(ack_cmd)


def _state_dir(ctx: typer.Context, state_dir: Path | None) -> Path | None:
    """The subcommand's --state-dir, else the one given to `check` itself."""
    if state_dir is not None:
        return state_dir
    parent = ctx.parent.params.get("state_dir") if ctx.parent is not None else None
    return parent if isinstance(parent, Path) else None


def history_cmd(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs, newest first.")
                     ] = 20,
    period: Annotated[str | None, typer.Option(
        "--period", help="Only runs of this period: daily, weekly or monthly.")] = None,
    state_dir: StateDir = None,
) -> None:
    """Past check runs: when, which period and environment, counts, score, new and resolved."""
    from k3sops.domain.findings import PERIODS, Period
    from k3sops.output.render import render
    from k3sops.services import history as history_service

    if period is not None and period not in PERIODS:
        raise UsageError(f"--period {period!r} is not a period",
                         hint="use daily, weekly or monthly")
    chosen: Period | None = period
    opts = get_options(ctx)
    result = history_service.history(_state_dir(ctx, state_dir), os.environ, Path.home(),
                                     limit, chosen)
    render(result, opts.output.value)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        return "unknown"


def ack_cmd(
    ctx: typer.Context,
    item: Annotated[str, typer.Argument(help="The manual step's id (see `k3sops check`).")],
    note: Annotated[str, typer.Option("--note", help="What was done or seen.")],
    by: Annotated[str | None, typer.Option(
        "--by", help="Who did it (default: the OS user).")] = None,
    state_dir: StateDir = None,
) -> None:
    """Acknowledge a manual checklist step: records who did it, when, and a note.

    The acknowledgement holds for the step's period: a daily step is open again the next day.
    """
    from k3sops.output.render import render
    from k3sops.services import history as history_service

    opts = get_options(ctx)
    result = history_service.acknowledge(_state_dir(ctx, state_dir), os.environ, Path.home(),
                                         item, by or _os_user(), note)
    render(result, opts.output.value)
