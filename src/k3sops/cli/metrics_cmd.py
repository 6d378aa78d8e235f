"""`k3sops metrics [nodes|cluster|apps|all]`: key metrics from Prometheus, once or refreshing.

``--watch [SECONDS]`` refreshes every SECONDS (default 5): in place on a terminal with the table
format, otherwise one document per refresh (``-o json``: one compact JSON object per line;
``-o yaml``: one YAML document each, ``---`` separated; table: a time-stamped block each).
Ctrl-C stops with exit 130, ``--count N`` after N refreshes with the exit code of the last one
(4 if some of its queries failed); a refresh that cannot reach Prometheus at all ends the watch
with exit 1.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperCommand

from k3sops.cli.options import get_options, get_settings
from k3sops.errors import Interrupted, PartialResult, UsageError

if TYPE_CHECKING:
    from rich.console import Console, Group, RenderableType

    from k3sops.domain.metrics import MetricsReport, QueryReport, Scope

DEFAULT_WATCH_SECONDS = 5.0
NO_DATA = "[dim]no data[/]"


class ScopeArg(StrEnum):
    """Which level of metrics to show."""

    nodes = "nodes"
    cluster = "cluster"
    apps = "apps"
    all = "all"


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def optional_watch(args: Sequence[str]) -> list[str]:
    """Give a bare ``--watch``/``-w`` its default value (typer has no optional-value options).

    ``--watch`` followed by nothing, another option or the scope becomes ``--watch=5``;
    ``--watch 2`` and ``--watch=2`` are left alone, as is everything after ``--``.
    """
    out: list[str] = []
    rest = False
    for i, arg in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else None
        if not rest and arg in ("--watch", "-w") and (nxt is None or not _is_number(nxt)):
            out.append(f"--watch={DEFAULT_WATCH_SECONDS:g}")
            continue
        rest = rest or arg == "--"
        out.append(arg)
    return out


class _OptionalWatchCommand(TyperCommand):
    """The `metrics` command, parsing ``--watch [SECONDS]`` through :func:`optional_watch`."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        """Rewrite a bare ``--watch``, then parse as usual."""
        return super().parse_args(ctx, optional_watch(args))


def register(app: typer.Typer) -> None:
    """Attach `metrics` to the root app."""
    app.command("metrics", cls=_OptionalWatchCommand)(metrics_cmd)


# --------------------------------------------------------------------------------------------
# Formatting


def _pct(v: float | None) -> str:
    return NO_DATA if v is None else f"{v:.1f}%"


def _bytes(v: float | None, suffix: str = "") -> str:
    if v is None:
        return NO_DATA
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}{suffix}" if unit == "B" else f"{v:.1f} {unit}{suffix}"
        v /= 1024
    return f"{v:.1f} PiB{suffix}"  # pragma: no cover - the loop returns at TiB


def _seconds(v: float | None) -> str:
    if v is None:
        return NO_DATA
    return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"


def _num(v: float | None, fmt: str = "{:.3g}") -> str:
    return NO_DATA if v is None else fmt.format(v)


def _with_pct(value: str, pct: float | None) -> str:
    return value if pct is None else f"{value} ({pct:.0f}%)"


def _nodes_table(r: MetricsReport) -> RenderableType:
    from rich.table import Table

    t = Table("node", "instance", "cpu", "memory", "disk (fullest)", "net rx", "net tx",
              title="Nodes")
    for n in r.nodes or []:
        disk = _pct(n.disk_percent) + (f" {n.disk_mountpoint}" if n.disk_mountpoint else "")
        t.add_row(n.node, n.instance, _pct(n.cpu_percent), _pct(n.memory_percent), disk,
                  _bytes(n.network_receive_bytes_per_second, "/s"),
                  _bytes(n.network_transmit_bytes_per_second, "/s"))
    if not r.nodes:
        t.add_row(NO_DATA, "", "", "", "", "", "")
    return t


def _cluster(r: MetricsReport) -> list[RenderableType]:
    from rich.table import Table
    from rich.text import Text

    c = r.cluster
    if c is None:
        return []
    share = c.apiserver.error_5xx_share
    out: list[RenderableType] = [Text.from_markup(
        f"[bold]nodes ready[/] {c.nodes_ready}/{c.nodes_total}   "
        f"[bold]API server[/] p99 {_seconds(c.apiserver.request_p99_seconds)}, "
        f"5xx {NO_DATA if share is None else f'{share * 100:.2f}%'}")]
    t = Table("node", "ready", "cpu allocatable", "cpu requested", "memory allocatable",
              "memory requested", title="Node capacity")
    for n in c.nodes:
        colour = "green" if n.ready == "True" else "red"
        t.add_row(n.node, NO_DATA if n.ready is None else f"[{colour}]{n.ready}[/]",
                  _num(n.cpu_allocatable_cores),
                  _with_pct(_num(n.cpu_requested_cores), n.cpu_requested_percent),
                  _bytes(n.memory_allocatable_bytes),
                  _with_pct(_bytes(n.memory_requested_bytes), n.memory_requested_percent))
    out.append(t)
    t = Table("instance", "leader", "wal fsync p99", "db size", "quota", "used", title="etcd")
    for m in c.etcd:
        leader = (NO_DATA if m.has_leader is None
                  else "[green]yes[/]" if m.has_leader else "[red]NO[/]")
        t.add_row(m.instance, leader, _seconds(m.wal_fsync_p99_seconds), _bytes(m.db_size_bytes),
                  _bytes(m.quota_bytes), _pct(m.db_used_percent))
    if not c.etcd:
        t.add_row(NO_DATA, "", "", "", "", "")
    out.append(t)
    if c.restarts:
        t = Table("namespace", "pod", "restarts (1h)", title="Pod restarts, last hour")
        for p in c.restarts:
            t.add_row(p.namespace, p.pod, f"{p.restarts_1h:.0f}")
        out.append(t)
    if c.failed_pods or c.pending_pods:
        t = Table("namespace", "pod", "phase", title="Failed and pending pods")
        for ph in [*c.failed_pods, *c.pending_pods]:
            colour = "red" if ph.phase == "Failed" else "yellow"
            t.add_row(ph.namespace, ph.pod, f"[{colour}]{ph.phase}[/]")
        out.append(t)
    else:
        out.append(Text("no failed or pending pods, no restarts in the last hour"
                        if not c.restarts else "no failed or pending pods"))
    return out


def _apps_table(r: MetricsReport) -> list[RenderableType]:
    from rich.table import Table
    from rich.text import Text

    from k3sops.domain.metrics import AppRow

    title = "Applications" + (f" (namespaces {', '.join(r.namespaces)})" if r.namespaces else "")
    apps = r.apps or []
    figures: list[tuple[str, Callable[[AppRow], str], Callable[[AppRow], float | None]]] = [
        ("req/s", lambda a: _num(a.request_rate), lambda a: a.request_rate),
        ("p95", lambda a: _seconds(a.p95_seconds), lambda a: a.p95_seconds),
        ("4xx/s", lambda a: _num(a.rate_4xx), lambda a: a.rate_4xx),
        ("5xx/s", lambda a: _num(a.rate_5xx), lambda a: a.rate_5xx),
        ("cpu", lambda a: _num(a.cpu_cores, "{:.3f}"), lambda a: a.cpu_cores),
        ("memory", lambda a: _bytes(a.memory_bytes), lambda a: a.memory_bytes),
    ]
    # A column empty for every workload (no application metrics, no cAdvisor) is named once
    # below the table instead of repeating "no data" in every row.
    shown = [f for f in figures if any(f[2](a) is not None for a in apps)]
    empty = [f[0] for f in figures if f not in shown]
    t = Table("namespace", "workload", "kind", "pods", title=title)
    for header, _, _ in shown:
        t.add_column(header, no_wrap=True, justify="right")
    for a in apps:
        t.add_row(a.namespace, a.workload, a.kind or "", str(a.pods),
                  *[fmt(a) for _, fmt, _ in shown])
    if not apps:
        t.add_row(NO_DATA, *[""] * (3 + len(shown)))
    out: list[RenderableType] = [t]
    if empty and apps:
        out.append(Text.from_markup(f"{', '.join(empty)}: {NO_DATA} for any workload"))
    return out


def report_view(r: MetricsReport) -> Group:
    """The table view of a metrics report."""
    from rich.console import Group
    from rich.text import Text

    parts: list[RenderableType] = [Text.from_markup(f"[bold]Prometheus[/] {r.prometheus}")]
    if r.nodes is not None:
        parts.append(_nodes_table(r))
    parts += _cluster(r)
    if r.apps is not None:
        parts += _apps_table(r)
    for f in r.failed_queries:
        parts.append(Text.assemble(("query failed: ", "bold red"), f"{f.name}: {f.error}"))
    return Group(*parts)


def query_view(r: QueryReport) -> Group:
    """The table view of an ad-hoc query: one column per label, then the value."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    names = sorted({k for row in r.rows for k in row.labels},
                   key=lambda k: (k != "__name__", k))
    matrix = r.result_type == "matrix"
    t = Table(*names, *(["time"] if matrix else []), "value",
              title=f"{r.query}  ({r.result_type}, {len(r.rows)} samples)")
    for row in r.rows:
        when = [datetime.fromtimestamp(row.timestamp).isoformat(timespec="seconds")] if matrix \
            else []
        t.add_row(*[row.labels.get(k, "") for k in names], *when, row.value)
    return Group(Text.from_markup(f"[bold]Prometheus[/] {r.prometheus}"), t)


def _view(r: MetricsReport | QueryReport) -> Group:
    from k3sops.domain.metrics import MetricsReport

    return report_view(r) if isinstance(r, MetricsReport) else query_view(r)


def _print_table(r: MetricsReport | QueryReport, out: Console) -> None:
    out.print(_view(r))


def _check_partial(r: MetricsReport | QueryReport) -> None:
    from k3sops.domain.metrics import MetricsReport

    if isinstance(r, MetricsReport) and r.failed_queries:
        names = ", ".join(f.name for f in r.failed_queries)
        raise PartialResult(
            f"partial result: {len(r.failed_queries)} queries failed on Prometheus at "
            f"{r.prometheus}: {names}",
            hint="the figures they feed show as 'no data'; the errors are listed above "
                 "(-o json: failed_queries)")


# --------------------------------------------------------------------------------------------
# The command


def _scopes(scope: ScopeArg) -> Sequence[Scope]:
    from k3sops.domain.metrics import SCOPES

    return SCOPES if scope is ScopeArg.all else [s for s in SCOPES if s == scope.value]


def _watch(fetch: Callable[[], MetricsReport | QueryReport], fmt: str, every: float,
           count: int | None, console: Console) -> MetricsReport | QueryReport:
    """Refresh until Ctrl-C (KeyboardInterrupt reaches the root: exit 130) or ``count``."""
    import yaml
    from rich.console import Group
    from rich.live import Live
    from rich.rule import Rule

    n = 0

    def more() -> bool:
        return count is None or n < count

    if fmt == "table" and console.is_terminal:
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                report = fetch()
                n += 1
                live.update(Group(Rule(f"k3sops metrics · every {every:g}s · "
                                       f"{datetime.now():%H:%M:%S}"), _view(report)),
                            refresh=True)
                if not more():
                    return report
                time.sleep(every)
    while True:
        report = fetch()
        n += 1
        if fmt == "json":
            console.file.write(json.dumps(report.model_dump(mode="json")) + "\n")
        elif fmt == "yaml":
            console.file.write("---\n" + yaml.safe_dump(report.model_dump(mode="json"),
                                                        sort_keys=False))
        else:
            console.print(Rule(f"{datetime.now():%Y-%m-%d %H:%M:%S}"))
            console.print(_view(report))
        console.file.flush()
        if not more():
            return report
        time.sleep(every)


def metrics_cmd(
    ctx: typer.Context,
    scope: Annotated[
        ScopeArg, typer.Argument(help="Which metrics: nodes, cluster, apps or all.")
    ] = ScopeArg.all,
    query: Annotated[
        str | None,
        typer.Option("--query", help="Run this PromQL instant query instead and print its "
                                     "samples (labels and value).", metavar="PROMQL"),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", help="Restrict applications to this environment's "
                                         "namespaces (from platform.yaml).", metavar="ENV"),
    ] = None,
    watch: Annotated[
        float | None,
        typer.Option("--watch", "-w", metavar="[SECONDS]",
                     help=f"Refresh every SECONDS (default {DEFAULT_WATCH_SECONDS:g}) until "
                          "Ctrl-C."),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option("--count", metavar="N", help="With --watch: stop after N refreshes."),
    ] = None,
) -> None:
    """Key metrics from Prometheus: nodes, cluster health, applications (or an ad-hoc query).

    Exit codes: 0 ok; 1 Prometheus unreachable; 2 bad PromQL or usage; 4 some queries failed
    (the rest is shown); 130 interrupted.
    """
    from rich.console import Console

    from k3sops.output.render import render
    from k3sops.services import metrics

    opts = get_options(ctx)
    if watch is not None and watch <= 0:
        raise UsageError(f"--watch {watch:g}: the interval must be more than 0 seconds")
    if count is not None and (watch is None or count < 1):
        raise UsageError("--count N needs --watch and N >= 1",
                         hint="e.g. --watch 5 --count 3")
    if query is not None and not query.strip():
        raise UsageError("--query is empty", hint='e.g. --query \'up{job="apiserver"}\'')
    settings = get_settings(ctx)
    namespaces = metrics.env_namespaces(settings, env)
    app_names = metrics.app_metrics(settings)
    prom = metrics.connect(settings, os.environ, Path.home())
    try:
        def fetch() -> MetricsReport | QueryReport:
            if query is not None:
                return metrics.adhoc(prom, query)
            return metrics.collect(prom, _scopes(scope), app_names, namespaces)

        try:
            if watch is None:
                report = fetch()
                render(report, opts.output.value, _print_table)
            else:
                report = _watch(fetch, opts.output.value, watch, count, Console())
        except KeyboardInterrupt as e:
            # typer turns KeyboardInterrupt into a *returned* 130 when not standalone, which
            # the root entry point drops; a k3sops error keeps the exit code.
            raise Interrupted("interrupted (Ctrl-C)" + (": watch stopped" if watch else "")
                              ) from e
    finally:
        prom.close()
    _check_partial(report)
