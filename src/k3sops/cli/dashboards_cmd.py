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
    from rich.console import Console

if TYPE_CHECKING:
    from k3sops.domain.dashboards import CheckReport, RenderReport

_STATUS_STYLE = {"ok": "green", "no data": "yellow", "error": "red"}


def register(app: typer.Typer) -> None:
    """Attach the `dashboards` group (with `render`) to the root app."""
    group = typer.Typer(help="Grafana dashboards for nodes, cluster, applications, backups.",
                        no_args_is_help=True)
    group.command("render")(render_cmd)
    app.add_typer(group, name="dashboards")


def _check_table(r: CheckReport, out: Console) -> None:
    from rich.table import Table

    t = Table("dashboard", "panel", "ref", "status", "series", "needs data", "error",
              title=f"Panel queries against {r.prometheus}")
    for p in r.panels:
        # "no data" is only a problem where a healthy platform has data (node, cluster...).
        style = "red" if p.problem else _STATUS_STYLE[p.status]
        t.add_row(p.dashboard.removeprefix("k3sops-"), p.panel, p.ref_id,
                  f"[{style}]{p.status}[/]", str(p.series), "yes" if p.expects_data else "no",
                  p.error or "")
    out.print(t)
    ok = sum(1 for p in r.panels if p.status == "ok")
    out.print(f"{ok}/{len(r.panels)} queries returned data, {len(r.missing)} expected data "
              f"but had none, {len(r.errors)} rejected")


def _report_table(r: RenderReport, out: Console) -> None:
    from rich.table import Table

    t = Table("dashboard", "title", "panels", "file", title="Dashboards written")
    for f in r.files:
        t.add_row(f.dashboard, f.title, str(f.panels), f.path)
    out.print(t)
    if r.check is not None:
        _check_table(r.check, out)


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
        render(RenderReport(files=files, check=report), opts.output.value, _report_table)
    elif report is not None:
        render(report, opts.output.value, _check_table)
    else:
        sys.stdout.write(svc.stdout_text(settings, dashboards, configmap))
    if report is not None:
        raise_for_check(report)
