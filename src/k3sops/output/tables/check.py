"""Tables of `k3sops check`, `check history` and `check ack`."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.findings import CheckReport
    from k3sops.services.history import Acknowledgement, CheckHistory


@table_for("k3sops.domain.findings.CheckReport")
def check_table(r: CheckReport, out: Console) -> None:
    """Health score, findings, suppressed, not evaluated and manual steps of a check."""
    from rich.table import Table
    from rich.text import Text

    from k3sops.output.tables import Row, findings_table, resource_ref

    s = r.summary
    colour = "green" if s.critical == s.warning == 0 else ("red" if s.critical else "yellow")
    out.print(Text.assemble(
        (f"health {s.health_score}/100", f"bold {colour}"),
        f"  {s.period} check{' of ' + s.environment if s.environment else ''}: "
        f"{s.critical} critical, {s.warning} warning, {s.info} info"
        f"  ({s.new} new, {s.resolved} resolved; {s.checks_run} checks in "
        f"{s.duration_seconds:.1f}s"
        + (f"; {s.suppressed} suppressed" if s.suppressed else "")
        + (f"; {s.not_evaluated} not evaluated" if s.not_evaluated else "") + ")"))
    if r.findings:
        out.print(findings_table([
            Row(f.severity, resource_ref(f.resource.kind, f.resource.namespace, f.resource.name),
                f.message, check=f.check, last=f.runbook, new=f.new)
            for f in r.findings], title="Findings", width=out.width))
    if r.suppressed:
        rows = []
        for f in r.suppressed:
            why = f.evidence.get("suppression", {})
            rows.append(Row(
                f.severity, resource_ref(f.resource.kind, f.resource.namespace, f.resource.name),
                f.message, check=f.check,
                last=f"#{why.get('index')}: {why.get('reason')}"
                     + (f" (until {why.get('expires')})" if why.get("expires") else "")))
        out.print(findings_table(rows, title="Suppressed (platform.yaml)", width=out.width,
                                 last="suppressed because"))
    if r.not_evaluated:
        t = Table("check", "not evaluated because", title="Not evaluated (no finding made or "
                  "resolved)")
        for ne in r.not_evaluated:
            t.add_row(ne.check, "; ".join(ne.missing))
        out.print(t)
    if r.resolved:
        out.print("[green]resolved since the last check:[/] " + ", ".join(
            f"{f.check} {f.resource.kind}/{f.resource.name}" for f in r.resolved))
    if r.manual:
        t = Table("item", "what to do", "acknowledged", title="Manual steps")
        for m in r.manual:
            ack = (f"{m.acknowledged_by} at {m.acknowledged_at}" + (f": {m.note}" if m.note
                                                                       else "")
                   if m.acknowledged_by else "[yellow]open[/]")
            t.add_row(f"{m.id}\n({m.period})", f"{m.title}\n{m.instructions}", ack)
        out.print(t)
    for src in r.sources:
        if not src.ok:
            out.print(f"[red]unavailable:[/] {src.name} ({src.endpoint}): {src.error}")


def _short_time(iso: str) -> str:
    """``YYYY-MM-DD HH:MM`` in UTC (the stored text as-is if it does not parse)."""
    from k3sops.timeparse import parse_time

    when = parse_time(iso)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if when is not None else iso


@table_for("k3sops.services.history.CheckHistory")
def history_table(h: CheckHistory, out: Console) -> None:
    """Past check runs of `k3sops check history`, newest first."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    if not h.runs:
        out.print(f"no check runs stored yet in {h.database}")
        return
    # No vertical rules: nine columns then fit an 80-column terminal.
    t = Table(title=f"Check runs ({h.database})", box=box.SIMPLE_HEAD, show_edge=False,
              collapse_padding=True)
    t.add_column("time (UTC)", no_wrap=True)
    for name in ("period", "env", "crit", "warn", "info", "score", "new", "resolved"):
        t.add_column(name, no_wrap=True,
                     justify="left" if name in ("period", "env") else "right")
    for r in h.runs:
        colour = "green" if r.critical == r.warning == 0 else ("red" if r.critical
                                                                else "yellow")
        t.add_row(_short_time(r.started_at), r.period, r.environment or "all",
                  Text(str(r.critical), style="bold red" if r.critical else "dim"),
                  Text(str(r.warning), style="yellow" if r.warning else "dim"),
                  Text(str(r.info), style="cyan" if r.info else "dim"),
                  Text(str(r.health_score), style=f"bold {colour}"),
                  str(r.new), str(r.resolved))
    out.print(t)


@table_for("k3sops.services.history.Acknowledgement")
def ack_table(a: Acknowledgement, out: Console) -> None:
    """The acknowledgement `k3sops check ack` stored."""
    out.print(f"[green]acknowledged[/] {a.item} ({a.period}: {a.title}) by {a.by} at {a.at}"
              + (f": {a.note}" if a.note else ""))
