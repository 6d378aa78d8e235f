"""`k3sops provision`: install K3s on every inventory host, wait for the Nodes, check them.

It prints its plan and changes nothing without ``--apply``; applied steps go to the audit log.
Progress (Ansible plays and changed tasks) goes to stderr, the report to stdout. `scale nodes
add|remove` (cli/scale_cmd.py) runs through the same :func:`provisioner` and :func:`finish`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from k3sops.cli.options import Apply, StateDir, get_options, get_settings
from k3sops.errors import AdapterError

if TYPE_CHECKING:
    from k3sops.services.provision import Provisioner, ProvisionReport


def register(root: typer.Typer) -> None:
    """Attach `provision` to the root app."""
    root.command("provision")(provision_cmd)


def provisioner(ctx: typer.Context, apply: bool, state_dir: Path | None,
                drain_timeout: float = 120.0) -> Provisioner:
    """The provisioner on this invocation's platform, its progress on stderr unless -q."""
    from rich.console import Console

    from k3sops.services.provision import Provisioner

    err = Console(stderr=True, highlight=False)
    quiet = get_options(ctx).verbosity < 0
    return Provisioner(get_settings(ctx), os.environ, Path.home(), apply=apply, state=state_dir,
                       progress=None if quiet else lambda m: err.print(f"[dim]{m}[/]"),
                       drain_timeout=drain_timeout)


def finish(ctx: typer.Context, report: ProvisionReport) -> None:
    """Print the report (output/tables/provision.py); a failed step is an error."""
    from k3sops.output.render import render

    render(report, get_options(ctx).output.value)
    if report.failures:
        failed = report.failures[0]
        raise AdapterError(f"{failed.step.action} {failed.step.target} failed: {failed.error}",
                           hint="fix the cause and run the same command again")


def provision_cmd(ctx: typer.Context, apply: Apply = False, state_dir: StateDir = None) -> None:
    """Install K3s on every inventory host (site playbook), wait for the Nodes, check them."""
    finish(ctx, provisioner(ctx, apply, state_dir).provision())
