"""The `scale` group: app replicas, HPAs, right-sizing, PVC expansion, and `nodes`.

Every command that changes something prints its plan and changes nothing unless ``--apply``;
applied changes go to the audit log (``--state-dir``/K3SOPS_STATE_DIR). The remediation form
``k3sops scale deployment/NAME --replicas N`` still works: a first argument of the form
``KIND/NAME`` is routed to ``scale app``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer._click.core import Command, Context  # typer's own click
from typer.core import TyperGroup

from k3sops.cli import scale_nodes_cmd
from k3sops.cli.options import get_options
from k3sops.cli.remediate_cmd import Apply, StateDir, _finish, _runner
from k3sops.domain.sizing import DEFAULT_STRATEGY, STRATEGIES
from k3sops.errors import AdapterError, PartialResult, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.services import context
    from k3sops.services.scale import AutoscaleReport, HpaReport, PvcReport, ResourcesReport


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


def register(app: typer.Typer) -> None:
    """Attach `scale` (with `scale nodes` from cli/scale_nodes_cmd.py) to the root app."""
    scale_app.add_typer(scale_nodes_cmd.app, name="nodes")
    app.add_typer(scale_app, name="scale")


def _settings(ctx: typer.Context) -> context.Settings:
    from k3sops.services import context

    opts = get_options(ctx)
    return context.resolve(opts.kubeconfig, opts.context, opts.config, os.environ, Path.cwd())


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
    _finish(ctx, scale.scale_app(_runner(ctx, apply, state_dir), name, namespace, replicas,
                                 force=force, wait=seconds))


def _autoscale_table(r: AutoscaleReport, out: Console) -> None:
    from rich.table import Table

    mode = "applied" if r.applied else "plan (dry run; pass --apply to make this change)"
    t = Table("field", "value", title=f"HPA {r.namespace}/{r.name} on {r.target}: {mode}")
    metric = r.spec["metrics"][0]["resource"]["target"]["averageUtilization"]
    t.add_row("action", r.action + (f" ({', '.join(r.changed_fields)})"
                                    if r.action == "update" else ""))
    t.add_row("cpu target", f"{metric}% of requests")
    t.add_row("min / max", f"{r.spec['minReplicas']} / {r.spec['maxReplicas']}")
    t.add_row("result", r.result)
    out.print(t)
    for n in r.notes:
        out.print(f"[yellow]note:[/] {n}")
    if r.audit_log:
        out.print(f"[dim]audit log:[/] {r.audit_log}")


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

    kube, audited = scale.open_cluster(_settings(ctx), os.environ, Path.home(), state_dir)
    try:
        r = scale.autoscale(kube, audited, name, namespace, cpu_percent=cpu_percent,
                            min_replicas=min_replicas, max_replicas=max_replicas, apply=apply,
                            hpa_name=hpa_name)
    finally:
        kube.close()
    render(r, get_options(ctx).output.value, _autoscale_table)


def _status_table(r: HpaReport, out: Console) -> None:
    from rich.table import Table

    if not r.hpas:
        out.print("no HorizontalPodAutoscalers")
        return
    t = Table("namespace", "hpa", "target", "min", "max", "current", "desired", "cpu now/target",
              "warnings", title="HorizontalPodAutoscalers")
    for h in r.hpas:
        cpu = (f"{h.cpu_current_percent if h.cpu_current_percent is not None else '?'}%/"
               f"{h.cpu_target_percent if h.cpu_target_percent is not None else '?'}%")
        t.add_row(h.namespace, h.name, h.target, str(h.min_replicas), str(h.max_replicas),
                  str(h.current_replicas), str(h.desired_replicas), cpu,
                  "\n".join(f"[yellow]{w}[/]" for w in h.warnings))
    out.print(t)


@scale_app.command("status")
def status_cmd(
    ctx: typer.Context,
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n", help="One namespace (default: all).")] = None,
) -> None:
    """HPAs: current/desired/min/max replicas, with at-max and not-scaling warnings."""
    from k3sops.output.render import render
    from k3sops.services import scale

    kube, _ = scale.open_cluster(_settings(ctx), os.environ, Path.home(), None)
    try:
        r = scale.hpa_status(kube, namespace)
    finally:
        kube.close()
    render(r, get_options(ctx).output.value, _status_table)


def _resources_table(r: ResourcesReport, out: Console) -> None:
    from rich.table import Table

    from k3sops.domain.sizing import format_cpu, format_memory

    t = Table("namespace", "workload", "container", "cpu req", "cpu lim", "mem req", "mem lim",
              "samples", "notes",
              title=f"Requests and limits: current -> recommended (strategy {r.strategy}, "
                    f"{r.window} of history)")

    def pair(cur: str, new: str | None) -> str:
        if new is None or new == cur:
            return cur
        return f"{cur} -> [bold]{new}[/]"

    for rec in r.recommendations:
        c, n = rec.current, rec.recommended
        t.add_row(
            rec.ref.namespace, f"{rec.ref.kind}/{rec.ref.workload}", rec.ref.container,
            pair(format_cpu(c.cpu_request), format_cpu(n.cpu_request) if n else None),
            pair(format_cpu(c.cpu_limit), format_cpu(n.cpu_limit) if n else None),
            pair(format_memory(c.memory_request), format_memory(n.memory_request) if n else None),
            pair(format_memory(c.memory_limit), format_memory(n.memory_limit) if n else None),
            str(rec.samples),
            ("[yellow]no recommendation: [/]" if n is None else "")
            + ("; ".join(rec.reasons) if n is None else
               (f"OOM kills {rec.oom_kills}" if rec.oom_kills else "")))
    out.print(t)
    if r.changes:
        mode = "applied" if r.applied else "plan (dry run; pass --apply to make these changes)"
        ct = Table("target", "via", "change", "result", "error", title=f"Changes: {mode}")
        for ch in r.changes:
            ct.add_row(ch.target, ch.via, ch.detail, ch.result, ch.error or "")
        out.print(ct)
    for s in r.sources:
        if not s.get("ok"):
            out.print(f"[red]unavailable:[/] {s['name']}: {s.get('error')}")
    if r.audit_log:
        out.print(f"[dim]audit log:[/] {r.audit_log}")


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

    settings = _settings(ctx)
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
    render(r, get_options(ctx).output.value, _resources_table)
    failed = [c for c in r.changes if c.result == "failed"]
    if failed:
        raise AdapterError(f"{len(failed)} of {len(r.changes)} change(s) failed: "
                           + "; ".join(f"{c.target}: {c.error}" for c in failed))
    if r.missing:
        raise PartialResult("no recommendations from history: could not read "
                            + ", ".join(r.missing),
                            hint="check monitoring.prometheus in platform.yaml")


def _pvc_table(r: PvcReport, out: Console) -> None:
    from rich.table import Table

    t = Table("check", "ok", "detail",
              title=f"PVC {r.namespace}/{r.name} ({r.storage_class}): {r.current} -> "
                    f"{r.requested} (capacity {r.capacity or 'unknown'})")
    for c in r.checks:
        t.add_row(c.name, "[green]yes[/]" if c.ok else "[red]no[/]", c.detail)
    out.print(t)
    if not r.applied:
        out.print("plan (dry run): patch spec.resources.requests.storage to "
                  f"{r.requested}; pass --apply to make this change")
    else:
        out.print(f"result: {r.result}" + (f"; resize state: {r.state}" if r.state else ""))
    if r.audit_log:
        out.print(f"[dim]audit log:[/] {r.audit_log}")


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
    kube, audited = scale.open_cluster(_settings(ctx), os.environ, Path.home(), state_dir)
    try:
        r = scale.expand_pvc(kube, audited, name, namespace, to, apply=apply, force=force,
                             follow=seconds)
    finally:
        kube.close()
    render(r, get_options(ctx).output.value, _pvc_table)
