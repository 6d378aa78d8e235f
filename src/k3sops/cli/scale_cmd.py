"""The `scale` group: app replicas, HPAs, right-sizing, PVC expansion, and `nodes`.

Every command that changes something prints its plan and changes nothing unless ``--apply``;
applied changes go to the audit log (``--state-dir``/K3SOPS_STATE_DIR). The remediation form
``k3sops scale deployment/NAME --replicas N`` still works: a first argument of the form
``KIND/NAME`` is routed to ``scale app``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from typer._click.core import Command, Context  # typer's own click
from typer.core import TyperGroup

from k3sops.cli import provision_cmd, remediate_cmd
from k3sops.cli.options import Apply, StateDir, get_options, get_settings
from k3sops.domain.sizing import DEFAULT_STRATEGY, STRATEGIES
from k3sops.errors import AdapterError, PartialResult, UsageError


class ScaleGroup(TyperGroup):
    """Routes ``scale KIND/NAME ...`` (the remediation form) to ``scale app KIND/NAME ...``."""

    def resolve_command(self, ctx: Context, args: list[str],
                        ) -> tuple[str | None, Command | None, list[str]]:
        """Resolve the sub-command; a ``KIND/NAME`` first argument means ``app``."""
        if args and "/" in args[0] and args[0] not in self.commands:
            cmd = self.get_command(ctx, "app")
            return "app", cmd, args
        return super().resolve_command(ctx, args)


scale_app = typer.Typer(
    cls=ScaleGroup, no_args_is_help=True,
    help="Scale applications (replicas, HPAs, requests/limits, volumes); dry-run unless "
         "--apply. `scale deployment/NAME --replicas N` is `scale app`.")

Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the workload.")]

nodes_app = typer.Typer(help="Add and remove K3s nodes through Ansible (dry-run unless --apply).",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach `scale` (with `scale nodes`) to the root app."""
    scale_app.add_typer(nodes_app, name="nodes")
    app.add_typer(scale_app, name="scale")


def _seconds(text: str, flag: str) -> float:
    from k3sops.domain.alerting import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except (ValueError, UsageError) as e:
        raise UsageError(f"{flag} {text!r} is not a duration", hint="e.g. 30s, 2m") from e


@scale_app.command("app")
def app_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="NAME, or deployment/NAME, statefulset/NAME.")],
    replicas: Annotated[int, typer.Option("--replicas", help="Desired replica count.")],
    namespace: Namespace = "default",
    apply: Apply = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Scale even though an HPA owns the replica count.")] = False,
    wait: Annotated[bool, typer.Option(
        "--wait/--no-wait", help="After --apply, wait until the replicas are ready.")] = True,
    timeout: Annotated[str, typer.Option(help="How long to wait for ready replicas.")] = "120s",
    state_dir: StateDir = None,
) -> None:
    """Set a workload's replica count; refused while an HPA targets it (unless --force)."""
    from k3sops.services import scale

    seconds = _seconds(timeout, "--timeout") if wait else 0.0
    remediate_cmd.finish(ctx, scale.scale_app(remediate_cmd.open_runner(ctx, apply, state_dir),
                                              name, namespace, replicas, force=force,
                                              wait=seconds))


@scale_app.command("autoscale")
def autoscale_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="NAME, or deployment/NAME, statefulset/NAME.")],
    cpu_percent: Annotated[int, typer.Option(
        "--cpu-percent", help="Target average CPU utilisation, % of requests.")] = 80,
    min_replicas: Annotated[int, typer.Option("--min", help="Minimum replicas.")] = 1,
    max_replicas: Annotated[int, typer.Option("--max", help="Maximum replicas.")] = 10,
    namespace: Namespace = "default",
    hpa_name: Annotated[str | None, typer.Option(
        "--hpa-name", help="Name of the HPA (default: the workload's).")] = None,
    apply: Apply = False,
    state_dir: StateDir = None,
) -> None:
    """Create or update an autoscaling/v2 HPA with exactly this spec."""
    from k3sops.output.render import render
    from k3sops.services import scale

    kube, audited = scale.open_cluster(get_settings(ctx), os.environ, Path.home(), state_dir)
    try:
        r = scale.autoscale(kube, audited, name, namespace, cpu_percent=cpu_percent,
                            min_replicas=min_replicas, max_replicas=max_replicas, apply=apply,
                            hpa_name=hpa_name)
    finally:
        kube.close()
    render(r, get_options(ctx).output.value)


@scale_app.command("status")
def status_cmd(
    ctx: typer.Context,
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n", help="One namespace (default: all).")] = None,
) -> None:
    """HPAs: current/desired/min/max replicas, with at-max and not-scaling warnings."""
    from k3sops.output.render import render
    from k3sops.services import scale

    kube, _ = scale.open_cluster(get_settings(ctx), os.environ, Path.home(), None)
    try:
        r = scale.hpa_status(kube, namespace)
    finally:
        kube.close()
    render(r, get_options(ctx).output.value)


@scale_app.command("resources")
def resources_cmd(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(
        help="One workload (NAME or KIND/NAME); default: every workload in scope.")] = None,
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n", help="Namespace (default: all; required with NAME).")] = None,
    strategy: Annotated[str, typer.Option(
        help="Sizing strategy: " + ", ".join(sorted(STRATEGIES)) + ".")] = DEFAULT_STRATEGY,
    window: Annotated[str, typer.Option(help="History to use (Prometheus duration).")] = "7d",
    step: Annotated[str, typer.Option(help="Resolution of the CPU samples.")] = "5m",
    cpu_percentile: Annotated[float, typer.Option(help="CPU request percentile.")] = 95.0,
    memory_headroom: Annotated[float, typer.Option(
        help="Fraction added to the memory peak.")] = 0.15,
    min_samples: Annotated[int, typer.Option(
        help="Fewer samples than this: no recommendation.")] = 10,
    apply: Apply = False,
    state_dir: StateDir = None,
) -> None:
    """Recommend requests/limits from Prometheus usage; --apply patches (or commits to GitOps)."""
    from k3sops.domain.sizing import SizingSettings
    from k3sops.output.render import render
    from k3sops.services import scale

    settings = get_settings(ctx)
    try:
        knobs = SizingSettings(cpu_percentile=cpu_percentile, memory_headroom=memory_headroom,
                               min_samples=min_samples)
    except ValueError as e:
        raise UsageError(f"bad sizing option: {e}".splitlines()[0],
                         hint="--cpu-percentile 1-100, --memory-headroom >= 0") from e
    kube, audited = scale.open_cluster(settings, os.environ, Path.home(), state_dir)
    prom = scale.connect_prometheus(settings, os.environ, Path.home())
    try:
        r = scale.recommend_resources(kube, prom, namespace, name, strategy=strategy,
                                      settings=knobs, window=window, step=step)
        if apply:
            scale.apply_resources(kube, audited, r, **scale.gitops_hooks(
                settings, os.environ, Path.home(), state_dir))
        else:
            scale.planned_changes(r)
    finally:
        kube.close()
        scale.close_prometheus(prom)
    render(r, get_options(ctx).output.value)
    failed = [c for c in r.changes if c.result == "failed"]
    if failed:
        raise AdapterError(f"{len(failed)} of {len(r.changes)} change(s) failed: "
                           + "; ".join(f"{c.target}: {c.error}" for c in failed))
    if r.missing:
        raise PartialResult("no recommendations from history: could not read "
                            + ", ".join(r.missing),
                            hint="check monitoring.prometheus in platform.yaml")


@scale_app.command("pvc")
def pvc_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="PersistentVolumeClaim name.")],
    to: Annotated[str, typer.Option("--to", help="New size, e.g. 20Gi.")],
    namespace: Namespace = "default",
    apply: Apply = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Send the change even though a check failed (the API server "
                        "decides).")] = False,
    follow: Annotated[str, typer.Option(
        help="How long to follow the resize conditions after --apply.")] = "30s",
    state_dir: StateDir = None,
) -> None:
    """Expand a PVC: checks first, then the patch, then the resize conditions."""
    from k3sops.output.render import render
    from k3sops.services import scale

    seconds = _seconds(follow, "--follow")
    kube, audited = scale.open_cluster(get_settings(ctx), os.environ, Path.home(), state_dir)
    try:
        r = scale.expand_pvc(kube, audited, name, namespace, to, apply=apply, force=force,
                             follow=seconds)
    finally:
        kube.close()
    render(r, get_options(ctx).output.value)


# --- scale nodes add|remove (through the provisioner of `k3sops provision`) ---------------

def _addresses(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, addr = v.partition("=")
        if not sep or not name or not addr:
            raise UsageError(f"--address {v!r} is not NAME=ADDRESS",
                             hint="e.g. --address node4=10.0.0.14")
        out[name] = addr
    return out


@nodes_app.command("add")
def nodes_add_cmd(
    ctx: typer.Context,
    nodes: Annotated[list[str], typer.Argument(help="Names of the nodes to add.")],
    server: Annotated[bool, typer.Option("--server/--agent",
                                         help="Add as servers (etcd members) or agents.")
                      ] = False,
    address: Annotated[list[str] | None, typer.Option(
        "--address", help="NAME=ADDRESS for a host the inventory and DNS do not know "
                          "(repeatable).")] = None,
    apply: Apply = False,
    state_dir: StateDir = None,
) -> None:
    """Add nodes: inventory (comments kept), scale-cluster playbook, wait Ready, node checks."""
    p = provision_cmd.provisioner(ctx, apply, state_dir)
    provision_cmd.finish(ctx, p.add(nodes, "server" if server else "agent",
                                    _addresses(address or [])))


@nodes_app.command("remove")
def nodes_remove_cmd(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="Name of the node to remove.")],
    apply: Apply = False,
    state_dir: StateDir = None,
    skip_host: Annotated[bool, typer.Option(
        "--skip-host", help="Do not touch the host (it is gone): only Kubernetes and the "
                            "inventory.")] = False,
    timeout: Annotated[str, typer.Option(help="Give up draining after this long.")] = "120s",
) -> None:
    """Remove a node: drain, etcd member out first (server), delete the Node, uninstall k3s."""
    from k3sops.domain.alerting import parse_duration

    p = provision_cmd.provisioner(ctx, apply, state_dir, parse_duration(timeout).total_seconds())
    provision_cmd.finish(ctx, p.remove(node, skip_host=skip_host))
