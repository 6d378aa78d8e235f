"""The run engine: one backup run of one target, the same for every kind.

1. take the target's lock (a Kubernetes Lease when a cluster is involved, else a lock file);
2. clean up after killed runs of the same target: their ``Running`` manifests become
   ``Failed`` and their snapshots are forgotten (:func:`k3sops.domain.backups.leftovers`);
3. write a ``Running`` manifest, run the pre hooks;
4. call the kind's producer, which streams the data into restic (:meth:`BackupRun.stream`)
   and returns what the restore drill will compare;
5. run the post hooks, and write the final manifest **last**: ``Completed`` only now.

The producers live in :mod:`.etcd`, :mod:`.app` and :mod:`.volume`; each builds a
:class:`BackupRun` and hands it its producer.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from pydantic import BaseModel, Field, ValidationError

from k3sops import __version__
from k3sops.adapters import postgres as pg
from k3sops.adapters.lease import FileLock, KubeLease, holder_identity
from k3sops.adapters.restic import StreamResult
from k3sops.config import BackupHook
from k3sops.domain import backups as bk
from k3sops.domain.backups import BackupManifest
from k3sops.errors import AdapterError, K3sopsError
from k3sops.services.backup.context import MANIFEST_FILE, BackupContext

log = logging.getLogger(__name__)

Producer = Callable[["BackupRun"], tuple[StreamResult, dict[str, Any]]]
"""A kind's data step: streams the data through the run, returns (result, drill facts)."""


class BackupResult(BaseModel):
    """What one backup run produced."""

    manifest: BackupManifest
    cleaned: list[str] = Field(default_factory=list,
                               description="ids of killed runs marked Failed by this run")



class BackupRun:
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
        """The restic tags of this run's ``part``."""
        m = self.manifest
        return bk.part_tags(part, m.id, m.kind, m.cluster, m.environment, m.target)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the target's lock (Lease or lock file) for the run."""
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
        """Store ``m`` as this run's manifest (a new manifest snapshot)."""
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
        """Run the ``phase`` hooks in order, each recorded in the manifest."""
        for i, h in enumerate(hooks, 1):
            where: pg.Runner = pod if (h.where == "pod" and pod is not None) else LocalRunner()
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
        """Stream ``source`` into restic as the run's data (failpoints per chunk)."""
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

    def execute(self, produce: Producer,
                hooks: tuple[Sequence[BackupHook], Sequence[BackupHook]] = ((), ()),
                pod: pg.PodExec | None = None) -> BackupResult:
        """Run the backup around ``produce`` (see the module docstring)."""
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


class LocalRunner(pg.Direct):
    """Hooks with ``where: local``: the command as given, on this host."""

    def __init__(self) -> None:
        super().__init__(dsn="", bins=pg.PgBinaries(None))

    @property
    def where(self) -> str:
        """For messages."""
        return "this host"

    def argv(self, command: Sequence[str], stdin: bool = False) -> list[str]:
        """The hook's command as given."""
        del stdin
        return list(command)

