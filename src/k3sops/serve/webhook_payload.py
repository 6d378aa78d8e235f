"""Alertmanager's webhook payload, version 4: parsed and checked, or refused with the field.

The body Alertmanager's ``notify/webhook`` POSTs: its template data (``receiver``,
``status``, ``alerts``, ``groupLabels``, ``commonLabels``, ``commonAnnotations``,
``externalURL``) plus ``version``, ``groupKey`` and ``truncatedAlerts``. Each alert has
``status``, ``labels``, ``annotations``, ``startsAt``, ``endsAt`` (Go's zero time while firing),
``generatorURL`` and ``fingerprint``. A body that is not that is refused whole:
:class:`PayloadInvalid` (HTTP 400) naming the field, :class:`PayloadTooLarge` (HTTP 413).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from k3sops.errors import PayloadInvalid, PayloadTooLarge
from k3sops.timeparse import parse_rfc3339

WEBHOOK_VERSION = "4"
"""The payload version Alertmanager's notify/webhook sends (its Message.Version)."""
MAX_BODY = 1 << 20
"""Bytes accepted in one delivery (Alertmanager's default ``max_alerts`` is unlimited)."""
ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero time: the ``endsAt`` Alertmanager sends for an alert still firing."""


@dataclass(frozen=True)
class WebhookAlert:
    """One alert of a webhook payload."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    """None while firing (Alertmanager sends Go's zero time)."""
    generator_url: str
    fingerprint: str

    @property
    def alertname(self) -> str:
        """The rule's name (``alertname`` label; empty when a sender left it out)."""
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class WebhookMessage:
    """Alertmanager's webhook payload, version 4."""

    version: str
    group_key: str
    status: Literal["firing", "resolved"]
    receiver: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    alerts: list[WebhookAlert]
    truncated_alerts: int = 0




def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _field(obj: Mapping[str, Any], key: str, where: str, kind: type,
           required: bool = True) -> Any:
    if key not in obj:
        if required:
            raise PayloadInvalid(f"webhook payload: {where}{key} is missing",
                                 hint="send Alertmanager's webhook payload version 4")
        return kind()
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PayloadInvalid(f"webhook payload: {where}{key} must be a {kind.__name__}, "
                             f"not {_short(value)}",
                             hint="send Alertmanager's webhook payload version 4")
    return value


def _strings(obj: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value: dict[str, Any] = _field(obj, key, where, dict)
    for k, v in value.items():
        if not isinstance(v, str):
            raise PayloadInvalid(f"webhook payload: {where}{key}.{k} must be a string, "
                                 f"not {_short(v)}")
    return dict(value)


def _status(obj: Mapping[str, Any], where: str) -> Literal["firing", "resolved"]:
    value = _field(obj, "status", where, str)
    if value == "firing":
        return "firing"
    if value == "resolved":
        return "resolved"
    raise PayloadInvalid(f"webhook payload: {where}status must be firing or resolved, "
                         f"not {_short(value)}")


def _time(obj: Mapping[str, Any], key: str, where: str) -> datetime | None:
    text: str = _field(obj, key, where, str)
    if text == ZERO_TIME:
        return None
    try:
        at = parse_rfc3339(text)
    except ValueError as e:
        raise PayloadInvalid(f"webhook payload: {where}{key} is not an RFC 3339 time: "
                             f"{_short(text)}") from e
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _alert(obj: Any, i: int) -> WebhookAlert:
    where = f"alerts[{i}]."
    if not isinstance(obj, dict):
        raise PayloadInvalid(f"webhook payload: alerts[{i}] must be an object, not "
                             f"{_short(obj)}")
    status = _status(obj, where)
    starts_at = _time(obj, "startsAt", where)
    if starts_at is None:
        raise PayloadInvalid(f"webhook payload: {where}startsAt is the zero time")
    ends_at = _time(obj, "endsAt", where)
    if status == "resolved" and ends_at is None:
        raise PayloadInvalid(f"webhook payload: {where}endsAt is missing on a resolved alert")
    fingerprint: str = _field(obj, "fingerprint", where, str)
    if not fingerprint:
        raise PayloadInvalid(f"webhook payload: {where}fingerprint is empty")
    return WebhookAlert(status=status, labels=_strings(obj, "labels", where),
                        annotations=_strings(obj, "annotations", where),
                        starts_at=starts_at, ends_at=ends_at if status == "resolved" else None,
                        generator_url=_field(obj, "generatorURL", where, str, required=False),
                        fingerprint=fingerprint)


def parse_payload(body: bytes, max_body: int = MAX_BODY) -> WebhookMessage:
    """Alertmanager's webhook body as a :class:`WebhookMessage`.

    Raises:
        PayloadTooLarge: ``body`` is longer than ``max_body`` bytes (not parsed).
        PayloadInvalid: not UTF-8 JSON, not an object, ``version`` is not "4", or a field is
            missing or of the wrong type; the message names the field (``alerts[2].labels``).
    """
    if len(body) > max_body:
        raise PayloadTooLarge(f"webhook payload is {len(body)} bytes, over the limit of "
                              f"{max_body}",
                              hint="lower max_alerts in Alertmanager's webhook_config")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        where = f" at line {e.lineno} column {e.colno}" if isinstance(
            e, json.JSONDecodeError) else ""
        raise PayloadInvalid(f"webhook payload is not JSON{where}",
                             hint="send Alertmanager's webhook payload version 4") from e
    if not isinstance(data, dict):
        raise PayloadInvalid(f"webhook payload must be a JSON object, not {_short(data)}")
    version = _field(data, "version", "", str)
    if version != WEBHOOK_VERSION:
        raise PayloadInvalid(f"webhook payload: version {_short(version)} is not supported",
                             hint=f"Alertmanager sends version {WEBHOOK_VERSION}")
    raw_alerts: list[Any] = _field(data, "alerts", "", list)
    truncated = _field(data, "truncatedAlerts", "", int, required=False)
    return WebhookMessage(
        version=version, group_key=_field(data, "groupKey", "", str), status=_status(data, ""),
        receiver=_field(data, "receiver", "", str),
        group_labels=_strings(data, "groupLabels", ""),
        common_labels=_strings(data, "commonLabels", ""),
        common_annotations=_strings(data, "commonAnnotations", ""),
        external_url=_field(data, "externalURL", "", str),
        alerts=[_alert(a, i) for i, a in enumerate(raw_alerts)], truncated_alerts=truncated)
