"""Per backup target, the newest backup, its verification and the last restore drill.

What `k3sops serve` answers on ``/api/v1/backups`` (and exports on ``/metrics``): the rows of
`backup list` (:func:`repository.list_backups`) reduced to one per target, joined with the
restore drills of the history store (:meth:`HistoryStore.facts`). A target is flagged when its
newest backup failed, is older than the backup check's limit, or its newest verification is
missing or failed: the console draws those red.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from k3sops.domain.checks.backups import MAX_AGE_SECONDS
from k3sops.services.backup.context import BackupContext
from k3sops.services.backup.repository import ListRow, list_backups


class TargetStatus(BaseModel):
    """One backup target: its newest backup, newest good backup and last restore drill."""

    kind: str
    target: str
    environment: str | None = None
    configured: bool = Field(description="named in platform.yaml (a target, etcd, a volume)")
    newest_id: str | None = None
    newest_status: str | None = None
    newest_at: dt.datetime | None = None
    age_seconds: float | None = None
    size: int | None = None
    last_success_at: dt.datetime | None = Field(
        default=None, description="the newest Completed backup's start")
    last_success_size: int | None = None
    verified: bool | None = Field(
        default=None, description="newest Completed backup: its newest verification passed "
                                  "(None: never verified)")
    verified_at: dt.datetime | None = None
    drill_at: str | None = None
    drill_ok: bool | None = None
    drill_seconds: float | None = Field(default=None, description="measured RTO of the drill")
    drill_last_ok_at: str | None = Field(default=None,
                                         description="the newest drill that passed (90 days)")
    flagged: bool = False
    reasons: list[str] = Field(default_factory=list)


class BackupStatus(BaseModel):
    """``/api/v1/backups``."""

    repository: str | None = None
    max_age_seconds: float = MAX_AGE_SECONDS
    targets: list[TargetStatus] = Field(default_factory=list)
    reason: str | None = Field(default=None, description="why the list is empty, if it is")


def configured_targets(ctx: BackupContext) -> list[tuple[str, str, str | None]]:
    """(kind, target, environment) of every target platform.yaml schedules or names."""
    out: list[tuple[str, str, str | None]] = []
    if ctx.cfg.schedule.etcd is not None:
        out.append(("etcd", "etcd", None))
    out += [(t.kind, t.name, t.environment) for t in ctx.cfg.targets]
    out += [("volume", f"{v.namespace}/{v.pvc}", None) for v in ctx.cfg.schedule.volumes]
    return out


def backup_status(ctx: BackupContext, facts: Mapping[str, Any]) -> BackupStatus:
    """One row per target (configured or found in the repository), newest backup first.

    Args:
        ctx: the backup context (repository, platform.yaml's backup section).
        facts: the history store's :meth:`facts` (``restore_drills``, oldest first).
    """
    listing = list_backups(ctx)
    return summarize(listing.repository, listing.backups, configured_targets(ctx),
                     facts.get("restore_drills") or [])


def summarize(repository: str, rows: Sequence[ListRow],
              configured: Sequence[tuple[str, str, str | None]],
              drills: Sequence[Mapping[str, Any]]) -> BackupStatus:
    """Reduce `backup list`'s rows (oldest first) and the drills to one row per target."""
    by_target: dict[tuple[str, str], list[ListRow]] = {}
    for r in rows:
        by_target.setdefault((r.kind, r.target), []).append(r)
    envs = {(k, t): e for k, t, e in configured}
    keys = list(dict.fromkeys([*((k, t) for k, t, _ in configured), *by_target]))
    last_drill = {(d.get("kind"), d.get("target")): d for d in drills}  # oldest first: last wins
    last_ok = {(d.get("kind"), d.get("target")): d.get("at") for d in drills if d.get("ok")}
    out = []
    for kind, target in keys:
        mine = sorted(by_target.get((kind, target), []), key=lambda r: r.started)
        row = TargetStatus(kind=kind, target=target, configured=(kind, target) in envs,
                           environment=envs.get((kind, target)))
        if mine:
            newest = mine[-1]
            row.environment = row.environment or newest.environment
            row.newest_id, row.newest_status = newest.id, newest.status
            row.newest_at, row.age_seconds, row.size = (newest.started, newest.age_seconds,
                                                        newest.size)
            done = [r for r in mine if r.status == "Completed"]
            if done:
                good = done[-1]
                row.last_success_at, row.last_success_size = good.started, good.size
                row.verified, row.verified_at = good.verified, good.verified_at
                if good.age_seconds > MAX_AGE_SECONDS:
                    row.reasons.append(f"the newest good backup is {good.age_seconds / 3600:.1f}"
                                       f" h old (limit {MAX_AGE_SECONDS / 3600:.0f} h)")
                if good.verified is None:
                    row.reasons.append("the newest good backup was never verified")
                elif good.verified is False:
                    row.reasons.append("the newest good backup failed its verification")
            else:
                row.reasons.append("no backup of this target completed")
            if newest.status == "Failed":
                row.reasons.append(f"the newest backup {newest.id} failed")
        else:
            row.reasons.append("no backup of this target in the repository")
        drill = last_drill.get((kind, target))
        if drill is not None:
            row.drill_at, row.drill_ok = drill.get("at"), bool(drill.get("ok"))
            row.drill_seconds = drill.get("seconds")
            row.drill_last_ok_at = last_ok.get((kind, target))
            if not row.drill_ok:
                row.reasons.append("the last restore drill failed")
        row.flagged = bool(row.reasons)
        out.append(row)
    return BackupStatus(repository=repository, targets=out,
                        reason=None if out else "no target configured and no backup stored")
