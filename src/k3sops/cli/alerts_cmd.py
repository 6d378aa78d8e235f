"""`k3sops alerts render | test | apply`: the default alert rules.

The `alerts` group object is shared: cli/silences_cmd.py adds list/silence/unsilence to it.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import get_options, get_settings
from k3sops.errors import ConfigError, K3sopsError

if TYPE_CHECKING:

    from k3sops.config import Platform
    from k3sops.services import context

alerts = typer.Typer(
    help="Alert rules (render, test with promtool, apply to Prometheus) and firing alerts.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Attach the `alerts` group to the root app."""
    app.add_typer(alerts, name="alerts")


class RenderFormat(StrEnum):
    """What `alerts render` produces."""

    rules = "rules"
    prometheusrule = "prometheusrule"


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
