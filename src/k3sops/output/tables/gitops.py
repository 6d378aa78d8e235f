"""Tables of `k3sops gitops`: the scaffolded repository and a values change (record-build, set)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.services.gitops import InitReport, ValuesChange


@table_for("k3sops.services.gitops.InitReport")
def init_table(r: InitReport, out: Console) -> None:
    """`gitops init`: the files written, and the commit when pushed."""
    out.print(f"wrote {len(r.files)} files to {r.path}:")
    for f in r.files:
        out.print(f"  {f}", highlight=False)
    if r.pushed_to:
        out.print(f"commit {(r.commit or '')[:12]} pushed to {r.pushed_to}")


@table_for("k3sops.services.gitops.ValuesChange")
def values_change_table(r: ValuesChange, out: Console) -> None:
    """`gitops record-build | set`: the values file's diff and the commit (or no change)."""
    if r.commit is None:
        out.print(f"{r.file}: nothing changed")
        return
    out.print(f"{r.file}:")
    for line in r.diff:
        out.print(line, highlight=False, markup=False)
    out.print(f"commit {r.commit[:12]} pushed to {r.pushed_to}"
              + (" (review branch)" if r.review else ""))
