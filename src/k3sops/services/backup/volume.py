"""`backup volume PVC -n NS` and the restore of a volume backup into a new PVC.

Backup: resolve the PVC to its Longhorn volume (nothing is created before that succeeds), open
a backup run of the run engine (:mod:`.run`: Lease, ``Running`` manifest), create a Longhorn
Snapshot and a Backup of it, wait until Longhorn reports Completed or Error (or the timeout),
then close the k3sops backup: ``Completed`` only when Longhorn says Completed **and** the
backup has a URL and a size; the data part of the k3sops backup is Longhorn's Backup record
(URL, size, snapshot, volume, PVC spec) so that a restore needs nothing but the k3sops backup.
Anything else closes it Failed.

Restore: always into a new PVC (refused when the name exists), through a StorageClass whose
``fromBackup`` parameter is the recorded URL. Planned by default; made with ``apply``, audited.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from k3sops.adapters.audit import AuditLog, current_user
from k3sops.adapters.longhorn import Longhorn
from k3sops.adapters.restic import StreamResult
from k3sops.domain import volume_backup as vb
from k3sops.domain.backups import BackupManifest, CheckOutcome
from k3sops.errors import AdapterError, K3sopsError, PlanRejected, Timeout
from k3sops.services.backup.context import BackupContext
from k3sops.services.backup.repository import find, load_manifest
from k3sops.services.backup.run import BackupRun

Progress = Callable[[str, int], None]
"""Called with (Longhorn state, percent) while waiting."""


class VolumeBackupResult(BaseModel):
    """What `backup volume` did."""

    manifest: BackupManifest
    volume: vb.VolumeRef
    longhorn: vb.LonghornBackupState
    snapshot: str
    cleaned: list[str] = Field(default_factory=list,
                               description="ids of killed runs marked Failed by this run")


def backup_volume(ctx: BackupContext, lh: Longhorn, namespace: str, pvc: str, *,
                  timeout: float = 3600.0, poll: float = 2.0,
                  on_progress: Progress | None = None) -> VolumeBackupResult:
    """Back up the Longhorn volume behind ``namespace/pvc``; see the module docstring.

    Runs as one backup run of the run engine: a Lease per target (two backups of one PVC
    never overlap), killed runs cleaned up, ``Running`` manifest first, final manifest last,
    backup metrics.

    Raises:
        NotFound: the PVC does not exist.
        PlanRejected: the PVC is not bound to a Longhorn volume, or Longhorn has no such volume.
        AdapterError: Longhorn reported Error, or Completed without URL or size.
        Timeout: Longhorn did not finish within ``timeout`` seconds.
    """
    claim = lh.pvc(namespace, pvc)
    pv_name = (claim.get("spec") or {}).get("volumeName")
    ref = vb.resolve_volume(claim, lh.pv(pv_name) if pv_name else None)
    if lh.volume(ref.volume) is None:
        raise PlanRejected(f"Longhorn has no volume {ref.volume} (PV {ref.pv} of PVC "
                           f"{namespace}/{pvc}) in {lh.namespace}",
                           hint="is Longhorn installed and the volume attached? "
                                "kubectl -n longhorn-system get volumes.longhorn.io")
    env = ctx.environment(namespace)
    run = BackupRun(ctx, "volume", f"{namespace}/{pvc}", env, f"longhorn:{ref.volume}",
                      cluster_lock=True)
    seen: dict[str, Any] = {}

    def produce(r: BackupRun) -> tuple[StreamResult, dict[str, Any]]:
        bid = r.manifest.id
        snap_name = vb.object_name("k3sops", bid)
        lh.create_snapshot(vb.snapshot_object(ref, snap_name, bid))
        lh.create_backup(vb.backup_object(ref, snap_name, snap_name, bid))
        state = _wait(lh, snap_name, timeout, poll, on_progress)
        seen.update(state=state, snapshot=snap_name)
        if not state.restorable:
            raise AdapterError(
                f"Longhorn backup {snap_name} of volume {ref.volume} is not restorable: "
                + "; ".join(state.problems()),
                hint="check the backup target: kubectl -n longhorn-system get "
                     "backuptargets.longhorn.io; the k3sops backup is marked Failed")
        record = {"longhorn_backup": snap_name, "snapshot": snap_name, "url": state.url,
                  "size": state.size, "volume": ref.volume,
                  "backup_target": state.backup_target, "created_at": state.created_at,
                  "pvc": ref.model_dump(mode="json")}
        data = json.dumps(record, sort_keys=True, indent=1).encode()
        return r.stream(io.BytesIO(data)), record

    result = run.execute(produce)
    return VolumeBackupResult(manifest=result.manifest, volume=ref, longhorn=seen["state"],
                              snapshot=seen["snapshot"], cleaned=result.cleaned)


def longhorn(ctx: BackupContext) -> Longhorn:
    """Longhorn of the platform's cluster."""
    return Longhorn(ctx.kube())


def audit_log(ctx: BackupContext) -> AuditLog:
    """The audit log of this invocation's state directory."""
    return AuditLog(ctx.state / "audit.jsonl")


def _wait(lh: Longhorn, name: str, timeout: float, poll: float,
          on_progress: Progress | None) -> vb.LonghornBackupState:
    deadline = time.monotonic() + timeout
    last: vb.LonghornBackupState | None = None
    while True:
        obj = lh.backup(name)
        if obj is None:
            raise AdapterError(f"Longhorn backup {name} disappeared while it was being made",
                               hint="was it deleted by hand or by a retention job?")
        last = vb.read_backup(obj)
        if on_progress is not None:
            on_progress(last.state or "Pending", last.progress)
        if last.finished:
            return last
        if time.monotonic() >= deadline:
            raise Timeout(f"Longhorn backup {name} still {last.state or 'Pending'} "
                          f"({last.progress}%) after {timeout:g}s",
                          hint="Longhorn's manager may be down or the backup target slow; "
                               "raise --timeout, or check kubectl -n longhorn-system get "
                               f"backups.longhorn.io {name}")
        time.sleep(poll)


# --------------------------------------------------------------------------------------------
# Restore


class VolumeRestoreReport(BaseModel):
    """The restore plan (objects to create) and, when applied, what was created."""

    backup_id: str
    url: str
    applied: bool
    objects: list[dict[str, Any]] = Field(default_factory=list)
    created: list[str] = Field(default_factory=list)
    audit_log: str | None = None


def load(ctx: BackupContext, backup_id: str) -> tuple[BackupManifest, dict[str, Any]]:
    """A volume backup's manifest and its Longhorn record (the data part).

    Raises:
        NotFound: no such backup.
        PlanRejected: it is not a Completed volume backup.
    """
    entry = find(ctx, backup_id)
    manifest = load_manifest(ctx, entry)
    if manifest.kind != "volume" or manifest.status != "Completed" or not manifest.snapshot_ids:
        raise PlanRejected(f"backup {manifest.id} is a {manifest.status} {manifest.kind} "
                           "backup, not a Completed volume backup",
                           hint="pick one from `k3sops backup list` with kind volume")
    raw = ctx.restic.dump_bytes(manifest.snapshot_ids[0], manifest.filename)
    try:
        record = json.loads(raw)
    except ValueError as e:
        raise AdapterError(f"the Longhorn record of backup {manifest.id} is unreadable",
                           hint="run `k3sops backup verify " + manifest.id + "`") from e
    return manifest, dict(record)


def check_longhorn(lh: Longhorn, manifest: BackupManifest,
                   record: dict[str, Any]) -> CheckOutcome:
    """Verification of a volume backup against Longhorn: is it still restorable?

    The recorded Longhorn Backup must still exist, be Completed, and have the recorded URL
    (Longhorn's retention or a person may have deleted it since; then the k3sops record points
    at nothing). Meant for `backup verify` beside the record's sha256 check.
    """
    name = str(record.get("longhorn_backup") or "")
    obj = lh.backup(name) if name else None
    if obj is None:
        return CheckOutcome(name="longhorn-backup", ok=False,
                            detail=f"Longhorn backup {name or '?'} of {manifest.id} no longer "
                                   "exists: nothing to restore from")
    state = vb.read_backup(obj)
    problems = state.problems()
    if state.url and state.url != record.get("url"):
        problems.append(f"URL changed from {record.get('url')} to {state.url}")
    return CheckOutcome(name="longhorn-backup", ok=not problems,
                        detail="; ".join(problems) or f"{name}: Completed, {state.url}")


def restore_volume(lh: Longhorn, manifest: BackupManifest, record: dict[str, Any],
                   namespace: str, new_pvc: str, *, apply: bool, audit: AuditLog | None,
                   size: str | None = None) -> VolumeRestoreReport:
    """Plan (and with ``apply`` make) a new PVC restored from a volume backup.

    Raises:
        PlanRejected: the backup is not a Completed volume backup, or the PVC already exists.
        Conflict: the PVC appeared between the check and the create (nothing overwritten).
    """
    if manifest.kind != "volume" or manifest.status != "Completed":
        raise PlanRejected(f"backup {manifest.id} is a {manifest.status} {manifest.kind} "
                           "backup, not a Completed volume backup",
                           hint="pick one from `k3sops backup list` with kind volume")
    pvc_spec = record.get("pvc") or {}
    req = vb.RestoreRequest(namespace=namespace, pvc=new_pvc,
                            size=size or str(pvc_spec.get("size") or ""),
                            access_modes=list(pvc_spec.get("access_modes") or ["ReadWriteOnce"]))
    if not req.size:
        raise PlanRejected(f"backup {manifest.id} does not record the volume size",
                           hint="pass --size, e.g. --size 10Gi")
    sc, pvc = vb.restore_objects(str(record.get("url") or ""), req, manifest.id)
    if lh.find_pvc(namespace, new_pvc) is not None:
        raise PlanRejected(f"PVC {namespace}/{new_pvc} already exists; a restore never "
                           "writes over a volume",
                           hint="restore into a new PVC name (--to NAME)")
    report = VolumeRestoreReport(backup_id=manifest.id, url=str(record.get("url")),
                                 applied=apply, objects=[sc, pvc],
                                 audit_log=str(audit.path) if apply and audit else None)
    if not apply:
        return report
    sc_name = sc["metadata"]["name"]
    steps: list[tuple[str, str, Callable[[], object]]] = []
    if lh.storage_class(sc_name) is None:
        steps.append(("create-storageclass", f"storageclasses/{sc_name}",
                      lambda: lh.create_storage_class(sc)))
    steps.append(("create-pvc", f"{namespace}/persistentvolumeclaims/{new_pvc}",
                  lambda: lh.create_pvc(pvc)))
    for action, target, run in steps:
        error = None
        try:
            run()
            report.created.append(target)
        except K3sopsError as e:  # Conflict included: the name was taken meanwhile
            error = e.message
            raise
        finally:
            if audit is not None:
                audit.append({"who": current_user(), "context": lh.objects.context,
                              "what": {"action": action, "target": target,
                                       "detail": f"restore of backup {manifest.id}"},
                              "result": "failed" if error else "ok", "error": error})
    return report
