"""`k3sops status`: nodes, pods and monitoring targets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from k3sops.cli.options import get_options, get_settings
from k3sops.errors import PartialResult

if TYPE_CHECKING:

    pass


def register(app: typer.Typer) -> None:
    """Attach `status` to the root app."""
    app.command("status")(status_cmd)


def status_cmd(ctx: typer.Context) -> None:
    """Nodes, pods and monitoring targets of the platform, at a glance."""
    from k3sops.output.render import render
    from k3sops.services import status

    opts = get_options(ctx)
    settings = get_settings(ctx)
    report = status.gather(settings, os.environ, Path.home())
    render(report, opts.output.value)
    missing = [s for s in report.sources if not s.ok]
    if missing:
        raise PartialResult("partial result: could not read "
                            + ", ".join(f"{s.name} ({s.endpoint})" for s in missing))
