"""`k3sops runbook export`: the runbooks as a directory of Markdown pages."""

from __future__ import annotations

from pathlib import Path

from k3sops.adapters.files import write_atomic
from k3sops.domain import runbooks
from k3sops.errors import K3sopsError


def export(directory: Path) -> int:
    """Write one Markdown page per runbook plus index.md (each atomically); return the count."""
    pages = {f"{rb.id}.md": runbooks.to_markdown(rb) for rb in runbooks.CATALOGUE}
    pages["index.md"] = runbooks.index_markdown()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in pages.items():
            write_atomic(directory / name, text)
    except OSError as e:
        raise K3sopsError(f"could not write runbooks to {directory}: {e.strerror or e}",
                          hint="check that the directory is writable") from e
    return len(pages)
