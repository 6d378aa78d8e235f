"""Output models of `k3sops alerts render | test | apply` (JSON-stable, ``model_dump``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "AlertsApplyReport",
    "AppliedRules",
    "RenderedRules",
    "RuleCheckResult",
    "RuleTestReport",
    "RuleTestResult",
]

RuleFormat = Literal["rules", "prometheusrule"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RenderedRules(_Model):
    """The rendered rules: the document, its YAML text and what it holds."""

    format: RuleFormat
    """``rules`` (a Prometheus rule file) or ``prometheusrule`` (PrometheusRule objects)."""
    environment: str | None
    """The environment asked for with ``--env``; None: all."""
    groups: int
    rules: int
    notes: list[str]
    """Scoping decisions worth knowing (environments that got no namespace-scoped rules)."""
    document: Any
    """The rule file (a mapping), or the list of PrometheusRule objects."""
    text: str
    """The YAML form, as written by `alerts apply`."""


class RuleTestResult(_Model):
    """The promtool unit test of one rule instance (a firing case and a quiet case)."""

    rule: str
    environment: str
    severity: str
    passed: bool
    output: str
    """promtool's output when the test failed; empty when it passed."""


class RuleCheckResult(_Model):
    """``promtool check rules`` over the whole rendered rule file."""

    passed: bool
    rules_found: int | None
    output: str


class RuleTestReport(_Model):
    """What `alerts test` found."""

    promtool: str
    """promtool's version line."""
    check: RuleCheckResult
    results: list[RuleTestResult]
    passed: int
    failed: int
    notes: list[str]

    @property
    def ok(self) -> bool:
        """Whether the check and every rule test passed."""
        return self.check.passed and self.failed == 0


class AppliedRules(_Model):
    """One place rules were written to."""

    kind: Literal["rule-file", "prometheusrule"]
    target: str
    """The file path, or ``namespace/name`` of the PrometheusRule object."""
    cluster: str | None
    """API server and context of a PrometheusRule (None for a rule file)."""
    environment: str | None
    groups: int
    rules: int
    loaded_groups: int | None
    """Groups Prometheus (rule file) or the API server (object read back) reports; None in a
    dry run."""
    loaded_rules: int | None


class AlertsApplyReport(_Model):
    """What `alerts apply` did (or, with ``--dry-run``, would do)."""

    mode: Literal["rule-file", "prometheusrule"]
    dry_run: bool
    applied: list[AppliedRules]
    content: str | None
    """The YAML that was (dry run: would be) written."""
    notes: list[str]
