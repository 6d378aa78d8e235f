"""`k3sops gitops`: scaffold the GitOps repository, record builds (CI hook), set values.

Tables are drawn by :mod:`k3sops.output.tables.gitops`, looked up by the report's type.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from k3sops.cli.options import get_settings, output_format
from k3sops.errors import UsageError

gitops_app = typer.Typer(help="The GitOps repository ArgoCD deploys from.", no_args_is_help=True)

StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", envvar="K3SOPS_STATE_DIR",
    help="Where the audit log and k3sops' GitOps clone live (default ~/.local/state/k3sops).")]


def register(app: typer.Typer) -> None:
    """Attach `gitops` to the root app."""
    app.add_typer(gitops_app, name="gitops")



@gitops_app.command("init")
def init_cmd(
    ctx: typer.Context,
    path: Path,
    apps: Annotated[list[str] | None, typer.Option(
        "--app", help="An application as NAME=IMAGE:TAG (repeat for several).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty directory.")
                     ] = False,
    push: Annotated[str | None, typer.Option(
        "--push", help="Commit the tree and push it to this (empty) remote.")] = None,
) -> None:
    """Scaffold a GitOps repository: base per app, values per environment, ArgoCD apps."""
    from k3sops.output.render import render
    from k3sops.services import gitops as svc

    render(svc.init_repo(get_settings(ctx), path, apps or [], force=force, push=push),
           output_format(ctx, None))


@gitops_app.command("record-build")
def record_build_cmd(
    ctx: typer.Context,
    app: str,
    version: str,
    repository: Annotated[str | None, typer.Option(
        "--repository", help="Image repository of the build (default: the app's base).")
    ] = None,
    source: Annotated[str | None, typer.Option(
        "--source", help="Source commit or CI run the build came from.")] = None,
    state_dir: StateDir = None,
) -> None:
    """CI hook: record a published build; `env sync --env development` deploys the newest."""
    from k3sops.output.render import render
    from k3sops.services import gitops as svc
    from k3sops.services.gitops import utcnow

    gctx = svc.open_context(get_settings(ctx), os.environ, Path.home(), state_dir)
    render(svc.record_build(gctx, app, version, repository, source, utcnow()),
           output_format(ctx, None))


@gitops_app.command("set")
def set_cmd(
    ctx: typer.Context,
    app: str,
    assignments: Annotated[list[str], typer.Argument(
        help="KEY=VALUE below apps.<app>, e.g. resources.requests.cpu=250m (VALUE is YAML; "
             "decimals such as 1.28 stay strings)")],
    env: Annotated[str, typer.Option("--env", help="Environment whose values file changes.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (goes into the commit).")
                      ] = "set by k3sops gitops set",
    state_dir: StateDir = None,
) -> None:
    """Set values of APP in ENV's values file (round trip), commit and push them."""
    import yaml

    from k3sops.output.render import render
    from k3sops.services import gitops as svc

    values = {}
    for a in assignments:
        key, sep, raw = a.partition("=")
        if not sep or not key:
            raise UsageError(f"{a!r} is not KEY=VALUE", hint="e.g. replicas=3")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as e:
            raise UsageError(f"{a!r}: the value is not a YAML scalar") from e
        # 1.28 is a version far more often than a number in values files: keep it as written.
        values[key] = raw if isinstance(value, float) else value
    gctx = svc.open_context(get_settings(ctx), os.environ, Path.home(), state_dir)
    render(svc.set_app_values(gctx, env, app, values, reason=reason),
           output_format(ctx, None))
