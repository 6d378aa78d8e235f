"""Grafana dashboards for nodes, cluster, applications and backups (pure: no I/O).

``definitions`` says what each dashboard shows (PromQL per panel), ``_grafana`` renders a
definition to Grafana's JSON model with grafana-foundation-sdk, ``configmap`` wraps it for
Grafana's sidecar, and ``check`` prepares and reads the Prometheus check of every panel query.
"""

from __future__ import annotations

from k3sops.domain.dashboards._grafana import render
from k3sops.domain.dashboards.check import (
    CheckReport,
    PanelCheck,
    PanelQuery,
    RenderReport,
    classify,
    failed,
    panel_queries,
    substitute,
)
from k3sops.domain.dashboards.configmap import (
    SIDECAR_LABEL,
    configmap,
    configmaps_yaml,
    dashboard_json,
    to_yaml,
)
from k3sops.domain.dashboards.definitions import DASHBOARD_NAMES, all_dashboards
from k3sops.domain.dashboards.model import (
    DashboardContext,
    DashboardDef,
    PanelDef,
    Query,
    RenderedDashboard,
    RowDef,
    WrittenFile,
)

__all__ = [
    "DASHBOARD_NAMES",
    "SIDECAR_LABEL",
    "CheckReport",
    "DashboardContext",
    "DashboardDef",
    "PanelCheck",
    "PanelDef",
    "PanelQuery",
    "Query",
    "RenderReport",
    "RenderedDashboard",
    "RowDef",
    "WrittenFile",
    "all_dashboards",
    "classify",
    "configmap",
    "configmaps_yaml",
    "dashboard_json",
    "failed",
    "panel_queries",
    "render",
    "render_all",
    "substitute",
    "to_yaml",
]


def render_all(ctx: DashboardContext) -> list[RenderedDashboard]:
    """Render every dashboard for ``ctx``, in a fixed order."""
    return [render(d, ctx) for d in all_dashboards(ctx)]
