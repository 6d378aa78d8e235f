"""Views of `k3sops dashboards`: the panel check and the files written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.dashboards import CheckReport, RenderReport

STATUS_COLOURS = {"ok": "green", "no data": "yellow", "error": "red"}
"""Colour of a panel query's status (its own states, not severities)."""


@table_for("k3sops.domain.dashboards.check.CheckReport")
def dashboard_check_table(r: CheckReport, out: Console) -> None:
    """Every panel's query: status, series, what data it needs."""
    from rich.table import Table

    t = Table("dashboard", "panel", "ref", "status", "series", "needs data", "error",
              title=f"Panel queries against {r.prometheus}")
    for p in r.panels:
        # "no data" is only a problem where a healthy platform has data (node, cluster...).
        style = "red" if p.problem else STATUS_COLOURS[p.status]
        t.add_row(p.dashboard.removeprefix("k3sops-"), p.panel, p.ref_id,
                  f"[{style}]{p.status}[/]", str(p.series), "yes" if p.expects_data else "no",
                  p.error or "")
    out.print(t)
    ok = sum(1 for p in r.panels if p.status == "ok")
    out.print(f"{ok}/{len(r.panels)} queries returned data, {len(r.missing)} expected data "
              f"but had none, {len(r.errors)} rejected")


@table_for("k3sops.domain.dashboards.check.RenderReport")
def dashboard_files_table(r: RenderReport, out: Console) -> None:
    """The dashboards written, then their panel check."""
    from rich.table import Table

    t = Table("dashboard", "title", "panels", "file", title="Dashboards written")
    for f in r.files:
        t.add_row(f.dashboard, f.title, str(f.panels), f.path)
    out.print(t)
    if r.check is not None:
        dashboard_check_table(r.check, out)
