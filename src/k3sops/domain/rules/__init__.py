"""The default alert rules of k3sops: catalogue, per-environment scoping and rendering (pure).

* :mod:`.catalogue` — every rule with its expression builder and promtool cases;
* :mod:`.scoping` — how rules are emitted per environment / per kube context;
* :mod:`.render` — rule files, PrometheusRule objects and promtool unit tests;
* :mod:`.templates` — Prometheus' annotation template functions, for expected test output.
"""

from k3sops.domain.rules.catalogue import BACKUP_METRIC, CATALOGUE, catalogue_by_id
from k3sops.domain.rules.model import Case, ExpectedAlert, Inputs, RuleCases, RuleDef, Series
from k3sops.domain.rules.render import (
    RULE_FILE_NAME,
    RuleObject,
    RuleTestFile,
    prometheus_rules,
    promtool_tests,
    rule_file,
    to_yaml,
    to_yaml_documents,
)
from k3sops.domain.rules.scoping import RuleInstance, RuleSet, build_rules

__all__ = [
    "BACKUP_METRIC",
    "CATALOGUE",
    "RULE_FILE_NAME",
    "Case",
    "ExpectedAlert",
    "Inputs",
    "RuleCases",
    "RuleDef",
    "RuleInstance",
    "RuleObject",
    "RuleSet",
    "RuleTestFile",
    "Series",
    "build_rules",
    "catalogue_by_id",
    "prometheus_rules",
    "promtool_tests",
    "rule_file",
    "to_yaml",
    "to_yaml_documents",
]
