"""Helpers for rule tests on objects captured from a lab (tests/data/rules/*.json).

A capture is ``{"captured_at": ..., "objects": {plural kind: [objects]}}`` as the collector
builds the snapshot (secrets projected to key names and certificate facts, managedFields
dropped). Rules run through :func:`k3sops.domain.engine.run_one`, so each sees only the kinds
it declared.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from k3sops.config import Platform
from k3sops.domain import engine
from k3sops.domain.checks import REGISTRY, CheckContext
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import ClusterSnapshot, parse_time

DATA = Path(__file__).parent.parent / "data" / "rules"
UNREAD = "forbidden: listed as unreadable by the test"

Key = tuple[str, str, str | None, str]


@cache
def load(name: str) -> dict[str, Any]:
    """A capture (cached: tests must not modify it)."""
    return json.loads((DATA / name).read_text())  # type: ignore[no-any-return]


def snapshot(data: dict[str, Any], *, unread: Iterable[str] = (),
             keep: Callable[[str, dict[str, Any]], bool] | None = None,
             later: timedelta = timedelta(0)) -> ClusterSnapshot:
    """The capture as a snapshot; ``unread`` kinds fail as a 403 would, ``later`` moves now."""
    now = parse_time(data["captured_at"])
    assert now is not None
    gone = set(unread)
    objects = {k: [o for o in v if keep is None or keep(k, o)]
               for k, v in data["objects"].items() if k not in gone}
    return ClusterSnapshot(now=now + later, objects=objects, errors={k: UNREAD for k in gone})


def run(check_id: str, snap: ClusterSnapshot, plat: Platform | None = None,
        environment: str | None = None) -> list[Finding]:
    """One rule through the engine's declared-reads restriction."""
    ctx = CheckContext(snapshot=snap, platform=plat, period="monthly", environment=environment)
    found = engine.run_one(REGISTRY[check_id], ctx)
    assert all(f.check == check_id and f.runbook for f in found)
    return found


def keys(findings: Iterable[Finding]) -> set[Key]:
    """(kind, name, namespace, severity) of each finding, for set comparisons."""
    return {(f.resource.kind, f.resource.name, f.resource.namespace, f.severity)
            for f in findings}


def objects(findings: Iterable[Finding]) -> set[tuple[str, str | None, str]]:
    """(kind, namespace, name) of each finding."""
    return {(f.resource.kind, f.resource.namespace, f.resource.name) for f in findings}


def by_name(findings: Iterable[Finding], name: str) -> Finding:
    """The finding about the object called ``name``."""
    return next(f for f in findings if f.resource.name == name)


def not_evaluated_without(check_id: str, data: dict[str, Any], kind: str,
                          later: timedelta = timedelta(0)) -> bool:
    """Whether the rule is listed as not evaluated (and makes nothing) when ``kind`` is unread."""
    snap = snapshot(data, unread=[kind], later=later)
    ctx = CheckContext(snapshot=snap, platform=None, period="monthly")
    result = engine.evaluate(ctx, [REGISTRY[check_id]])
    return ([n.check for n in result.not_evaluated] == [check_id] and not result.findings
            and any(kind in m for n in result.not_evaluated for m in n.missing))


def assert_uses_are_evidence_only(check_id: str, data: dict[str, Any],
                                  later: timedelta = timedelta(0)) -> None:
    """For each kind the rule only consults: unreadable, it makes no finding the full run
    does not make, and it still runs (no internal error)."""
    full = objects(run(check_id, snapshot(data, later=later)))
    for kind in REGISTRY[check_id].uses:
        snap = snapshot(data, unread=[kind], later=later)
        ctx = CheckContext(snapshot=snap, platform=None, period="monthly")
        result = engine.evaluate(ctx, [REGISTRY[check_id]])
        assert result.ran == [check_id], (check_id, kind, result.not_evaluated)
        extra = objects(result.findings) - full
        assert not extra, (check_id, kind, extra)
