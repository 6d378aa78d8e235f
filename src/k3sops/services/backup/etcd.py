"""`backup etcd`: an etcd snapshot, checked, into the repository; `--k3s`: taken by K3s over SSH.

Through etcd's snapshot API (or an existing snapshot file): the snapshot's own SHA-256 trailer
and ``etcdutl snapshot status`` are checked before anything is stored; revision, total keys
and the live key count at that revision are recorded for the restore drill.

The K3s way (:func:`backup_k3s`):

1. The snapshot is named ``k3sops-<platform>-<time>-<random>`` (K3s appends
   ``-<node>-<unix time>``; its retention counts per name prefix, so k3sops' snapshots do not
   push out the scheduled ``etcd-snapshot`` ones or the other way round).
2. Ansible (``etcd-snapshot.yml``) runs ``k3s etcd-snapshot save --name NAME`` on the server,
   records ``k3s etcd-snapshot ls -o json`` and fetches the new file into a private directory
   (Ansible checks the copy's checksum against the server's file).
3. The file goes through :func:`backup_etcd` like any snapshot file.
4. The cluster's ETCDSnapshotFile objects (k3s.cattle.io/v1) of that node are listed for the
   report; an unreachable API server is reported, not fatal (the snapshot is already safe).

A failure before the fetch stores nothing; one after it closes the backup Failed.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from k3sops.adapters import ansible
from k3sops.adapters.etcd import hash_trailer_ok
from k3sops.adapters.kube import KubeClient, discover_kubeconfig
from k3sops.adapters.restic import StreamResult
from k3sops.domain import k3s_snapshot as ks
from k3sops.domain.backups import BackupManifest
from k3sops.domain.etcd_restore import DEFAULT_DATA_DIR
from k3sops.errors import AdapterError, ConfigError, K3sopsError, NotFound
from k3sops.services.backup.context import BackupContext
from k3sops.services.backup.run import BackupResult, BackupRun

PLAYBOOK = "etcd-snapshot"


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
    run = BackupRun(ctx, "etcd", target, None, source, cluster_lock=_has_cluster(ctx))

    def produce(r: BackupRun) -> tuple[StreamResult, dict[str, Any]]:
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



class K3sSnapshotResult(BaseModel):
    """What `backup etcd --k3s` did."""

    manifest: BackupManifest
    node: str
    snapshot: ks.K3sSnapshot | None = Field(description="the new snapshot as K3s lists it")
    server_path: str
    listing: list[ks.K3sSnapshot] = Field(default_factory=list,
                                          description="`k3s etcd-snapshot ls` on the node")
    objects: list[ks.K3sSnapshot] = Field(default_factory=list,
                                          description="ETCDSnapshotFile objects of the node")
    objects_error: str | None = None
    cleaned: list[str] = Field(default_factory=list)


def backup_k3s(ctx: BackupContext, inventory: Path, *, node: str | None = None,
               data_dir: str = DEFAULT_DATA_DIR, objects: KubeClient | None = None,
               private_key_file: Path | None = None, user: str | None = None,
               on_event: Callable[[ansible.AnsibleEvent], None] | None = None,
               timeout: float = 1800) -> K3sSnapshotResult:
    """Take and fetch a K3s etcd snapshot, then store it through the backup core's etcd path.

    That path checks the hash trailer and ``etcdutl snapshot status`` first, records the
    facts the drill compares, and takes the Lease, writes the manifests and the metrics.

    Raises:
        HostUnreachable: the server could not be reached (nothing was stored).
        AnsibleFailed: ``k3s etcd-snapshot save`` or the fetch failed (nothing was stored).
        AdapterError: the fetched file is not a sound etcd snapshot (the backup is Failed).
    """
    pattern = node or "server[0]"
    stamp = ctx.now().strftime("%Y%m%dt%H%M%Sz")
    name = ks.snapshot_name(f"{ctx.platform.name}-{stamp}-{secrets.token_hex(3)}")
    with tempfile.TemporaryDirectory(prefix="k3sops-k3s-snapshot-", dir=ctx.work()) as tmp:
        os.chmod(tmp, 0o700)
        result = ansible.run_playbook(
            PLAYBOOK, inventory, private_key_file=private_key_file, user=user,
            on_event=on_event, timeout=timeout,
            extravars={"k3sops_node": pattern, "k3sops_snapshot_name": name,
                       "k3s_data_dir": data_dir, "k3sops_dest": tmp})
        host = next(iter(sorted(result.hosts)), pattern)
        try:
            record = json.loads((Path(tmp) / "file.json").read_text())
            listing = ks.parse_ls((Path(tmp) / "ls.json").read_text())
        except (OSError, ValueError) as e:
            raise AdapterError(f"K3s snapshot {name}: what Ansible fetched is unreadable: {e}",
                               hint="re-run with -v") from e
        server_path = str(record.get("path", ""))
        done = backup_etcd(ctx, snapshot_file=Path(tmp) / "snapshot.db")
    base = server_path.rsplit("/", 1)[-1]
    out = K3sSnapshotResult(manifest=done.manifest, node=host, server_path=server_path,
                            snapshot=next((r for r in listing if r.name == base), None),
                            listing=[r for r in listing if r.node in ("", host) or r.s3],
                            cleaned=done.cleaned)
    try:
        if objects is None:
            objects = ctx.kube()
        objs = objects.list("k3s.cattle.io/v1", "etcdsnapshotfiles")
        out.objects = sorted((ks.from_object(o) for o in objs
                              if (o.get("spec") or {}).get("nodeName") == host),
                             key=lambda r: r.name)
    except K3sopsError as e:
        # The snapshot is stored; the listing is a courtesy (a server's own view may lag).
        out.objects_error = e.message
    return out
