"""`k3sops emergency`: guided procedures for a cluster, an app or the network in trouble.

Each check is shown on stderr as it completes; changes k3sops can make are asked about on a
terminal, made with ``--yes``, and only proposed otherwise. Exit codes: 0 nothing failed (or
every failure was repaired and verified), 3 a check still fails, 1 a change failed, 130
interrupted (the report and the timeline are still written).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import OutputFormat, OutputOpt, StateDir, get_settings, output_format
from k3sops.errors import AdapterError, FindingsAtThreshold, Interrupted, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.emergency import Procedure, TimelineEntry

emergency_app = typer.Typer(
    help="Guided emergency procedures: each check shown as it runs, changes only after "
         "confirmation (or --yes), an incident timeline at the end.", no_args_is_help=True)

Yes = Annotated[bool, typer.Option("--yes", "-y", help="Make the proposed changes without "
                                   "asking (for automation).")]
TimelineOpt = Annotated[Path | None, typer.Option(
    "--timeline", help="Write the incident timeline (Markdown) to this file.")]
Wait = Annotated[str, typer.Option(
    "--wait", help="After a change, re-check for this long until it took effect.")]
Settle = Annotated[str, typer.Option(
    "--settle", help="After a change, the checks must pass this long in a row to count as "
                     "verified (a restarted crash-looping pod looks healthy for a while).")]


def register(app: typer.Typer) -> None:
    """Attach the `emergency` group to the root app."""
    app.add_typer(emergency_app, name="emergency")


def _printer(err: Console) -> Callable[[TimelineEntry], None]:
    from rich.text import Text

    from k3sops.output.tables.emergency import STATUS_STYLE

    def show(e: TimelineEntry) -> None:
        at = e.at.strftime("%H:%M:%S")
        if err.is_terminal:
            err.print(Text.assemble((f"{at} ", "dim"), (f"{e.kind:<8} ", "bold"),
                                    (f"{e.result:<9} ", STATUS_STYLE.get(e.result, "")),
                                    f"{e.step}", (f"  {e.detail}" if e.detail else "", "dim")))
        else:
            print(f"[emergency] {at} {e.kind} {e.step}: {e.result}"
                  + (f" - {e.detail}" if e.detail else ""), file=sys.stderr, flush=True)
    return show


def _run(ctx: typer.Context, procedure: Procedure, *, app: str | None = None,
         namespace: str | None = None, yes: bool, timeline: Path | None,
         state_dir: Path | None, wait: str, output: OutputFormat | None, settle: str = "20s",
         probe_dns: bool = False, probe_timeout: str = "60s") -> None:
    from rich.console import Console

    from k3sops.domain.alerting import parse_duration
    from k3sops.domain.emergency import Proposal
    from k3sops.output.render import render
    from k3sops.services import emergency as emergency_service

    fmt = output_format(ctx, output)
    if fmt not in ("table", "json", "yaml"):
        raise UsageError(f"-o {fmt} is not available for emergency",
                         hint="use table, json or yaml; the Markdown timeline goes to "
                              "--timeline FILE")
    if timeline is not None and not timeline.parent.resolve().is_dir():
        raise UsageError(f"--timeline {timeline}: directory {timeline.parent} does not exist",
                         hint="create it, or name a file in an existing directory")
    wait_s = parse_duration(wait).total_seconds()
    probe_s = parse_duration(probe_timeout).total_seconds()
    settings = get_settings(ctx)
    err = Console(stderr=True)
    interactive = sys.stdin.isatty() and err.is_terminal
    mode: emergency_service.Mode = "yes" if yes else ("ask" if interactive else "propose")

    def confirm(p: Proposal) -> bool:
        return bool(typer.confirm(f"Make this change? {p.text}", default=False, err=True))

    report = emergency_service.run(
        settings, os.environ, Path.home(), procedure, app=app, namespace=namespace, mode=mode,
        confirm=confirm if mode == "ask" else None, on_entry=_printer(err), state=state_dir,
        wait=wait_s, settle=parse_duration(settle).total_seconds(), probe_dns=probe_dns,
        probe_dns_timeout=probe_s)
    render(report, fmt)
    if timeline is not None:
        emergency_service.write_timeline(timeline, report)
        err.print(f"timeline written to {timeline}")
    if report.interrupted:
        raise Interrupted("emergency procedure interrupted: the report and timeline hold the "
                          "steps that ran")
    failed = [a for a in report.actions if a.decision == "applied" and a.result == "failed"]
    if failed:
        raise AdapterError(f"{len(failed)} change(s) failed: " + "; ".join(
            f"{a.proposal.text}: {a.error}" for a in failed),
            hint="the checks and the timeline above say what was seen; see the audit log")
    if report.unresolved:
        raise FindingsAtThreshold(f"{len(report.unresolved)} check(s) failed: " + "; ".join(
            f"{c.title}: {c.detail}" for c in report.unresolved),
            hint="follow the next steps above (runbooks: " + ", ".join(report.runbooks) + ")")


@emergency_app.command("cluster-unresponsive")
def cluster_unresponsive_cmd(ctx: typer.Context, yes: Yes = False, timeline: TimelineOpt = None,
                             state_dir: StateDir = None, wait: Wait = "60s",
                             settle: Settle = "20s", output: OutputOpt = None) -> None:
    """API server /livez and /readyz, etcd, control-plane nodes, certificates, events."""
    _run(ctx, "cluster-unresponsive", yes=yes, timeline=timeline, state_dir=state_dir,
         wait=wait, settle=settle, output=output)


@emergency_app.command("app-down")
def app_down_cmd(
    ctx: typer.Context,
    app: Annotated[str, typer.Argument(help="Deployment or StatefulSet name.")],
    namespace: Annotated[str | None, typer.Option("--namespace", "-n",
                                                  help="Its namespace (found when unique).")
                         ] = None,
    yes: Yes = False, timeline: TimelineOpt = None, state_dir: StateDir = None,
    wait: Wait = "60s", settle: Settle = "20s", output: OutputOpt = None,
) -> None:
    """Rollout, pods and their causes, Service → EndpointSlices → Ingress, events, logs, alerts."""
    _run(ctx, "app-down", app=app, namespace=namespace, yes=yes, timeline=timeline,
         state_dir=state_dir, wait=wait, settle=settle, output=output)


@emergency_app.command("network-lost")
def network_lost_cmd(
    ctx: typer.Context,
    probe_dns: Annotated[bool, typer.Option(
        "--probe-dns", help="Run the busybox nslookup probe pod (created and deleted).")] = False,
    probe_timeout: Annotated[str, typer.Option(
        "--probe-timeout", help="How long the DNS probe pod may take.")] = "60s",
    yes: Yes = False, timeline: TimelineOpt = None, state_dir: StateDir = None,
    wait: Wait = "60s", settle: Settle = "20s", output: OutputOpt = None,
) -> None:
    """NotReady pattern, CoreDNS, ingress controller, MetalLB, kube-proxy/flannel, DNS probe."""
    _run(ctx, "network-lost", yes=yes, timeline=timeline, state_dir=state_dir, wait=wait,
         settle=settle, output=output, probe_dns=probe_dns, probe_timeout=probe_timeout)
