"""`k3sops logs`: a pod's logs (Kubernetes API), or a LogQL query when Loki is configured."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import OutputOpt, get_settings, output_format
from k3sops.domain.logs import Direction
from k3sops.errors import UsageError

if TYPE_CHECKING:

    pass


def register(app: typer.Typer) -> None:
    """Attach `logs` to the root app."""
    app.command("logs")(logs_cmd)


def logs_cmd(
    ctx: typer.Context,
    pod: Annotated[str | None, typer.Argument(help="Pod name (optional with --query).")] = None,
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n", help="Namespace (default: the context's).")] = None,
    container: Annotated[str | None, typer.Option(
        "--container", "-c", help="Container (needed when the pod has several).")] = None,
    previous: Annotated[bool, typer.Option(
        "--previous", "-p", help="Logs of the previous (crashed) container instance.")] = False,
    tail: Annotated[int | None, typer.Option(
        "--tail", help="Only the last N lines (with Loki: at most N lines, default 100).",
    )] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only lines newer than this: 30m, 2h, 1d (Loki default: 1h).")] = None,
    query: Annotated[str | None, typer.Option(
        "--query", metavar="LOGQL", help="A LogQL query to run over Loki (needs monitoring.loki).",
    )] = None,
    loki: Annotated[bool, typer.Option(
        "--loki", help="Read the pod's logs from Loki instead of the Kubernetes API.")] = False,
    direction: Annotated[Direction, typer.Option(
        "--direction", help="Loki: which end of the range --tail keeps (lines print oldest "
                            "first either way).")] = Direction.backward,
    timestamps: Annotated[bool, typer.Option(
        "--timestamps", help="Prefix each line with its timestamp.")] = False,
    output: OutputOpt = None,
) -> None:
    """Show a pod's logs, or the lines of a LogQL query when Loki is configured."""
    from k3sops.output.render import render
    from k3sops.output.tables.logs import log_lines
    from k3sops.services import logs

    settings = get_settings(ctx)
    if query is not None or loki:
        if previous:
            raise UsageError("--previous applies to Kubernetes logs, not to Loki",
                             hint="drop --previous, or drop --query/--loki")
        result = logs.loki_logs(settings, os.environ, Path.home(), now=datetime.now(UTC),
                                query=query, pod=pod, namespace=namespace,
                                container=container, since=since, limit=tail,
                                direction=direction)
    else:
        if pod is None:
            raise UsageError("which pod? give POD (or --query LOGQL with Loki)",
                             hint="k3sops logs POD -n NAMESPACE [-c CONTAINER]")
        result = logs.pod_logs(settings, os.environ, Path.home(), pod=pod,
                               namespace=namespace, container=container, previous=previous,
                               tail=tail, since=since)
    render(result, output_format(ctx, output), log_lines(timestamps))
