"""``k3sops config validate`` and ``k3sops init``: check and create platform.yaml."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from k3sops.cli.options import OutputFormat, get_options
from k3sops.errors import ConfigError, K3sopsError, UsageError

DEFAULT_FILE = Path("platform.yaml")


def validate(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Argument(
            help="platform.yaml to check (default: --config, $K3SOPS_CONFIG, ./platform.yaml).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check a platform.yaml; print a summary, or the normalised file with -o json|yaml."""
    import yaml

    from k3sops.config import find_platform_file, load_platform

    options = get_options(ctx)
    path = find_platform_file(file or options.config, os.environ, Path.cwd())
    if path is None:
        raise ConfigError(
            "no platform file given and there is no ./platform.yaml",
            hint="pass one (k3sops config validate FILE, -c/--config or $K3SOPS_CONFIG), "
            "or run `k3sops init` to create one",
        )
    platform = load_platform(path)
    if options.output is OutputFormat.table:
        envs = ", ".join(platform.environments)
        typer.echo(f"{path}: valid (platform {platform.name}, environments: {envs})")
        return
    data = platform.model_dump(mode="json", by_alias=True)
    if options.output is OutputFormat.json:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), nl=False)


def init(
    file: Annotated[
        Path, typer.Argument(help="Where to write the starter file.")
    ] = DEFAULT_FILE,
    name: Annotated[
        str, typer.Option("--name", help="Platform name (a DNS-1123 label).")
    ] = "my-platform",
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing file.")
    ] = False,
) -> None:
    """Write a commented starter platform.yaml (never overwrites without --force)."""
    from k3sops.config import render_starter

    try:
        text = render_starter(name)
    except ConfigError as e:
        raise UsageError(f"--name: {e.message}", hint=e.hint) from e
    write_new_file(file, text, overwrite=force)
    typer.echo(f"wrote {file} (platform {name}); edit it, then run `k3sops config validate`")


def write_new_file(path: Path, text: str, *, overwrite: bool) -> None:
    """Write ``text`` to ``path`` atomically: readers see the old file or the whole new one.

    Args:
        path: destination file.
        text: full content.
        overwrite: replace an existing file; when False an existing file is an error.

    Raises:
        UsageError: ``path`` exists and ``overwrite`` is False, or its directory is missing.
        K3sopsError: the file could not be written.
    """
    directory = path.parent
    if not directory.is_dir():
        raise UsageError(f"{path}: directory {directory} does not exist",
                         hint="create it first or choose another path")
    exists_error = UsageError(f"{path} already exists", hint="pass --force to overwrite it")
    if path.exists() and not overwrite:
        raise exists_error
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise K3sopsError(f"{path}: cannot write: {e.strerror}",
                          hint="check the directory's permissions") from e
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(0o644)  # mkstemp makes it 0600; the file holds no secrets
        if overwrite:
            os.replace(tmp, path)
        else:
            # A hard link never replaces: the file cannot appear between check and write.
            try:
                os.link(tmp, path)
            except FileExistsError as e:
                raise exists_error from e
            except OSError:  # the filesystem has no hard links: fall back to check + replace
                if path.exists():
                    raise exists_error from None
                os.replace(tmp, path)
    except OSError as e:
        raise K3sopsError(f"{path}: cannot write: {e.strerror or type(e).__name__}",
                          hint="check the directory's permissions and free space") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def register(app: typer.Typer) -> None:
    """Add the ``config`` group (``validate``) and the top-level ``init`` command to ``app``."""
    config_app = typer.Typer(
        name="config", help="Check the platform file.", no_args_is_help=True
    )
    config_app.command("validate")(validate)
    app.add_typer(config_app, name="config")
    app.command("init")(init)
