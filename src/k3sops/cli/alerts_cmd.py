"""`k3sops alerts`: the alert rules and Alertmanager's alerts and silences.

render, test (promtool) and apply the default rules; list firing alerts; silence, unsilence
and list silences.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import (
    OutputOpt,
    ServerCaOpt,
    ServerOpt,
    TokenFileOpt,
    get_options,
    get_settings,
    output_format,
)
from k3sops.domain.alerting import DURATION_FORMS, MATCHER_FORMS
from k3sops.errors import ConfigError, K3sopsError, UsageError

if TYPE_CHECKING:
    from k3sops.config import Platform
    from k3sops.services import context

alerts = typer.Typer(
    help="Alert rules (render, test with promtool, apply to Prometheus) and firing alerts.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Attach the `alerts` group to the root app."""
    alerts.command("list")(list_cmd)
    alerts.command("silence")(silence_cmd)
    alerts.command("unsilence")(unsilence_cmd)
    alerts.command("silences")(silences_cmd)
    app.add_typer(alerts, name="alerts")


class RenderFormat(StrEnum):
    """What `alerts render` produces."""

    rules = "rules"
    prometheusrule = "prometheusrule"


class StoredState(StrEnum):
    """States of the alerts the service stored (``--state`` with ``--server``)."""

    firing = "firing"
    resolved = "resolved"


class EnvName(StrEnum):
    """Environment names accepted by ``--env``."""

    development = "development"
    staging = "staging"
    production = "production"


def _platform(ctx: typer.Context) -> tuple[context.Settings, Platform]:
    from rich.console import Console

    from k3sops.services import alerts as service

    opts = get_options(ctx)
    settings = get_settings(ctx)
    platform, is_default = service.platform_of(settings)
    err = Console(stderr=True, highlight=False)
    if is_default and opts.verbosity >= 0:
        err.print(f"note: {service.DEFAULT_PLATFORM_NOTICE}")
    return settings, platform


def _notes(notes: list[str], quiet: bool) -> None:
    from rich.console import Console
    from rich.markup import escape

    if quiet:
        return
    err = Console(stderr=True, highlight=False)
    for n in notes:
        err.print(f"note: {escape(n)}")


@alerts.command("render")
def render_cmd(
    ctx: typer.Context,
    fmt: Annotated[RenderFormat, typer.Option(
        "--format", help="rules: a Prometheus rule file; prometheusrule: PrometheusRule "
                         "objects (monitoring.coreos.com/v1).")] = RenderFormat.rules,
    env: Annotated[EnvName | None, typer.Option(
        "--env", help="Only the rules concerning this environment (its namespace rules and "
                      "its cluster's rules).")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Render the default alert rules with the platform's per-environment thresholds.

    YAML by default (also with -o table); -o json prints the same document as JSON.
    """
    from rich.console import Console

    from k3sops.services import alerts as service

    opts = get_options(ctx)
    _, platform = _platform(ctx)
    result = service.render(platform, fmt.value, env.value if env else None)
    _notes(result.notes, opts.verbosity < 0)
    text = (json.dumps(result.document, indent=2) + "\n" if opts.output.value == "json"
            else result.text)
    if file is None:
        sys.stdout.write(text)
        return
    try:
        file.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot write {file}: {e.strerror or type(e).__name__}",
                          hint="check the path and its permissions") from e
    if opts.verbosity >= 0:
        Console(stderr=True, highlight=False).print(
            f"wrote {result.rules} rules in {result.groups} groups to {file}")


@alerts.command("test")
def test_cmd(ctx: typer.Context) -> None:
    """Run promtool's unit tests of every rule: a case that fires and one that must not.

    Also runs `promtool check rules` on the whole rendered file. Exit 0 when everything
    passes, 1 when anything fails (promtool's output is shown).
    """
    from k3sops.output.render import render
    from k3sops.services import alerts as service

    opts = get_options(ctx)
    _, platform = _platform(ctx)
    report = service.run_tests(platform)
    _notes(report.notes, opts.verbosity < 0)
    render(report, opts.output.value)
    if not report.ok:
        failed = [f"{x.rule} ({x.environment})" for x in report.results if not x.passed]
        what = ", ".join(failed) if failed else "promtool check rules"
        raise K3sopsError(f"{report.failed} of {len(report.results)} rule tests failed"
                          f"{'' if report.check.passed else ' and the rule check failed'}: "
                          f"{what}")


@alerts.command("apply")
def apply_cmd(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print what would be written; change nothing.")] = False,
) -> None:
    """Load the rules into Prometheus (rule file) or the cluster (PrometheusRule objects).

    With monitoring.rule_files_dir, write k3sops-rules.yml there and reload Prometheus;
    otherwise apply PrometheusRule objects in monitoring.namespace of each environment's
    cluster. Rules are not destructive, so this applies directly; --dry-run only shows the result.
    """
    from k3sops.output.render import render
    from k3sops.services import alerts as service

    opts = get_options(ctx)
    settings, platform = _platform(ctx)
    report = service.apply(settings, platform, os.environ, Path.home(), dry_run=dry_run)
    _notes(report.notes, opts.verbosity < 0)
    render(report, opts.output.value)


# --- Alertmanager: firing alerts and silences ------------------------------------------

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
    server: ServerOpt = None,
    token_file: TokenFileOpt = None,
    server_ca: ServerCaOpt = None,
    state: Annotated[StoredState | None, typer.Option(
        "--state", help="With --server: only firing or only resolved alerts (default both).",
    )] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", help="With --server: at most this many, newest first (default 100).",
    )] = None,
) -> None:
    """Firing alerts in Alertmanager, grouped by severity and environment.

    With --server URL: the alerts a running `k3sops serve` received from Alertmanager, each
    with the object, root causes and runbook it added, newest first.
    """
    from k3sops.output.render import render

    if server is not None:
        from k3sops.services import remote

        if silenced or inhibited:
            raise UsageError("--silenced and --inhibited are Alertmanager's states; the "
                             "service stores what Alertmanager delivered",
                             hint="drop them, or drop --server to ask Alertmanager")
        token = remote.server_token(server, token_file, get_settings(ctx), os.environ,
                                    Path.home())
        stored = remote.alerts(server, token, server_ca,
                               state=state.value if state is not None else None,
                               limit=100 if limit is None else limit,
                               environments=env or [], severities=severity or [],
                               selectors=selector or [])
        render(stored, output_format(ctx, output))
        return
    given = [flag for flag, value in (("--token-file", token_file), ("--server-ca", server_ca),
                                      ("--state", state), ("--limit", limit))
             if value is not None]
    if given:
        raise UsageError(", ".join(given) + (" only applies" if len(given) == 1 else
                                             " only apply") + " with --server",
                         hint="add --server URL (or set K3SOPS_SERVER)")
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
