"""`backup etcd --k3s`: a K3s etcd snapshot taken on a server over SSH, kept in restic.

1. The snapshot is named ``k3sops-<platform>-<time>-<random>`` (K3s appends
   ``-<node>-<unix time>``; its retention counts per name prefix, so k3sops' snapshots do not
   push out the scheduled ``etcd-snapshot`` ones or the other way round).
2. Ansible (``etcd-snapshot.yml``) runs ``k3s etcd-snapshot save --name NAME`` on the server,
   records ``k3s etcd-snapshot ls -o json`` and fetches the new file into a private directory
   (Ansible checks the copy's checksum against the server's file).
3. The file goes through the backup core's etcd path (:func:`k3sops.services.backup.
   backup_etcd` with the fetched file): the etcd hash trailer and ``etcdutl snapshot status``
   are checked, revision and key count recorded for the restore drill, streamed into restic.
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

from pydantic import BaseModel, Field

from k3sops.adapters import ansible
from k3sops.adapters.kube import KubeClient
from k3sops.domain import k3s_snapshots as ks
from k3sops.domain.backups import BackupManifest
from k3sops.domain.etcd_restore import DEFAULT_DATA_DIR
from k3sops.errors import AdapterError, K3sopsError
from k3sops.services import backup

PLAYBOOK = "etcd-snapshot"


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


def backup_k3s(ctx: backup.BackupContext, inventory: Path, *, node: str | None = None,
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
        done = backup.backup_etcd(ctx, snapshot_file=Path(tmp) / "snapshot.db")
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
