"""`scale status`: every HPA with at-max and not-scaling warnings."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from k3sops.adapters.kube import KubeAdapter
from k3sops.domain import sizing
from k3sops.domain.sizing import HpaStatus
from k3sops.services.scale.common import HPA_GV
from k3sops.timeparse import parse_time


class HpaReport(BaseModel):
    """`scale status`: every HPA in scope."""

    hpas: list[HpaStatus]

    @property
    def warnings(self) -> int:
        """How many warnings there are in total."""
        return sum(len(h.warnings) for h in self.hpas)


def _created(hpa: dict[str, Any]) -> float | None:
    """When the HPA was created (epoch seconds), None when the API did not say."""
    when = parse_time((hpa.get("metadata") or {}).get("creationTimestamp"))
    return when.timestamp() if when is not None else None


def hpa_status(kube: KubeAdapter, namespace: str | None) -> HpaReport:
    """Read the HPAs (one namespace, or all) and summarise them."""
    raw = kube.list(HPA_GV, "horizontalpodautoscalers", namespace)
    now = time.time()
    out = [sizing.hpa_status(h, now, _created(h)) for h in raw]
    return HpaReport(hpas=sorted(out, key=lambda h: (h.namespace, h.name)))

