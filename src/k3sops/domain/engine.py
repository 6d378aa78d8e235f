"""The one analysis engine: every rule judged once on a snapshot, for `check` and `diagnose`.

:func:`evaluate` runs the selected rules. A rule whose declared inputs could not be read (a
kind forbidden or failed, a Prometheus query that failed, Alertmanager down) is *not
evaluated*: it is listed with what was missing and neither fires nor resolves anything. Each
rule runs on a snapshot restricted to the kinds it declared, so reading an undeclared kind is
a loud error (a bug in the rule, reported as "not evaluated: internal error"), never a silent
judgement on data it did not ask for. A rule that raises does not take the others down.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from k3sops.domain.checks.base import CheckContext, CheckSpec
from k3sops.domain.findings import Finding, NotEvaluated, sort_findings
from k3sops.domain.snapshot import PLURALS

log = logging.getLogger(__name__)


@dataclass
class EngineResult:
    """What a run of the rules found, and which rules could not be evaluated."""

    findings: list[Finding] = field(default_factory=list)
    not_evaluated: list[NotEvaluated] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    partial: set[str] = field(default_factory=set)
    """Rules that ran without some kind they consult: what they did not find proves nothing."""

    @property
    def skipped(self) -> set[str]:
        """Ids of the rules not evaluated."""
        return {n.check for n in self.not_evaluated}


def missing_inputs(spec: CheckSpec, ctx: CheckContext,
                   down: Iterable[str] = ()) -> list[str]:
    """The inputs of ``spec`` that could not be read (empty: the rule can be evaluated).

    ``down`` names the sources that could not be reached at all (prometheus, alertmanager).
    """
    snap = ctx.snapshot
    down = set(down)
    missing = [f"{kind}: {why}" for kind in spec.reads if (why := snap.unread(kind))]
    queries = spec.queries_for(ctx.platform)
    failed = [f"query {name}: {snap.metric_errors[name]}" for name in queries
              if name in snap.metric_errors]
    missing += failed
    for source in spec.needs:
        if source == "alertmanager" and snap.alerts is None:
            missing.append("alertmanager: could not be read")
        elif source == "prometheus" and "prometheus" in down and not queries:
            missing.append("prometheus: could not be read")
    return missing


def declared(spec: CheckSpec) -> frozenset[str]:
    """The kinds a rule may read."""
    return frozenset((*spec.reads, *spec.uses))


def run_one(spec: CheckSpec, ctx: CheckContext) -> list[Finding]:
    """Run one rule on the snapshot restricted to what it declared."""
    scoped = replace(ctx, snapshot=ctx.snapshot.scoped(declared(spec)))
    return spec.fn(scoped)


def evaluate(ctx: CheckContext, specs: Iterable[CheckSpec],
             down: Iterable[str] = ()) -> EngineResult:
    """Run every rule whose inputs were read; list the others as not evaluated."""
    result = EngineResult()
    down = set(down)
    specs_list = list(specs)
    for spec in specs_list:
        missing = missing_inputs(spec, ctx, down)
        if missing:
            result.not_evaluated.append(NotEvaluated(check=spec.id, title=spec.title,
                                                     missing=missing))
            continue
        try:
            found = run_one(spec, ctx)
        except Exception as e:
            log.warning("check %s failed: %s: %s", spec.id, type(e).__name__, e)
            result.not_evaluated.append(NotEvaluated(
                check=spec.id, title=spec.title,
                missing=[f"internal error in the check: {type(e).__name__}: {e}"]))
            continue
        result.ran.append(spec.id)
        if any(ctx.snapshot.unread(kind) for kind in spec.uses):
            result.partial.add(spec.id)
        result.findings.extend(found)
    # where a rule about a kind could not run, nobody knows what it would have said: the
    # catch-all keeps quiet about that kind rather than speak in its place
    unsure = {kind for spec in specs_list if spec.id in result.skipped
              for kind in spec.reads} - {"events"}
    result.findings = _without_explained_events(result.findings, unsure)
    if ctx.environment is not None:
        result.findings = [f for f in result.findings
                           if f.environment in (None, ctx.environment)
                           or f.resource.namespace is None]
    result.findings = sort_findings(result.findings)
    return result


CATCH_ALL = "events-warning"


def _without_explained_events(findings: list[Finding], unsure: set[str]) -> list[Finding]:
    """Drop the catch-all Warning-event findings another check already explains.

    When another check reports the object or one of its owners, the event is evidence of that
    finding, not news. Where a check that judges the object's kind was not evaluated, nobody
    can tell whether it would have: the catch-all stays silent there too.
    """
    covered = {(f.resource.kind, f.resource.namespace, f.resource.name)
               for f in findings if f.check != CATCH_ALL}
    out = []
    for f in findings:
        if f.check == CATCH_ALL:
            r = f.resource
            owners = {(o.get("kind"), r.namespace, o.get("name"))
                      for o in f.evidence.get("owners") or [] if isinstance(o, Mapping)}
            if (r.kind, r.namespace, r.name) in covered or owners & covered or \
                    PLURALS.get(r.kind) in unsure:
                continue
        out.append(f)
    return out


def by_object(findings: Iterable[Finding]) -> Mapping[tuple[str, str | None, str],
                                                      list[Finding]]:
    """Findings by the (kind, namespace, name) they are about."""
    out: dict[tuple[str, str | None, str], list[Finding]] = {}
    for f in findings:
        out.setdefault((f.resource.kind, f.resource.namespace, f.resource.name), []).append(f)
    return out
