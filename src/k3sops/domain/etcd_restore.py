"""The K3s etcd cluster-reset restore, planned: preflight verdicts and the ordered steps.

K3s' documented procedure for restoring an embedded-etcd cluster from a snapshot:

1. stop K3s on every server;
2. on one server, ``k3s server --cluster-reset --cluster-reset-restore-path=PATH``: it moves the
   old database aside, restores the snapshot, writes a reset flag and exits;
3. on every other server, remove ``<data-dir>/server/db`` (they rejoin and sync from the first);
4. start K3s on the restored server first, then on the others.

Before anything is touched the preflight must pass on every server: the server is reachable,
its cluster token is present (a restored datastore is encrypted with it; without it the server
cannot read its own bootstrap data), and the snapshot was verified by k3sops (its manifest says
so). A restore is a one-way door: a failed preflight refuses the whole plan, and the refusal
names every failed check at once, so that one fix-and-rerun is enough.

Pure: the caller gathers the facts (over SSH, from the manifest store) and passes them in.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from k3sops.errors import PlanRejected, UsageError

DEFAULT_DATA_DIR = "/var/lib/rancher/k3s"
"""K3s' default ``--data-dir`` for a server run as root."""
RESTORE_SUBDIR = "server/db/restore"
"""Where the snapshot is copied to on the restore server (under the data dir, beside the db,
so that it lives on the same disk K3s restores onto)."""

RestoreAction = Literal["copy-snapshot", "stop", "cluster-reset", "remove-db", "start"]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ServerFacts(BaseModel):
    """What the preflight found on one K3s server (gathered over SSH)."""

    host: str = Field(description="inventory host name")
    reachable: bool
    token_source: str | None = Field(
        default=None, description="where a cluster token was found (a path; never the token)")
    k3s_present: bool = Field(default=False, description="the k3s binary is on the host")
    error: str | None = Field(default=None, description="why the host could not be checked")


class SnapshotFacts(BaseModel):
    """The snapshot to restore, as its k3sops manifest describes it."""

    id: str = Field(description="backup id (the manifest's)")
    name: str = Field(description="file name the snapshot is restored from")
    sha256: str = ""
    status: str = Field(description="manifest status, e.g. Completed")
    verified: bool = Field(description="a verification record says the snapshot passed")
    verify_detail: str = ""


class RestoreStep(BaseModel):
    """One step of the restore: an action on one host, with the command it runs."""

    order: int
    host: str
    action: RestoreAction
    command: str = Field(description="what runs on the host (shown in the plan)")
    detail: str = ""


class PreflightCheck(BaseModel):
    """One preflight verdict."""

    check: Literal["reachable", "token", "snapshot-verified", "k3s-binary"]
    host: str | None = None
    ok: bool
    detail: str


class EtcdRestorePlan(BaseModel):
    """The whole procedure: what was checked, and the steps in the order they run."""

    snapshot: SnapshotFacts
    restore_host: str
    other_hosts: list[str]
    data_dir: str
    restore_path: str = Field(description="where the snapshot is put on the restore host")
    preflight: list[PreflightCheck]
    steps: list[RestoreStep] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every preflight check passed."""
        return all(c.ok for c in self.preflight)


def _preflight(servers: Sequence[ServerFacts], snapshot: SnapshotFacts,
               ) -> list[PreflightCheck]:
    checks: list[PreflightCheck] = []
    for s in servers:
        checks.append(PreflightCheck(
            check="reachable", host=s.host, ok=s.reachable,
            detail="answered over SSH" if s.reachable else (s.error or "no answer over SSH")))
        if not s.reachable:
            continue  # nothing else can be told about a host that did not answer
        checks.append(PreflightCheck(
            check="token", host=s.host, ok=s.token_source is not None,
            detail=(f"cluster token in {s.token_source}" if s.token_source else
                    "no cluster token (server/token, config.yaml token/token-file, "
                    "K3S_TOKEN in the service env file)")))
        checks.append(PreflightCheck(
            check="k3s-binary", host=s.host, ok=s.k3s_present,
            detail="k3s found" if s.k3s_present else "k3s not found on PATH"))
    good = snapshot.verified and snapshot.status == "Completed"
    why = snapshot.verify_detail or ("verified" if good else "no passing verification record")
    if snapshot.status != "Completed":
        why = f"manifest status is {snapshot.status}, not Completed"
    checks.append(PreflightCheck(check="snapshot-verified", ok=good,
                                 detail=f"snapshot {snapshot.id}: {why}"))
    return checks


def plan_etcd_restore(servers: Sequence[ServerFacts], snapshot: SnapshotFacts, *,
                      restore_host: str | None = None,
                      data_dir: str = DEFAULT_DATA_DIR) -> EtcdRestorePlan:
    """Plan a K3s cluster-reset restore of ``snapshot`` across ``servers``.

    The restore host is ``restore_host`` when given, else the first server (inventory order).
    The plan always carries the preflight verdicts; its steps are filled only when every check
    passed (see :func:`require_ok`).

    Raises:
        UsageError: no servers, duplicate hosts, an unknown ``restore_host``, a relative data
            dir, or a snapshot name that is not a plain file name.
    """
    hosts = [s.host for s in servers]
    if not hosts:
        raise UsageError("no K3s servers to restore",
                         hint="list the servers in the Ansible inventory's `server` group")
    if len(set(hosts)) != len(hosts):
        raise UsageError(f"a server is listed twice: {', '.join(hosts)}",
                         hint="fix the inventory's `server` group")
    target = restore_host or hosts[0]
    if target not in hosts:
        raise UsageError(f"--restore-on {target} is not one of the servers: {', '.join(hosts)}",
                         hint="pick a host of the inventory's `server` group")
    if not posixpath.isabs(data_dir) or ".." in data_dir.split("/"):
        raise UsageError(f"K3s data dir {data_dir!r} is not an absolute path",
                         hint=f"the default is {DEFAULT_DATA_DIR}")
    if not _SAFE_NAME.match(snapshot.name):
        raise UsageError(f"snapshot name {snapshot.name!r} is not a plain file name",
                         hint="letters, digits, '.', '_' and '-' only")
    data_dir = data_dir.rstrip("/") or "/"
    restore_path = posixpath.join(data_dir, RESTORE_SUBDIR, snapshot.name)
    others = [h for h in hosts if h != target]
    plan = EtcdRestorePlan(snapshot=snapshot, restore_host=target, other_hosts=others,
                           data_dir=data_dir, restore_path=restore_path,
                           preflight=_preflight(servers, snapshot))
    if plan.ok:
        plan.steps = _steps(target, others, data_dir, restore_path, snapshot)
    return plan


def _steps(target: str, others: list[str], data_dir: str, restore_path: str,
           snapshot: SnapshotFacts) -> list[RestoreStep]:
    db = posixpath.join(data_dir, "server", "db")
    q = shlex.quote
    raw: list[tuple[str, RestoreAction, str, str]] = [
        (target, "copy-snapshot", f"copy {snapshot.name} -> {restore_path}",
         f"sha256 {snapshot.sha256[:16]}… checked on the host after the copy"
         if snapshot.sha256 else "checksum unknown"),
    ]
    # Stop every server before the reset: a running peer would keep the old cluster alive
    # and the restored member would be outvoted by it.
    raw += [(h, "stop", "systemctl stop k3s", "stop K3s") for h in [target, *others]]
    raw.append((target, "cluster-reset",
                f"k3s server --cluster-reset --cluster-reset-restore-path={q(restore_path)}"
                + (f" --data-dir={q(data_dir)}" if data_dir != DEFAULT_DATA_DIR else ""),
                "restore the snapshot; the old db is moved aside by K3s"))
    raw += [(h, "remove-db", f"rm -rf {q(db)}",
             "drop the stale member data; it rejoins and syncs from the restored server")
            for h in others]
    raw.append((target, "start", "systemctl start k3s",
                "start the restored server first (without --cluster-reset)"))
    raw += [(h, "start", "systemctl start k3s", "rejoin the restored cluster") for h in others]
    return [RestoreStep(order=i, host=h, action=a, command=c, detail=d)
            for i, (h, a, c, d) in enumerate(raw, 1)]


def require_ok(plan: EtcdRestorePlan) -> None:
    """Refuse a plan whose preflight failed, naming every failed check.

    Raises:
        PlanRejected: at least one preflight check failed; nothing has been changed.
    """
    failed = [c for c in plan.preflight if not c.ok]
    if not failed:
        return
    lines = "; ".join(f"{c.check}{'@' + c.host if c.host else ''}: {c.detail}" for c in failed)
    raise PlanRejected(f"etcd restore of {plan.snapshot.id} refused, preflight failed: {lines}",
                       hint="nothing was changed; fix these and run the same command again")
