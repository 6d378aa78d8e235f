"""Views of `k3sops metrics`: nodes, cluster, applications, and ad-hoc PromQL queries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console, Group, RenderableType

    from k3sops.domain.metrics import MetricsReport, QueryReport

NO_DATA = "[dim]no data[/]"


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


def metrics_view(r: MetricsReport | QueryReport) -> Group:
    """The view of either report, as one renderable (`metrics --watch` redraws it in place)."""
    from k3sops.domain.metrics import MetricsReport

    return report_view(r) if isinstance(r, MetricsReport) else query_view(r)


@table_for("k3sops.domain.metrics.models.MetricsReport",
           "k3sops.domain.metrics.models.QueryReport")
def metrics_table(r: MetricsReport | QueryReport, out: Console) -> None:
    """Nodes, cluster and applications of `k3sops metrics`, or an ad-hoc query's samples."""
    out.print(metrics_view(r))
