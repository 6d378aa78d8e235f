"""`backup restore --etcd ID`: the K3s cluster-reset procedure, planned, checked, then run.

1. The snapshot: the backup's manifest and its newest verification are read from the restic
   repository; the data is fetched into a private temporary file and its sha256 compared with
   the manifest's (a mismatch refuses the restore).
2. Preflight over SSH (Ansible, ``etcd-restore.yml`` phase ``preflight``, read-only) on every
   host of the inventory's ``server`` group: reachable, cluster token present, k3s installed.
3. The pure planner (:mod:`k3sops.domain.etcd_restore`) turns these facts into the plan; it is
   returned for printing. Only with ``yes`` and a passing preflight does phase ``restore`` run;
   every step is written to the audit log with its result.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import BaseModel, Field

from k3sops.adapters import ansible
from k3sops.domain import etcd_restore as er
from k3sops.domain.backups import BackupEntry, BackupManifest, slug
from k3sops.errors import K3sopsError, NotFound, PlanRejected
from k3sops.services.backup.context import BackupContext
from k3sops.services.backup.repository import find, load_manifest

PLAYBOOK = "etcd-restore"


class StepOutcome(BaseModel):
    """A planned step and what became of it."""

    step: er.RestoreStep
    result: str = Field(description="planned, ok, failed, not-run")
    error: str | None = None


class EtcdRestoreReport(BaseModel):
    """The plan with its preflight, and for a run the result of every step."""

    plan: er.EtcdRestorePlan
    applied: bool
    steps: list[StepOutcome] = Field(default_factory=list)
    audit_log: str | None = None


@contextlib.contextmanager
def fetched_snapshot(ctx: BackupContext, backup_id: str,
                     ) -> Iterator[tuple[BackupManifest, BackupEntry, Path]]:
    """The manifest, list entry and a private local copy of an etcd backup's data.

    Raises:
        NotFound: no such backup.
        PlanRejected: not an etcd backup with data, or the data read back does not match the
            manifest's sha256.
    """
    entry = find(ctx, backup_id)
    manifest = load_manifest(ctx, entry)
    if manifest.kind != "etcd" or not manifest.snapshot_ids:
        raise PlanRejected(f"backup {manifest.id} is a {manifest.status} {manifest.kind} "
                           "backup without etcd data", hint="pick a Completed etcd backup "
                           "from `k3sops backup list --kind etcd`")
    with tempfile.TemporaryDirectory(prefix="k3sops-etcd-restore-", dir=ctx.work()) as tmp:
        os.chmod(tmp, 0o700)
        path = Path(tmp) / "snapshot.db"
        with path.open("wb") as sink:
            got = ctx.restic.dump_to(manifest.snapshot_ids[0], manifest.filename, sink)
        if manifest.sha256 and got.sha256 != manifest.sha256:
            raise PlanRejected(f"etcd backup {manifest.id}: the data read back has sha256 "
                               f"{got.sha256[:16]}…, the manifest says {manifest.sha256[:16]}…",
                               hint="the backup is damaged; run k3sops backup verify and "
                                    "pick another one")
        yield manifest, entry, path


def snapshot_facts(manifest: BackupManifest, entry: BackupEntry) -> er.SnapshotFacts:
    """What the planner needs to know about the backup."""
    verified = entry.verified is True
    detail = ("verified" if verified else
              "its last verification failed" if entry.verified is False else
              "never verified (run k3sops backup verify " + manifest.id + ")")
    name = slug(manifest.id) + ".db"
    return er.SnapshotFacts(id=manifest.id, name=name, sha256=manifest.sha256 or "",
                            status=manifest.status, verified=verified, verify_detail=detail)


def gather(inventory: Path, data_dir: str, restore_host: str | None, *,
           private_key_file: Path | None = None, user: str | None = None,
           timeout: float = 300) -> list[er.ServerFacts]:
    """Preflight facts of every server (read-only), sorted by host name."""
    result = ansible.run_playbook(
        PLAYBOOK, inventory, raise_on_failure=False, private_key_file=private_key_file,
        user=user, timeout=timeout,
        extravars={"k3sops_phase": "preflight", "k3s_data_dir": data_dir,
                   "k3sops_restore_host": restore_host or "server[0]"})
    facts = []
    for host in sorted(result.hosts):
        if host in result.unreachable_hosts:
            why = next((t.msg for t in result.for_host(host) if t.status == "unreachable"), "")
            facts.append(er.ServerFacts(host=host, reachable=False,
                                        error=why.strip()[:200] or "unreachable over SSH"))
            continue
        task = result.task(host, "preflight")
        try:
            data = json.loads(task.stdout) if task and task.rc == 0 else {}
        except ValueError:
            data = {}
        if not data:
            facts.append(er.ServerFacts(host=host, reachable=True, error=(
                task.msg or task.stderr if task else "preflight did not run")))
            continue
        facts.append(er.ServerFacts(host=host, reachable=True, k3s_present=bool(data["k3s"]),
                                    token_source=data.get("token_source") or None))
    if not facts:
        raise NotFound(f"inventory {inventory} has no host in group `server`",
                       hint="K3s servers go in the `server` group (k3s-ansible layout)")
    return facts


def restore(ctx: BackupContext, backup_id: str, inventory: Path, *, yes: bool,
            restore_host: str | None = None,
            data_dir: str = er.DEFAULT_DATA_DIR, private_key_file: Path | None = None,
            user: str | None = None,
            on_event: Callable[[ansible.AnsibleEvent], None] | None = None,
            timeout: float = 1800) -> EtcdRestoreReport:
    """Plan the restore; with ``yes`` run it. See the module docstring.

    Raises:
        PlanRejected: ``yes`` was given and the preflight failed (nothing changed).
        AnsibleFailed, HostUnreachable: a step failed; the report's steps say which.
    """
    with fetched_snapshot(ctx, backup_id) as (manifest, entry, local):
        servers = gather(inventory, data_dir, restore_host,
                         private_key_file=private_key_file, user=user)
        plan = er.plan_etcd_restore(servers, snapshot_facts(manifest, entry),
                                    restore_host=restore_host, data_dir=data_dir)
        report = EtcdRestoreReport(plan=plan, applied=yes,
                                   steps=[StepOutcome(step=s, result="planned")
                                          for s in plan.steps])
        if not yes:
            return report
        er.require_ok(plan)
        report.audit_log = str(ctx.state / "audit.jsonl")
        extravars = {"k3sops_phase": "restore", "k3s_data_dir": plan.data_dir,
                     "k3sops_restore_host": plan.restore_host,
                     "k3sops_snapshot_src": str(local),
                     "k3sops_snapshot_sha256": manifest.sha256 or "",
                     "k3sops_restore_path": plan.restore_path}
        error: K3sopsError | None = None
        try:
            result = ansible.run_playbook(PLAYBOOK, inventory, extravars=extravars,
                                          private_key_file=private_key_file, user=user,
                                          on_event=on_event, timeout=timeout)
        except (ansible.AnsibleFailed, ansible.HostUnreachable) as e:
            result, error = e.result, e
        report.steps = [_outcome(s, result) for s in plan.steps]
        for o in report.steps:
            ctx.audit({"context": f"ansible:{inventory}",
                       "what": {"action": f"etcd-{o.step.action}", "target": o.step.host,
                                "detail": o.step.command, "backup": manifest.id},
                       "result": o.result, "error": o.error})
        if error is not None:
            raise error
        return report


def _outcome(step: er.RestoreStep, result: ansible.RunResult) -> StepOutcome:
    tasks = [t for t in result.for_host(step.host) if t.task.startswith(step.action)]
    if not tasks:
        return StepOutcome(step=step, result="not-run")
    bad = next((t for t in tasks if t.status in ("failed", "unreachable") and not t.ignored),
               None)
    if bad is not None:
        return StepOutcome(step=step, result="failed",
                           error=(bad.msg or bad.stderr or f"rc={bad.rc}").strip()[:300])
    if all(t.status == "skipped" for t in tasks):
        return StepOutcome(step=step, result="not-run")
    return StepOutcome(step=step, result="ok")
