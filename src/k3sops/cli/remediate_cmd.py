"""Remediation commands: node cordon/uncordon/drain, rollout restart, scale, pods clean.

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

node_app = typer.Typer(help="Cordon, uncordon and drain nodes (dry-run unless --apply).",
                       no_args_is_help=True)
rollout_app = typer.Typer(help="Restart workloads (dry-run unless --apply).",
                          no_args_is_help=True)
pods_app = typer.Typer(help="Clean up pods (dry-run unless --apply).", no_args_is_help=True)

Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the workload.")]

def register(app: typer.Typer) -> None:
    """Attach `node`, `rollout` and `pods` to the root app.

    `scale deployment/NAME --replicas N` is served by the `scale` group (cli/scale_cmd.py),
    which routes a ``KIND/NAME`` argument to `scale app` (the same plan, plus the HPA guard).
    """
    app.add_typer(node_app, name="node")
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


@node_app.command("cordon")
def cordon_cmd(ctx: typer.Context, name: str, apply: Apply = False,
               state_dir: StateDir = None) -> None:
    """Mark a node unschedulable."""
    from k3sops.services import remediate

    finish(ctx, remediate.cordon(open_runner(ctx, apply, state_dir), name))


@node_app.command("uncordon")
def uncordon_cmd(ctx: typer.Context, name: str, apply: Apply = False,
                 state_dir: StateDir = None) -> None:
    """Mark a node schedulable again."""
    from k3sops.services import remediate

    finish(ctx, remediate.uncordon(open_runner(ctx, apply, state_dir), name))


def _selector(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--pod-selector {text!r}: {part!r} is not key=value",
                             hint="use equality selectors, e.g. app=web,tier=front")
        out[key.strip()] = value.strip()
    return out


@node_app.command("drain")
def drain_cmd(
    ctx: typer.Context,
    name: str,
    apply: Apply = False,
    state_dir: StateDir = None,
    timeout: Annotated[str, typer.Option(help="Give up evicting after this long.")] = "120s",
    ignore_daemonsets: Annotated[bool, typer.Option(
        "--ignore-daemonsets/--no-ignore-daemonsets",
        help="Leave DaemonSet pods in place (on by default, like kubectl).")] = True,
    delete_emptydir_data: Annotated[bool, typer.Option(
        "--delete-emptydir-data", help="Evict pods using emptyDir (their data is lost).")
    ] = False,
    pod_selector: Annotated[str | None, typer.Option(
        "--pod-selector", help="Only evict pods with these labels (key=value,...).")] = None,
) -> None:
    """Cordon a node and evict its pods through the Eviction API (PDBs are respected)."""
    from k3sops.domain.alerting import parse_duration
    from k3sops.services import remediate

    seconds = parse_duration(timeout).total_seconds()
    runner = open_runner(ctx, apply, state_dir, seconds)
    finish(ctx, remediate.drain(runner, name, ignore_daemonsets=ignore_daemonsets,
                                delete_emptydir_data=delete_emptydir_data,
                                selector=_selector(pod_selector)))


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
