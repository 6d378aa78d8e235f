"""Root command: global flags, sub-command groups, and the one place errors become exit codes."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from k3sops import __version__
from k3sops.cli.options import GlobalOptions, OutputFormat
from k3sops.errors import ExitCode, K3sopsError

app = typer.Typer(
    name="k3sops",
    help="Day-to-day operations for K3s platforms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"k3sops {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(help="Kubeconfig file (else $KUBECONFIG, then ~/.kube/config).",
                     envvar="K3SOPS_KUBECONFIG"),
    ] = None,
    context: Annotated[
        str | None, typer.Option(help="Kubeconfig context to use.", envvar="K3SOPS_CONTEXT")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="platform.yaml to use.", envvar="K3SOPS_CONFIG"),
    ] = None,
    output: Annotated[
        OutputFormat,
        typer.Option("--output", "-o", help="Output format.", envvar="K3SOPS_OUTPUT"),
    ] = OutputFormat.table,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True,
                     help="Print the version and exit."),
    ] = False,
) -> None:
    """Operate a K3s platform: status, checks, monitoring, backups, scaling, diagnosis."""
    verbosity = -1 if quiet else verbose
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)
    ctx.obj = GlobalOptions(kubeconfig=kubeconfig, context=context, config=config,
                            output=output, verbosity=verbosity)


def _register() -> None:
    # Imported here so that each group module can import `app` helpers without cycles.
    from k3sops.cli import (
        alerts_cmd,
        backup_cmd,
        backup_more_cmd,
        capacity_cmd,
        check_cmd,
        config_cmd,
        dashboards_cmd,
        diagnose_cmd,
        emergency_cmd,
        env_cmd,
        gitops_cmd,
        lab_cmd,
        logs_cmd,
        metrics_cmd,
        nodeops_cmd,
        remediate_cmd,
        runbook_cmd,
        scale_cmd,
        scale_nodes_cmd,
        silences_cmd,
        status_cmd,
    )

    config_cmd.register(app)
    status_cmd.register(app)
    check_cmd.register(app)
    diagnose_cmd.register(app)
    emergency_cmd.register(app)
    metrics_cmd.register(app)
    silences_cmd.register(alerts_cmd.alerts)
    alerts_cmd.register(app)
    dashboards_cmd.register(app)
    runbook_cmd.register(app)
    remediate_cmd.register(app)
    nodeops_cmd.register(remediate_cmd.node_app)
    scale_cmd.register(app)
    scale_nodes_cmd.register(app)
    capacity_cmd.register(app)
    logs_cmd.register(app)
    env_cmd.register(app)
    gitops_cmd.register(app)
    backup_cmd.register(app)
    backup_more_cmd.register(backup_cmd.backup)
    lab_cmd.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map errors to documented exit codes."""
    err = Console(stderr=True, highlight=False)
    try:
        rv = app(args=argv, standalone_mode=False)
    except K3sopsError as e:
        err.print(Text.assemble(("error: ", "bold red"), str(e)), soft_wrap=True)
        sys.exit(int(e.exit_code))
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(int(ExitCode.INTERRUPTED))
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(int(ExitCode.INTERRUPTED))
    except typer.TyperException as e:  # bad flags and arguments (click's usage errors)
        show = getattr(e, "show", None)
        if callable(show):
            show(file=sys.stderr)
        else:
            err.print(Text.assemble(("error: ", "bold red"), str(e)))
        sys.exit(int(ExitCode.USAGE))
    # In non-standalone mode click turns Ctrl-C into a returned 130 instead of raising.
    sys.exit(rv if isinstance(rv, int) else 0)
