"""`k3sops upgrade plan`: gather what the upgrade planner judges, read-only.

One concurrent LIST each of nodes, pods and PodDisruptionBudgets, the etcd backups of the
platform's restic repository (one ``restic snapshots``, as ``backup list`` reads it), and
etcd's own metrics from Prometheus (the ``etcd-health`` check's queries, judged by that check);
the plan and every preflight verdict are :mod:`k3sops.domain.upgrade`. Nothing is changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from k3sops.domain import upgrade as up
from k3sops.errors import K3sopsError, UsageError
from k3sops.services import context

PATHS = {"nodes": "/api/v1/nodes", "pods": "/api/v1/pods",
         "poddisruptionbudgets": "/apis/policy/v1/poddisruptionbudgets"}


def target_version(text: str) -> up.K3sVersion:
    """The ``--to`` version, parsed.

    Raises:
        UsageError: it is not a K3s version (``vX.Y.Z+k3sN``).
    """
    parsed = up.parse_version(text)
    if parsed is None:
        raise UsageError(f"--to {text!r} is not a K3s version",
                         hint="write it as K3s names its releases, e.g. v1.34.4+k3s1")
    return parsed


def backup_facts(settings: context.Settings, env: Mapping[str, str], home: Path,
                 state: Path | None = None) -> up.BackupFacts:
    """The repository's etcd backups of this platform, or why they cannot be read."""
    if settings.platform is None or settings.platform.backup is None:
        return up.BackupFacts(error="platform.yaml has no backup section (backup.repository)")
    from k3sops.services.backup import repository
    from k3sops.services.backup.context import BackupContext

    try:
        ctx = BackupContext(settings, env, home, state=state)
        entries = repository.entries(ctx)
    except K3sopsError as e:
        return up.BackupFacts(error=f"the backup repository could not be read: {e.message}")
    name = settings.platform.name
    return up.BackupFacts(backups=[
        up.BackupFact(id=e.id, started=e.started, status=e.status, verified=e.verified)
        for e in entries if e.kind == "etcd" and e.cluster in (name, "")])


def etcd_view(settings: context.Settings, env: Mapping[str, str], home: Path,
              now: dt.datetime) -> up.EtcdView:
    """The etcd members' own health: the ``etcd-health`` check's rule on Prometheus' answers."""
    from k3sops.adapters.prometheus import PrometheusAdapter
    from k3sops.domain.checks import REGISTRY
    from k3sops.services.scale.common import connect_prometheus

    platform = settings.platform
    if platform is not None and not platform.monitoring.etcd_metrics:
        return up.EtcdView(unread="monitoring.etcd_metrics is false")
    prom = connect_prometheus(settings, env, home)
    if isinstance(prom, K3sopsError):
        return up.EtcdView(unread=f"prometheus: {prom.message}")
    try:
        results = prom.query_many(REGISTRY["etcd-health"].queries_for(platform))
    finally:
        if isinstance(prom, PrometheusAdapter):
            prom.close()
    answers = {}
    for name, res in results.items():
        if isinstance(res, K3sopsError):
            return up.EtcdView(unread=f"prometheus: {res.message}")
        answers[name] = res
    return up.etcd_view(answers, platform, now)


def plan(settings: context.Settings, env: Mapping[str, str], home: Path, *, to: str,
         max_unavailable: int = 1, backup_max_age: float = up.DEFAULT_BACKUP_MAX_AGE,
         state: Path | None = None, now: Callable[[], dt.datetime] | None = None,
         ) -> up.UpgradePlan:
    """Gather and plan (see the module docstring).

    Raises:
        UsageError: a malformed ``--to``, ``--max-unavailable`` below 1 or a non-positive
            ``--backup-max-age``.
        K3sopsError: the cluster could not be listed.
    """
    target = target_version(to)
    if max_unavailable < 1:
        raise UsageError(f"--max-unavailable {max_unavailable}: at least 1 node must be "
                         "upgraded at a time", hint="use --max-unavailable 1 (the default)")
    if backup_max_age <= 0:
        raise UsageError("--backup-max-age must be positive", hint="e.g. --backup-max-age 24h")
    kube = context.kube(settings, env, home)
    try:
        lists = kube.list_raw_many(PATHS)
    finally:
        kube.close()
    got: dict[str, list[dict[str, Any]]] = {}
    for what in PATHS:
        listed = lists[what]
        if isinstance(listed, K3sopsError):
            raise listed
        got[what] = listed
    facts = backup_facts(settings, env, home, state)
    at = (now or (lambda: dt.datetime.now(dt.UTC)))()
    view = etcd_view(settings, env, home, at)
    return up.plan(target, got["nodes"], got["pods"], got["poddisruptionbudgets"], facts,
                   now=at, etcd_view=view,
                   max_unavailable=max_unavailable, backup_max_age=backup_max_age)
