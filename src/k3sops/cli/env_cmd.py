"""`k3sops env`: environments, promotion, approvals, rollback and development sync.

Tables are drawn by :mod:`k3sops.output.tables.env`, looked up by the report's type.

Promotion, rollback and sync print their plan and change nothing without ``--apply``. A refusal
(gate, policy, missing approval, skipped environment, a version the source never ran) prints
the reason and the command that would satisfy it and exits 3; a failed deployment or
verification exits 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import get_settings, output_format
from k3sops.errors import AdapterError, FindingsAtThreshold, PartialResult

if TYPE_CHECKING:
    from k3sops.services.env.promote import ChangeReport
    from k3sops.services.gitops import GitOpsContext

env_app = typer.Typer(help="Environments and GitOps promotion (dev -> staging -> production).",
                      no_args_is_help=True)

Apply = Annotated[bool, typer.Option("--apply", help="Commit, push and deploy (default: plan).")]
StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", envvar="K3SOPS_STATE_DIR",
    help="Where the audit log and k3sops' GitOps clone live (default ~/.local/state/k3sops).")]


def register(app: typer.Typer) -> None:
    """Attach `env` to the root app."""
    app.add_typer(env_app, name="env")


def _ctx(ctx: typer.Context, state_dir: Path | None) -> GitOpsContext:
    from k3sops.services import gitops as svc

    return svc.open_context(get_settings(ctx), os.environ, Path.home(), state_dir)



@env_app.command("list")
def list_cmd(ctx: typer.Context, state_dir: StateDir = None) -> None:
    """The environments in promotion order, with their policy and gates."""
    from k3sops.output.render import render
    from k3sops.services.env import status as svc

    render(svc.env_list(_ctx(ctx, state_dir)), output_format(ctx, None))


@env_app.command("status")
def status_cmd(ctx: typer.Context,
               app: Annotated[str | None, typer.Argument(help="Only this app.")] = None,
               state_dir: StateDir = None) -> None:
    """Per app and environment: version in git, version running, ArgoCD or rollout status."""
    from k3sops.output.render import render
    from k3sops.services.env import status as svc

    report = svc.env_status(_ctx(ctx, state_dir), app)
    render(report, output_format(ctx, None))
    unread = [f"{a.app} in {a.env}" for a in report.apps if a.error]
    if unread:
        raise PartialResult(f"could not read {', '.join(unread)}: the running version is "
                            "missing there", hint="the error column says why")


@env_app.command("diff")
def diff_cmd(ctx: typer.Context, left: str, right: str,
             strict: Annotated[bool, typer.Option(
                 "--strict", help="Exit 3 when a difference is not documented.")] = False,
             state_dir: StateDir = None) -> None:
    """Every values difference between two environments, documented or not (DEVIATIONS)."""
    from k3sops.output.render import render
    from k3sops.services.env import status as svc

    report = svc.env_diff(_ctx(ctx, state_dir), left, right)
    render(report, output_format(ctx, None))
    if strict and report.undocumented:
        raise FindingsAtThreshold(f"{report.undocumented} undocumented difference(s) between "
                                  f"{left} and {right}",
                                  hint="make them equal, or write down why in DEVIATIONS.yaml")


def _finish(ctx: typer.Context, report: ChangeReport) -> None:
    from k3sops.domain.env import PromotionRefused
    from k3sops.output.render import render

    render(report, output_format(ctx, None))
    if report.refusals:
        raise PromotionRefused(report.refusals)
    if report.deploy and report.deploy.state in ("failed", "timeout"):
        raise AdapterError(f"{report.action} of {report.app or report.target} was pushed "
                           f"({(report.commit or '')[:12]}) but the deployment "
                           f"{report.deploy.state}: {report.deploy.detail}",
                           hint=f"k3sops env status; to go back: k3sops env rollback "
                                f"{report.app} --env {report.target} --apply")
    failed = [v for v in report.verification if not v.passed]
    if failed:
        raise AdapterError(f"{report.target} rolled out but failed verification: "
                           + "; ".join(f"{v.name} {v.status}: {v.detail}" for v in failed),
                           hint=f"to go back: k3sops env rollback {report.app} --env "
                                f"{report.target} --apply")


@env_app.command("promote")
def promote_cmd(
    ctx: typer.Context,
    app: str,
    to: Annotated[str, typer.Option("--to", help="Target environment (staging, production).")],
    source: Annotated[str | None, typer.Option(
        "--from", help="Source environment (default and only allowed: the previous one).")
    ] = None,
    version: Annotated[str | None, typer.Option(
        "--version", help="Expected version (refused unless the source runs exactly it).")
    ] = None,
    apply: Apply = False,
    state_dir: StateDir = None,
) -> None:
    """Promote what runs in the previous environment into TO (gates, policy, approvals)."""
    from k3sops.services.env import promote

    _finish(ctx, promote.promote(_ctx(ctx, state_dir), app, to, source=source,
                                 version=version, apply=apply))


@env_app.command("approve")
def approve_cmd(
    ctx: typer.Context,
    app: str,
    to: Annotated[str, typer.Option("--to", help="Environment the approval is for.")],
    version: Annotated[str | None, typer.Option(
        "--version", help="Version approved (default: what git says the source runs).")
    ] = None,
    who: Annotated[str | None, typer.Option(
        "--as", help="Approver name as listed in platform.yaml (default: the OS user).")
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why (kept with the approval).")
                    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Approve one version of APP for TO; stored in the GitOps repo and the audit log."""
    from k3sops.output.render import render
    from k3sops.services.env import promote

    render(promote.approve(_ctx(ctx, state_dir), app, to, version=version, by=who, note=note),
           output_format(ctx, None))


@env_app.command("rollback")
def rollback_cmd(
    ctx: typer.Context,
    app: str,
    env: Annotated[str, typer.Option("--env", help="Environment to roll back.")],
    to_version: Annotated[str | None, typer.Option(
        "--to-version", help="A version from the values file's history (default: previous).")
    ] = None,
    apply: Apply = False,
    state_dir: StateDir = None,
) -> None:
    """Return APP in ENV to its previous version from git history, deploy and verify."""
    from k3sops.services.env import promote

    _finish(ctx, promote.rollback(_ctx(ctx, state_dir), app, env, to_version=to_version,
                                  apply=apply))


@env_app.command("sync")
def sync_cmd(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", help="Environment to sync.")],
    app: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    apply: Apply = False,
    state_dir: StateDir = None,
) -> None:
    """Deploy what git says; an auto environment (development) first takes the newest builds."""
    from k3sops.services.env import promote

    _finish(ctx, promote.sync(_ctx(ctx, state_dir), env, app=app, apply=apply))
