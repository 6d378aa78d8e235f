"""Suppressions from platform.yaml applied to findings (pure).

A suppression hides the findings it matches, or re-grades them when it names a severity. Every
suppressed finding is kept (counted in the report's summary, listed with --show-suppressed)
with the suppression's reason in its evidence; nothing disappears silently. A suppression past
its expiry date no longer applies (the ``suppression-expired`` check reports it).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from k3sops.config.schema import Suppression
from k3sops.domain import index as ix
from k3sops.domain.findings import Finding, sort_findings
from k3sops.domain.snapshot import PLURALS, ClusterSnapshot, get


@dataclass
class Applied:
    """Findings after suppressions: those reported and those hidden."""

    findings: list[Finding] = field(default_factory=list)
    suppressed: list[Finding] = field(default_factory=list)


def active(suppressions: Sequence[Suppression], today: date) -> list[tuple[int, Suppression]]:
    """The suppressions still in force, with their position in platform.yaml (1-based)."""
    return [(i, s) for i, s in enumerate(suppressions, start=1)
            if s.expires is None or s.expires >= today]


def _labels(snapshot: ClusterSnapshot, f: Finding) -> dict[str, str] | None:
    plural = PLURALS.get(f.resource.kind)
    if plural is None or plural not in snapshot.objects:
        return None
    obj = ix.by_name(snapshot, plural).get((f.resource.namespace, f.resource.name))
    return None if obj is None else dict(get(obj, "metadata", "labels", default={}) or {})


def matches(s: Suppression, f: Finding, snapshot: ClusterSnapshot) -> bool:
    """Whether suppression ``s`` covers finding ``f``."""
    r = f.resource
    if not fnmatch.fnmatchcase(f.check, s.check):
        return False
    if s.kind is not None and s.kind.lower() != r.kind.lower():
        return False
    if s.namespace is not None and not fnmatch.fnmatchcase(r.namespace or "", s.namespace):
        return False
    if s.name is not None and not re.fullmatch(s.name, r.name):
        return False
    if s.labels:
        labels = _labels(snapshot, f)
        if labels is None or any(labels.get(k) != v for k, v in s.labels.items()):
            return False
    return True


def apply(findings: Sequence[Finding], suppressions: Sequence[Suppression],
          snapshot: ClusterSnapshot, today: date) -> Applied:
    """Hide or re-grade the findings matched by an active suppression (first match wins)."""
    rules = active(suppressions, today)
    out = Applied()
    for f in findings:
        hit = next(((i, s) for i, s in rules
                    if f.check != "suppression-expired" and matches(s, f, snapshot)), None)
        if hit is None:
            out.findings.append(f)
            continue
        i, s = hit
        note = {"suppression": {"index": i, "reason": s.reason,
                                "expires": s.expires.isoformat() if s.expires else None,
                                "original_severity": f.severity}}
        if s.severity is not None:
            out.findings.append(f.model_copy(update={"severity": s.severity,
                                                     "evidence": {**f.evidence, **note}}))
        else:
            out.suppressed.append(f.model_copy(update={"evidence": {**f.evidence, **note}}))
    out.findings = sort_findings(out.findings)
    return out
