"""What a k3sops dashboard is made of, independent of the Grafana library that renders it.

The definitions (:mod:`.definitions`) are plain frozen dataclasses so that the queries can be
checked against Prometheus and tested without going through Grafana's JSON, and so that the
rendering library stays behind one module (:mod:`._grafana`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from k3sops.config.schema import ENVIRONMENT_NAMES, AppMetrics, Platform, Thresholds
from k3sops.errors import UsageError

__all__ = [
    "DashboardContext",
    "DashboardDef",
    "PanelDef",
    "PanelKind",
    "Query",
    "RenderedDashboard",
    "RowDef",
    "VariableName",
    "WrittenFile",
]

PanelKind = Literal["timeseries", "stat"]
VariableName = Literal["environment", "namespace", "instance"]


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel (a Grafana target)."""

    expr: str
    """PromQL; may reference the dashboard's template variables as ``$name``."""
    legend: str = ""
    """Grafana legend format (``{{label}}`` placeholders); empty: Grafana's default."""


@dataclass(frozen=True)
class PanelDef:
    """One panel: a title, a visualisation and its queries."""

    title: str
    kind: PanelKind
    queries: tuple[Query, ...]
    description: str
    unit: str = "short"
    """Grafana unit id (``percent``, ``s``, ``bytes``, ``Bps``, ``reqps`` ...)."""
    width: int = 12
    """Width in grid columns (the grid is 24 wide)."""
    height: int = 8
    thresholds: tuple[float, ...] = ()
    """Where the colour turns orange, then red (ascending); one value: straight to red;
    empty: no thresholds."""
    min_value: float | None = None
    max_value: float | None = None
    expects_data: bool = True
    """Whether a healthy platform (and the lab) has series for every query of this panel;
    `--check` reports ``no data`` as a problem only for these."""


@dataclass(frozen=True)
class RowDef:
    """A titled row of panels."""

    title: str
    panels: tuple[PanelDef, ...]


@dataclass(frozen=True)
class DashboardDef:
    """A dashboard before rendering: identity, template variables and rows."""

    name: str
    """Short name: ``nodes``, ``cluster``, ``applications``, ``backups``."""
    title: str
    description: str
    variables: tuple[VariableName, ...]
    """Template variables besides ``datasource`` (which every dashboard has), in order."""
    rows: tuple[RowDef, ...]

    @property
    def uid(self) -> str:
        """Stable Grafana uid, so re-imports update the dashboard instead of copying it."""
        return f"k3sops-{self.name}"

    @property
    def file_name(self) -> str:
        """File name of the JSON (and the ConfigMap key the Grafana sidecar reads)."""
        return f"{self.uid}.json"

    @property
    def panels(self) -> tuple[PanelDef, ...]:
        """Every panel, row by row."""
        return tuple(p for r in self.rows for p in r.panels)


@dataclass(frozen=True)
class DashboardContext:
    """The parts of platform.yaml the dashboards depend on."""

    environments: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(environment, its namespaces) in platform order; empty namespaces: every namespace."""
    app_metrics: AppMetrics = field(default_factory=AppMetrics)
    etcd_metrics: bool = True
    """Whether etcd is scraped; without it the etcd row is left out (no empty panels)."""
    namespace: str = "monitoring"
    """Namespace the dashboard ConfigMaps go to (where Grafana's sidecar looks)."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    """Thresholds drawn on the panels: the selected environment's, else the defaults."""

    @classmethod
    def from_platform(cls, platform: Platform | None, environment: str | None) -> DashboardContext:
        """Build the context from platform.yaml, narrowed to ``environment`` when given.

        Raises:
            UsageError: ``environment`` is given without a platform.yaml, or is not one of it.
        """
        if platform is None:
            if environment is not None:
                raise UsageError(f"--env {environment} needs a platform.yaml that defines it",
                                 hint="pass --config FILE or set K3SOPS_CONFIG")
            return cls()
        envs = {name: tuple(e.namespaces) for name, e in platform.environments.items()}
        thresholds = Thresholds()
        if environment is not None:
            if environment not in envs:
                known = ", ".join(envs) or "none"
                allowed = ", ".join(ENVIRONMENT_NAMES)
                raise UsageError(f"environment {environment!r} is not in platform.yaml "
                                 f"(defined: {known}; possible: {allowed})",
                                 hint="use --env with one of the defined environments")
            envs = {environment: envs[environment]}
            thresholds = platform.environments[environment].thresholds
        mon = platform.monitoring
        return cls(environments=tuple(envs.items()), app_metrics=mon.app_metrics,
                   etcd_metrics=mon.etcd_metrics, namespace=mon.namespace,
                   thresholds=thresholds)


@dataclass(frozen=True)
class RenderedDashboard:
    """A dashboard rendered to Grafana's JSON model, with the definition it came from."""

    definition: DashboardDef
    json_model: dict[str, Any]
    """The dashboard as Grafana imports it (classic JSON model), JSON types only."""


class WrittenFile(BaseModel):
    """One dashboard written to disk."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dashboard: str
    """Dashboard uid."""
    title: str
    panels: int
    """Panels (rows not counted)."""
    path: str
    kind: Literal["json", "configmap"]
    """Grafana JSON, or a ConfigMap (YAML) for Grafana's sidecar."""
