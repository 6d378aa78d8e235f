"""The enriched alerts `k3sops serve` stored, as `k3sops alerts list --server` shows them.

Pure: the service's ``GET /api/v1/alerts`` answer (the history store's ``AlertRecord`` rows
as JSON, each with the ``enriched`` record: object, diagnosis, runbook) is read into one flat
row per alert, filtered by the same ``--env``/``--severity``/``-l`` as Alertmanager's alerts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from k3sops.domain.alerting import Matcher
from k3sops.timeparse import parse_time


class ServiceAlert(BaseModel):
    """One alert as the service stored and enriched it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fingerprint: str
    alertname: str
    status: str
    """``firing``, or ``resolved`` once Alertmanager said it ended."""
    severity: str | None
    environment: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    summary: str | None
    object: str | None
    """The object the labels name (``Pod development/api-0``), ``(not found)`` if absent."""
    root_causes: list[str]
    """``check: Kind namespace/name: message`` of each root cause the diagnosis found."""
    runbook: str | None
    """The runbook's id (`k3sops runbook show ID`)."""
    enrich_error: str | None
    """Why the alert was kept without its diagnosis (None: it was diagnosed)."""
    labels: dict[str, str]
    enriched: dict[str, Any]
    """The whole record the service stored and forwarded (JSON/YAML outputs carry it)."""


class ServiceAlertList(BaseModel):
    """What `k3sops alerts list --server URL` shows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server: str
    state: str | None
    """The state asked for (None: firing and resolved)."""
    total: int
    alerts: list[ServiceAlert]


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _where(resource: Mapping[str, Any]) -> str:
    ns = resource.get("namespace")
    return f"{resource.get('kind', '?')} {ns + '/' if ns else ''}{resource.get('name', '?')}"


def _object(obj: Any) -> str | None:
    if not isinstance(obj, Mapping):
        return None
    found = "" if obj.get("found", True) else " (not found)"
    return _where(obj) + found


def alert_from_record(raw: Mapping[str, Any]) -> ServiceAlert:
    """One row of the service's ``GET /api/v1/alerts`` answer."""
    enriched = dict(_map(raw.get("enriched")))
    labels = _str_map(raw.get("labels")) or _str_map(enriched.get("labels"))
    annotations = _str_map(enriched.get("annotations"))
    diagnosis = _map(enriched.get("diagnosis"))
    roots = [f"{r.get('check', '?')}: {_where(_map(r.get('resource')))}: "
             f"{r.get('message', '')}"
             for r in diagnosis.get("root_causes") or [] if isinstance(r, Mapping)]
    runbook = _map(enriched.get("runbook"))
    error = enriched.get("enrich_error")
    return ServiceAlert(
        fingerprint=str(raw.get("fingerprint", "")),
        alertname=str(raw.get("alertname") or labels.get("alertname", "")),
        status=str(raw.get("status", "firing")),
        severity=labels.get("severity") or None,
        environment=labels.get("environment") or None,
        starts_at=parse_time(raw.get("starts_at")),
        ends_at=parse_time(raw.get("ends_at")),
        summary=annotations.get("summary"),
        object=_object(enriched.get("object")),
        root_causes=roots,
        runbook=str(runbook["id"]) if runbook.get("id") else None,
        enrich_error=str(error) if error else None,
        labels=labels,
        enriched=enriched,
    )


def service_alert_list(server: str, state: str | None, rows: Iterable[Mapping[str, Any]], *,
                       environments: Sequence[str] = (), severities: Sequence[str] = (),
                       selectors: Sequence[Matcher] = ()) -> ServiceAlertList:
    """The rows read and filtered (newest first, as the service answers).

    ``environments`` and ``severities`` each match any of their values; ``selectors`` must
    all match the alert's labels.
    """
    alerts = [a for a in (alert_from_record(r) for r in rows)
              if (not environments or a.environment in environments)
              and (not severities or a.severity in severities)
              and all(m.matches(a.labels) for m in selectors)]
    return ServiceAlertList(server=server, state=state, total=len(alerts), alerts=alerts)
