"""`backup restore ID`: application data (PostgreSQL, tar) into a namespace, pod or database.

Application data goes into the same or another namespace/pod/database: the data streams out
of restic with its sha256 checked on the way, and for PostgreSQL the restored database's
per-table row counts and fingerprint are compared with the manifest. Planned by default.

etcd backups are restored by :mod:`.etcd_restore` (K3s' cluster reset across the servers),
volume backups into a new PVC by :func:`.volume.restore_volume` (Longhorn makes the volume).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.adapters import postgres as pg
from k3sops.domain.backups import BackupManifest
from k3sops.errors import AdapterError, K3sopsError, PlanRejected, UsageError
from k3sops.services.backup.app import target_runner
from k3sops.services.backup.context import BackupContext
from k3sops.services.backup.repository import find, load_manifest, table_counts, tee


class RestoreStep(BaseModel):
    """One step of an application-data restore plan."""

    action: str
    detail: str
    result: Literal["planned", "ok", "failed"] = "planned"
    error: str | None = None


class RestoreReport(BaseModel):
    """`backup restore ID`: the plan, and what happened when run."""

    backup_id: str
    kind: str
    applied: bool
    steps: list[RestoreStep] = Field(default_factory=list)
    size: int | None = None
    sha256_ok: bool | None = None
    facts: dict[str, Any] = Field(default_factory=dict)



def restore(  # noqa: PLR0912  # choosing the destination is a flat list of cases
        ctx: BackupContext, backup_id: str, *, namespace: str | None = None,
            pod: str | None = None, database: str | None = None, dsn: str | None = None,
            path: str | None = None, create_database: bool = False,
            yes: bool = False) -> RestoreReport:
    """Restore application data into the same or another namespace/pod/database.

    Without ``yes`` only the plan is returned. The restore streams the data out of restic,
    checks its sha256 on the way, and for PostgreSQL compares per-table row counts and the
    fingerprint of the restored database with the manifest.
    """
    e = find(ctx, backup_id)
    if e.status != "Completed":
        raise PlanRejected(f"backup {e.id} is {e.status}; only Completed backups are restored")
    if e.kind not in ("postgres", "tar"):
        raise UsageError(f"backup {e.id} is a {e.kind} backup; `backup restore` restores "
                         "application data (postgres, tar)",
                         hint="etcd: `k3sops backup etcd-restore`; volumes: `backup volume "
                              "restore`")
    m = load_manifest(ctx, e)
    t = ctx.cfg.target(m.target)
    ns = namespace or (t.namespace if t else None)
    pd = pod or (t.pod if t else None)
    runner: pg.Runner
    if dsn is not None and re.search(r"(^|[\s?&])password\s*=|://[^/@]*:[^/@]*@", dsn, re.I):
        raise UsageError("--dsn carries a password; it would show in process lists and logs",
                         hint="give the DSN without it and the password in the variable "
                              "named by the target's password_env (or ~/.pgpass)")
    if dsn is not None:
        password = ctx.secret(t.password_env if t else None, "the target's password_env",
                              required=False)
        runner = pg.Direct(dsn=dsn, bins=pg.PgBinaries.find(ctx.cfg.binaries.pg_bin_dir),
                           password=password.get_secret_value() if password else None)
    elif ns and pd:
        runner = ctx.pod_exec(ns, pd, t.container if t and pod is None else None)
    elif t is not None:
        runner = target_runner(ctx, t)
    else:
        raise UsageError(f"where to restore {e.id}? its target {m.target} is not in "
                         "platform.yaml", hint="give --namespace and --pod, or --dsn")
    report = RestoreReport(backup_id=e.id, kind=e.kind, applied=yes, size=m.size)
    if m.kind == "postgres":
        db = database or m.facts.get("database") or (t.database if t else "postgres")
        if create_database:
            report.steps.append(RestoreStep(action="create-database",
                                            detail=f"CREATE DATABASE {db} on {runner.where}"))
        report.steps.append(RestoreStep(
            action="pg_restore", detail=f"pg_restore --clean --if-exists --no-owner into "
                                        f"database {db} on {runner.where} ({m.size} bytes)"))
        report.steps.append(RestoreStep(action="compare", detail="row counts per table and "
                                                                 "the content fingerprint"))
    else:
        dest = path or m.facts.get("path")
        if not isinstance(runner, pg.PodExec) or not dest:
            raise UsageError("a tar backup restores into a pod: give --namespace, --pod "
                             "and --path")
        report.steps.append(RestoreStep(action="untar",
                                        detail=f"tar -xf - -C {dest} in {runner.where}"))
    if not yes:
        return report
    audit = {"what": {"action": "backup-restore", "backup": e.id, "kind": e.kind,
                      "to": runner.where}}
    try:
        if m.kind == "postgres":
            _restore_postgres(ctx, m, runner, db, create_database, report)
        else:
            _restore_tar(ctx, m, runner, dest, report)  # type: ignore[arg-type]
    except K3sopsError as err:
        for s in report.steps:
            if s.result == "planned":
                s.result, s.error = "failed", err.message[:300]
                break
        ctx.audit({**audit, "result": "failed", "error": err.message[:300]})
        raise
    ctx.audit({**audit, "result": "ok"})
    return report


def _restore_postgres(ctx: BackupContext, m: BackupManifest, runner: pg.Runner, db: str,
                      create: bool, report: RestoreReport) -> None:
    steps = iter(report.steps)
    if create:
        admin = pg.SqlSession(runner, pg.conninfo(runner, "postgres", None, "k3sops-restore"))
        try:
            admin.query(f'CREATE DATABASE "{db}"')
        finally:
            admin.close()
        next(steps).result = "ok"
    info = (f"{runner.dsn} dbname={db}" if isinstance(runner, pg.Direct)
            else pg.conninfo(runner, db, None, "k3sops-restore"))
    proc = pg.pg_restore(runner, info, clean=True)
    got = tee(ctx, m, proc.stdin)
    proc.finish()
    report.sha256_ok = got.sha256 == m.sha256
    if not report.sha256_ok:
        raise AdapterError(f"the data of backup {m.id} does not match its sha256",
                           hint="run `k3sops backup verify` on it")
    next(steps).result = "ok"
    session = pg.SqlSession(runner, info)
    try:
        tables = session.tables()
    finally:
        session.close()
    report.facts = {"tables": tables, "fingerprint": pg.fingerprint(tables)}
    step = next(steps)
    if table_counts(tables) != table_counts(m.facts.get("tables")):
        raise AdapterError("the restored database differs from the backup (row counts or "
                           "content fingerprint)", hint="was it written to during the restore?")
    step.result = "ok"


def _restore_tar(ctx: BackupContext, m: BackupManifest, runner: pg.PodExec, dest: str,
                 report: RestoreReport) -> None:
    proc = pg.stream(runner, ["tar", "-C", dest, "-xf", "-"], "tar -x", consumer=True)
    got = tee(ctx, m, proc.stdin)
    proc.finish()
    report.sha256_ok = got.sha256 == m.sha256
    report.steps[0].result = "ok" if report.sha256_ok else "failed"
    if not report.sha256_ok:
        raise AdapterError(f"the data of backup {m.id} does not match its sha256")
