"""`k3sops runbook`: list, show and export the runbooks of findings, alerts and emergencies."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import OutputOpt, output_format
from k3sops.errors import UsageError

if TYPE_CHECKING:

    from k3sops.domain.runbooks import Runbook

runbook = typer.Typer(help="Runbooks for every finding, alert and emergency.",
                      no_args_is_help=True)



def register(app: typer.Typer) -> None:
    """Attach the `runbook` group to the root app."""
    app.add_typer(runbook, name="runbook")


def _lookup(rb_id: str) -> Runbook:
    from k3sops.domain import runbooks

    found = runbooks.by_id().get(rb_id)
    if found is None:
        near = runbooks.closest(rb_id)
        raise UsageError(
            f"no runbook {rb_id!r}"
            + (f"; did you mean {', '.join(near)}?" if near else ""),
            hint="`k3sops runbook list` shows every runbook id")
    return found


@runbook.command("list")
def list_cmd(ctx: typer.Context, output: OutputOpt = None) -> None:
    """Every runbook: id, title, usual severity, steps and how many k3sops automates."""
    from k3sops.domain import runbooks
    from k3sops.output.render import render

    fmt = output_format(ctx, output)
    render(runbooks.summaries(), fmt)


@runbook.command("show")
def show_cmd(
    ctx: typer.Context,
    rb_id: Annotated[str, typer.Argument(metavar="ID", help="Runbook id (see `runbook list`).")],
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="Print Markdown (for a docs site) instead of the terminal view.")]
    = False,
    output: OutputOpt = None,
) -> None:
    """One runbook: numbered steps with the command to run and what to look for."""
    from rich.console import Console
    from rich.markdown import Markdown

    from k3sops.domain import runbooks
    from k3sops.output.render import render

    rb = _lookup(rb_id)
    fmt = "markdown" if markdown else output_format(ctx, output)
    if fmt == "markdown":
        out = Console()
        if out.is_terminal and not markdown:
            out.print(Markdown(runbooks.to_markdown(rb)))
        else:
            typer.echo(runbooks.to_markdown(rb), nl=False)
        return
    render(rb, fmt)


@runbook.command("export")
def export_cmd(
    directory: Annotated[Path, typer.Argument(metavar="DIR",
                                              help="Where to write the Markdown pages.")],
) -> None:
    """Write one Markdown page per runbook plus index.md into DIR (each file atomically)."""
    from rich.console import Console

    from k3sops.services import runbooks as runbook_service

    count = runbook_service.export(directory)
    Console(stderr=True).print(f"wrote {count} files to {directory}")
