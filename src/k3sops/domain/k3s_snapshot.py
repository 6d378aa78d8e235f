"""K3s etcd snapshot listings, read from `k3s etcd-snapshot ls -o json` and ETCDSnapshotFiles.

``k3s etcd-snapshot ls -o json`` prints the server's snapshot records: older K3s versions a
JSON object keyed by record name whose values carry ``name``, ``location``, ``nodeName``,
``createdAt``, ``size``, ``status`` and ``compressed`` (k3s pkg/etcd/snapshot File); newer ones
a list of ETCDSnapshotFile objects (``spec.snapshotName``, ``spec.location``,
``spec.nodeName``, ``status.creationTime``, ``status.size``, ``status.readyToUse``). Both are
read into :class:`K3sSnapshot`. Pure: the text and objects are passed in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from k3sops.errors import AdapterError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")


class K3sSnapshot(BaseModel):
    """One K3s etcd snapshot record."""

    name: str
    location: str = ""
    node: str = ""
    created: str = ""
    size: int | None = None
    ok: bool = True
    s3: bool = False
    source: str = ""
    """``k3s ls`` or ``ETCDSnapshotFile/NAME``."""


def _size(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def from_object(obj: Mapping[str, Any]) -> K3sSnapshot:
    """An ETCDSnapshotFile (k3s.cattle.io/v1) as a record."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    return K3sSnapshot(
        name=str(spec.get("snapshotName", "")), location=str(spec.get("location", "")),
        node=str(spec.get("nodeName", "")), created=str(status.get("creationTime", "")),
        size=_size(status.get("size")),
        ok=status.get("readyToUse") is True and not status.get("error"),
        s3=bool(spec.get("s3")), source=f"ETCDSnapshotFile/{meta.get('name', '')}")


def parse_ls(text: str) -> list[K3sSnapshot]:
    """Records of ``k3s etcd-snapshot ls -o json`` (either shape), sorted by name.

    Raises:
        AdapterError: the output is not JSON of either shape.
    """
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise AdapterError("`k3s etcd-snapshot ls -o json` printed something that is not JSON",
                           hint="is k3s on the server recent enough (1.26+)?") from e
    records: list[K3sSnapshot] = []
    items: Iterable[Any]
    if isinstance(data, dict) and "items" in data:
        items = data.get("items") or []
    elif isinstance(data, dict):
        items = data.values()
    elif isinstance(data, list):
        items = data
    else:
        raise AdapterError("`k3s etcd-snapshot ls -o json`: unexpected JSON shape")
    for item in items:
        if not isinstance(item, Mapping):
            continue
        if "spec" in item:
            rec = from_object(item)
            records.append(rec.model_copy(update={"source": "k3s ls"}))
            continue
        records.append(K3sSnapshot(
            name=str(item.get("name", "")), location=str(item.get("location", "")),
            node=str(item.get("nodeName", "")), created=str(item.get("createdAt", "")),
            size=_size(item.get("size")), ok=item.get("status", "successful") == "successful",
            s3=item.get("nodeName") == "s3", source="k3s ls"))
    return sorted(records, key=lambda r: r.name)


def snapshot_name(backup_id: str) -> str:
    """The ``--name`` given to ``k3s etcd-snapshot save`` for a k3sops backup.

    K3s appends ``-<node>-<unix time>``; K3s' retention counts per name prefix, so a k3sops
    prefix keeps its snapshots apart from the scheduled ``etcd-snapshot`` ones.
    """
    name = re.sub(r"[^a-z0-9-]+", "-", backup_id.lower()).strip("-")
    name = f"k3sops-{name}"[:80].rstrip("-")
    if not _NAME.match(name):  # pragma: no cover - the substitution makes it match
        raise ValueError(name)
    return name
