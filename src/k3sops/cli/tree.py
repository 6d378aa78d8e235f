"""The typer root of ``k3sops``: global flags, commands loaded on first use, ``-o`` everywhere.

Importing every command module up front cost more than a second on each run (each pulls its
services, pydantic models, lightkube and httpx2). The root group here knows the top-level
commands from :data:`k3sops.cli.app.COMMANDS` and imports a command's module only when the
command is resolved — to run it, or to show its own ``--help``. The root ``--help`` (and the
completion of top-level names) lists the static one-line help instead.

kubectl users type ``-o json`` last (``k3sops metrics nodes -o json``). Every loaded command
that has no ``-o/--output`` of its own gets one that sets the global output format, so the
flag works before or after the command path; commands with their own ``-o`` keep it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
from typer._click.core import Command, Context, Parameter  # typer's own (vendored) click
from typer.core import TyperCommand, TyperGroup

from k3sops.cli.app import COMMANDS, LOADERS
from k3sops.cli.options import GlobalOptions, OutputFormat
from k3sops.errors import ExitCode, K3sopsError


class _Stub(TyperCommand):
    """Stands for a top-level command in listings until the command itself is needed."""


class LazyGroup(TyperGroup):
    """The root group: top-level commands are imported when first resolved, not before."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, entry in COMMANDS.items():
            self.commands.setdefault(name, _Stub(name, help=entry.help))
        self._listing = 0

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """Return the command, importing its module unless only its help line is wanted."""
        cmd = self.commands.get(cmd_name)
        if not isinstance(cmd, _Stub) or self._listing:
            return cmd
        real = load(cmd_name)
        self.commands[cmd_name] = real
        return real

    def format_help(self, ctx: Context, formatter: Any) -> None:
        """Render the root help from the static one-line help of each command."""
        self._listing += 1
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing -= 1

    def shell_complete(self, ctx: Context, incomplete: str) -> Any:
        """Complete top-level names from the static table (deeper levels load their command)."""
        self._listing += 1
        try:
            return super().shell_complete(ctx, incomplete)
        finally:
            self._listing -= 1


def _set_output(ctx: typer.Context, value: OutputFormat | None) -> None:
    """Callback of the per-command ``-o``: it overrides the root's ``-o`` (last one wins)."""
    if value is None or ctx.resilient_parsing:
        return
    top = ctx.find_root()
    if isinstance(top.obj, GlobalOptions):
        top.obj = dataclasses.replace(top.obj, output=value)


@functools.cache
def output_param() -> Parameter:
    """The ``-o/--output`` option added to commands without their own, built by typer."""
    probe = typer.Typer(add_completion=False)

    @probe.command()
    def probe_cmd(output: Annotated[OutputFormat | None, typer.Option(
        "--output", "-o", callback=_set_output,
        help="Output format, also accepted after the command (as the global -o).",
    )] = None) -> None:
        """Only here so that typer builds the option with its own types."""

    (param,) = typer.main.get_command(probe).params
    # The value goes to the global options, never to the command's function.
    param.expose_value = False
    return param


def has_output(cmd: Command) -> bool:
    """Whether ``cmd`` itself declares ``-o/--output``."""
    return any({"-o", "--output"} & set(getattr(p, "opts", ())) for p in cmd.params)


def _accept_output(cmd: Command) -> None:
    if not has_output(cmd):
        cmd.params.append(output_param())
    if isinstance(cmd, TyperGroup):
        for sub in cmd.commands.values():
            _accept_output(sub)


@functools.cache
def _unit(unit: str) -> dict[str, Command]:
    # A unit's modules register into module-level typer apps; doing it once per process keeps
    # repeated invocations (tests call main() many times) from registering commands twice.
    holder = typer.Typer(add_completion=False)
    LOADERS[unit](holder)
    commands = dict(typer.main.get_group(holder).commands)
    for cmd in commands.values():
        _accept_output(cmd)
    return commands


def load(name: str) -> Command:
    """Import and build the top-level command ``name`` (one of :data:`COMMANDS`)."""
    return _unit(COMMANDS[name].unit)[name]


def load_all() -> dict[str, Command]:
    """Every top-level command, built (for tests and documentation that walk the tree)."""
    return {name: load(name) for name in COMMANDS}


def full_tree() -> TyperGroup:
    """The root group with every command loaded: the whole tree, to walk it."""
    group = typer.main.get_group(app)
    group.commands.update(load_all())
    return group


app = typer.Typer(
    name="k3sops",
    help="Day-to-day operations for K3s platforms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=LazyGroup,
)


def _version_callback(value: bool) -> None:
    # main() answers `--version` before typer is imported; this covers what it cannot see.
    if value:
        from k3sops import __version__

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
        typer.Option("--output", "-o", help="Output format (also accepted after the command).",
                     envvar="K3SOPS_OUTPUT"),
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


def _error(*parts: Any) -> None:
    from rich.console import Console
    from rich.text import Text

    Console(stderr=True, highlight=False).print(Text.assemble(*parts), soft_wrap=True)


def run(args: list[str]) -> int:
    """Run the app on ``args``; return the documented exit code of the outcome."""
    try:
        rv = app(args=args, standalone_mode=False)
    except K3sopsError as e:
        _error(("error: ", "bold red"), str(e))
        return int(e.exit_code)
    except KeyboardInterrupt:
        _error("interrupted")
        return int(ExitCode.INTERRUPTED)
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        _error("aborted")
        return int(ExitCode.INTERRUPTED)
    except typer.TyperException as e:  # bad flags and arguments (click's usage errors)
        show = getattr(e, "show", None)
        if callable(show):
            show(file=sys.stderr)
        else:
            _error(("error: ", "bold red"), str(e))
        return int(ExitCode.USAGE)
    # In non-standalone mode click turns Ctrl-C into a returned 130 instead of raising.
    return rv if isinstance(rv, int) else 0
