"""Tables of `k3sops diagnose`: the causal chain, root causes and findings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.diagnose import DiagnosisReport


@table_for("k3sops.domain.diagnose.model.DiagnosisReport")
def diagnosis_table(r: DiagnosisReport, out: Console) -> None:
    """The causal chain, root causes and findings of `k3sops diagnose`."""
    from rich.table import Table
    from rich.text import Text

    from k3sops.output.tables import Row, findings_table, resource_ref

    out.print(Text(f"diagnosis of {r.target}", style="bold"))
    if r.chain:
        t = Table("", "step", "detail", title="Causal chain")
        for s in r.chain:
            t.add_row(Text("ok" if s.ok else "FAIL", style="green" if s.ok else "bold red"),
                      "  " * s.depth + s.step, s.detail)
        out.print(t)
    if r.root_causes:
        out.print(findings_table([
            Row(rc.severity or ("?" if not rc.determined else ""),
                resource_ref(rc.resource.kind, rc.resource.namespace, rc.resource.name),
                rc.message, last=rc.runbook or "")
            for rc in r.root_causes], title="Root causes", width=out.width,
            message="root cause"))
    for ne in r.not_evaluated:
        out.print(f"[magenta]not evaluated:[/] {ne.check} ({'; '.join(ne.missing)})")
    if r.findings:
        out.print(findings_table([
            Row(f.severity, resource_ref(f.resource.kind, f.resource.namespace, f.resource.name),
                f.message, check=f.check, last=f.runbook)
            for f in r.findings], title="Findings", width=out.width))
    else:
        out.print("[green]no problem found[/]")
    for src in r.sources:
        if not src.ok:
            out.print(f"[red]unavailable:[/] {src.name} ({src.endpoint}): {src.error}")
