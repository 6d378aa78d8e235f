"""`backup verify`: the repository check, the data against its sha256, and a restore drill.

The result is recorded beside the backup (a verification snapshot: the backup itself is never
modified), in the history store (the restore-drill checks read it) and in the metrics file.
Drills: etcd into a scratch etcd (keys and revision compared), PostgreSQL into a scratch
database (row counts and the content fingerprint compared), tar read back whole; a volume
backup's Longhorn Backup must still exist and be restorable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from pydantic import BaseModel, Field

from k3sops import __version__
from k3sops.adapters import postgres as pg
from k3sops.adapters.etcd import hash_trailer_ok
from k3sops.adapters.restic import CHUNK, StreamResult
from k3sops.adapters.store import SqliteStore
from k3sops.domain import backups as bk
from k3sops.domain.backups import BackupEntry, BackupManifest, CheckOutcome, VerificationRecord
from k3sops.errors import AdapterError, K3sopsError, UsageError
from k3sops.services.backup import volume
from k3sops.services.backup.context import VERIFICATION_FILE, BackupContext
from k3sops.services.backup.repository import (
    data_snapshot,
    entries,
    find,
    load_manifest,
    table_counts,
    tee,
)

log = logging.getLogger(__name__)


class VerifyReport(BaseModel):
    """`backup verify`: one record per backup verified."""

    repository: str
    restic_check: CheckOutcome | None = None
    records: list[VerificationRecord] = Field(default_factory=list)
    skipped: dict[str, str] = Field(default_factory=dict, description="id -> why")

    @property
    def failed(self) -> list[VerificationRecord]:
        """Records that did not pass."""
        return [r for r in self.records if not r.ok]



def verify(ctx: BackupContext, backup_id: str | None = None, all_: bool = False,
           since: str | None = None, read_data_subset: str | None = None) -> VerifyReport:
    """Verify backups: repository check, sha256, restore drill; record each result."""
    if (backup_id is not None) + all_ + (since is not None) != 1:
        raise UsageError("give exactly one of ID, --all or --since DURATION",
                         hint="e.g. `k3sops backup verify --since 7d`")
    all_entries = entries(ctx)
    report = VerifyReport(repository=ctx.restic.where)
    if backup_id is not None:
        chosen = [find(ctx, backup_id)]
    elif since is not None:
        cutoff = bk.parse_since(since, ctx.now())
        chosen = [e for e in all_entries if e.started >= cutoff]
    else:
        chosen = list(all_entries)
    todo = []
    for e in chosen:
        if e.status != "Completed":
            report.skipped[e.id] = f"status {e.status}: nothing to verify"
        else:
            todo.append(e)
    if not todo:
        return report
    check = ctx.restic.check(read_data_subset or ctx.cfg.drill.read_data_subset)
    report.restic_check = CheckOutcome(
        name="restic-check", ok=check.ok,
        detail="no errors were found" if check.ok else check.output[-1500:])
    for e in todo:
        report.records.append(_verify_one(ctx, e, report.restic_check))
    return report


def _verify_one(ctx: BackupContext, e: BackupEntry,
                repo_check: CheckOutcome) -> VerificationRecord:
    at = ctx.now()
    checks = [repo_check]
    drill_seconds: float | None = None
    try:
        if not repo_check.ok:
            # restic retries damaged packs with back-off for minutes; the verdict is already
            # "failed", so the drill is not run on a damaged repository.
            raise AdapterError("not run: the repository check failed (see restic-check); "
                               "repair the repository first (restic rebuild-index, check)")
        m = load_manifest(ctx, e)
        checks.append(CheckOutcome(name="manifest", ok=True, detail=f"status {m.status}"))
        if m.kind == "etcd":
            drill_seconds = _verify_etcd(ctx, m, checks)
        elif m.kind == "postgres":
            drill_seconds = _verify_postgres(ctx, m, checks)
        else:
            _verify_stream(ctx, m, checks)
            if m.kind == "volume":
                # The data part is Longhorn's record: the Backup it names must still exist,
                # be Completed and keep its URL, or there is nothing to restore from.
                _, longhorn_record = volume.load(ctx, e.id)
                checks.append(volume.check_longhorn(volume.longhorn(ctx), m, longhorn_record))
    except K3sopsError as err:
        checks.append(CheckOutcome(name="drill", ok=False, detail=err.message[:600]))
    ok = all(c.ok for c in checks)
    record = VerificationRecord(backup_id=e.id, at=at, ok=ok, checks=checks,
                                drill_seconds=drill_seconds,
                                tools={"k3sops": __version__})
    _record(ctx, e, record)
    return record


def _record(ctx: BackupContext, e: BackupEntry, rec: VerificationRecord) -> None:
    """Store the record beside the backup, in the history store and in the metrics."""
    try:
        ctx.restic.backup_bytes(rec.model_dump_json(indent=1).encode(), VERIFICATION_FILE,
                                bk.verification_tags(rec, e))
    except K3sopsError as err:
        rec.checks.append(CheckOutcome(name="record", ok=False,
                                       detail=f"could not store the record: {err.message}"))
        rec.ok = False
    try:
        with SqliteStore.open(ctx.state) as h:
            h.record_restore_drill(e.kind, e.target, rec.ok, rec.at, rec.drill_seconds)
    except K3sopsError as err:
        log.warning("%s", err)
    m = ctx.metrics()
    if m is not None:
        try:
            m.drill(e.kind, e.target, rec.ok, rec.at.timestamp(), rec.drill_seconds)
        except AdapterError as err:
            log.warning("%s", err)


def _sha_check(m: BackupManifest, got: StreamResult, checks: list[CheckOutcome]) -> None:
    checks.append(CheckOutcome(
        name="sha256", ok=got.sha256 == m.sha256 and got.size == m.size,
        detail=f"manifest {m.sha256} ({m.size} bytes), read {got.sha256} ({got.size} bytes)"))


def _verify_etcd(ctx: BackupContext, m: BackupManifest, checks: list[CheckOutcome]) -> float:
    tools = ctx.etcd()
    work = Path(tempfile.mkdtemp(prefix="k3sops-verify-", dir=ctx.work()))
    try:
        path = work / "snapshot.db"
        t0 = time.monotonic()
        with path.open("wb") as f:
            got = ctx.restic.dump_to(data_snapshot(m), m.filename, f)
        _sha_check(m, got, checks)
        trailer = hash_trailer_ok(path)
        checks.append(CheckOutcome(name="etcd-hash", ok=trailer,
                                   detail="SHA-256 trailer " + ("valid" if trailer
                                                                else "missing or wrong")))
        try:
            st = tools.snapshot_status(path)
            actual = {"revision": st.revision, "total_keys": st.total_keys}
            checks += bk.drill_facts_match(m.facts, actual, ("revision", "total_keys"))
        except K3sopsError as err:
            checks.append(CheckOutcome(name="etcd-status", ok=False, detail=err.message[:300]))
        with tools.scratch(path, work) as url:
            keys, rev = tools.count_keys(endpoints=[url])
        seconds = time.monotonic() - t0
        want = ("keys",) if "keys" in m.facts else ()
        checks += bk.drill_facts_match(m.facts, {"keys": keys}, want)
        checks.append(CheckOutcome(name="drill-restore", ok=True,
                                   detail=f"restored into a scratch etcd: {keys} keys at "
                                          f"revision {rev} in {seconds:.1f}s"))
        return seconds
    finally:
        _rmtree(work)


def _drill_db(ctx: BackupContext) -> contextlib.AbstractContextManager[pg.Direct]:
    dsn = ctx.cfg.drill.postgres_dsn
    if dsn is None:
        return pg.ScratchCluster(pg.PgBinaries.find(ctx.cfg.binaries.pg_bin_dir),
                                 Path(tempfile.gettempdir())).running()
    pw = ctx.secret(ctx.cfg.drill.postgres_password_env, "backup.drill.postgres_password_env",
                    required=False)
    return contextlib.nullcontext(pg.Direct(dsn=dsn, bins=pg.PgBinaries.find(
        ctx.cfg.binaries.pg_bin_dir), password=pw.get_secret_value() if pw else None))


def _verify_postgres(ctx: BackupContext, m: BackupManifest, checks: list[CheckOutcome]
                     ) -> float:
    t0 = time.monotonic()
    with _drill_db(ctx) as server:
        admin = pg.SqlSession(server, server.dsn)
        db = f"k3sops_drill_{secrets.token_hex(4)}"
        try:
            admin.query(f'CREATE DATABASE "{db}"')
            target = pg.Direct(dsn=f"{server.dsn} dbname={db}", bins=server.bins,
                               password=server.password)
            restore = pg.pg_restore(target, target.dsn)
            got = tee(ctx, m, restore.stdin)
            _sha_check(m, got, checks)
            restore.finish()
            session = pg.SqlSession(target, target.dsn)
            try:
                tables = session.tables()
            finally:
                session.close()
            seconds = time.monotonic() - t0
            actual = {"tables": tables, "fingerprint": pg.fingerprint(tables)}
            expected = {"tables": table_counts(m.facts.get("tables")),
                        "fingerprint": m.facts.get("fingerprint")}
            checks += bk.drill_facts_match(expected, {**actual, "tables": table_counts(tables)},
                                           ("tables", "fingerprint"))
            checks.append(CheckOutcome(
                name="drill-restore", ok=True,
                detail=f"restored into a scratch database: {len(tables)} tables, "
                       f"{sum(int(v[0]) for v in tables.values())} rows in {seconds:.1f}s"))
            return seconds
        finally:
            with contextlib.suppress(K3sopsError):
                admin.query(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            admin.close()


def _verify_stream(ctx: BackupContext, m: BackupManifest, checks: list[CheckOutcome]) -> None:
    """Tar and other kinds: the data reads back whole, matches the sha256, and parses."""
    members = [0]
    error: list[str] = []
    r, w = os.pipe()

    def parse() -> None:
        with os.fdopen(r, "rb") as src:
            try:
                with tarfile.open(fileobj=src, mode="r|") as tf:
                    for _ in tf:
                        members[0] += 1
            except (tarfile.TarError, OSError, EOFError) as e:
                error.append(str(e))
            for _ in iter(lambda: src.read(CHUNK), b""):
                pass

    t = threading.Thread(target=parse, daemon=True)
    t.start()
    with os.fdopen(w, "wb") as sink:
        got = tee(ctx, m, sink)
    t.join()
    _sha_check(m, got, checks)
    if m.kind == "tar":
        checks.append(CheckOutcome(name="drill-tar", ok=not error and members[0] > 0,
                                   detail=error[0] if error else f"{members[0]} entries read"))


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


