"""`scale status`: every HPA with at-max and not-scaling warnings."""

from __future__ import annotations

import datetime as dt
import time

from pydantic import BaseModel

from k3sops.adapters.kube import KubeAdapter
from k3sops.domain import sizing
from k3sops.domain.sizing import HpaStatus
from k3sops.services.scale.common import HPA_GV


def _parse_ts(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class HpaReport(BaseModel):
    """`scale status`: every HPA in scope."""

    hpas: list[HpaStatus]

    @property
    def warnings(self) -> int:
        """How many warnings there are in total."""
        return sum(len(h.warnings) for h in self.hpas)


def hpa_status(kube: KubeAdapter, namespace: str | None) -> HpaReport:
    """Read the HPAs (one namespace, or all) and summarise them."""
    raw = kube.list(HPA_GV, "horizontalpodautoscalers", namespace)
    now = time.time()
    out = [sizing.hpa_status(h, now, _parse_ts((h.get("metadata") or {}).get(
        "creationTimestamp"))) for h in raw]
    return HpaReport(hpas=sorted(out, key=lambda h: (h.namespace, h.name)))

