"""Backups: did last night's backups happen, and did they succeed?

Three sources, each used when it exists:

* k3sops' own gauge ``k3sops_backup_last_success_timestamp_seconds{kind,target}`` (unix time of
  the last successful backup per kind and target). With a ``backup:`` section in platform.yaml
  and no such series at all, nothing was ever recorded (``backup-missing``).
* K3s ``ETCDSnapshotFile`` objects (one per snapshot, cluster-scoped), grouped by the node that
  took them (S3 copies under ``s3``); groups of nodes no longer in the cluster are ignored.
* Longhorn ``Backup`` objects, grouped by volume; volumes Longhorn no longer knows are ignored.

A backup is stale when the newest successful one is older than :data:`MAX_AGE_SECONDS` (a daily
schedule plus two hours of slack, as the K3sopsBackupTooOld rule). A failure is critical only
when it is newer than the last success (a failure followed by a good backup is history).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import Obj, get, meta, parse_time

MAX_AGE_SECONDS = 26 * 3600
"""A daily backup plus two hours of slack for a slow run."""
BACKUP_METRIC = "k3sops_backup_last_success_timestamp_seconds"
ETCD_SNAPSHOTS = "etcdsnapshotfiles.k3s.cattle.io"
LONGHORN_BACKUPS = "backups.longhorn.io"
LONGHORN_VOLUMES = "volumes.longhorn.io"
LONGHORN_NAMESPACE = "longhorn-system"

Q_LAST_SUCCESS = "backup-stale:last_success"
Q_ANY_SUCCESS = "backup-missing:last_success"


def _age_text(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


def _iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).isoformat(timespec="seconds") if ts else None


# --------------------------------------------------------------------------------------------
# ETCDSnapshotFile


def _snapshot_time(obj: Obj) -> datetime | None:
    return parse_time(get(obj, "status", "creationTime")) or parse_time(
        get(obj, "metadata", "creationTimestamp"))


def _snapshot_failed(obj: Obj) -> bool:
    return bool(get(obj, "status", "error")) or get(obj, "status", "readyToUse") is False


def _snapshot_groups(ctx: CheckContext) -> dict[str, list[Obj]]:
    """Snapshots by the node that took them (``s3`` for S3 copies), newest first."""
    nodes = {meta(n)[1] for n in ctx.snapshot.get("nodes")}
    groups: dict[str, list[Obj]] = defaultdict(list)
    for obj in ctx.snapshot.get(ETCD_SNAPSHOTS):
        where = "s3" if get(obj, "spec", "s3") else str(get(obj, "spec", "nodeName", default=""))
        if where == "s3" or not nodes or where in nodes:
            groups[where].append(obj)
    epoch = datetime.fromtimestamp(0, UTC)
    for objs in groups.values():
        objs.sort(key=lambda o: _snapshot_time(o) or epoch, reverse=True)
    return groups


def _snapshot_evidence(obj: Obj) -> dict[str, Any]:
    return {"name": meta(obj)[1], "snapshotName": get(obj, "spec", "snapshotName"),
            "nodeName": get(obj, "spec", "nodeName"), "location": get(obj, "spec", "location"),
            "status": dict(get(obj, "status", default={}) or {})}


# --------------------------------------------------------------------------------------------
# Longhorn Backup


def _backup_time(obj: Obj) -> datetime | None:
    return (parse_time(get(obj, "status", "backupCreatedAt"))
            or parse_time(get(obj, "status", "snapshotCreatedAt"))
            or parse_time(get(obj, "metadata", "creationTimestamp")))


def _longhorn_groups(ctx: CheckContext) -> dict[str, list[Obj]]:
    """Longhorn backups by volume, newest first (volumes Longhorn no longer has: left out)."""
    known = ({meta(v)[1] for v in ctx.snapshot.get(LONGHORN_VOLUMES)}
             if ctx.snapshot.has(LONGHORN_VOLUMES) else None)
    groups: dict[str, list[Obj]] = defaultdict(list)
    for obj in ctx.snapshot.get(LONGHORN_BACKUPS):
        volume = str(get(obj, "status", "volumeName")
                     or get(obj, "metadata", "labels", "backup-volume", default=""))
        if volume and (known is None or volume in known):
            groups[volume].append(obj)
    epoch = datetime.fromtimestamp(0, UTC)
    for objs in groups.values():
        objs.sort(key=lambda o: _backup_time(o) or epoch, reverse=True)
    return groups


def _backup_evidence(obj: Obj) -> dict[str, Any]:
    status = get(obj, "status", default={}) or {}
    return {"name": meta(obj)[1], "state": status.get("state"), "error": status.get("error"),
            "volumeName": status.get("volumeName"), "url": status.get("url"),
            "backupCreatedAt": status.get("backupCreatedAt"),
            "snapshotName": status.get("snapshotName")}


# --------------------------------------------------------------------------------------------
# Checks


@check("backup-stale", "Backups are recent", queries={Q_LAST_SUCCESS: BACKUP_METRIC},
       reads=(ETCD_SNAPSHOTS, LONGHORN_BACKUPS), uses=("nodes", LONGHORN_VOLUMES))
def backup_stale(ctx: CheckContext) -> list[Finding]:
    """The newest successful backup of each kind and target is older than 26 hours."""
    now = ctx.snapshot.now
    out = []
    res = ctx.snapshot.metric(Q_LAST_SUCCESS)
    # `k3sops serve` and node-exporter's textfile collector may both export the gauge (other
    # job/instance labels): one finding per kind and target, judged on the newest success.
    newest: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}
    for s in res.samples if res else []:
        key = (s.labels.get("kind", "?"), s.labels.get("target", "?"))
        if s.number is not None and (key not in newest or s.number > newest[key][0]):
            newest[key] = (s.number, dict(s.labels))
    for (kind, target), (success, labels) in sorted(newest.items()):
        age = now.timestamp() - success
        if age <= MAX_AGE_SECONDS:
            continue
        last = datetime.fromtimestamp(success, UTC)
        out.append(ctx.finding(
            "backup-stale", "warning", "Backup", None, f"{kind}/{target}",
            f"the last successful {kind} backup of {target} is {_age_text(age)} old "
            f"({_iso(last)})", "backup-stale",
            {"kind": kind, "target": target, "last_success": _iso(last),
             "age_seconds": round(age), "max_age_seconds": MAX_AGE_SECONDS,
             "labels": labels}))
    for where, objs in sorted(_snapshot_groups(ctx).items()):
        good = next((o for o in objs if not _snapshot_failed(o)), None)
        taken = _snapshot_time(good) if good is not None else None
        if good is None or taken is None or (now - taken).total_seconds() <= MAX_AGE_SECONDS:
            continue  # no success at all is backup-failed's (or there is nothing yet)
        age = (now - taken).total_seconds()
        out.append(ctx.finding(
            "backup-stale", "warning", "ETCDSnapshotFile", None, meta(good)[1],
            f"the newest etcd snapshot on {where} is {_age_text(age)} old ({_iso(taken)})",
            "backup-stale",
            {"node": where, "age_seconds": round(age), "max_age_seconds": MAX_AGE_SECONDS,
             "newest": _snapshot_evidence(good), "snapshots": len(objs)}))
    for volume, objs in sorted(_longhorn_groups(ctx).items()):
        done = next((o for o in objs if get(o, "status", "state") == "Completed"), None)
        taken = _backup_time(done) if done is not None else None
        if done is None or taken is None or (now - taken).total_seconds() <= MAX_AGE_SECONDS:
            continue
        age = (now - taken).total_seconds()
        out.append(ctx.finding(
            "backup-stale", "warning", "Volume", LONGHORN_NAMESPACE, volume,
            f"the newest completed Longhorn backup of volume {volume} is {_age_text(age)} old "
            f"({_iso(taken)})", "backup-stale",
            {"volume": volume, "age_seconds": round(age), "max_age_seconds": MAX_AGE_SECONDS,
             "newest": _backup_evidence(done), "backups": len(objs)}))
    return out


@check("backup-missing", "Backups are recorded", queries={Q_ANY_SUCCESS: BACKUP_METRIC},
       needs=("prometheus",))
def backup_missing(ctx: CheckContext) -> list[Finding]:
    """platform.yaml configures backups but no successful backup was ever recorded.

    When Prometheus could not answer the check is not evaluated (a missing answer is not a
    missing backup).
    """
    if ctx.platform is None or ctx.platform.backup is None:
        return []
    res = ctx.snapshot.metric(Q_ANY_SUCCESS)
    if res is None or res.samples:
        return []
    return [ctx.finding(
        "backup-missing", "warning", "Backup", None, "k3sops",
        f"no successful backup recorded: Prometheus has no {BACKUP_METRIC} series although "
        "platform.yaml configures backups", "backup-missing",
        {"metric": BACKUP_METRIC, "repository": ctx.platform.backup.repository})]


@check("backup-failed", "Latest backups succeeded", reads=(ETCD_SNAPSHOTS, LONGHORN_BACKUPS),
       uses=("nodes", LONGHORN_VOLUMES))
def backup_failed(ctx: CheckContext) -> list[Finding]:
    """Failed etcd snapshots and Longhorn backups newer than the last success (critical)."""
    out = []
    for where, objs in sorted(_snapshot_groups(ctx).items()):
        newest = objs[0]
        if not _snapshot_failed(newest):
            continue
        err = get(newest, "status", "error", default={}) or {}
        out.append(ctx.finding(
            "backup-failed", "critical", "ETCDSnapshotFile", None, meta(newest)[1],
            f"the newest etcd snapshot on {where} failed"
            + (f": {err.get('message')}" if err.get("message") else " (not ready to use)"),
            "backup-failed",
            {"node": where, "newest": _snapshot_evidence(newest),
             "last_success": _iso(next((_snapshot_time(o) for o in objs
                                        if not _snapshot_failed(o)), None))}))
    for volume, objs in sorted(_longhorn_groups(ctx).items()):
        failed = []
        for o in objs:
            state = get(o, "status", "state")
            if state == "Completed":
                break
            if state == "Error":
                failed.append(o)
        if not failed:
            continue
        newest = failed[0]
        out.append(ctx.finding(
            "backup-failed", "critical", "Backup", meta(newest)[0] or LONGHORN_NAMESPACE,
            meta(newest)[1],
            f"Longhorn backup {meta(newest)[1]} of volume {volume} failed"
            + (f": {get(newest, 'status', 'error')}" if get(newest, "status", "error") else "")
            + (f" ({len(failed)} failed since the last completed one)" if len(failed) > 1
               else ""), "backup-failed",
            {"volume": volume, "newest": _backup_evidence(newest), "failed": len(failed)}))
    return out


# --------------------------------------------------------------------------------------------
# Restore drills (used by the weekly and monthly checks)


def backups_exist(ctx: CheckContext) -> bool:
    """Whether there is anything to restore: k3sops backups, etcd snapshots or Longhorn backups."""
    return bool((ctx.platform is not None and ctx.platform.backup is not None)
                or ctx.snapshot.get(ETCD_SNAPSHOTS) or ctx.snapshot.get(LONGHORN_BACKUPS))


def restore_drills(ctx: CheckContext) -> list[dict[str, Any]] | None:
    """The restore drills the history store recorded, or None when no history was read.

    Each is ``{"at": ISO time, "kind": ..., "ok": bool}``; malformed entries are skipped.
    """
    drills = ctx.history.get("restore_drills")
    if not isinstance(drills, list):
        return None
    return [dict(d) for d in drills if isinstance(d, dict) and parse_time(d.get("at"))]


def last_good_drill(drills: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest successful drill."""
    good = [d for d in drills if d.get("ok") is True]
    return max(good, key=lambda d: parse_time(d["at"]) or datetime.min.replace(tzinfo=UTC),
               default=None)


def drill_overdue(ctx: CheckContext, days: int) -> tuple[bool, dict[str, Any]]:
    """Whether no restore drill succeeded in the last ``days`` days, with evidence.

    False when no history was read (``--no-history``: nothing is known) or nothing is backed up.
    """
    drills = restore_drills(ctx)
    if drills is None or not backups_exist(ctx):
        return False, {}
    last = last_good_drill(drills)
    at = parse_time(last["at"]) if last else None
    overdue = at is None or (ctx.snapshot.now - at).total_seconds() > days * 86400
    failed = [d for d in drills if d.get("ok") is not True
              and (ctx.snapshot.now - (parse_time(d["at"]) or ctx.snapshot.now)
                   ).total_seconds() <= days * 86400]
    return overdue, {"last_successful_drill": last, "failed_drills_in_window": failed[-5:],
                     "window_days": days}
