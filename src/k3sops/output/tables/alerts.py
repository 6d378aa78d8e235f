"""Views of `k3sops alerts`: firing alerts, silences, rule tests and applied rules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from k3sops.output.render import table_for
from k3sops.output.tables.findings import COLOURS

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.alerting import AlertReport, Silence, SilenceList, SilenceResult
    from k3sops.domain.rules.reports import AlertsApplyReport, RuleTestReport
    from k3sops.domain.service_alerts import ServiceAlertList


def _age(t: datetime | None, now: datetime) -> str:
    from k3sops.domain.alerting import format_duration

    return format_duration(now - t) if t else "-"


def _matchers(s: Silence) -> str:
    return ", ".join(str(m) for m in s.matchers)


@table_for("k3sops.domain.alerting.AlertReport")
def alerts_table(r: AlertReport, out: Console) -> None:
    """Firing alerts grouped by severity and environment."""
    from rich.table import Table

    now = datetime.now(UTC)
    if not r.groups:
        out.print(f"no firing alerts in Alertmanager at {r.alertmanager}")
        return
    out.print(f"[bold]{r.total}[/] alert(s) from Alertmanager at {r.alertmanager}")
    for g in r.groups:
        sev = g.severity or "-"
        colour = COLOURS.get(sev, "white")
        t = Table("alert", "state", "for", "summary", "labels",
                  title=f"[{colour}]{sev}[/] · {g.environment or '-'} ({g.count})",
                  title_justify="left")
        for a in g.alerts:
            extra = {k: v for k, v in a.labels.items()
                     if k not in ("alertname", "severity", "environment")}
            state = a.state if a.state != "suppressed" else (
                "silenced" if a.silenced_by else "inhibited")
            t.add_row(a.alertname, state, _age(a.starts_at, now), a.summary or "",
                      ", ".join(f"{k}={v}" for k, v in sorted(extra.items())))
        out.print(t)


@table_for("k3sops.domain.service_alerts.ServiceAlertList")
def service_alerts_table(r: ServiceAlertList, out: Console) -> None:
    """The enriched alerts a `k3sops serve` stored, newest first."""
    from rich.markup import escape
    from rich.table import Table

    now = datetime.now(UTC)
    which = f"{r.state} " if r.state else ""
    if not r.alerts:
        out.print(f"no {which}alerts stored by the k3sops service at {r.server}")
        return
    t = Table(title=f"{r.total} {which}alert(s) stored by the k3sops service at {r.server}",
              title_justify="left")
    # names are copied into other commands (runbook show, diagnose): never cut; the
    # root cause wraps instead
    t.add_column("alert", no_wrap=True)
    t.add_column("state", no_wrap=True)
    t.add_column("severity/env", no_wrap=True)
    t.add_column("object", no_wrap=True)
    t.add_column("runbook", no_wrap=True)
    t.add_column("root cause", min_width=30)
    for a in r.alerts:
        state = f"firing {_age(a.starts_at, now)}" if a.status == "firing" else (
            f"ended {_age(a.ends_at, now)} ago" if a.ends_at else a.status)
        cause = "\n".join(escape(c) for c in a.root_causes) or escape(
            a.enrich_error or "-")
        t.add_row(escape(a.alertname), state,
                  f"{a.severity or '-'}/{a.environment or '-'}", escape(a.object or "-"),
                  a.runbook or "-", cause)
    out.print(t)


@table_for("k3sops.domain.alerting.SilenceList")
def silences_table(r: SilenceList, out: Console) -> None:
    """The silences in Alertmanager, their state and end."""
    from rich.table import Table

    from k3sops.domain.alerting import format_duration

    now = datetime.now(UTC)
    if not r.silences:
        out.print(f"no silences in Alertmanager at {r.alertmanager}")
        return
    t = Table(title=f"Silences ({len(r.silences)}) in Alertmanager at {r.alertmanager}",
              title_justify="left")
    t.add_column("id", no_wrap=True)  # ids are copied into `unsilence`: never cut them
    for name in ("state", "matchers", "ends", "by", "comment"):
        t.add_column(name)
    for s in r.silences:
        if s.ends_at is None:
            ends = "-"
        elif s.ends_at > now:
            ends = f"in {format_duration(s.ends_at - now)}"
        else:
            ends = f"{format_duration(now - s.ends_at)} ago"
        t.add_row(s.id, s.state, _matchers(s), ends, s.created_by, s.comment)
    out.print(t)


@table_for("k3sops.domain.alerting.SilenceResult")
def silence_result_table(r: SilenceResult, out: Console) -> None:
    """The silence id on stdout; what happened on stderr."""
    # Only the id on stdout, so that `ID=$(k3sops alerts silence ...)` works; details go to
    # stderr for the person at the terminal.
    from rich.console import Console

    out.file.write(r.id + "\n")
    err = Console(stderr=True, highlight=False)
    if r.action == "created" and r.silence is not None:
        s = r.silence
        until = s.ends_at.isoformat() if s.ends_at else "?"
        err.print(f"silence created: {_matchers(s)} until {until}")
        if r.replaced:
            err.print(f"replaces silence {r.replaced} (expired if it was still running)")
    elif r.action == "already-expired":
        err.print("that silence had already expired; nothing changed")
    else:
        err.print("silence expired")


@table_for("k3sops.domain.rules.reports.RuleTestReport")
def rule_test_table(r: RuleTestReport, out: Console) -> None:
    """Each alerting rule's firing and quiet cases, with promtool's output on failure."""
    from rich.markup import escape
    from rich.table import Table

    t = Table("rule", "environment", "severity", "firing + quiet case",
              title=f"Rule unit tests ({r.passed}/{len(r.results)} passed) — {r.promtool}")
    for x in r.results:
        t.add_row(x.rule, x.environment, x.severity,
                  "[green]pass[/]" if x.passed else "[red]FAIL[/]")
    out.print(t)
    check = "[green]pass[/]" if r.check.passed else "[red]FAIL[/]"
    out.print(f"promtool check rules: {check} ({r.check.rules_found} rules found)")
    if not r.check.passed:
        out.print(escape(r.check.output), soft_wrap=True)
    for x in r.results:
        if not x.passed:
            out.print(f"\n[bold red]{x.rule}[/] ({x.environment}):")
            out.print(escape(x.output), soft_wrap=True, highlight=False)


@table_for("k3sops.domain.rules.reports.AlertsApplyReport")
def alerts_apply_table(r: AlertsApplyReport, out: Console) -> None:
    """What `k3sops alerts apply` changed."""
    from rich.markup import escape

    if r.dry_run and r.content is not None:
        out.file.write(r.content)
    verb = "would apply" if r.dry_run else "applied"
    for a in r.applied:
        where = f" on {a.cluster}" if a.cluster else ""
        env = f" ({a.environment})" if a.environment else ""
        line = f"{verb} {a.rules} rules in {a.groups} groups{env} to {a.target}{where}"
        if a.loaded_groups is not None:
            source = "Prometheus lists" if a.kind == "rule-file" else "read back:"
            line += f"; {source} {a.loaded_groups} groups, {a.loaded_rules} rules"
        out.print(escape(line), soft_wrap=True, highlight=False)
