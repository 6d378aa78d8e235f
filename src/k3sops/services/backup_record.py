"""The k3sops side of a backup in restic: Running manifest, data, final manifest.

Used by the Longhorn volume and K3s etcd snapshot backups; follows the backup core's scheme
(:mod:`k3sops.domain.backups`: part tags, manifest tags, states), so `backup list`, `verify`
and `prune` see these backups like any other.
"""

from __future__ import annotations

import datetime as dt
import io
import secrets
from collections.abc import Callable
from typing import IO, Any

from k3sops import __version__
from k3sops.adapters.restic import Restic
from k3sops.domain import backups
from k3sops.domain.backups import BackupManifest

MANIFEST_FILE = "manifest.json"
"""File name of a manifest inside its restic snapshot."""


class ResticRecorder:
    """Writes a backup's manifests and data into a restic repository (H6a's tag scheme).

    ``Running`` manifest first, data next, the final manifest last: a run killed at any point
    is never listed as Completed.
    """

    def __init__(self, restic: Restic, cluster: str, environment: str | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.restic = restic
        self.cluster = cluster
        self.environment = environment
        self._now = clock or (lambda: dt.datetime.now(dt.UTC))

    def _write(self, m: BackupManifest) -> BackupManifest:
        self.restic.backup_bytes(m.model_dump_json(indent=1).encode(), MANIFEST_FILE,
                                 backups.manifest_tags(m))
        return m

    def begin(self, kind: str, target: str, source: str) -> BackupManifest:
        """Write the ``Running`` manifest."""
        now = self._now()
        m = BackupManifest(
            id=backups.backup_id(kind, target, now, secrets.token_hex(3)),
            kind=kind,
            cluster=self.cluster, environment=self.environment, target=target, source=source,
            started=now, filename=backups.data_filename(kind, target),
            tools={"k3sops": __version__, "restic": self.restic.version()})
        return self._write(m)

    def complete(self, manifest: BackupManifest, data: bytes,
                 facts: dict[str, Any]) -> BackupManifest:
        """Store ``data`` (sha256 and size measured on the way), then the Completed manifest."""
        return self.complete_stream(manifest, io.BytesIO(data), facts)

    def complete_stream(self, manifest: BackupManifest, source: IO[bytes],
                        facts: dict[str, Any]) -> BackupManifest:
        """Stream ``source`` into the repository (flat memory), then the Completed manifest."""
        tags = backups.part_tags("data", manifest.id, manifest.kind, manifest.cluster,
                                 manifest.environment, manifest.target)
        stored = self.restic.backup_stream(source, manifest.filename, tags)
        done = backups.transition(manifest, "Completed", self._now(), size=stored.size,
                                  sha256=stored.sha256, snapshot_ids=[stored.snapshot_id],
                                  facts=facts)
        return self._write(done)

    def fail(self, manifest: BackupManifest, error: str) -> BackupManifest:
        """Write the Failed manifest."""
        return self._write(backups.transition(manifest, "Failed", self._now(), error=error))


