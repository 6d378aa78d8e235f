"""Builds CI published (builds.yaml, written by ``k3sops gitops record-build``)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from k3sops.domain.gitops.values import load


class Build(BaseModel):
    """A build CI published: an app's image at a version."""

    app: str
    version: str
    repository: str | None = None
    at: str | None = None
    source: str | None = None
    """Source commit or CI run the build came from."""


def parse_builds(text: str) -> dict[str, list[Build]]:
    """builds.yaml: ``builds: {app: [{version, repository, at, source}, ...]}``, oldest first."""
    data = load(text) or {}
    builds = data.get("builds") if isinstance(data, Mapping) else None
    out: dict[str, list[Build]] = {}
    for app, items in (builds or {}).items() if isinstance(builds, Mapping) else []:
        out[str(app)] = [Build(app=str(app), version=str(b["version"]),
                               repository=b.get("repository"),
                               at=None if b.get("at") is None else str(b.get("at")),
                               source=b.get("source"))
                         for b in items or [] if isinstance(b, Mapping) and b.get("version")]
    return out
