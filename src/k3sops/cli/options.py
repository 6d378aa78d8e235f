"""Global options shared by every command (kept on the typer context, never global)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from k3sops.services.context import Settings


class OutputFormat(StrEnum):
    """Output formats accepted by ``-o/--output``."""

    table = "table"
    json = "json"
    yaml = "yaml"
    markdown = "markdown"
    html = "html"
    junit = "junit"


@dataclass(frozen=True)
class GlobalOptions:
    """What the root command parsed; passed down explicitly to services."""

    kubeconfig: Path | None
    context: str | None
    config: Path | None
    output: OutputFormat
    verbosity: int


def get_options(ctx: typer.Context) -> GlobalOptions:
    """Return the root command's options from any (sub)command context."""
    root = ctx.find_root()
    obj = root.obj
    if not isinstance(obj, GlobalOptions):  # pragma: no cover - only when called outside the app
        raise RuntimeError("global options missing: the root callback did not run")
    return obj


_SETTINGS = "k3sops.settings"


def get_settings(ctx: typer.Context) -> Settings:
    """The settings of this invocation: the root's flags merged over platform.yaml.

    Resolved once, by the first command that needs them, and kept on the root context: a
    command that needs no platform file (``lab``, ``config init``) never loads one, and every
    command that does sees the same one.
    """
    import os

    from k3sops.services import context

    root = ctx.find_root()
    if _SETTINGS not in root.meta:
        opts = get_options(ctx)
        root.meta[_SETTINGS] = context.resolve(opts.kubeconfig, opts.context, opts.config,
                                               os.environ, Path.cwd())
    settings: Settings = root.meta[_SETTINGS]
    return settings


# The per-command ``-o`` that overrides the root's: one definition, read by output_format().
OutputOpt = Annotated[OutputFormat | None, typer.Option(
    "--output", "-o", help="Output format (overrides the global -o): table, json, yaml.")]
ReportOutputOpt = Annotated[OutputFormat | None, typer.Option(
    "--output", "-o", help="Output format (overrides the global -o): table, json, yaml, "
    "markdown, html, junit.")]


def output_format(ctx: typer.Context, output: OutputFormat | None) -> str:
    """The format to print in: the command's own ``-o`` when given, else the root's."""
    return (output or get_options(ctx).output).value


# Options shared by the commands that change the cluster (remediation, scale, provision,
# emergency): one definition, so that --apply and --state-dir read the same everywhere.
Apply = Annotated[bool, typer.Option("--apply", help="Make the changes (default: only plan).")]
StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", envvar="K3SOPS_STATE_DIR",
    help="Where the audit log goes (default ~/.local/state/k3sops).")]


# Reading from a running `k3sops serve` (check, diagnose): one wording for every command.
ServerOpt = Annotated[str | None, typer.Option(
    "--server", help="Read from a running `k3sops serve` at this URL instead of the cluster.",
    envvar="K3SOPS_SERVER")]
TokenFileOpt = Annotated[Path | None, typer.Option(
    "--token-file", help="With --server: a file holding the bearer token (else "
    "$K3SOPS_SERVER_TOKEN, else the kubeconfig user's token over https or loopback).")]
ServerCaOpt = Annotated[Path | None, typer.Option(
    "--server-ca", help="With --server: CA bundle to verify the service (default: system CAs).")]
