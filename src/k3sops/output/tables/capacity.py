"""Tables of `k3sops capacity`: nodes, environments, the forecast."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.capacity import CapacityReport, Usage


def _pct(v: float | None) -> str:
    if v is None:
        return "-"
    colour = "red" if v >= 100 else "yellow" if v >= 85 else "green"
    return f"[{colour}]{v:.0f}%[/]"


def _cells(u: Usage, fmt: str) -> list[str]:
    from k3sops.domain.sizing import format_cpu, show_memory

    f = format_cpu if fmt == "cpu" else show_memory
    limits = (f"{f(u.limits)} {_pct(u.limits_percent)}" if u.limits or not u.unlimited
              else "-")
    return [f(u.allocatable), f"{f(u.requests)} {_pct(u.requests_percent)}",
            limits + (f" +{u.unlimited} unlimited" if u.unlimited else ""),
            f(max(u.headroom, 0.0))]


@table_for("k3sops.domain.capacity.CapacityReport")
def capacity_table(r: CapacityReport, out: Console) -> None:
    """Nodes, environments and the forecast of `k3sops capacity`."""
    from rich.table import Table

    from k3sops.domain.sizing import format_cpu, show_memory

    t = Table("node", "pods", "cpu alloc", "cpu requests", "cpu limits", "cpu free",
              "mem alloc", "mem requests", "mem limits", "mem free", title="Nodes")
    for n in r.nodes:
        t.add_row(n.name + ("" if n.schedulable else " (cordoned)"), str(n.pods),
                  *_cells(n.cpu, "cpu"), *_cells(n.memory, "memory"))
    t.add_section()
    t.add_row("[bold]cluster (schedulable)[/]", str(sum(n.pods for n in r.nodes)),
              *_cells(r.cluster_cpu, "cpu"), *_cells(r.cluster_memory, "memory"))
    out.print(t)
    if r.environments:
        t = Table("environment", "namespaces", "pods", "cpu requests", "cpu limits",
                  "mem requests", "mem limits", title="Environments (share of the cluster)")
        for e in r.environments:
            c, m = _cells(e.cpu, "cpu"), _cells(e.memory, "memory")
            t.add_row(e.name, ",".join(e.namespaces) or "(all)", str(e.pods), c[1], c[2], m[1],
                      m[2])
        out.print(t)
    t = Table("resource", "requests now", f"full at ({r.full_percent:g}%)", "growth/day",
              "days left", f"nodes to add ({r.horizon_days}d)", "status",
              title="Forecast: when more nodes are needed")
    for f in r.forecast:
        fmt = format_cpu if f.resource == "cpu" else show_memory
        status = f.status + (f" (missing: {f.missing})" if f.missing else "")
        t.add_row(f.resource, fmt(f.requests_now), fmt(f.full_at),
                  fmt(f.growth_per_day) if f.growth_per_day is not None else "-",
                  f"{f.days_left:.0f}" if f.days_left is not None else "-",
                  str(f.nodes_needed), status)
    out.print(t)
    if r.forecast:
        out.print(f"[dim]method:[/] {r.forecast[0].method}")
    for s in r.sources:
        if not s.ok:
            out.print(f"[red]unavailable:[/] {s.name}: {s.error}")
