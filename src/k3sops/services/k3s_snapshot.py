"""`backup etcd --k3s`: a K3s etcd snapshot taken on a server over SSH, kept in restic.

1. A k3sops backup is opened (``Running`` manifest), which names the snapshot
   (``k3sops-<backup id>``; K3s appends ``-<node>-<unix time>``).
2. Ansible (``etcd-snapshot.yml``) runs ``k3s etcd-snapshot save --name NAME`` on the server,
   records ``k3s etcd-snapshot ls -o json`` and fetches the new file into a private directory
   (Ansible checks the copy's checksum against the server's file).
3. Optionally the file is inspected (the caller's ``inspect``: the etcd hash trailer, revision
   and key count, which verification later compares against a restore drill), then streamed
   into the repository; the manifest is closed Completed with the K3s record as facts.
4. The cluster's ETCDSnapshotFile objects (k3s.cattle.io/v1) of that node are listed for the
   report; an unreachable API server is reported, not fatal (the snapshot is already safe).

Any failure closes the backup Failed; a killed run is marked Failed by the next one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from k3sops.adapters import ansible
from k3sops.adapters.kubeobjects import KubeObjects
from k3sops.domain import k3s_snapshots as ks
from k3sops.domain.backups import BackupManifest
from k3sops.domain.etcd_restore import DEFAULT_DATA_DIR
from k3sops.errors import AdapterError, K3sopsError
from k3sops.services.backup_record import ResticRecorder

PLAYBOOK = "etcd-snapshot"
Inspect = Callable[[Path], dict[str, Any]]


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


def backup(recorder: ResticRecorder, inventory: Path, *, node: str | None = None,
           data_dir: str = DEFAULT_DATA_DIR, objects: KubeObjects | None = None,
           inspect: Inspect | None = None, private_key_file: Path | None = None,
           user: str | None = None,
           on_event: Callable[[ansible.AnsibleEvent], None] | None = None,
           timeout: float = 1800) -> K3sSnapshotResult:
    """Take, fetch and store a K3s etcd snapshot; see the module docstring.

    Raises:
        HostUnreachable: the server could not be reached (the backup is closed Failed).
        AnsibleFailed: ``k3s etcd-snapshot save`` or the fetch failed (closed Failed).
        PlanRejected: ``inspect`` found the file is not a sound etcd snapshot.
    """
    pattern = node or "server[0]"
    manifest = recorder.begin("etcd", "etcd", f"k3s:{pattern}")
    name = ks.snapshot_name(manifest.id)
    try:
        with tempfile.TemporaryDirectory(prefix="k3sops-k3s-snapshot-") as tmp:
            os.chmod(tmp, 0o700)
            result = ansible.run_playbook(
                PLAYBOOK, inventory, private_key_file=private_key_file, user=user,
                on_event=on_event, timeout=timeout,
                extravars={"k3sops_node": pattern, "k3sops_snapshot_name": name,
                           "k3s_data_dir": data_dir, "k3sops_dest": tmp})
            host = next(iter(sorted(result.hosts)), pattern)
            local = Path(tmp) / "snapshot.db"
            record = json.loads((Path(tmp) / "file.json").read_text())
            listing = ks.parse_ls((Path(tmp) / "ls.json").read_text())
            server_path = str(record.get("path", ""))
            base = server_path.rsplit("/", 1)[-1]
            mine = next((r for r in listing if r.name == base), None)
            facts: dict[str, Any] = {"k3s_snapshot": base, "node": host,
                                     "server_path": server_path,
                                     "k3s_size": record.get("size"),
                                     "k3s_listed": mine is not None}
            if inspect is not None:
                facts.update(inspect(local))
            with local.open("rb") as f:
                done = recorder.complete_stream(manifest, f, facts)
    except K3sopsError as e:
        recorder.fail(manifest, e.message)
        raise
    except (OSError, ValueError) as e:
        recorder.fail(manifest, f"reading what Ansible fetched failed: {e}")
        raise AdapterError(f"K3s snapshot {name}: the fetched files could not be read: {e}",
                           hint="re-run with -v; the backup is marked Failed") from e
    except BaseException:
        with contextlib.suppress(K3sopsError):
            recorder.fail(manifest, "interrupted")
        raise
    out = K3sSnapshotResult(manifest=done, node=host, snapshot=mine, server_path=server_path,
                            listing=[r for r in listing if r.node in ("", host) or r.s3])
    if objects is not None:
        try:
            objs = objects.list("k3s.cattle.io/v1", "etcdsnapshotfiles")
            out.objects = sorted((ks.from_object(o) for o in objs
                                  if (o.get("spec") or {}).get("nodeName") == host),
                                 key=lambda r: r.name)
        except K3sopsError as e:
            out.objects_error = e.message
    return out

