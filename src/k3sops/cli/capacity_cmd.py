"""`k3sops capacity`: requests/limits vs allocatable per node and environment, and a forecast."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from k3sops.cli.options import get_options, get_settings
from k3sops.errors import PartialResult


def register(app: typer.Typer) -> None:
    """Attach `capacity` to the root app."""
    app.command("capacity")(capacity_cmd)


def capacity_cmd(
    ctx: typer.Context,
    window: Annotated[str, typer.Option(
        help="History of requests used for the forecast (Prometheus duration).")] = "7d",
    step: Annotated[str, typer.Option(help="Sampling step of that history.")] = "1h",
) -> None:
    """Requests and limits vs allocatable per node and environment; headroom; forecast."""
    from k3sops.output.render import render
    from k3sops.services import capacity

    r = capacity.run(get_settings(ctx), os.environ, Path.home(), window=window, step=step)
    render(r, get_options(ctx).output.value)
    missing = [s.name for s in r.sources if not s.ok]
    if missing:
        raise PartialResult("capacity report without its forecast: could not read "
                            + ", ".join(missing),
                            hint="check monitoring.prometheus in platform.yaml")
