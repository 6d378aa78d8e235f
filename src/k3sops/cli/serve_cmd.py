"""`k3sops serve`: the operations service (watch cache, scheduled checks, alerts, API)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from k3sops.cli.options import get_settings


def register(app: typer.Typer) -> None:
    """Attach `serve` to the root app."""
    app.command("serve")(serve_cmd)


def serve_cmd(
    ctx: typer.Context,
    listen: Annotated[str | None, typer.Option(
        "--listen", help="HOST:PORT to listen on (default: serve.listen in platform.yaml, "
        "else 0.0.0.0:8443).")] = None,
    once: Annotated[bool, typer.Option(
        "--once", help="Sync the watch cache, record the daily checklist judged from it, "
        "print its summary as JSON and exit (no HTTP).")] = False,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="Where the SQLite history lives when platform.yaml's state names "
        "no database (default: ~/.local/state/k3sops).", envvar="K3SOPS_STATE_DIR")] = None,
) -> None:
    """Run the operations service: checks from a watch cache, alerts, metrics, API."""
    from k3sops.serve import runner

    runner.run(get_settings(ctx), os.environ, Path.home(), listen=listen, once=once,
               state_dir=state_dir)
