"""Backups that are proven: etcd and application data into restic, verified by restore drills.

One run of `backup etcd` / `backup app NAME`:

1. take the target's lock (a Kubernetes Lease when a cluster is involved, else a lock file);
2. clean up after killed runs of the same target: their ``Running`` manifests become
   ``Failed`` and their snapshots are forgotten (:func:`k3sops.domain.backups.leftovers`);
3. write a ``Running`` manifest, run the pre hooks;
4. stream the data into ``restic backup --stdin`` with a sha256 computed on the way, record
   what the restore drill will compare (etcd revision and key count; per-table row counts
   and a fingerprint taken in the very snapshot ``pg_dump`` dumps);
5. run the post hooks, and write the final manifest **last**: ``Completed`` only now.

Every step has a named failpoint (:data:`FAILPOINTS`): listed in ``$K3SOPS_FAILPOINTS``
(comma-separated, read at call time), the process kills itself there with SIGKILL, so tests
can prove that no kill point yields a Completed backup (as etcd's gofail does).

`backup verify` checks the repository (``restic check`` with a data subset), the data against
the manifest's sha256, and runs the restore drill, recording the result beside the backup
(a verification snapshot: the backup itself is never modified), in the history store (the
restore-drill checks read it) and in the metrics file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError

from k3sops import __version__
from k3sops.adapters import postgres as pg
from k3sops.adapters.audit import AuditLog, current_user, state_dir
from k3sops.adapters.backup_metrics import BackupMetrics
from k3sops.adapters.etcd import EtcdTools, hash_trailer_ok
from k3sops.adapters.history import HistoryStore
from k3sops.adapters.kube import KubeAdapter, discover_kubeconfig
from k3sops.adapters.lease import FileLock, KubeLease, holder_identity
from k3sops.adapters.restic import CHUNK, Restic, StreamResult
from k3sops.config import Backup, BackupHook, BackupTarget, Platform
from k3sops.domain import backups as bk
from k3sops.domain.backups import BackupEntry, BackupManifest, CheckOutcome, VerificationRecord
from k3sops.errors import (
    AdapterError,
    ConfigError,
    K3sopsError,
    NotFound,
    PlanRejected,
    UsageError,
)
from k3sops.services import context

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
VERIFICATION_FILE = "verification.json"
FAILPOINTS_ENV = "K3SOPS_FAILPOINTS"
FAILPOINTS: tuple[str, ...] = (
    "start", "after-config", "before-lock", "after-lock", "after-list", "before-mark-failed",
    "after-mark-failed", "after-forget-leftovers", "after-tool-versions",
    "before-running-manifest", "after-running-manifest", "after-pre-hooks",
    "after-source-snapshot", "after-source-checks", "before-stream", "stream-first-chunk",
    "stream-chunk", "after-stream", "after-data-snapshot", "after-post-hooks",
    "before-final-manifest",
    # PostgreSQL only
    "after-export-snapshot", "after-facts", "after-dump-start",
)
"""Named kill points of a backup run, in order (all before the final manifest)."""


def failpoint(name: str, env: Mapping[str, str]) -> None:
    """SIGKILL this process when ``name`` is listed in ``$K3SOPS_FAILPOINTS`` (tests only)."""
    active = env.get(FAILPOINTS_ENV, "")
    if active and name in active.split(","):
        os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# Reports


class BackupResult(BaseModel):
    """What one backup run produced."""

    manifest: BackupManifest
    cleaned: list[str] = Field(default_factory=list,
                               description="ids of killed runs marked Failed by this run")


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


class PruneReport(BaseModel):
    """`backup prune`."""

    repository: str
    dry_run: bool
    keep: dict[str, str] = Field(default_factory=dict)
    remove: dict[str, str] = Field(default_factory=dict)
    forgotten_snapshots: int = 0


class RestoreStep(BaseModel):
    """One step of a restore plan."""

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


# --------------------------------------------------------------------------------------------
# Wiring


class BackupContext:
    """Everything a backup command needs, resolved once (flags > env > platform.yaml)."""

    def __init__(self, settings: context.Settings, env: Mapping[str, str], home: Path,
                 state: Path | None = None, now: Callable[[], dt.datetime] | None = None,
                 ) -> None:
        if settings.platform is None or settings.platform.backup is None:
            raise ConfigError("no backup section in platform.yaml",
                              hint="add backup: with repository and password_env or "
                                   "password_file (`k3sops init` shows an example)")
        self.settings = settings
        self.platform: Platform = settings.platform
        self.cfg: Backup = settings.platform.backup
        self.env = env
        self.home = home
        self.state = state_dir(state, env, home)
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self.restic = self._restic()
        self._kube: KubeAdapter | None = None
        self._kubeconfig: Path | None = None

    def _restic(self) -> Restic:
        cfg = self.cfg
        if cfg.password_env is not None:
            value = self.env.get(cfg.password_env)
            if not value:
                raise ConfigError(f"environment variable {cfg.password_env} (backup."
                                  "password_env) is not set or empty",
                                  hint="export it with the repository password")
            return Restic(cfg.repository, password=SecretStr(value),
                          binary=cfg.binaries.restic, env=self.env)
        if cfg.password_file is None or not cfg.password_file.is_file():
            raise ConfigError(f"password file {cfg.password_file} (backup.password_file) "
                              "does not exist", hint="create it (mode 0600) or fix the path")
        return Restic(cfg.repository, password_file=cfg.password_file,
                      binary=cfg.binaries.restic, env=self.env)

    def kube(self) -> KubeAdapter:
        """The cluster (created on first use)."""
        if self._kube is None:
            self._kube = context.kube(self.settings, self.env, self.home)
            self._kubeconfig = self._kube.source.path
        return self._kube

    def etcd(self) -> EtcdTools:
        """Etcd's tools and endpoints from the backup section."""
        b, e = self.cfg.binaries, self.cfg.etcd
        return EtcdTools(etcdctl=b.etcdctl, etcdutl=b.etcdutl, etcd=b.etcd,
                         endpoints=tuple(e.endpoints), cacert=e.cacert, cert=e.cert, key=e.key)

    def work(self) -> Path:
        """Scratch directory (created)."""
        d = self.cfg.work_dir or Path(tempfile.gettempdir())
        d.mkdir(parents=True, exist_ok=True)
        return d

    def metrics(self) -> BackupMetrics | None:
        """The metrics file, if configured."""
        return BackupMetrics(self.cfg.metrics_file) if self.cfg.metrics_file else None

    def pod_exec(self, namespace: str, pod: str, container: str | None) -> pg.PodExec:
        """Exec into a pod: the context of ``--context``, else of the namespace's environment."""
        kube = self.kube()
        wanted = self.settings.context or self._env_context(namespace)
        if wanted is not None and wanted != kube.context:
            kube = context.kube(dataclasses.replace(self.settings, context=wanted), self.env,
                                self.home)
        return pg.PodExec(kube=kube, namespace=namespace, pod=pod, container=container)

    def _env_context(self, namespace: str) -> str | None:
        for env in self.platform.environments.values():
            if namespace in env.namespaces and env.context:
                return env.context
        return None

    def fp(self, name: str) -> None:
        """A failpoint (see :data:`FAILPOINTS`)."""
        failpoint(name, self.env)

    def audit(self, record: Mapping[str, Any]) -> None:
        """Append to the audit log."""
        AuditLog(self.state / "audit.jsonl").append({"who": current_user(), **record})


# --------------------------------------------------------------------------------------------
# The run


class _Run:
    """One backup run of one target (lock, leftovers, manifests, metrics)."""

    def __init__(self, ctx: BackupContext, kind: bk.BackupKind, target: str,
                 environment: str | None, source: str, cluster_lock: bool) -> None:
        self.ctx = ctx
        self.kind = kind
        self.target = target
        self.environment = environment
        self.source = source
        self.cluster_lock = cluster_lock
        started = ctx.now()
        self.manifest = BackupManifest(
            id=bk.backup_id(kind, target, started, secrets.token_hex(3)), kind=kind,
            cluster=ctx.platform.name, environment=environment, target=target, source=source,
            started=started, filename=bk.data_filename(kind, target))
        self.written = False
        self.cleaned: list[str] = []
        self.data_snapshots: list[str] = []

    def tags(self, part: bk.Part = "data") -> list[str]:
        m = self.manifest
        return bk.part_tags(part, m.id, m.kind, m.cluster, m.environment, m.target)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        ctx = self.ctx
        name = f"k3sops-backup-{self.kind}-{bk.slug(self.target)}"
        ctx.fp("before-lock")
        if self.cluster_lock:
            lease = KubeLease(ctx.kube(), ctx.cfg.lease_namespace, name,
                              holder_identity(self.manifest.id))
            with lease:
                ctx.fp("after-lock")
                yield
        else:
            digest = hashlib.sha256(ctx.cfg.repository.encode()).hexdigest()[:12]
            with FileLock(ctx.state / "locks" / f"{name}-{digest}.lock",
                          f"{self.kind} {self.target}"):
                ctx.fp("after-lock")
                yield

    def write_manifest(self, m: BackupManifest) -> None:
        self.ctx.restic.backup_bytes(m.model_dump_json(indent=1).encode(), MANIFEST_FILE,
                                     bk.manifest_tags(m))
        self.manifest = m

    def clean_leftovers(self) -> None:
        """Mark killed runs of this target Failed and forget their snapshots."""
        ctx = self.ctx
        snaps = ctx.restic.snapshots([bk.TAG_ROOT])
        ctx.fp("after-list")
        running, forget = bk.leftovers(snaps, self.kind, self.target)
        for e in running:
            ctx.fp("before-mark-failed")
            try:
                old = BackupManifest.model_validate_json(
                    ctx.restic.dump_bytes(e.manifest_snapshot, MANIFEST_FILE))
            except (AdapterError, ValidationError):
                old = BackupManifest(id=e.id, kind=self.kind, cluster=e.cluster or "?",
                                     environment=e.environment, target=self.target,
                                     source="?", started=e.started,
                                     filename=bk.data_filename(self.kind, self.target))
            failed = bk.transition(old, "Failed", ctx.now(),
                                   error=f"interrupted: found Running by {self.manifest.id}")
            ctx.restic.backup_bytes(failed.model_dump_json(indent=1).encode(), MANIFEST_FILE,
                                    bk.manifest_tags(failed))
            self.cleaned.append(e.id)
            ctx.fp("after-mark-failed")
            log.warning("backup %s was interrupted; marked Failed", e.id)
        # The Running manifests of those runs stay (superseded by Failed); their data goes.
        data = [sid for sid in forget if not any(
            sid == e.manifest_snapshot for e in running)]
        if data:
            ctx.restic.forget(data)
        ctx.fp("after-forget-leftovers")

    def hooks(self, hooks: Sequence[BackupHook], phase: str,
              pod: pg.PodExec | None) -> None:
        for i, h in enumerate(hooks, 1):
            where: pg.Runner = pod if (h.where == "pod" and pod is not None) else _Local()
            started = time.monotonic()
            rec: dict[str, Any] = {"phase": phase, "index": i, "command": h.command[0],
                                   "where": h.where}
            try:
                pg.run_command(where, h.command, h.timeout_seconds, f"{phase} hook {i}")
                rec["ok"] = True
            except K3sopsError as e:
                rec.update(ok=False, error=e.message[:300])
                if h.on_error == "fail":
                    self.manifest.hooks.append(rec)
                    raise
            finally:
                rec["seconds"] = round(time.monotonic() - started, 3)
            self.manifest.hooks.append(rec)

    def stream(self, source: IO[bytes], on_first: Callable[[], None] | None = None
               ) -> StreamResult:
        ctx = self.ctx
        first = [True]

        def on_chunk(_: int) -> None:
            if first[0]:
                first[0] = False
                ctx.fp("stream-first-chunk")
                if on_first is not None:
                    on_first()
            else:
                ctx.fp("stream-chunk")

        ctx.fp("before-stream")
        res = ctx.restic.backup_stream(source, self.manifest.filename, self.tags(),
                                       on_chunk=on_chunk)
        self.data_snapshots.append(res.snapshot_id)
        ctx.fp("after-stream")
        return res

    def execute(self, produce: Callable[[_Run], tuple[StreamResult, dict[str, Any]]],
                hooks: tuple[Sequence[BackupHook], Sequence[BackupHook]] = ((), ()),
                pod: pg.PodExec | None = None) -> BackupResult:
        ctx = self.ctx
        t0 = time.monotonic()
        ok = False
        try:
            with self.lock():
                self.clean_leftovers()
                self.manifest.tools.update({"k3sops": __version__,
                                            "restic": ctx.restic.version()})
                ctx.fp("after-tool-versions")
                ctx.fp("before-running-manifest")
                self.write_manifest(self.manifest)
                self.written = True
                ctx.fp("after-running-manifest")
                error: K3sopsError | None = None
                result: tuple[StreamResult, dict[str, Any]] | None = None
                try:
                    self.hooks(hooks[0], "pre", pod)
                    ctx.fp("after-pre-hooks")
                    result = produce(self)
                    ctx.fp("after-data-snapshot")
                except K3sopsError as e:
                    error = e
                try:
                    self.hooks(hooks[1], "post", pod)
                except K3sopsError as e:
                    error = error or e
                ctx.fp("after-post-hooks")
                if error is not None:
                    raise error
                if result is None:  # pragma: no cover - produce returns or raises
                    raise AdapterError("the backup produced nothing")
                res, facts = result
                if res.size == 0:
                    raise AdapterError(f"the {self.kind} backup of {self.target} is empty "
                                       "(0 bytes were read from the source)",
                                       hint="check the source; nothing was stored")
                ctx.fp("before-final-manifest")
                done = bk.transition(self.manifest, "Completed", ctx.now(), size=res.size,
                                     sha256=res.sha256, snapshot_ids=list(self.data_snapshots),
                                     facts=facts)
                self.write_manifest(done)
                ok = True
        except K3sopsError as e:
            self._fail(e)
            raise
        except BaseException as e:
            self._fail(AdapterError(f"interrupted: {type(e).__name__}"))
            raise
        finally:
            self._metrics(ok, time.monotonic() - t0)
        return BackupResult(manifest=self.manifest, cleaned=self.cleaned)

    def _fail(self, e: K3sopsError) -> None:
        if not self.written:
            return
        ctx = self.ctx
        with contextlib.suppress(K3sopsError):
            failed = bk.transition(self.manifest, "Failed", ctx.now(), error=e.message[:500],
                                   snapshot_ids=[])
            self.write_manifest(failed)
        with contextlib.suppress(K3sopsError):
            ctx.restic.forget(self.data_snapshots)

    def _metrics(self, ok: bool, seconds: float) -> None:
        m = self.ctx.metrics()
        if m is None:
            return
        try:
            m.backup(self.kind, self.target, ok, self.ctx.now().timestamp(), seconds,
                     self.manifest.size)
        except AdapterError as e:
            log.warning("%s", e)


class _Local(pg.Direct):
    """Hooks with ``where: local``: the command as given, on this host."""

    def __init__(self) -> None:
        super().__init__(dsn="", bins=pg.PgBinaries(None))

    @property
    def where(self) -> str:
        return "this host"

    def argv(self, command: Sequence[str], stdin: bool = False) -> list[str]:
        del stdin
        return list(command)


# --------------------------------------------------------------------------------------------
# backup etcd


def backup_etcd(ctx: BackupContext, snapshot_file: Path | None = None,
                target: str = "etcd") -> BackupResult:
    """Snapshot etcd through its snapshot API (or take ``snapshot_file``) into the repository.

    Checks before anything is stored: the snapshot's own SHA-256 trailer and
    ``etcdutl snapshot status``; records revision, total keys, and the live key count at
    that revision (what the drill compares).
    """
    ctx.fp("start")
    tools = ctx.etcd()
    source = (f"file {snapshot_file}" if snapshot_file is not None
              else f"etcd {tools.endpoints[0]}")
    ctx.fp("after-config")
    run = _Run(ctx, "etcd", target, None, source, cluster_lock=_has_cluster(ctx))

    def produce(r: _Run) -> tuple[StreamResult, dict[str, Any]]:
        r.manifest.tools.update({"etcdctl": tools.version("etcdctl"),
                                 "etcdutl": tools.version("etcdutl")})
        work = Path(tempfile.mkdtemp(prefix="k3sops-etcd-", dir=ctx.work()))
        try:
            path = work / "snapshot.db"
            if snapshot_file is None:
                tools.snapshot_save(path)
            else:
                if not snapshot_file.is_file():
                    raise NotFound(f"etcd snapshot file {snapshot_file} does not exist")
                path = snapshot_file
            ctx.fp("after-source-snapshot")
            if not hash_trailer_ok(path):
                raise AdapterError(f"the etcd snapshot {path.name} has no valid SHA-256 "
                                   "trailer (stripped or damaged)",
                                   hint="take a new snapshot; this one cannot be restored")
            st = tools.snapshot_status(path)
            facts: dict[str, Any] = {"revision": st.revision, "total_keys": st.total_keys,
                                     "etcd_hash": st.hash, "db_size": st.total_size,
                                     "storage_version": st.version, "hash_trailer": True}
            if snapshot_file is None:
                # Live keys at the snapshot's revision (the header names the current one).
                keys, _ = tools.count_keys(revision=st.revision)
                facts["keys"] = keys
            ctx.fp("after-source-checks")
            with path.open("rb") as f:
                res = r.stream(f)
            return res, facts
        finally:
            for p in work.iterdir():
                p.unlink(missing_ok=True)
            work.rmdir()

    return run.execute(produce)


def _has_cluster(ctx: BackupContext) -> bool:
    """Whether a kubeconfig can be found (then a Lease guards the target)."""
    try:
        discover_kubeconfig(ctx.settings.kubeconfig, ctx.platform.kubeconfig, ctx.env, ctx.home)
    except ConfigError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# backup app


def _target(ctx: BackupContext, name: str) -> BackupTarget:
    t = ctx.cfg.target(name)
    if t is None:
        known = ", ".join(x.name for x in ctx.cfg.targets) or "none"
        raise UsageError(f"no backup target {name!r} in platform.yaml (backup.targets)",
                         hint=f"targets defined: {known}")
    return t


def _runner(ctx: BackupContext, t: BackupTarget) -> pg.Runner:
    if t.namespace is not None and t.pod is not None:
        return ctx.pod_exec(t.namespace, t.pod, t.container)
    password = None
    if t.password_env:
        password = ctx.env.get(t.password_env)
        if password is None:
            raise ConfigError(f"environment variable {t.password_env} (password_env of "
                              f"target {t.name}) is not set")
    return pg.Direct(dsn=t.dsn or "", bins=pg.PgBinaries.find(ctx.cfg.binaries.pg_bin_dir),
                     password=password)


def backup_app(ctx: BackupContext, name: str) -> BackupResult:
    """Back up the application data of target ``name`` (pg_dump -Fc, or tar through exec)."""
    ctx.fp("start")
    t = _target(ctx, name)
    runner = _runner(ctx, t)
    pod = runner if isinstance(runner, pg.PodExec) else None
    ctx.fp("after-config")
    kind: bk.BackupKind = "postgres" if t.kind == "postgres" else "tar"
    source = (f"{runner.where} database {t.database}" if kind == "postgres"
              else f"{runner.where} path {t.path}")
    run = _Run(ctx, kind, t.name, t.environment, source, cluster_lock=pod is not None)
    produce = _produce_postgres(ctx, t, runner) if kind == "postgres" else _produce_tar(ctx, t, pod)
    return run.execute(produce, (t.hooks.pre, t.hooks.post), pod)


def _produce_postgres(ctx: BackupContext, t: BackupTarget, runner: pg.Runner
                      ) -> Callable[[_Run], tuple[StreamResult, dict[str, Any]]]:
    def produce(r: _Run) -> tuple[StreamResult, dict[str, Any]]:
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
                 ) -> Callable[[_Run], tuple[StreamResult, dict[str, Any]]]:
    def produce(r: _Run) -> tuple[StreamResult, dict[str, Any]]:
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


# --------------------------------------------------------------------------------------------
# list


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


# --------------------------------------------------------------------------------------------
# verify


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
                from k3sops.services import volume_backup  # imports this module
                _, longhorn_record = volume_backup.load(ctx, e.id)
                checks.append(volume_backup.check_longhorn(volume_backup.longhorn(ctx), m,
                                                           longhorn_record))
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
        with HistoryStore.open(ctx.state) as h:
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


def _data_snapshot(m: BackupManifest) -> str:
    if not m.snapshot_ids:
        raise AdapterError(f"backup {m.id} has no data snapshot in its manifest")
    return m.snapshot_ids[0]


def _verify_etcd(ctx: BackupContext, m: BackupManifest, checks: list[CheckOutcome]) -> float:
    tools = ctx.etcd()
    work = Path(tempfile.mkdtemp(prefix="k3sops-verify-", dir=ctx.work()))
    try:
        path = work / "snapshot.db"
        t0 = time.monotonic()
        with path.open("wb") as f:
            got = ctx.restic.dump_to(_data_snapshot(m), m.filename, f)
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
    pw = ctx.env.get(ctx.cfg.drill.postgres_password_env or "") or None
    return contextlib.nullcontext(pg.Direct(dsn=dsn, bins=pg.PgBinaries.find(
        ctx.cfg.binaries.pg_bin_dir), password=pw))


def _tee(ctx: BackupContext, m: BackupManifest, sink: IO[bytes]) -> StreamResult:
    """Stream the backup's data into ``sink`` (a restore's stdin), hashing on the way."""
    digest = hashlib.sha256()
    size = 0
    with ctx.restic.open_dump(_data_snapshot(m), m.filename) as src:
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
    return StreamResult(size, digest.hexdigest(), _data_snapshot(m))


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
            got = _tee(ctx, m, restore.stdin)
            _sha_check(m, got, checks)
            restore.finish()
            session = pg.SqlSession(target, target.dsn)
            try:
                tables = session.tables()
            finally:
                session.close()
            seconds = time.monotonic() - t0
            actual = {"tables": tables, "fingerprint": pg.fingerprint(tables)}
            expected = {"tables": _normalise(m.facts.get("tables")),
                        "fingerprint": m.facts.get("fingerprint")}
            checks += bk.drill_facts_match(expected, {**actual, "tables": _normalise(tables)},
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


def _normalise(tables: Any) -> dict[str, list[str]] | None:
    if not isinstance(tables, dict):
        return None
    return {str(k): [str(x) for x in v] for k, v in tables.items()}


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
        got = _tee(ctx, m, sink)
    t.join()
    _sha_check(m, got, checks)
    if m.kind == "tar":
        checks.append(CheckOutcome(name="drill-tar", ok=not error and members[0] > 0,
                                   detail=error[0] if error else f"{members[0]} entries read"))


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# prune


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


# --------------------------------------------------------------------------------------------
# restore (application data)


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
        runner = pg.Direct(dsn=dsn, bins=pg.PgBinaries.find(ctx.cfg.binaries.pg_bin_dir),
                           password=ctx.env.get(t.password_env) if t and t.password_env else None)
    elif ns and pd:
        runner = ctx.pod_exec(ns, pd, t.container if t and pod is None else None)
    elif t is not None:
        runner = _runner(ctx, t)
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
    got = _tee(ctx, m, proc.stdin)
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
    if _normalise(tables) != _normalise(m.facts.get("tables")):
        raise AdapterError("the restored database differs from the backup (row counts or "
                           "content fingerprint)", hint="was it written to during the restore?")
    step.result = "ok"


def _restore_tar(ctx: BackupContext, m: BackupManifest, runner: pg.PodExec, dest: str,
                 report: RestoreReport) -> None:
    proc = pg.stream(runner, ["tar", "-C", dest, "-xf", "-"], "tar -x", consumer=True)
    got = _tee(ctx, m, proc.stdin)
    proc.finish()
    report.sha256_ok = got.sha256 == m.sha256
    report.steps[0].result = "ok" if report.sha256_ok else "failed"
    if not report.sha256_ok:
        raise AdapterError(f"the data of backup {m.id} does not match its sha256")


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

