"""Alertmanager API v2: alerts, and silences created, read and expired."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from k3sops.adapters.prometheus import HttpApi
from k3sops.errors import AdapterError, NotFound

SILENCES_HINT = "list them with `k3sops alerts silences --all`"


class AlertmanagerAdapter:
    """The Alertmanager API v2 calls k3sops makes; errors name the endpoint."""

    def __init__(self, api: HttpApi) -> None:
        self.api = api

    @property
    def where(self) -> str:
        """The endpoint, for messages and reports."""
        return self.api.how

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert Alertmanager holds: active, silenced, inhibited and unprocessed."""
        body = self.api.get_json("/api/v2/alerts", {"active": "true", "silenced": "true",
                                                    "inhibited": "true",
                                                    "unprocessed": "true"})
        return _list_of_dicts(body, self.api.name, "/api/v2/alerts")

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Send alerts as Prometheus would (``POST /api/v2/alerts``)."""
        self.api.request_json("POST", "/api/v2/alerts", body=list(alerts), expect_json=False)

    def silences(self) -> list[dict[str, Any]]:
        """Every silence Alertmanager still remembers (expired ones included)."""
        return _list_of_dicts(self.api.get_json("/api/v2/silences"), self.api.name,
                              "/api/v2/silences")

    def silence(self, silence_id: str) -> dict[str, Any]:
        """One silence by id.

        Raises:
            NotFound: Alertmanager has no silence with this id.
        """
        try:
            body = self.api.get_json(f"/api/v2/silence/{silence_id}")
        except NotFound as e:
            raise NotFound(f"no silence {silence_id} in {self.api.name} at {self.api.how}",
                           hint=SILENCES_HINT) from e
        if not isinstance(body, dict):
            raise AdapterError(f"{self.api.name} at {self.api.how}: unexpected answer for "
                               f"silence {silence_id}")
        return body

    def create_silence(self, body: Mapping[str, Any]) -> str:
        """Create a NEW silence and return its id.

        Raises:
            ValueError: ``body`` carries an ``id`` (a caller bug: that would update, or
                resurrect, an existing silence; build bodies with
                :func:`k3sops.domain.alerting.new_silence_body`).
        """
        if "id" in body:
            raise ValueError("create_silence never sends an id: that would update an "
                             "existing silence")
        answer = self.api.request_json("POST", "/api/v2/silences", body=dict(body))
        silence_id = answer.get("silenceID") if isinstance(answer, dict) else None
        if not isinstance(silence_id, str) or not silence_id:
            raise AdapterError(f"{self.api.name} at {self.api.how} created a silence but "
                               f"returned no id: {str(answer)[:200]}")
        return silence_id

    def expire_silence(self, silence_id: str) -> dict[str, Any]:
        """Expire a silence (``DELETE /api/v2/silence/{id}``); return it as it was before.

        Alertmanager answers an unknown id with HTTP 500, so the silence is read first to
        tell "not found" apart from a failure.

        Raises:
            NotFound: Alertmanager has no silence with this id.
        """
        before = self.silence(silence_id)
        self.api.request_json("DELETE", f"/api/v2/silence/{silence_id}", expect_json=False)
        return before

    def close(self) -> None:
        """Release connections."""
        self.api.close()


def _list_of_dicts(body: Any, name: str, path: str) -> list[dict[str, Any]]:
    if not isinstance(body, list):
        raise AdapterError(f"{name}: unexpected {path} answer (not a list): {str(body)[:200]}",
                           hint="is this Alertmanager (API v2, 0.16 or later)?")
    return [x for x in body if isinstance(x, dict)]
