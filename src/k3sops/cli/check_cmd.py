"""`k3sops check`: the morning check (and the weekly and monthly reviews)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from k3sops.cli.options import ReportOutputOpt, get_settings, output_format
from k3sops.errors import FindingsAtThreshold, PartialResult, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.findings import CheckReport, Period, Severity

check_app = typer.Typer(help="The operations checklist: daily, weekly and monthly.",
                        invoke_without_command=True)

COLOURS = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def register(app: typer.Typer) -> None:
    """Attach the `check` group (with `history` and `ack`) to the root app."""
    from k3sops.cli import check_history_cmd

    check_history_cmd.register(check_app)
    app.add_typer(check_app, name="check")


def _table(r: CheckReport, out: Console) -> None:
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


def _period(daily: bool, weekly: bool, monthly: bool) -> Period:
    options: tuple[tuple[Period, bool], ...] = (("daily", daily), ("weekly", weekly),
                                                ("monthly", monthly))
    chosen = [p for p, on in options if on]
    if len(chosen) > 1:
        raise UsageError("choose one of --daily, --weekly, --monthly")
    return chosen[0] if chosen else "daily"


@check_app.callback()
def check_cmd(
    ctx: typer.Context,
    daily: Annotated[bool, typer.Option("--daily", help="The morning check (default).")] = False,
    weekly: Annotated[bool, typer.Option("--weekly", help="Weekly review (includes daily).")
                      ] = False,
    monthly: Annotated[bool, typer.Option("--monthly", help="Monthly review (includes weekly).")
                       ] = False,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")
                   ] = None,
    fail_on: Annotated[str | None, typer.Option(
        "--fail-on", help="Exit 3 when findings reach this severity: warning or critical.")
                       ] = None,
    history: Annotated[bool, typer.Option(
        "--history/--no-history", help="Store the run and mark new/resolved findings.")] = True,
    output: ReportOutputOpt = None,
    state_dir: Annotated[Path | None, typer.Option(
        help="Where the history database lives (default: ~/.local/state/k3sops).",
        envvar="K3SOPS_STATE_DIR")] = None,
    show_suppressed: Annotated[bool, typer.Option(
        "--show-suppressed", help="List the findings hidden by platform.yaml's suppressions "
        "(always counted).")] = False,
) -> None:
    """Run the checklist: nodes, control plane, workloads, network, storage, alerts, backups."""
    if ctx.invoked_subcommand is not None:
        return
    if fail_on not in (None, "warning", "critical"):
        raise UsageError(f"--fail-on {fail_on!r} is not a severity",
                         hint="use --fail-on warning or --fail-on critical")
    from k3sops.domain.findings import at_or_above
    from k3sops.output.render import render
    from k3sops.services import check as check_service

    threshold: Severity | None = fail_on  # type: ignore[assignment]
    settings = get_settings(ctx)
    store = check_service.open_history(state_dir, os.environ, Path.home()) if history else None
    try:
        report = check_service.check(settings, os.environ, Path.home(),
                                     _period(daily, weekly, monthly), env, threshold,
                                     history=store, show_suppressed=show_suppressed)
    finally:
        if store is not None:
            store.close()
    fmt = output_format(ctx, output)
    if fmt in ("markdown", "html", "junit"):
        from k3sops.output import reports

        trend = check_service.trend(state_dir, os.environ, Path.home()) if history else []
        from rich.console import Console

        Console().file.write(reports.render(report, fmt, trend))
    else:
        render(report, fmt, _table)
    missing = [s for s in report.sources if not s.ok]
    if threshold is not None and at_or_above(report.findings, threshold):
        n = len(at_or_above(report.findings, threshold))
        raise FindingsAtThreshold(f"{n} finding(s) at or above {threshold}")
    if missing:
        raise PartialResult("partial result: could not read " + ", ".join(
            f"{s.name} ({s.endpoint}): {s.error}" for s in missing))


