"""Render a :class:`DashboardDef` to Grafana's dashboard JSON with grafana-foundation-sdk.

The only module that imports the SDK: its builders are generated code whose names follow
Grafana's schema, so keeping them here lets the SDK (or Grafana's schema) change in one place.
The result is the classic JSON model Grafana imports and its dashboard sidecar loads:
``schemaVersion``, ``panels`` (rows and panels, each with a unique ``id`` and a ``gridPos``),
``targets`` with ``expr`` and ``refId``, and ``templating.list``.
"""

from __future__ import annotations

import json
import string
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pb
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from k3sops.domain.dashboards.model import (
    DashboardContext,
    DashboardDef,
    PanelDef,
    RenderedDashboard,
    VariableName,
)

__all__ = ["render"]

# Panels and targets name the datasource through the variable, so one JSON works with whatever
# the Prometheus datasource is called in a given Grafana.
_DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
_ALL = dm.VariableOption(selected=True, text="All", value="$__all")
_TAGS = ["k3sops"]
_REF_IDS = string.ascii_uppercase


def render(defn: DashboardDef, ctx: DashboardContext) -> RenderedDashboard:
    """Build the Grafana JSON model of ``defn``.

    Args:
        defn: The dashboard definition.
        ctx: Platform settings (environments for the ``environment`` variable).

    Returns:
        The definition with its JSON model (plain JSON types, panel ids 1..n in grid order).
    """
    builder = (
        db.Dashboard(defn.title)
        .uid(defn.uid)
        .description(defn.description)
        .tags(_TAGS)
        .editable()
        .timezone("browser")
        .time("now-6h", "now")
        .refresh("1m")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .with_variable(db.DatasourceVariable("datasource").label("Data source")
                       .type("prometheus"))
    )
    for var in defn.variables:
        builder = builder.with_variable(_variable(var, ctx))
    for row in defn.rows:
        builder = builder.with_row(db.Row(row.title))
        for panel in row.panels:
            builder = builder.with_panel(_panel(panel))
    model: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    for pid, panel_json in enumerate(model.get("panels", []), start=1):
        panel_json["id"] = pid
        # Grafana expects an options object; the SDK leaves it null when none was set.
        if panel_json.get("options") is None and panel_json.get("type") != "row":
            panel_json["options"] = {}
    annotations = model.setdefault("annotations", {})
    annotations.setdefault("list", [])
    return RenderedDashboard(definition=defn, json_model=model)


def _variable(name: VariableName, ctx: DashboardContext) -> db.CustomVariable | db.QueryVariable:
    if name == "environment":
        # Each environment's value is the regex of its namespaces, so queries filter with
        # namespace=~"$environment" and the namespace picker lists only that environment's.
        pairs = [(env, "|".join(nss) if nss else ".*") for env, nss in ctx.environments]
        several = len(pairs) > 1
        options = [dm.VariableOption(selected=not several and i == 0, text=env, value=value)
                   for i, (env, value) in enumerate(pairs)]
        var = (db.CustomVariable("environment").label("Environment")
               .values(",".join(f"{env} : {value}" for env, value in pairs)))
        if several:
            # "All" spans every namespace, also those of no environment (kube-system ...).
            return var.include_all(True).all_value(".*").options([_ALL, *options]).current(_ALL)
        return var.options(options).current(options[0])
    if name == "namespace":
        scope = '{namespace=~"$environment"}' if ctx.environments else ""
        return _query_variable("namespace", "Namespace",
                               f"label_values(kube_pod_info{scope}, namespace)")
    return _query_variable("instance", "Instance", "label_values(node_uname_info, instance)")


def _query_variable(name: str, label: str, query: str) -> db.QueryVariable:
    return (db.QueryVariable(name).label(label).datasource(_DATASOURCE).query(query)
            .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).current(_ALL))


def _panel(p: PanelDef) -> timeseries.Panel | stat.Panel:
    targets = [
        pb.Dataquery().expr(q.expr).ref_id(_REF_IDS[i]).datasource(_DATASOURCE)
        .legend_format(q.legend or "__auto")
        for i, q in enumerate(p.queries)
    ]
    panel: timeseries.Panel | stat.Panel
    if p.kind == "stat":
        for t in targets:
            t.instant()
        panel = (stat.Panel()
                 .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
                 .graph_mode(cm.BigValueGraphMode.NONE)
                 .color_mode(cm.BigValueColorMode.VALUE))
    else:
        for t in targets:
            t.range()
        panel = (timeseries.Panel()
                 .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
                         .placement(cm.LegendPlacement.BOTTOM).show_legend(True))
                 .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI)
                          .sort(cm.SortOrder.DESCENDING))
                 .fill_opacity(10).line_width(1))
    panel = (panel.title(p.title).description(p.description).datasource(_DATASOURCE)
             .unit(p.unit).span(p.width).height(p.height).targets(list(targets)))
    if p.min_value is not None:
        panel = panel.min(p.min_value)
    if p.max_value is not None:
        panel = panel.max(p.max_value)
    if p.thresholds:
        steps = [dm.Threshold(value=None, color="green")]
        colours = ("red",) if len(p.thresholds) == 1 else ("orange", "red")
        steps += [dm.Threshold(value=v, color=c)
                  for v, c in zip(p.thresholds, colours, strict=True)]
        panel = panel.thresholds(db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
                                 .steps(steps))
    return panel
