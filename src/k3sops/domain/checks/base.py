"""The check registry: one module per check, each a pure function of a CheckContext.

A check (a rule) is registered with :func:`check`, names the periods it belongs to (daily,
weekly, monthly), the kinds it reads (``reads``: without them it is not evaluated) and those it
only consults for evidence (``uses``), the Prometheus queries it needs (batched by the service
with every other check's) and the other sources it cannot do without. It returns findings; it
never does I/O. The engine (:mod:`k3sops.domain.engine`) runs it on a snapshot restricted to
what it declared, so an undeclared read fails loudly instead of judging a kind it never asked
for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from k3sops.config.schema import ENVIRONMENT_NAMES, Platform, Thresholds
from k3sops.domain.findings import Finding, ManualItem, Period, ResourceRef, Severity
from k3sops.domain.snapshot import ClusterSnapshot


@dataclass(frozen=True)
class CheckContext:
    """What a check sees: the snapshot, the platform (thresholds, environments), the period.

    Attributes:
        snapshot: everything gathered for this run.
        platform: platform.yaml, or None (defaults apply, no environments known).
        period: which checklist is being run.
        environment: restrict findings to this environment's namespaces (None: all).
        last_check: ISO time of the previous stored run of this period, if any.
        history: facts the service read from the history store for trend checks
            (e.g. ``{"restore_drills": [...], "acks": {...}}``).
    """

    snapshot: ClusterSnapshot
    platform: Platform | None
    period: Period
    environment: str | None = None
    last_check: str | None = None
    history: Mapping[str, Any] = field(default_factory=dict)

    def environment_of(self, namespace: str | None) -> str | None:
        """The environment whose namespaces include ``namespace`` (None when unknown)."""
        if namespace is None or self.platform is None:
            return None
        for name in ENVIRONMENT_NAMES:
            env = self.platform.environments.get(name)  # type: ignore[call-overload]
            if env is not None and namespace in env.namespaces:
                return name
        return None

    def thresholds(self, namespace: str | None = None) -> Thresholds:
        """Thresholds for a namespace.

        Those of the namespace's environment, else of the selected environment, else of the
        most production-like environment, else the defaults.
        """
        if self.platform is None:
            return Thresholds()
        envs = self.platform.environments
        name = self.environment_of(namespace) or self.environment
        if name and name in envs:
            return envs[name].thresholds
        for candidate in reversed(ENVIRONMENT_NAMES):
            if candidate in envs:
                return envs[candidate].thresholds
        return Thresholds()

    def in_scope(self, namespace: str | None) -> bool:
        """Whether a namespaced object belongs to the selected environment (all when none)."""
        if self.environment is None or namespace is None:
            return True
        return self.environment_of(namespace) == self.environment

    def unread(self, kind: str) -> str | None:
        """Why ``kind`` could not be read (None: read, or not installed in this cluster)."""
        return self.snapshot.unread(kind)

    def finding(self, check: str, severity: Severity, kind: str, namespace: str | None,
                name: str, message: str, runbook: str,
                evidence: dict[str, Any] | None = None) -> Finding:
        """Build a Finding with the environment filled in from the namespace."""
        return Finding(check=check, severity=severity,
                       resource=ResourceRef(kind=kind, namespace=namespace, name=name),
                       message=message, evidence=evidence or {}, runbook=runbook,
                       environment=self.environment_of(namespace))


CheckFn = Callable[[CheckContext], list[Finding]]
QueryFn = Callable[[Platform | None], Mapping[str, str]]
Category = Literal["fault", "hygiene", "report"]
"""fault: something broken or about to break (a root-cause candidate in a diagnosis);
hygiene: a practice worth fixing (weekly); report: a periodic summary (trends, noisy alerts)."""


@dataclass(frozen=True)
class CheckSpec:
    """A registered check."""

    id: str
    title: str
    periods: tuple[Period, ...]
    fn: CheckFn
    queries: Mapping[str, str] | QueryFn = field(default_factory=dict)
    """PromQL by unique name, or a function of platform.yaml giving them (configured metric
    names, such as the application RED metrics)."""
    needs: tuple[str, ...] = ("kubernetes",)
    """Sources without which the check is skipped: kubernetes, prometheus, alertmanager."""
    reads: tuple[str, ...] = ()
    """Kinds (plural names, as in ``ClusterSnapshot.objects``) the check judges: when one could
    not be read the check is not evaluated — it neither fires nor resolves anything."""
    uses: tuple[str, ...] = ()
    """Kinds read only for evidence or causes; when unreadable the check still runs and must
    not take their emptiness for a fact (``ctx.unread(kind)`` says why)."""
    category: Category = "fault"

    def queries_for(self, platform: Platform | None) -> Mapping[str, str]:
        """The queries for this platform."""
        return self.queries(platform) if callable(self.queries) else self.queries


REGISTRY: dict[str, CheckSpec] = {}
MANUAL: dict[str, ManualItem] = {}


def check(id: str, title: str, periods: tuple[Period, ...] = ("daily",),
          queries: Mapping[str, str] | QueryFn | None = None,
          needs: tuple[str, ...] = ("kubernetes",), *, reads: tuple[str, ...] = (),
          uses: tuple[str, ...] = (), category: Category | None = None,
          ) -> Callable[[CheckFn], CheckFn]:
    """Register a check function under a stable id.

    ``category`` defaults to hygiene for weekly-only checks and fault otherwise.
    """
    def deco(fn: CheckFn) -> CheckFn:
        if id in REGISTRY:
            raise ValueError(f"check id {id!r} registered twice")
        qs: Mapping[str, str] | QueryFn = (queries if callable(queries)
                                            else dict(queries or {}))
        cat: Category = category or ("hygiene" if periods == ("weekly",) else "fault")
        REGISTRY[id] = CheckSpec(id=id, title=title, periods=periods, fn=fn, queries=qs,
                                 needs=needs, reads=reads, uses=uses, category=cat)
        return fn
    return deco


def manual(item: ManualItem) -> ManualItem:
    """Register a manual checklist step."""
    MANUAL[item.id] = item
    return item


def selected(period: Period) -> list[CheckSpec]:
    """Checks of a period. Weekly includes daily; monthly includes weekly and daily."""
    order = {"daily": 0, "weekly": 1, "monthly": 2}
    wanted = {p for p, rank in order.items() if rank <= order[period]}
    return [c for c in REGISTRY.values() if wanted & set(c.periods)]
