"""`k3sops alerts list | silence | unsilence | silences`: Alertmanager's alerts and silences."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from k3sops.adapters.alertmanager import AlertmanagerAdapter
from k3sops.adapters.kube import KubeAdapter
from k3sops.adapters.prometheus import HttpApi
from k3sops.domain import alerting
from k3sops.domain.alerting import AlertReport, SilenceList, SilenceResult
from k3sops.errors import UsageError
from k3sops.services.context import Settings, kube, monitoring


@contextlib.contextmanager
def session(settings: Settings, env: Mapping[str, str], home: Path,
            ) -> Iterator[AlertmanagerAdapter]:
    """An Alertmanager adapter for the platform's endpoint, closed (with any kube client) after.

    The Kubernetes API is only contacted when Alertmanager is configured as a service.
    """
    endpoint = monitoring(settings).alertmanager
    k: KubeAdapter | None = kube(settings, env, home) if endpoint.url is None else None
    try:
        am = AlertmanagerAdapter(HttpApi.from_endpoint("Alertmanager", endpoint, k))
        try:
            yield am
        finally:
            am.close()
    finally:
        if k is not None:
            k.close()


def list_alerts(settings: Settings, env: Mapping[str, str], home: Path, *,
                environments: Sequence[str] = (), severities: Sequence[str] = (),
                selectors: Sequence[str] = (), include_silenced: bool = False,
                include_inhibited: bool = False) -> AlertReport:
    """Firing alerts, filtered and grouped by severity and environment.

    Raises:
        UsageError: a selector is not a matcher (checked before Alertmanager is contacted).
    """
    matchers = alerting.parse_matchers(selectors)
    with session(settings, env, home) as am:
        alerts = [alerting.alert_from_api(a) for a in am.alerts()]
        where = am.where
    chosen = alerting.select_alerts(alerts, environments=environments, severities=severities,
                                    selectors=matchers, include_silenced=include_silenced,
                                    include_inhibited=include_inhibited)
    return alerting.alert_report(where, chosen)


def list_silences(settings: Settings, env: Mapping[str, str], home: Path, *,
                  include_expired: bool = False) -> SilenceList:
    """Active and pending silences (expired ones too with ``include_expired``)."""
    with session(settings, env, home) as am:
        silences = [alerting.silence_from_api(s) for s in am.silences()]
        where = am.where
    return SilenceList(alertmanager=where,
                       silences=alerting.select_silences(silences, include_expired))


def create_silence(settings: Settings, env: Mapping[str, str], home: Path, *,
                   matchers: Sequence[str], duration: str, author: str, comment: str | None,
                   now: datetime, extend: str | None = None) -> SilenceResult:
    """Create a new silence from ``now`` for ``duration``; return its id.

    With ``extend``, the silence named there is re-created rather than updated: its matchers
    (unless ``matchers`` are given) and comment (unless ``comment`` is given) go into a NEW
    silence, and the old one is expired if it is still active or pending. An id is never
    sent, so an expired silence is never brought back to life.

    Raises:
        UsageError: bad matcher, duration, comment or silence id (before anything is sent).
        NotFound: ``extend`` names a silence Alertmanager does not know.
    """
    parsed = alerting.parse_matchers(matchers)
    length = alerting.parse_duration(duration)
    if extend is not None:
        alerting.check_silence_id(extend)
    elif not parsed:
        raise UsageError("a silence needs at least one matcher",
                         hint=f"add -m/--matcher; forms: {alerting.MATCHER_FORMS}")
    with session(settings, env, home) as am:
        old = alerting.silence_from_api(am.silence(extend)) if extend is not None else None
        if old is not None:
            parsed = parsed or list(old.matchers)
            comment = comment if comment and comment.strip() else old.comment
        body = alerting.new_silence_body(parsed, now, now + length, author, comment or "")
        new_id = am.create_silence(body)
        if old is not None and old.state in ("active", "pending"):
            am.expire_silence(old.id)
        created = alerting.silence_from_api(am.silence(new_id))
    return SilenceResult(id=new_id, action="created", silence=created,
                         replaced=old.id if old is not None else None)


def expire_silence(settings: Settings, env: Mapping[str, str], home: Path,
                   silence_id: str) -> SilenceResult:
    """Expire a silence now; an already expired one is left as it is.

    Raises:
        UsageError: ``silence_id`` is not a silence id (UUID).
        NotFound: Alertmanager has no silence with this id.
    """
    alerting.check_silence_id(silence_id)
    with session(settings, env, home) as am:
        before = alerting.silence_from_api(am.silence(silence_id))
        if before.state == "expired":
            return SilenceResult(id=silence_id, action="already-expired", silence=before)
        am.expire_silence(silence_id)
        after = alerting.silence_from_api(am.silence(silence_id))
    return SilenceResult(id=silence_id, action="expired", silence=after)
