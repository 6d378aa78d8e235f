"""`k3sops check`: the morning check (and the weekly and monthly reviews), its history, acks."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import (
    ReportOutputOpt,
    ServerCaOpt,
    ServerOpt,
    TokenFileOpt,
    get_options,
    get_settings,
    output_format,
)
from k3sops.errors import FindingsAtThreshold, PartialResult, UsageError

if TYPE_CHECKING:
    from k3sops.domain.findings import Period, Severity

check_app = typer.Typer(help="The operations checklist: daily, weekly and monthly.",
                        invoke_without_command=True)

HistoryDir = Annotated[Path | None, typer.Option(
    "--state-dir", help="Where the history database lives (default: ~/.local/state/k3sops).",
    envvar="K3SOPS_STATE_DIR")]


def register(app: typer.Typer) -> None:
    """Attach the `check` group (with `history` and `ack`) to the root app."""
    app.add_typer(check_app, name="check")


def _period(daily: bool, weekly: bool, monthly: bool) -> Period:
    options: tuple[tuple[Period, bool], ...] = (("daily", daily), ("weekly", weekly),
                                                ("monthly", monthly))
    chosen = [p for p, on in options if on]
    if len(chosen) > 1:
        raise UsageError("choose one of --daily, --weekly, --monthly")
    return chosen[0] if chosen else "daily"


@check_app.callback()
def check_cmd(
    ctx: typer.Context,
    daily: Annotated[bool, typer.Option("--daily", help="The morning check (default).")] = False,
    weekly: Annotated[bool, typer.Option("--weekly", help="Weekly review (includes daily).")
                      ] = False,
    monthly: Annotated[bool, typer.Option("--monthly", help="Monthly review (includes weekly).")
                       ] = False,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")
                   ] = None,
    fail_on: Annotated[str | None, typer.Option(
        "--fail-on", help="Exit 3 when findings reach this severity: warning or critical.")
                       ] = None,
    history: Annotated[bool, typer.Option(
        "--history/--no-history", help="Store the run and mark new/resolved findings.")] = True,
    output: ReportOutputOpt = None,
    state_dir: HistoryDir = None,
    show_suppressed: Annotated[bool, typer.Option(
        "--show-suppressed", help="List the findings hidden by platform.yaml's suppressions "
        "(always counted).")] = False,
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    server_ca: ServerCaOpt = None,
) -> None:
    """Run the checklist: nodes, control plane, workloads, network, storage, alerts, backups."""
    if ctx.invoked_subcommand is not None:
        return
    if fail_on not in (None, "warning", "critical"):
        raise UsageError(f"--fail-on {fail_on!r} is not a severity",
                         hint="use --fail-on warning or --fail-on critical")
    from k3sops.domain.findings import at_or_above
    from k3sops.output.render import render
    from k3sops.services import check as check_service
    from k3sops.services import history as history_service

    threshold: Severity | None = fail_on  # type: ignore[assignment]
    settings = get_settings(ctx)
    period = _period(daily, weekly, monthly)
    if server is not None:
        _local_only(ctx, history=history, state_dir=state_dir, show_suppressed=show_suppressed)
        from k3sops.services import remote

        token = remote.server_token(server, token_file, settings, os.environ, Path.home())
        report = remote.check(server, token, server_ca, period, env)
        history = False  # the service compares with its own history; no local trend
    else:
        if token_file is not None or server_ca is not None:
            raise UsageError("--token-file and --server-ca only apply with --server",
                             hint="add --server URL (or set K3SOPS_SERVER)")
        store = (history_service.open_history(settings.platform, state_dir, os.environ,
                                              Path.home()) if history else None)
        try:
            report = check_service.check(settings, os.environ, Path.home(), period, env,
                                         threshold, history=store,
                                         show_suppressed=show_suppressed)
        finally:
            if store is not None:
                store.close()
    fmt = output_format(ctx, output)
    if fmt in ("markdown", "html", "junit"):
        from k3sops.output import reports

        trend = (history_service.trend(settings.platform, state_dir, os.environ, Path.home())
                 if history else [])
        from rich.console import Console

        Console().file.write(reports.render(report, fmt, trend))
    else:
        render(report, fmt)
    missing = [s for s in report.sources if not s.ok]
    if threshold is not None and at_or_above(report.findings, threshold):
        n = len(at_or_above(report.findings, threshold))
        raise FindingsAtThreshold(f"{n} finding(s) at or above {threshold}")
    if missing:
        raise PartialResult("partial result: could not read " + ", ".join(
            f"{s.name} ({s.endpoint}): {s.error}" for s in missing))


def _local_only(ctx: typer.Context, *, history: bool, state_dir: Path | None,
                show_suppressed: bool) -> None:
    """Refuse the flags that only mean something when k3sops lists the cluster itself."""
    conflicts = []
    if not history:
        conflicts.append("--no-history")
    # only the flag: a K3SOPS_STATE_DIR exported for other commands is not a conflict
    source = ctx.get_parameter_source("state_dir")
    if state_dir is not None and (source is None or source.name != "ENVIRONMENT"):
        conflicts.append("--state-dir")
    if show_suppressed:
        conflicts.append("--show-suppressed")
    if conflicts:
        raise UsageError("--server cannot be combined with " + ", ".join(conflicts) + ": the "
                         "service judges and keeps the history itself",
                         hint="drop those flags, or drop --server to check the cluster directly")


# --- history and acknowledgements of manual steps ---------------------------------------



def _state_dir(ctx: typer.Context, state_dir: Path | None) -> Path | None:
    """The subcommand's --state-dir, else the one given to `check` itself."""
    if state_dir is not None:
        return state_dir
    parent = ctx.parent.params.get("state_dir") if ctx.parent is not None else None
    return parent if isinstance(parent, Path) else None


@check_app.command("history")
def history_cmd(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs, newest first.")
                     ] = 20,
    period: Annotated[str | None, typer.Option(
        "--period", help="Only runs of this period: daily, weekly or monthly.")] = None,
    state_dir: HistoryDir = None,
) -> None:
    """Past check runs: when, which period and environment, counts, score, new and resolved."""
    from k3sops.domain.findings import PERIODS
    from k3sops.output.render import render
    from k3sops.services import history as history_service

    if period is not None and period not in PERIODS:
        raise UsageError(f"--period {period!r} is not a period",
                         hint="use daily, weekly or monthly")
    chosen: Period | None = period
    opts = get_options(ctx)
    result = history_service.history(get_settings(ctx).platform, _state_dir(ctx, state_dir),
                                     os.environ, Path.home(), limit, chosen)
    render(result, opts.output.value)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        return "unknown"


@check_app.command("ack")
def ack_cmd(
    ctx: typer.Context,
    item: Annotated[str, typer.Argument(help="The manual step's id (see `k3sops check`).")],
    note: Annotated[str, typer.Option("--note", help="What was done or seen.")],
    by: Annotated[str | None, typer.Option(
        "--by", help="Who did it (default: the OS user).")] = None,
    state_dir: HistoryDir = None,
) -> None:
    """Acknowledge a manual checklist step: records who did it, when, and a note.

    The acknowledgement holds for the step's period: a daily step is open again the next day.
    """
    from k3sops.output.render import render
    from k3sops.services import history as history_service

    opts = get_options(ctx)
    result = history_service.acknowledge(get_settings(ctx).platform,
                                         _state_dir(ctx, state_dir), os.environ, Path.home(),
                                         item, by or _os_user(), note)
    render(result, opts.output.value)
