"""The repository as a catalogue: `backup init`, `list`, `show`, `prune`, and reading data back.

A backup is a set of restic snapshots tagged by :mod:`k3sops.domain.backups` (manifest, data,
verifications); :func:`entries` reads them into one entry per backup. :func:`tee` streams a
backup's data out (hashing it on the way) for the verify drills and the restores.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import IO, Any

from pydantic import BaseModel, Field, ValidationError

from k3sops.adapters.restic import CHUNK, StreamResult
from k3sops.domain import backups as bk
from k3sops.domain.backups import BackupEntry, BackupManifest
from k3sops.errors import AdapterError, K3sopsError, NotFound
from k3sops.services.backup.context import MANIFEST_FILE, VERIFICATION_FILE, BackupContext


class ListRow(BaseModel):
    """A backup as `backup list` shows it."""

    id: str
    kind: str
    target: str
    environment: str | None = None
    status: str
    started: dt.datetime
    age_seconds: float
    size: int | None = None
    verified: bool | None = None
    verified_at: dt.datetime | None = None


class ListReport(BaseModel):
    """`backup list`."""

    repository: str
    backups: list[ListRow] = Field(default_factory=list)



class PruneReport(BaseModel):
    """`backup prune`."""

    repository: str
    dry_run: bool
    keep: dict[str, str] = Field(default_factory=dict)
    remove: dict[str, str] = Field(default_factory=dict)
    forgotten_snapshots: int = 0



def entries(ctx: BackupContext) -> list[BackupEntry]:
    """Every k3sops backup in the repository, oldest first."""
    return bk.entries_from_snapshots(ctx.restic.snapshots([bk.TAG_ROOT]))


def list_backups(ctx: BackupContext, kind: str | None = None,
                 target: str | None = None) -> ListReport:
    """`backup list`: status, age, size and verification of every backup."""
    now = ctx.now()
    rows = []
    for e in entries(ctx):
        if (kind and e.kind != kind) or (target and e.target != target):
            continue
        rows.append(ListRow(
            id=e.id, kind=e.kind, target=e.target, environment=e.environment,
            status=e.status, started=e.started, age_seconds=(now - e.started).total_seconds(),
            size=e.size, verified=e.verified,
            verified_at=e.verifications[-1][0] if e.verifications else None))
    return ListReport(repository=ctx.restic.where, backups=rows)


def load_manifest(ctx: BackupContext, entry: BackupEntry) -> BackupManifest:
    """The full manifest of a listed backup."""
    raw = ctx.restic.dump_bytes(entry.manifest_snapshot, MANIFEST_FILE)
    try:
        return BackupManifest.model_validate_json(raw)
    except ValidationError as e:
        raise AdapterError(f"the manifest of backup {entry.id} is unreadable",
                           hint="the repository may be damaged: run `backup verify`") from e


def find(ctx: BackupContext, backup_id: str) -> BackupEntry:
    """The backup with this id (or a unique prefix of it)."""
    all_entries = entries(ctx)
    found = [e for e in all_entries if e.id == backup_id] or [
        e for e in all_entries if e.id.startswith(backup_id)]
    if len(found) != 1:
        raise NotFound(f"no backup {backup_id!r} in repository {ctx.restic.where}"
                       + (" (the prefix is ambiguous)" if found else ""),
                       hint="`k3sops backup list` shows the ids")
    return found[0]



def prune(ctx: BackupContext, policy: bk.Retention, dry_run: bool) -> PruneReport:
    """Forget backups outside ``policy`` (never the newest verified one of a target)."""
    bk.select_prune([], policy)  # refuses an empty policy before anything is listed
    listed = entries(ctx)  # a failed listing raises here: nothing is deleted
    decision = bk.select_prune(listed, policy)
    report = PruneReport(repository=ctx.restic.where, dry_run=dry_run, keep=decision.keep,
                         remove=decision.remove)
    if dry_run or not decision.remove:
        return report
    by_id = {e.id: e for e in listed}
    ids = [sid for bid in decision.remove for sid in by_id[bid].snapshot_ids]
    what = {"action": "backup-prune", "target": ctx.restic.where,
            "backups": sorted(decision.remove)}
    try:
        ctx.restic.forget(ids, prune=True)
    except K3sopsError as e:
        ctx.audit({"what": what, "result": "failed", "error": e.message[:300]})
        raise
    ctx.audit({"what": what, "result": "ok"})
    report.forgotten_snapshots = len(ids)
    return report




def manifest_json(ctx: BackupContext, backup_id: str) -> dict[str, Any]:
    """The manifest of one backup, as JSON data (`backup show`)."""
    e = find(ctx, backup_id)
    m = load_manifest(ctx, e)
    verifications = []
    for at, ok, sid in e.verifications:
        try:
            raw = json.loads(ctx.restic.dump_bytes(sid, VERIFICATION_FILE))
        except (K3sopsError, ValueError):
            raw = {"at": at.isoformat(), "ok": ok}
        verifications.append(raw)
    return {"manifest": m.model_dump(mode="json"), "verifications": verifications}



def data_snapshot(m: BackupManifest) -> str:
    """The restic snapshot holding the backup's data.

    Raises:
        AdapterError: the manifest names none (a Failed or damaged backup).
    """
    if not m.snapshot_ids:
        raise AdapterError(f"backup {m.id} has no data snapshot in its manifest")
    return m.snapshot_ids[0]


def tee(ctx: BackupContext, m: BackupManifest, sink: IO[bytes]) -> StreamResult:
    """Stream the backup's data into ``sink`` (a restore's stdin), hashing on the way."""
    digest = hashlib.sha256()
    size = 0
    with ctx.restic.open_dump(data_snapshot(m), m.filename) as src:
        try:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
                sink.write(chunk)
        except BrokenPipeError:
            # The consumer stopped (its error is reported by finish()); hash the rest.
            for chunk in iter(lambda: src.read(CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
    return StreamResult(size, digest.hexdigest(), data_snapshot(m))


def table_counts(tables: Any) -> dict[str, list[str]] | None:
    """Per-table facts of a PostgreSQL backup in one comparable form (None if absent)."""
    if not isinstance(tables, dict):
        return None
    return {str(k): [str(x) for x in v] for k, v in tables.items()}
