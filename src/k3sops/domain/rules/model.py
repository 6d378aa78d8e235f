"""The shapes of the rule catalogue: rule definitions, their inputs and their test cases.

A :class:`RuleDef` is environment-independent: it builds its expression and its promtool test
cases from :class:`Inputs` (one environment's thresholds, the monitoring settings and the
namespace matcher the rule is scoped to). :mod:`k3sops.domain.rules.scoping` turns the
catalogue into :class:`RuleInstance` objects, one per rule and environment (or cluster).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from k3sops.config.schema import Monitoring, Platform, Thresholds
from k3sops.timeparse import format_duration

__all__ = [
    "Case",
    "Category",
    "ExpectedAlert",
    "Inputs",
    "RuleCases",
    "RuleDef",
    "Scope",
    "Series",
    "Severity",
    "format_duration",
]

Severity = Literal["critical", "warning", "info"]
Scope = Literal["cluster", "namespace"]
"""``cluster``: emitted once per kube context; ``namespace``: once per environment."""
Category = Literal["nodes", "pods", "control-plane", "certificates", "etcd", "applications",
                   "monitoring", "backups"]
CATEGORY_ORDER: tuple[Category, ...] = ("nodes", "pods", "control-plane", "certificates",
                                        "etcd", "applications", "monitoring", "backups")


@dataclass(frozen=True)
class Series:
    """One promtool input series.

    ``series`` is in PromQL selector syntax; ``values`` is expanded by promtool (``a+bxN``:
    N+1 samples one ``interval`` apart).
    """

    series: str
    values: str


@dataclass(frozen=True)
class ExpectedAlert:
    """An alert a firing case must produce: the labels of its sample and its value.

    The rule's own labels (``environment``, ``severity``) and the expanded annotations are
    added by the scoping step, which knows them.
    """

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Case:
    """One promtool scenario: input series, when to evaluate, and the alerts expected then."""

    series: tuple[Series, ...]
    eval_minutes: int
    alerts: tuple[ExpectedAlert, ...] = ()


@dataclass(frozen=True)
class RuleCases:
    """A case where the rule must fire and one where it must not."""

    firing: Case
    quiet: Case


@dataclass(frozen=True)
class Inputs:
    """What a rule is built from for one environment (or one cluster).

    Attributes:
        thresholds: the thresholds in effect.
        monitoring: the platform's monitoring settings (metric names, K3s awareness).
        namespace_matcher: ``namespace=~"a|b"``, ``namespace!~"a|b"`` or "" (no scoping);
            always "" for cluster-scoped rules.
        test_namespace: a namespace the matcher selects (used in generated test series).
        foreign_namespace: a namespace the matcher rejects, or None when it selects all.
    """

    thresholds: Thresholds
    monitoring: Monitoring
    namespace_matcher: str = ""
    test_namespace: str = "default"
    foreign_namespace: str | None = None

    def sel(self, *matchers: str) -> str:
        """A selector body: the given matchers plus the namespace matcher, comma-separated."""
        return ",".join(m for m in (*matchers, self.namespace_matcher) if m)


def _always(_: Platform) -> bool:
    return True


@dataclass(frozen=True)
class RuleDef:
    """One alert rule of the catalogue, independent of any environment.

    Attributes:
        id: the alert name (CamelCase, upstream mixin name where one exists); stable.
        runbook_id: kebab-case id of the matching runbook (`k3sops runbook show ID`).
        category: the rule group it belongs to.
        scope: ``cluster`` or ``namespace`` (see :mod:`k3sops.domain.rules.scoping`).
        severity: ``critical``, ``warning`` or ``info``.
        summary: one-line annotation: Prometheus template text (``$labels``, ``$value``) in
            which ``${threshold}`` and ``${for}`` are replaced when the rule is built.
        description: longer annotation, same substitutions as ``summary``.
        threshold_source: where the threshold comes from (platform.yaml field or upstream).
        expr: builds the PromQL expression from the inputs.
        threshold: the threshold as people read it (``80%``, ``14 days``), from the inputs.
        cases: builds the firing and quiet test cases from the inputs and ``for`` seconds.
        fixed_for: ``for`` in seconds when fixed (upstream value); None: the environment's
            ``thresholds.for``.
        enabled: whether the platform wants this rule at all (K3s awareness, etcd metrics).
    """

    id: str
    runbook_id: str
    category: Category
    scope: Scope
    severity: Severity
    summary: str
    description: str
    threshold_source: str
    expr: Callable[[Inputs], str]
    threshold: Callable[[Inputs], str]
    cases: Callable[[Inputs, float], RuleCases]
    fixed_for: int | None = None
    enabled: Callable[[Platform], bool] = field(default=_always)

    def hold(self, inputs: Inputs) -> str:
        """The rule's ``for`` duration for these inputs."""
        if self.fixed_for is None:
            return inputs.thresholds.for_
        return format_duration(self.fixed_for)

    def hold_seconds(self, inputs: Inputs) -> float:
        """The rule's ``for`` duration in seconds for these inputs."""
        if self.fixed_for is None:
            return inputs.thresholds.for_seconds
        return float(self.fixed_for)

    @property
    def for_source(self) -> str:
        """Where ``for`` comes from, for documentation."""
        if self.fixed_for is None:
            return "environments.*.thresholds.for"
        return "fixed"
