"""`k3sops dashboards render`: Grafana dashboards as files or sidecar ConfigMaps."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import get_options, get_settings
from k3sops.errors import FindingsAtThreshold, K3sopsError

if TYPE_CHECKING:
    from k3sops.domain.dashboards import CheckReport

def register(app: typer.Typer) -> None:
    """Attach the `dashboards` group (with `render`) to the root app."""
    group = typer.Typer(help="Grafana dashboards for nodes, cluster, applications, backups.",
                        no_args_is_help=True)
    group.command("render")(render_cmd)
    app.add_typer(group, name="dashboards")


def raise_for_check(r: CheckReport) -> None:
    """Turn check problems into the documented exit codes (1 rejected, 3 missing data)."""
    if r.errors:
        names = ", ".join(f"{p.dashboard}/{p.panel} {p.ref_id}" for p in r.errors[:5])
        raise K3sopsError(f"{len(r.errors)} panel queries were rejected by Prometheus "
                          f"({r.prometheus}): {names}",
                          hint="the error column says why; fix the definition in "
                               "k3sops.domain.dashboards")
    if r.missing:
        names = ", ".join(f"{p.dashboard}/{p.panel}" for p in r.missing[:5])
        raise FindingsAtThreshold(f"{len(r.missing)} panel queries returned no data where the "
                                  f"platform should have some: {names}",
                                  hint="is the exporter behind them scraped? see `k3sops status`")


def render_cmd(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-d", help="Directory to write k3sops-<name>.json (or .yaml with "
                     "--configmap) into; without it the dashboards go to stdout."),
    ] = None,
    configmap: Annotated[
        bool,
        typer.Option("--configmap", help="Emit ConfigMaps labelled grafana_dashboard=\"1\" in "
                     "the monitoring namespace (for Grafana's dashboard sidecar)."),
    ] = False,
    env: Annotated[
        str | None,
        typer.Option("--env", help="Environment from platform.yaml: its namespaces and "
                     "thresholds only."),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Run every panel query against Prometheus: ok / no data / "
                     "error per panel. Without --out only this report is printed. Exit 1 if "
                     "a query is rejected, 3 if a panel that should have data has none."),
    ] = False,
) -> None:
    """Render the Grafana dashboards (nodes, cluster, applications, backups)."""
    # Imported here: the Grafana SDK is only worth loading when dashboards are rendered.
    from k3sops.domain.dashboards import RenderReport
    from k3sops.output.render import render
    from k3sops.services import dashboards as svc

    opts = get_options(ctx)
    settings = get_settings(ctx)
    dashboards = svc.render(settings, env)
    report = svc.check(settings, dashboards, os.environ, Path.home()) if check else None
    if out is not None:
        files = svc.write(settings, dashboards, out, configmap)
        render(RenderReport(files=files, check=report), opts.output.value)
    elif report is not None:
        render(report, opts.output.value)
    else:
        sys.stdout.write(svc.stdout_text(settings, dashboards, configmap))
    if report is not None:
        raise_for_check(report)
