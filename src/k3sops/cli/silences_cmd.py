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
    from rich.console import Console

    from k3sops.domain.alerting import AlertReport, Silence, SilenceList, SilenceResult

_SEVERITY_COLOUR = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "cyan"}


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


def _age(t: datetime | None, now: datetime) -> str:
    from k3sops.domain.alerting import format_duration

    return format_duration(now - t) if t else "-"


def _alerts_table(r: AlertReport, out: Console) -> None:
    from rich.table import Table

    now = datetime.now(UTC)
    if not r.groups:
        out.print(f"no firing alerts in Alertmanager at {r.alertmanager}")
        return
    out.print(f"[bold]{r.total}[/] alert(s) from Alertmanager at {r.alertmanager}")
    for g in r.groups:
        sev = g.severity or "-"
        colour = _SEVERITY_COLOUR.get(sev, "white")
        t = Table("alert", "state", "for", "summary", "labels",
                  title=f"[{colour}]{sev}[/] · {g.environment or '-'} ({g.count})",
                  title_justify="left")
        for a in g.alerts:
            extra = {k: v for k, v in a.labels.items()
                     if k not in ("alertname", "severity", "environment")}
            state = a.state if a.state != "suppressed" else (
                "silenced" if a.silenced_by else "inhibited")
            t.add_row(a.alertname, state, _age(a.starts_at, now), a.summary or "",
                      ", ".join(f"{k}={v}" for k, v in sorted(extra.items())))
        out.print(t)


def _matchers(s: Silence) -> str:
    return ", ".join(str(m) for m in s.matchers)


def _silences_table(r: SilenceList, out: Console) -> None:
    from rich.table import Table

    from k3sops.domain.alerting import format_duration

    now = datetime.now(UTC)
    if not r.silences:
        out.print(f"no silences in Alertmanager at {r.alertmanager}")
        return
    t = Table(title=f"Silences ({len(r.silences)}) in Alertmanager at {r.alertmanager}",
              title_justify="left")
    t.add_column("id", no_wrap=True)  # ids are copied into `unsilence`: never cut them
    for name in ("state", "matchers", "ends", "by", "comment"):
        t.add_column(name)
    for s in r.silences:
        if s.ends_at is None:
            ends = "-"
        elif s.ends_at > now:
            ends = f"in {format_duration(s.ends_at - now)}"
        else:
            ends = f"{format_duration(now - s.ends_at)} ago"
        t.add_row(s.id, s.state, _matchers(s), ends, s.created_by, s.comment)
    out.print(t)


def _result_table(r: SilenceResult, out: Console) -> None:
    # Only the id on stdout, so that `ID=$(k3sops alerts silence ...)` works; details go to
    # stderr for the person at the terminal.
    from rich.console import Console

    out.file.write(r.id + "\n")
    err = Console(stderr=True, highlight=False)
    if r.action == "created" and r.silence is not None:
        s = r.silence
        until = s.ends_at.isoformat() if s.ends_at else "?"
        err.print(f"silence created: {_matchers(s)} until {until}")
        if r.replaced:
            err.print(f"replaces silence {r.replaced} (expired if it was still running)")
    elif r.action == "already-expired":
        err.print("that silence had already expired; nothing changed")
    else:
        err.print("silence expired")


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
    render(report, output_format(ctx, output), _alerts_table)


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
    render(result, output_format(ctx, output), _result_table)


def unsilence_cmd(
    ctx: typer.Context,
    silence_id: Annotated[str, typer.Argument(metavar="ID", help="Silence id (a UUID).")],
    output: OutputOpt = None,
) -> None:
    """Expire a silence now (its alerts notify again)."""
    from k3sops.output.render import render
    from k3sops.services import alertmanager

    result = alertmanager.expire_silence(get_settings(ctx), os.environ, Path.home(), silence_id)
    render(result, output_format(ctx, output), _result_table)


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
    render(result, output_format(ctx, output), _silences_table)
