"""`backup app NAME`: application data of a target, pg_dump -Fc or a tar, through exec or a DSN.

PostgreSQL: in one REPEATABLE READ transaction the snapshot is exported; ``pg_dump`` dumps
that snapshot while the same session counts rows per table and takes a content fingerprint
in it (what the restore drill compares). Tar: ``tar -cf -`` of a path in the target's pod.
"""

from __future__ import annotations

import threading
from typing import Any

from k3sops.adapters import postgres as pg
from k3sops.adapters.restic import StreamResult
from k3sops.config import BackupTarget
from k3sops.domain import backups as bk
from k3sops.errors import ConfigError, K3sopsError, UsageError
from k3sops.services.backup.context import BackupContext
from k3sops.services.backup.run import BackupResult, BackupRun, Producer


def target(ctx: BackupContext, name: str) -> BackupTarget:
    """The target ``name`` of backup.targets.

    Raises:
        UsageError: there is none (the message lists the defined ones).
    """
    t = ctx.cfg.target(name)
    if t is None:
        known = ", ".join(x.name for x in ctx.cfg.targets) or "none"
        raise UsageError(f"no backup target {name!r} in platform.yaml (backup.targets)",
                         hint=f"targets defined: {known}")
    return t


def target_runner(ctx: BackupContext, t: BackupTarget) -> pg.Runner:
    """Where ``t``'s commands run: exec into its pod, or on this host against its DSN."""
    if t.namespace is not None and t.pod is not None:
        return ctx.pod_exec(t.namespace, t.pod, t.container)
    password = ctx.secret(t.password_env, f"password_env of target {t.name}",
                          required=t.password_env is not None)
    return pg.Direct(dsn=t.dsn or "", bins=pg.PgBinaries.find(ctx.cfg.binaries.pg_bin_dir),
                     password=password.get_secret_value() if password else None)


def backup_app(ctx: BackupContext, name: str) -> BackupResult:
    """Back up the application data of target ``name`` (pg_dump -Fc, or tar through exec)."""
    ctx.fp("start")
    t = target(ctx, name)
    runner = target_runner(ctx, t)
    pod = runner if isinstance(runner, pg.PodExec) else None
    ctx.fp("after-config")
    kind: bk.BackupKind = "postgres" if t.kind == "postgres" else "tar"
    source = (f"{runner.where} database {t.database}" if kind == "postgres"
              else f"{runner.where} path {t.path}")
    run = BackupRun(ctx, kind, t.name, t.environment, source, cluster_lock=pod is not None)
    produce = _produce_postgres(ctx, t, runner) if kind == "postgres" else _produce_tar(ctx, t, pod)
    return run.execute(produce, (t.hooks.pre, t.hooks.post), pod)


def _produce_postgres(ctx: BackupContext, t: BackupTarget, runner: pg.Runner
                      ) -> Producer:
    def produce(r: BackupRun) -> tuple[StreamResult, dict[str, Any]]:
        info = pg.conninfo(runner, t.database, t.user, f"k3sops-{r.manifest.id}")
        session = pg.SqlSession(runner, info)
        dump: pg.StreamProc | None = None
        facts_thread: threading.Thread | None = None
        found: dict[str, Any] = {}

        def count() -> None:
            # Row counts and fingerprint read the exported snapshot in this session while
            # pg_dump reads it in its own: the same data, and the two scans run in parallel.
            try:
                found["tables"] = session.tables()
                ctx.fp("after-facts")
            except K3sopsError as e:
                found["error"] = e

        try:
            session.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snap = session.query("SELECT pg_export_snapshot()")[0][0]
            ctx.fp("after-export-snapshot")
            version = session.query("SHOW server_version")[0][0]
            dump = pg.pg_dump(runner, info, snap)
            ctx.fp("after-dump-start")
            facts_thread = threading.Thread(target=count, daemon=True)
            facts_thread.start()
            res = r.stream(dump.stdout)
            dump.finish()
            facts_thread.join()
            if "error" in found:
                raise found["error"]
            session.query("COMMIT")
        except BaseException:
            if dump is not None:
                dump.kill()
            raise
        finally:
            session.close()
            if facts_thread is not None:
                facts_thread.join(timeout=30)
        tables = found["tables"]
        r.manifest.tools["postgres"] = version
        facts = {"database": t.database, "tables": tables,
                 "fingerprint": pg.fingerprint(tables),
                 "rows": sum(int(v[0]) for v in tables.values()), "snapshot": snap}
        return res, facts

    return produce


def _produce_tar(ctx: BackupContext, t: BackupTarget, pod: pg.PodExec | None
                 ) -> Producer:
    def produce(r: BackupRun) -> tuple[StreamResult, dict[str, Any]]:
        if pod is None or t.path is None:  # pragma: no cover - the config model refuses it
            raise ConfigError(f"target {t.name}: a tar backup needs a pod and a path")
        proc = pg.tar_stream(pod, t.path)
        try:
            res = r.stream(proc.stdout)
            proc.finish()
        except BaseException:
            proc.kill()
            raise
        ctx.fp("after-source-checks")
        return res, {"path": t.path}

    return produce

