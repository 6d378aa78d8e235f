"""Backups as data: manifests, their states, names and tags, and retention (pure: no I/O).

A backup is two or more restic snapshots that share a backup id:

* the **data** snapshot(s): the bytes backed up (an etcd snapshot file, a ``pg_dump -Fc``
  archive, a tar stream), written through ``restic backup --stdin``;
* the **manifest** snapshots: a small JSON document (:class:`BackupManifest`). One marked
  ``Running`` is written *before* any data, the final one (``Completed`` or ``Failed``) is
  written *last*. A run killed at any point therefore leaves at most a ``Running`` manifest,
  which is never listed as Completed; the next run of the same target marks it ``Failed`` and
  forgets its snapshots (:func:`leftovers`).
* **verification** snapshots: one :class:`VerificationRecord` per `backup verify`, stored beside
  the backup, so verifying never modifies the backup itself.

The manifest's summary (status, size, time) is also written into the snapshot's tags
(:func:`manifest_tags`), so `backup list` reads one ``restic snapshots --json`` and needs no
``restic dump`` per backup.

Nothing here reads a clock or generates randomness: callers pass ``now`` and the random suffix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops import timeparse
from k3sops.errors import UsageError

__all__ = [
    "KINDS",
    "TAG_ID",
    "TAG_PART",
    "TAG_ROOT",
    "BackupEntry",
    "BackupKind",
    "BackupManifest",
    "BackupStatus",
    "CheckOutcome",
    "IllegalTransition",
    "PruneDecision",
    "Retention",
    "SnapshotInfo",
    "VerificationRecord",
    "backup_id",
    "data_filename",
    "drill_facts_match",
    "entries_from_snapshots",
    "leftovers",
    "manifest_tags",
    "parse_since",
    "part_tags",
    "select_prune",
    "slug",
    "tag_value",
    "transition",
    "verification_tags",
]

BackupKind = Literal["etcd", "postgres", "volume", "tar"]
KINDS: tuple[str, ...] = ("etcd", "postgres", "volume", "tar")
BackupStatus = Literal["Running", "Completed", "Failed"]
Part = Literal["data", "manifest", "verification"]

TAG_ROOT = "k3sops"
"""Every snapshot k3sops writes carries this tag; nothing else in a shared repository is touched."""
TAG_ID = "k3sops-id"
TAG_PART = "k3sops-part"

_SLUG_BAD = re.compile(r"[^a-z0-9.-]+")
_ALLOWED: dict[str, frozenset[str]] = {
    "Running": frozenset({"Completed", "Failed"}),
    "Completed": frozenset(),
    "Failed": frozenset(),
}
_EXT = {"etcd": "db", "postgres": "dump", "volume": "img", "tar": "tar"}


class IllegalTransition(ValueError):
    """A manifest was asked to move to a state it cannot reach (e.g. Completed -> Running)."""


class CheckOutcome(BaseModel):
    """One check of a verification (restic check, sha256, the restore drill, a comparison)."""

    name: str
    ok: bool
    detail: str = ""


class VerificationRecord(BaseModel):
    """The result of one `backup verify` of one backup (stored apart from the backup)."""

    backup_id: str
    at: datetime
    ok: bool
    checks: list[CheckOutcome] = Field(default_factory=list)
    drill_seconds: float | None = Field(
        default=None, description="measured restore time (RTO) of the drill, seconds")
    tools: dict[str, str] = Field(default_factory=dict)

    @property
    def failed(self) -> list[CheckOutcome]:
        """The checks that did not pass."""
        return [c for c in self.checks if not c.ok]


class BackupManifest(BaseModel):
    """What was backed up, from where, when, and what is known about its content."""

    id: str
    kind: BackupKind
    cluster: str = Field(description="platform name (platform.yaml name)")
    environment: str | None = None
    target: str = Field(description="what was backed up: 'etcd', an app name, a PVC")
    source: str = Field(description="where the data came from (endpoint, pod, DSN without secrets)")
    started: datetime
    finished: datetime | None = None
    status: BackupStatus = "Running"
    size: int | None = Field(default=None, description="bytes of the backed-up stream")
    sha256: str | None = Field(default=None, description="sha256 of the backed-up stream")
    filename: str = Field(description="file name of the data inside its restic snapshot")
    tools: dict[str, str] = Field(default_factory=dict, description="tool -> version")
    snapshot_ids: list[str] = Field(default_factory=list, description="restic data snapshots")
    facts: dict[str, Any] = Field(
        default_factory=dict,
        description="content facts checked by the drill: etcd revision/keys, per-table rows "
                    "and fingerprint of a database")
    error: str | None = None
    hooks: list[dict[str, Any]] = Field(default_factory=list, description="hook outcomes")

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from start to finish, once finished."""
        if self.finished is None:
            return None
        return (self.finished - self.started).total_seconds()


class SnapshotInfo(BaseModel):
    """A restic snapshot as `restic snapshots --json` lists it (the fields we use)."""

    id: str
    time: datetime
    tags: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    hostname: str = ""


class BackupEntry(BaseModel):
    """One backup as listed: its newest manifest summary, its snapshots and verifications."""

    id: str
    kind: str
    target: str
    cluster: str = ""
    environment: str | None = None
    status: BackupStatus
    started: datetime
    size: int | None = None
    manifest_snapshot: str = Field(description="restic id of the newest manifest snapshot")
    snapshot_ids: list[str] = Field(
        default_factory=list, description="every restic snapshot of this backup (any part)")
    data_snapshot_ids: list[str] = Field(default_factory=list)
    verifications: list[tuple[datetime, bool, str]] = Field(
        default_factory=list, description="(time, ok, restic id) per verification, oldest first")

    @property
    def verified(self) -> bool | None:
        """True: the newest verification passed; False: it failed; None: never verified."""
        if not self.verifications:
            return None
        return self.verifications[-1][1]

    @property
    def group(self) -> tuple[str, str, str]:
        """What retention counts per: (cluster, kind, target)."""
        return (self.cluster, self.kind, self.target)


# --------------------------------------------------------------------------------------------
# Names and tags


def slug(text: str) -> str:
    """Lowercase ``text`` to letters, digits, '.' and '-' (for ids, tags and file names)."""
    out = _SLUG_BAD.sub("-", text.lower()).strip("-.")
    return out[:80] or "x"


def backup_id(kind: str, target: str, now: datetime, suffix: str) -> str:
    """``KIND-TARGET-YYYYMMDDTHHMMSSZ-SUFFIX``: sorts by time within a target; unique by suffix."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{kind}-{slug(target)}-{stamp}-{slug(suffix)}"


def data_filename(kind: str, target: str) -> str:
    """File name of the data inside its restic snapshot (``--stdin-filename``)."""
    return f"{kind}-{slug(target)}.{_EXT.get(kind, 'bin')}"


def part_tags(part: Part, bid: str, kind: str, cluster: str, environment: str | None,
              target: str) -> list[str]:
    """Tags every snapshot of a backup carries (each passed to restic as its own ``--tag``)."""
    tags = [TAG_ROOT, f"{TAG_PART}={part}", f"{TAG_ID}={bid}", f"kind={kind}",
            f"cluster={slug(cluster)}", f"target={slug(target)}"]
    if environment:
        tags.append(f"env={slug(environment)}")
    return tags


def manifest_tags(m: BackupManifest) -> list[str]:
    """Tags of a manifest snapshot: the part tags plus the summary `backup list` shows."""
    tags = part_tags("manifest", m.id, m.kind, m.cluster, m.environment, m.target)
    tags += [f"status={m.status}", f"started={int(m.started.timestamp())}",
             f"target-name={_tag_safe(m.target)}"]
    if m.size is not None:
        tags.append(f"size={m.size}")
    return tags


def verification_tags(v: VerificationRecord, m: BackupEntry) -> list[str]:
    """Tags of a verification snapshot."""
    return [*part_tags("verification", v.backup_id, m.kind, m.cluster, m.environment, m.target),
            f"verify={'ok' if v.ok else 'failed'}"]


def _tag_safe(text: str) -> str:
    # restic splits --tag values on commas; everything else is kept as written.
    return text.replace(",", "_")


def tag_value(tags: Iterable[str], key: str) -> str | None:
    """The value of the first ``key=value`` tag, or None."""
    prefix = key + "="
    return next((t[len(prefix):] for t in tags if t.startswith(prefix)), None)


# --------------------------------------------------------------------------------------------
# States


def transition(m: BackupManifest, to: BackupStatus, at: datetime, **changes: Any) -> BackupManifest:
    """Return a copy of ``m`` in state ``to`` (finished at ``at``), with ``changes`` applied.

    Raises:
        IllegalTransition: Completed and Failed are final; Running -> Running is refused.
    """
    if to not in _ALLOWED[m.status]:
        raise IllegalTransition(f"backup {m.id} cannot go from {m.status} to {to}")
    if to == "Completed" and not (changes.get("sha256") or m.sha256):
        raise IllegalTransition(f"backup {m.id} cannot be Completed without a sha256")
    return m.model_copy(update={"status": to, "finished": at, **changes})


_RANK = {"Running": 0, "Failed": 1, "Completed": 2}


def entries_from_snapshots(snaps: Sequence[SnapshotInfo]) -> list[BackupEntry]:
    """Group k3sops snapshots by backup id into entries, oldest first.

    A backup's status is its most final manifest (Completed or Failed beats Running). Data or
    verification snapshots without any manifest are left out of the entries (they belong to a
    run that died before its first manifest; :func:`leftovers` finds them).
    """
    by_id: dict[str, list[SnapshotInfo]] = {}
    for s in snaps:
        if TAG_ROOT not in s.tags:
            continue
        bid = tag_value(s.tags, TAG_ID)
        if bid:
            by_id.setdefault(bid, []).append(s)
    out = []
    for bid, group in by_id.items():
        manifests = [s for s in group if tag_value(s.tags, TAG_PART) == "manifest"]
        if not manifests:
            continue
        best = max(manifests, key=lambda s: (_RANK.get(tag_value(s.tags, "status") or "", -1),
                                             s.time))
        tags = best.tags
        status = tag_value(tags, "status")
        if status not in _RANK:
            continue
        started_ts = tag_value(tags, "started")
        started = (datetime.fromtimestamp(int(started_ts), UTC)
                   if started_ts and started_ts.isdigit() else best.time)
        size = tag_value(tags, "size")
        verifications = sorted(
            ((s.time, tag_value(s.tags, "verify") == "ok", s.id) for s in group
             if tag_value(s.tags, TAG_PART) == "verification"), key=lambda v: v[0])
        out.append(BackupEntry(
            id=bid, kind=tag_value(tags, "kind") or "?",
            target=tag_value(tags, "target-name") or tag_value(tags, "target") or "?",
            cluster=tag_value(tags, "cluster") or "", environment=tag_value(tags, "env"),
            status=status,
            started=started, size=int(size) if size and size.isdigit() else None,
            manifest_snapshot=best.id, snapshot_ids=sorted(s.id for s in group),
            data_snapshot_ids=sorted(s.id for s in group
                                     if tag_value(s.tags, TAG_PART) == "data"),
            verifications=verifications))
    out.sort(key=lambda e: (e.started, e.id))
    return out


def leftovers(snaps: Sequence[SnapshotInfo], kind: str, target: str,
              active: Iterable[str] = ()) -> tuple[list[BackupEntry], list[str]]:
    """What a killed run of (kind, target) left behind.

    Call this while holding the target's lock, so no other run of it is in progress.

    Args:
        snaps: every snapshot of the repository.
        kind: backup kind of the target.
        target: target name (as given, not slugged).
        active: backup ids to leave alone (the caller's own run).

    Returns:
        (entries still ``Running``, to be marked Failed; restic ids of snapshots of such runs
        and of data snapshots that never got a manifest, to be forgotten).
    """
    skip = set(active)
    tslug = slug(target)
    mine = [s for s in snaps if TAG_ROOT in s.tags and tag_value(s.tags, "kind") == kind
            and tag_value(s.tags, "target") == tslug and tag_value(s.tags, TAG_ID) not in skip]
    entries = entries_from_snapshots(mine)
    running = [e for e in entries if e.status == "Running"]
    with_manifest = {e.id for e in entries}
    forget = [sid for e in running for sid in e.snapshot_ids]
    forget += [s.id for s in mine if tag_value(s.tags, TAG_ID) not in with_manifest]
    # A Failed backup's data is useless: forget it too (its Failed manifest stays as a record).
    for e in entries:
        if e.status == "Failed":
            forget += e.data_snapshot_ids
    return running, sorted(set(forget))


# --------------------------------------------------------------------------------------------
# Retention


class Retention(BaseModel):
    """How many backups to keep per target: the newest of each of the last N days/weeks/months."""

    keep_daily: int = Field(default=0, ge=0)
    keep_weekly: int = Field(default=0, ge=0)
    keep_monthly: int = Field(default=0, ge=0)
    keep_last: int = Field(default=0, ge=0)

    @property
    def empty(self) -> bool:
        """Whether no rule keeps anything (refused, as ``restic forget`` refuses it)."""
        return not (self.keep_daily or self.keep_weekly or self.keep_monthly or self.keep_last)


class PruneDecision(BaseModel):
    """What prune keeps and removes, each with the reason."""

    keep: dict[str, str] = Field(default_factory=dict, description="backup id -> reason")
    remove: dict[str, str] = Field(default_factory=dict, description="backup id -> reason")


def _bucket(ts: datetime, unit: str) -> tuple[int, ...]:
    ts = ts.astimezone(UTC)
    if unit == "daily":
        return (ts.year, ts.month, ts.day)
    if unit == "weekly":
        iso = ts.isocalendar()
        return (iso[0], iso[1])
    return (ts.year, ts.month)


def select_prune(  # noqa: PLR0912  # one pass of small, ordered rules reads best inline
        entries: Sequence[BackupEntry], policy: Retention) -> PruneDecision:
    """Choose which backups to remove under ``policy`` (restic's --keep-* semantics, per target).

    Rules, in order: ``Running`` backups are never touched (a run may be in progress); the
    newest verified Completed backup of each target is always kept; among Completed backups,
    the newest of each of the last ``keep_daily`` days (``keep_weekly`` ISO weeks,
    ``keep_monthly`` months) that have one is kept, and the ``keep_last`` newest; the rest of
    Completed backups and every Failed backup are removed. No entries: nothing is removed.

    Raises:
        UsageError: the policy keeps nothing (a typo must not empty the repository).
    """
    if policy.empty:
        raise UsageError("a retention policy that keeps nothing was refused",
                         hint="give at least one of --keep-daily, --keep-weekly, --keep-monthly")
    out = PruneDecision()
    groups: dict[tuple[str, str, str], list[BackupEntry]] = {}
    for e in entries:
        groups.setdefault(e.group, []).append(e)
    for group in groups.values():
        newest_first = sorted(group, key=lambda e: (e.started, e.id), reverse=True)
        done = [e for e in newest_first if e.status == "Completed"]
        for e in newest_first:
            if e.status == "Running":
                out.keep[e.id] = "running (never pruned)"
        verified = next((e for e in done if e.verified is True), None)
        if verified is not None:
            out.keep[verified.id] = "newest verified backup of its target"
        for i, e in enumerate(done[:policy.keep_last]):
            out.keep.setdefault(e.id, f"last {i + 1}")
        for unit, count in (("daily", policy.keep_daily), ("weekly", policy.keep_weekly),
                            ("monthly", policy.keep_monthly)):
            seen: list[tuple[int, ...]] = []
            for e in done:
                b = _bucket(e.started, unit)
                if b in seen:
                    continue
                if len(seen) >= count:
                    break
                seen.append(b)
                out.keep.setdefault(e.id, f"{unit} {len(seen)}")
        for e in newest_first:
            if e.id in out.keep:
                continue
            out.remove[e.id] = ("failed backup" if e.status == "Failed"
                                else "outside the retention policy")
    return out


def parse_since(text: str, now: datetime) -> datetime:
    """``7d``/``12h``/``2w``/``1d12h`` before ``now`` (:mod:`k3sops.timeparse`'s grammar).

    Raises:
        UsageError: not a duration.
    """
    try:
        return now - timeparse.parse_duration(text.strip())
    except ValueError as e:
        raise UsageError(f"--since {text!r} is not a duration",
                         hint=f"{timeparse.DURATION_FORMS}, e.g. 7d or 12h") from e


def drill_facts_match(expected: Mapping[str, Any], actual: Mapping[str, Any],
                      keys: Iterable[str]) -> list[CheckOutcome]:
    """Compare recorded facts with those of a restored copy, one outcome per key."""
    out = []
    for k in keys:
        want, got = expected.get(k), actual.get(k)
        ok = want is not None and want == got
        detail = f"{k}: recorded {_short(want)}, restored {_short(got)}"
        out.append(CheckOutcome(name=f"drill-{k}", ok=ok, detail=detail))
    return out


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."
