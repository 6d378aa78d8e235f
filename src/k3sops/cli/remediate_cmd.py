"""Remediation commands: rollout restart, pods clean, and the runner `node` and `scale` share.

Every command prints its plan and changes nothing unless ``--apply`` is given; applied steps
are written to the audit log under the state directory (``--state-dir``/K3SOPS_STATE_DIR).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import Apply, StateDir, get_options, get_settings
from k3sops.errors import AdapterError, UsageError

if TYPE_CHECKING:
    from k3sops.services.remediate import RemediationReport, Runner

rollout_app = typer.Typer(help="Restart workloads (dry-run unless --apply).",
                          no_args_is_help=True)
pods_app = typer.Typer(help="Clean up pods (dry-run unless --apply).", no_args_is_help=True)

Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the workload.")]


def register(app: typer.Typer) -> None:
    """Attach `rollout` and `pods` to the root app.

    `node` (cli/node_cmd.py) and `scale` (cli/scale_cmd.py) run their plans through
    :func:`open_runner` and :func:`finish`; `scale deployment/NAME --replicas N` is routed to
    `scale app` (the same plan, plus the HPA guard).
    """
    app.add_typer(rollout_app, name="rollout")
    app.add_typer(pods_app, name="pods")


def open_runner(ctx: typer.Context, apply: bool, state_dir: Path | None,
                timeout: float = 120.0) -> Runner:
    """The remediation runner on this invocation's cluster (shared with `scale app`)."""
    from k3sops.services.remediate import Runner

    settings = get_settings(ctx)
    return Runner(settings, os.environ, Path.home(), apply=apply, state=state_dir,
                  timeout=timeout)


def finish(ctx: typer.Context, report: RemediationReport) -> None:
    """Print a remediation report; a failed step is an error (shared with `scale app`)."""
    from k3sops.output.render import render

    render(report, get_options(ctx).output.value)
    failed = report.failures
    if failed:
        not_run = sum(1 for s in report.steps if s.result == "not-run")
        extra = f"; {not_run} step(s) not run" if not_run else ""
        raise AdapterError(f"{len(failed)} of {len(report.steps)} step(s) failed{extra}: "
                           + "; ".join(f"{s.step.target}: {s.error}" for s in failed),
                           hint="fix the cause and run the same command again: steps already "
                                "done are skipped")


@rollout_app.command("restart")
def restart_cmd(ctx: typer.Context, workload: str, namespace: Namespace = "default",
                apply: Apply = False, state_dir: StateDir = None) -> None:
    """Restart a workload's pods (always restarts, like kubectl rollout restart)."""
    from k3sops.services import remediate

    finish(ctx, remediate.restart(open_runner(ctx, apply, state_dir), workload, namespace))


@pods_app.command("clean")
def clean_cmd(
    ctx: typer.Context,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n",
                                                  help="Namespace to clean.")] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A",
                                                 help="Clean every namespace.")] = False,
    apply: Apply = False,
    state_dir: StateDir = None,
) -> None:
    """Delete Failed and Evicted pods."""
    from k3sops.services import remediate

    if (namespace is None) == (not all_namespaces):
        raise UsageError("pass either -n NAMESPACE or -A", hint="e.g. k3sops pods clean -n dev")
    finish(ctx, remediate.clean_pods(open_runner(ctx, apply, state_dir),
                                     None if all_namespaces else namespace))
