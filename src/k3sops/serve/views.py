"""``/api/v1/backups`` and ``/api/v1/environments``, and the backup gauges of ``/metrics``.

Both answers are the CLI's own: :func:`services.backup.status.backup_status` (the rows of
`backup list` per target, joined with the history store's restore drills) and
:func:`services.env.status.env_status` / :func:`env_list` (what `k3sops env status -o json`
and `env list` print). Without a ``backup:`` or ``gitops:`` section the answer is 200 with an
empty list and the reason. Each is computed at most once per ``ttl`` seconds (restic and git
are slow; a scrape every 30 s must not list the repository every time).

``/metrics`` carries the backup and restore-drill timestamps under the names the textfile
(:mod:`k3sops.adapters.backup_metrics`) uses and the alert rules and dashboards read, so the
node-exporter textfile becomes optional.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends

from k3sops.errors import K3sopsError

if TYPE_CHECKING:
    from k3sops.adapters.store import HistoryStore
    from k3sops.serve.api import ApiContext, CacheView
    from k3sops.services.context import Settings

Provider = Callable[[], dict[str, Any]]
ENV_KINDS = ("deployments", "applications.argoproj.io")
"""What ``/api/v1/environments`` reads of the watch cache (Applications only if watched)."""


class _Cached:
    """A provider's answer kept ``ttl`` seconds (monotonic), computed by one caller at a time."""

    def __init__(self, compute: Provider, ttl: float) -> None:
        self._compute = compute
        self._ttl = ttl
        self._lock = threading.Lock()
        self._at: float | None = None
        self._value: dict[str, Any] = {}

    def invalidate(self) -> None:
        """Compute afresh on the next call (after a write the answer reflects, e.g. an approval)."""
        with self._lock:
            self._at = None

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            if self._at is None or time.monotonic() - self._at >= self._ttl:
                self._value = self._compute()
                self._at = time.monotonic()
            return self._value


class PlatformViews:
    """The backup and environment answers (JSON-able dicts).

    Args:
        backups: computes ``/api/v1/backups``' body.
        environments: computes ``/api/v1/environments``' body.
        ttl: seconds an answer is reused.
    """

    def __init__(self, backups: Provider, environments: Provider, ttl: float = 30.0, *,
                 state: Path | None = None) -> None:
        self.backups = _Cached(backups, ttl)
        self.environments = _Cached(environments, ttl)
        self.state = state
        """The service's state directory (``--state-dir``), where its GitOps clone lives."""

    @classmethod
    def of(cls, settings: Settings, store: HistoryStore, *, env: dict[str, str] | None = None,
           home: Path | None = None, ttl: float = 30.0, state: Path | None = None,
           cache: CacheView | None = None) -> PlatformViews:
        """The views computed by the CLI's services on ``settings`` and the history ``store``.

        ``state``: the service's state directory (``--state-dir``: its clone of the GitOps
        repository goes there); ``cache``: the watch cache the running versions are read from.
        """
        environ = dict(os.environ) if env is None else env
        where = home or Path.home()
        return cls(lambda: backups_body(settings, store, environ, where),
                   lambda: environments_body(settings, environ, where, state, cache), ttl,
                   state=state)


def backups_body(settings: Settings, store: HistoryStore, env: dict[str, str],
                 home: Path) -> dict[str, Any]:
    """``/api/v1/backups``: per target the newest backup, verification and restore drill."""
    from k3sops.services.backup.context import BackupContext
    from k3sops.services.backup.status import backup_status

    platform = settings.platform
    if platform is None or platform.backup is None:
        return {"targets": [], "reason": "platform.yaml has no backup: section"}
    try:
        status = backup_status(BackupContext(settings, env, home), store.facts())
    except K3sopsError as e:  # repository unreachable, password unset: said, not a 500
        return {"targets": [], "reason": f"the backup repository could not be read: {e.message}"}
    return status.model_dump(mode="json")


def environments_body(settings: Settings, env: dict[str, str], home: Path,
                      state: Path | None = None, cache: CacheView | None = None,
                      ) -> dict[str, Any]:
    """``/api/v1/environments``: apps x environments (git vs cluster), gates, approvals.

    With ``cache`` the running versions are the watch cache's Deployments: no API request, no
    right beyond the cache's list/watch, and no environment ``context:`` (a name in the
    operator's kubeconfig) is needed in the service's kubeconfig.
    """
    from k3sops.services import gitops
    from k3sops.services.env.overview import next_promotions
    from k3sops.services.env.status import env_list, env_status

    platform = settings.platform
    if platform is None or platform.gitops is None:
        return {"environments": [], "apps": [], "next_promotions": [],
                "reason": "platform.yaml has no gitops: section"}
    try:
        ctx = gitops.open_context(settings, env, home, state)
        listed = env_list(ctx)
        cluster = (cache.snapshot(dt.datetime.now(dt.UTC), ENV_KINDS)
                   if cache is not None else None)
        status = env_status(ctx, cluster=cluster)
        pending = next_promotions(ctx, status.apps)
    except K3sopsError as e:  # the GitOps repository unreachable: said, not a 500
        return {"environments": [], "apps": [], "next_promotions": [],
                "reason": f"the environments could not be read: {e.message}"}
    return {**listed.model_dump(mode="json"), **status.model_dump(mode="json"),
            "next_promotions": [n.model_dump(mode="json") for n in pending], "reason": None}


def router(ctx: ApiContext, views: PlatformViews) -> APIRouter:
    """The two routes, each needing ``get`` on its virtual resource (as :mod:`serve.api`)."""
    from k3sops.serve.auth import require

    api = APIRouter(prefix="/api/v1")

    def allow(verb: str, resource: str) -> Callable[..., Any]:
        return require(ctx.authorizer, verb, resource)

    @api.get("/backups", dependencies=[Depends(allow("get", "backups"))])
    def backups() -> Any:
        """Per backup target: newest backup, age, size, verification, last drill (RTO)."""
        return views.backups()

    @api.get("/environments", dependencies=[Depends(allow("get", "environments"))])
    def environments() -> Any:
        """Apps x environments: version in git vs running, and the promotion gates."""
        return views.environments()

    return api


class BackupCollector:
    """The textfile's backup gauges, from ``/api/v1/backups``' answer, at scrape time."""

    def __init__(self, views: PlatformViews) -> None:
        self._views = views

    def describe(self) -> list[Any]:
        """Nothing up front (the registry asks ``collect``)."""
        return []

    def collect(self) -> Iterator[Any]:
        """Yield the backup and restore-drill gauges."""
        from datetime import datetime

        from prometheus_client.core import GaugeMetricFamily

        labels = ["kind", "target"]
        success = GaugeMetricFamily("k3sops_backup_last_success_timestamp_seconds",
                                    "Unix time of the last successful backup.", labels=labels)
        last_run = GaugeMetricFamily("k3sops_backup_last_run_timestamp_seconds",
                                     "Unix time of the last backup run.", labels=labels)
        size = GaugeMetricFamily("k3sops_backup_size_bytes",
                                 "Size of the last successful backup.", labels=labels)
        drill = GaugeMetricFamily("k3sops_restore_drill_last_success_timestamp_seconds",
                                  "Unix time of the last successful restore drill.",
                                  labels=labels)
        rto = GaugeMetricFamily("k3sops_restore_drill_duration_seconds",
                                "Measured duration (RTO) of the last restore drill.",
                                labels=labels)
        try:
            body = self._views.backups()
        except K3sopsError:
            body = {}
        for t in body.get("targets") or []:
            key = [str(t.get("kind")), str(t.get("target"))]
            for family, field in ((success, "last_success_at"), (last_run, "newest_at")):
                if t.get(field):
                    family.add_metric(key, datetime.fromisoformat(t[field]).timestamp())
            if t.get("last_success_size") is not None:
                size.add_metric(key, float(t["last_success_size"]))
            if t.get("drill_last_ok_at"):  # as the textfile: the last drill that passed
                drill.add_metric(key, datetime.fromisoformat(t["drill_last_ok_at"]).timestamp())
            if t.get("drill_seconds") is not None:
                rto.add_metric(key, float(t["drill_seconds"]))
        yield from (success, last_run, size, drill, rto)
