"""`k3sops alerts list | silence | unsilence | silences`: Alertmanager's alerts and silences."""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import OutputOpt, get_settings, output_format
from k3sops.domain.alerting import DURATION_FORMS, MATCHER_FORMS

if TYPE_CHECKING:

    pass



def register(alerts: typer.Typer) -> None:
    """Add `list`, `silence`, `unsilence` and `silences` to the `alerts` command group."""
    alerts.command("list")(list_cmd)
    alerts.command("silence")(silence_cmd)
    alerts.command("unsilence")(unsilence_cmd)
    alerts.command("silences")(silences_cmd)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return ""


def list_cmd(
    ctx: typer.Context,
    env: Annotated[list[str] | None, typer.Option(
        "--env", "-e", help="Only alerts with this environment label (repeatable).")] = None,
    severity: Annotated[list[str] | None, typer.Option(
        "--severity", "-s", help="Only alerts with this severity label (repeatable).")] = None,
    selector: Annotated[list[str] | None, typer.Option(
        "--selector", "-l", help=f"Label matcher, all must match (repeatable): {MATCHER_FORMS}.",
    )] = None,
    silenced: Annotated[bool, typer.Option(
        "--silenced", help="Include silenced alerts.")] = False,
    inhibited: Annotated[bool, typer.Option(
        "--inhibited", help="Include inhibited alerts.")] = False,
    output: OutputOpt = None,
) -> None:
    """Firing alerts in Alertmanager, grouped by severity and environment."""
    from k3sops.output.render import render
    from k3sops.services import alertmanager

    report = alertmanager.list_alerts(
        get_settings(ctx), os.environ, Path.home(), environments=env or [],
        severities=severity or [], selectors=selector or [], include_silenced=silenced,
        include_inhibited=inhibited)
    render(report, output_format(ctx, output))


def silence_cmd(
    ctx: typer.Context,
    matcher: Annotated[list[str] | None, typer.Option(
        "--matcher", "-m", help=f"Label matcher, repeatable: {MATCHER_FORMS}.")] = None,
    duration: Annotated[str, typer.Option(
        "--duration", "-d", help=f"How long, from now: {DURATION_FORMS}.")] = "2h",
    author: Annotated[str | None, typer.Option(
        "--author", "-a", help="Who silences (default: the OS user).")] = None,
    comment: Annotated[str | None, typer.Option(
        "--comment", help="Why (required; a ticket or a reason).")] = None,
    extend: Annotated[str | None, typer.Option(
        "--extend", metavar="ID",
        help="Re-create silence ID as a new silence for --duration from now (its matchers and "
             "comment unless given); ID is expired if still running, never revived.")] = None,
    output: OutputOpt = None,
) -> None:
    """Silence alerts matching all matchers for a while; prints the new silence id."""
    from k3sops.output.render import render
    from k3sops.services import alertmanager

    result = alertmanager.create_silence(
        get_settings(ctx), os.environ, Path.home(), matchers=matcher or [], duration=duration,
        author=author if author is not None else _os_user(), comment=comment,
        now=datetime.now(UTC), extend=extend)
    render(result, output_format(ctx, output))


def unsilence_cmd(
    ctx: typer.Context,
    silence_id: Annotated[str, typer.Argument(metavar="ID", help="Silence id (a UUID).")],
    output: OutputOpt = None,
) -> None:
    """Expire a silence now (its alerts notify again)."""
    from k3sops.output.render import render
    from k3sops.services import alertmanager

    result = alertmanager.expire_silence(get_settings(ctx), os.environ, Path.home(), silence_id)
    render(result, output_format(ctx, output))


def silences_cmd(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option(
        "--all", "-A", help="Include expired silences.")] = False,
    output: OutputOpt = None,
) -> None:
    """Silences in Alertmanager: active and pending (expired too with --all)."""
    from k3sops.output.render import render
    from k3sops.services import alertmanager

    result = alertmanager.list_silences(get_settings(ctx), os.environ, Path.home(),
                                        include_expired=all_)
    render(result, output_format(ctx, output))
