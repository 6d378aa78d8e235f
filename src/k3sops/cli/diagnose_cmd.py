"""`k3sops diagnose`: follow a problem down its causal chain (informational, exit 0)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from k3sops.cli.options import (
    OutputFormat,
    OutputOpt,
    ServerCaOpt,
    ServerOpt,
    TokenFileOpt,
    get_settings,
    output_format,
)
from k3sops.errors import PartialResult, UsageError

if TYPE_CHECKING:

    from k3sops.services import diagnose as diagnose_service


class _KindNameGroup(TyperGroup):
    """Routes ``diagnose KIND/NAME`` (any object, kubectl style) to the hidden object command."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and "/" in args[0] and not args[0].startswith("-"):
            return "object", self.get_command(ctx, "object"), args
        return super().resolve_command(ctx, args)


diagnose_app = typer.Typer(help="Diagnose the cluster, a node, pod or deployment, any object "
                                "(KIND/NAME), the network or the storage: the causal chain "
                                "down to the root cause, with evidence.",
                           invoke_without_command=True, cls=_KindNameGroup)

NamespaceOpt = Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace.")]


def register(app: typer.Typer) -> None:
    """Attach the `diagnose` group to the root app."""
    app.add_typer(diagnose_app, name="diagnose")


@dataclass(frozen=True)
class _Remote:
    """--server and its credentials (``server`` None: diagnose the cluster directly)."""

    server: str | None = None
    token_file: Path | None = None
    server_ca: Path | None = None


def _run(ctx: typer.Context, target: diagnose_service.Target, name: str | None,
         namespace: str | None, output: OutputFormat | None, probe_dns: bool = False,
         probe_timeout: str = "60s", remote: _Remote | None = None) -> None:
    from k3sops.output.render import render

    settings = get_settings(ctx)
    if remote is not None and remote.server is not None:
        from k3sops.services import remote as remote_service

        # the commands that take --server all have a NAME (KIND/NAME for `object`)
        word = name or ""
        kind, _, obj = word.partition("/") if target == "object" else (target, "", word)
        token = remote_service.server_token(remote.server, remote.token_file, settings,
                                            os.environ, Path.home())
        report = remote_service.diagnose(remote.server, token, remote.server_ca, kind,
                                         namespace, obj)
    else:
        if remote is not None and (remote.token_file or remote.server_ca):
            raise UsageError("--token-file and --server-ca only apply with --server",
                             hint="add --server URL (or set K3SOPS_SERVER)")
        from k3sops.domain.alerting import parse_duration
        from k3sops.services import diagnose as diagnose_service

        timeout = parse_duration(probe_timeout).total_seconds()
        report = diagnose_service.diagnose(settings, os.environ, Path.home(), target, name,
                                           namespace, probe_dns=probe_dns,
                                           probe_timeout=timeout)
    render(report, output_format(ctx, output))
    missing = [s for s in report.sources if not s.ok]
    if missing:
        raise PartialResult("partial result: could not read " + ", ".join(
            f"{s.name} ({s.endpoint}): {s.error}" for s in missing))


@diagnose_app.callback()
def diagnose_cmd(ctx: typer.Context, namespace: NamespaceOpt = None,
                 output: OutputOpt = None) -> None:
    """The whole cluster (or one namespace): every unhealthy node and pod, network, storage."""
    if ctx.invoked_subcommand is None:
        _run(ctx, "cluster", None, namespace, output)


@diagnose_app.command("node")
def node_cmd(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Node name.")],
             output: OutputOpt = None, server: ServerOpt = None,
             token_file: TokenFileOpt = None, server_ca: ServerCaOpt = None) -> None:
    """A node: Ready since when, pressure, cordon, taints, requests vs capacity, version skew."""
    _run(ctx, "node", name, None, output, remote=_Remote(server, token_file, server_ca))


@diagnose_app.command("pod")
def pod_cmd(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Pod name.")],
            namespace: NamespaceOpt = None, output: OutputOpt = None,
            server: ServerOpt = None, token_file: TokenFileOpt = None,
            server_ca: ServerCaOpt = None) -> None:
    """A pod: scheduling causes, crash/OOM/image/readiness, previous logs, owner rollout."""
    _run(ctx, "pod", name, namespace, output, remote=_Remote(server, token_file, server_ca))


@diagnose_app.command("deployment")
def deployment_cmd(ctx: typer.Context,
                   name: Annotated[str, typer.Argument(help="Deployment name.")],
                   namespace: NamespaceOpt = None, output: OutputOpt = None,
                   server: ServerOpt = None, token_file: TokenFileOpt = None,
                   server_ca: ServerCaOpt = None) -> None:
    """A deployment: rollout state and the chain of each of its pods."""
    _run(ctx, "deployment", name, namespace, output,
         remote=_Remote(server, token_file, server_ca))


@diagnose_app.command("object", hidden=True)
def object_cmd(ctx: typer.Context,
               target: Annotated[str, typer.Argument(help="KIND/NAME, e.g. ingress/shop.")],
               namespace: NamespaceOpt = None, output: OutputOpt = None,
               server: ServerOpt = None, token_file: TokenFileOpt = None,
               server_ca: ServerCaOpt = None) -> None:
    """Any object as KIND/NAME (`k3sops diagnose ingress/shop -n apps`): its dependencies.

    Without -n a namespaced object is looked up in every namespace (refused when ambiguous;
    with --server, -n is needed).
    """
    _run(ctx, "object", target, namespace, output,
         remote=_Remote(server, token_file, server_ca))


@diagnose_app.command("network")
def network_cmd(
    ctx: typer.Context, namespace: NamespaceOpt = None, output: OutputOpt = None,
    probe_dns: Annotated[bool, typer.Option(
        "--probe-dns", help="Run the busybox `nslookup kubernetes.default` probe pod in "
                            "kube-system (always deleted afterwards).")] = False,
    probe_timeout: Annotated[str, typer.Option(
        "--probe-timeout", help="How long the DNS probe pod may take.")] = "60s",
) -> None:
    """Ingress → Service → EndpointSlices → pods, LoadBalancers and MetalLB, DNS."""
    _run(ctx, "network", None, namespace, output, probe_dns, probe_timeout)


@diagnose_app.command("performance")
def performance_cmd(ctx: typer.Context, output: OutputOpt = None) -> None:
    """Top nodes and pods by CPU and memory, CPU throttling, OOM kills, full disks.

    A metrics source without series is named (exit 4).
    """
    _run(ctx, "performance", None, None, output)


@diagnose_app.command("storage")
def storage_cmd(ctx: typer.Context, namespace: NamespaceOpt = None,
                output: OutputOpt = None) -> None:
    """PVCs Pending with their reason, StorageClasses, Longhorn volumes."""
    _run(ctx, "storage", None, namespace, output)
