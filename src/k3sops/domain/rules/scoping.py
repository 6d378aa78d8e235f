"""Turn the catalogue into concrete rules for the platform's environments.

The same rules run everywhere; what changes per environment is the thresholds and the
``environment`` label every alert carries. How each rule is scoped:

* **Namespace-scoped rules** (pods, applications) are emitted once per environment, with a
  ``namespace=~"ns1|ns2"`` matcher from ``Environment.namespaces`` and that environment's
  thresholds. An environment without namespaces owns "every namespace of its cluster": it gets
  ``namespace!~"…"`` excluding the namespaces other environments on the same kube context claim.
  When several environments on one context list no namespaces, only the most production-like of
  them gets the rules (the others would duplicate every alert under another label); the rule
  set's ``notes`` say so.
* **Cluster-scoped rules** (nodes, control plane, etcd, certificates, targets, backups) describe
  things environments sharing a cluster cannot tell apart, so they are emitted once per group of
  environments with the same kube context (``Environment.context``; unset counts as one shared
  context), with the thresholds of the most production-like environment of the group
  (production > staging > development) and its name as the ``environment`` label: a shared
  cluster is held to its strictest tenant's standard, and each alert is reported once.

Every alert carries ``environment`` and ``severity`` labels and the annotations ``summary``,
``description``, ``runbook_id`` and, when ``monitoring.runbook_base_url`` is set,
``runbook_url`` (base URL + runbook id). Groups are named ``k3sops-<category>-<environment>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from string import Template

from k3sops.config.schema import ENVIRONMENT_NAMES, Environment, Platform
from k3sops.domain.rules.catalogue import CATALOGUE
from k3sops.domain.rules.model import CATEGORY_ORDER, ExpectedAlert, Inputs, RuleCases, RuleDef
from k3sops.domain.rules.templates import expand

__all__ = ["PRODUCTION_LIKENESS", "RuleInstance", "RuleSet", "build_rules"]

PRODUCTION_LIKENESS: dict[str, int] = {"production": 0, "staging": 1, "development": 2}
"""Rank of each environment; lower is more production-like (its thresholds win)."""


def _rank(env: str) -> tuple[int, str]:
    return PRODUCTION_LIKENESS.get(env, len(PRODUCTION_LIKENESS)), env


@dataclass(frozen=True)
class RuleInstance:
    """One rule as emitted for one environment (or for the cluster an environment stands for).

    Attributes:
        rule: the catalogue entry.
        environment: the ``environment`` label value.
        context: the kube context the rule belongs to (None: the current context).
        inputs: thresholds, monitoring settings and namespace scoping in effect.
        runbook_base_url: base of ``runbook_url``, if configured.
    """

    rule: RuleDef
    environment: str
    context: str | None
    inputs: Inputs
    runbook_base_url: str | None = None

    @property
    def group(self) -> str:
        """Name of the rule group this instance is rendered into."""
        return f"k3sops-{self.rule.category}-{self.environment}"

    @property
    def expr(self) -> str:
        """The PromQL expression."""
        return self.rule.expr(self.inputs)

    @property
    def hold(self) -> str:
        """The ``for`` duration."""
        return self.rule.hold(self.inputs)

    @property
    def labels(self) -> dict[str, str]:
        """Labels the rule adds to its alerts."""
        return {"environment": self.environment, "severity": self.rule.severity}

    def annotations(self) -> dict[str, str]:
        """Annotations (templates for Prometheus, thresholds already filled in)."""
        values = {"threshold": self.rule.threshold(self.inputs), "for": self.hold}
        out = {
            "summary": Template(self.rule.summary).safe_substitute(values),
            "description": Template(self.rule.description).safe_substitute(values),
            "runbook_id": self.rule.runbook_id,
        }
        if self.runbook_base_url:
            out["runbook_url"] = f"{self.runbook_base_url.rstrip('/')}/{self.rule.runbook_id}"
        return out

    def to_rule(self) -> dict[str, object]:
        """The rule as it appears in a Prometheus rule group."""
        return {"alert": self.rule.id, "expr": self.expr, "for": self.hold,
                "labels": self.labels, "annotations": self.annotations()}

    def cases(self) -> RuleCases:
        """The promtool cases of this instance (firing and quiet)."""
        return self.rule.cases(self.inputs, self.rule.hold_seconds(self.inputs))

    def expected(self, alert: ExpectedAlert) -> tuple[dict[str, str], dict[str, str]]:
        """The exact labels and annotations Prometheus gives a case's expected alert."""
        labels = {**alert.labels, **self.labels}
        annotations = {k: expand(v, alert.labels, alert.value)
                       for k, v in self.annotations().items()}
        return labels, annotations


@dataclass(frozen=True)
class RuleSet:
    """The rules for a platform, in render order, with notes about scoping decisions."""

    instances: tuple[RuleInstance, ...]
    notes: tuple[str, ...] = ()

    def groups(self) -> list[tuple[str, list[RuleInstance]]]:
        """Instances grouped by rule group name, in render order."""
        out: dict[str, list[RuleInstance]] = {}
        for inst in self.instances:
            out.setdefault(inst.group, []).append(inst)
        return list(out.items())

    def environments(self) -> list[str]:
        """The ``environment`` label values present, most production-like first."""
        return sorted({i.environment for i in self.instances}, key=_rank)

    def for_environment(self, env: str, platform: Platform) -> RuleSet:
        """The rules that concern environment ``env``.

        Those are its namespace-scoped rules and the cluster-scoped rules of its kube context
        (labelled with the context's representative environment).
        """
        environment = _environments(platform).get(env)
        ctx = environment.context if environment is not None else None
        keep = tuple(i for i in self.instances
                     if (i.rule.scope == "namespace" and i.environment == env)
                     or (i.rule.scope == "cluster" and i.context == ctx))
        return RuleSet(keep, self.notes)


def _environments(platform: Platform) -> dict[str, Environment]:
    return {str(name): e for name, e in platform.environments.items()}


def _unused(name: str, taken: Iterable[str]) -> str:
    taken = set(taken)
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _namespace_inputs(env: Environment, claimed_elsewhere: list[str],
                      base: Inputs) -> Inputs:
    """Inputs of a namespace-scoped rule for ``env`` (see the module docstring)."""
    if env.namespaces:
        alternatives = "|".join(env.namespaces)
        return Inputs(base.thresholds, base.monitoring, f'namespace=~"{alternatives}"',
                      env.namespaces[0], _unused("other-namespace", env.namespaces))
    if claimed_elsewhere:
        alternatives = "|".join(claimed_elsewhere)
        return Inputs(base.thresholds, base.monitoring, f'namespace!~"{alternatives}"',
                      _unused("default", claimed_elsewhere), claimed_elsewhere[0])
    return base


def build_rules(platform: Platform) -> RuleSet:
    """Build the rules for ``platform`` (see the module docstring for the scoping).

    Args:
        platform: the validated platform.yaml.

    Returns:
        The rule instances in render order (by category, then environment, then catalogue
        order) and notes on environments that got no namespace-scoped rules.
    """
    envs = _environments(platform)
    by_context: dict[str | None, list[str]] = {}
    for name in sorted(envs, key=_rank):
        by_context.setdefault(envs[name].context, []).append(name)

    monitoring = platform.monitoring
    base_url = monitoring.runbook_base_url
    rules = [r for r in CATALOGUE if r.enabled(platform)]
    instances: list[RuleInstance] = []
    notes: list[str] = []
    for context, names in by_context.items():
        representative = names[0]
        cluster_inputs = Inputs(envs[representative].thresholds, monitoring)
        instances += [RuleInstance(r, representative, context, cluster_inputs, base_url)
                      for r in rules if r.scope == "cluster"]
        claimed = sorted({ns for n in names for ns in envs[n].namespaces})
        catch_all = [n for n in names if not envs[n].namespaces]
        for name in names:
            if name in catch_all[1:]:
                notes.append(
                    f"environment {name} gets no pod/application rules: it lists no namespaces "
                    f"and shares its kube context with {catch_all[0]}, which also lists none "
                    f"(set environments.{name}.namespaces)")
                continue
            base = Inputs(envs[name].thresholds, monitoring)
            inputs = _namespace_inputs(envs[name], claimed, base)
            instances += [RuleInstance(r, name, context, inputs, base_url)
                          for r in rules if r.scope == "namespace"]

    order = {r.id: n for n, r in enumerate(CATALOGUE)}
    env_order = {e: n for n, e in enumerate(ENVIRONMENT_NAMES)}
    instances.sort(key=lambda i: (CATEGORY_ORDER.index(i.rule.category),
                                  env_order.get(i.environment, len(env_order)),
                                  order[i.rule.id]))
    return RuleSet(tuple(instances), tuple(notes))
