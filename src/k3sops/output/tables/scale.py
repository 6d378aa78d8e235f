"""Tables of `k3sops scale`: autoscale, status (HPAs), resources, pvc."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.services.scale.autoscale import AutoscaleReport
    from k3sops.services.scale.pvc import PvcReport
    from k3sops.services.scale.resources import ResourcesReport
    from k3sops.services.scale.status import HpaReport


@table_for("k3sops.services.scale.autoscale.AutoscaleReport")
def autoscale_table(r: AutoscaleReport, out: Console) -> None:
    """The HPA `scale autoscale` made or would make."""
    from rich.table import Table

    mode = "applied" if r.applied else "plan (dry run; pass --apply to make this change)"
    t = Table("field", "value", title=f"HPA {r.namespace}/{r.name} on {r.target}: {mode}")
    metric = r.spec["metrics"][0]["resource"]["target"]["averageUtilization"]
    t.add_row("action", r.action + (f" ({', '.join(r.changed_fields)})"
                                    if r.action == "update" else ""))
    t.add_row("cpu target", f"{metric}% of requests")
    t.add_row("min / max", f"{r.spec['minReplicas']} / {r.spec['maxReplicas']}")
    t.add_row("result", r.result)
    out.print(t)
    for n in r.notes:
        out.print(f"[yellow]note:[/] {n}")
    if r.audit_log:
        out.print(f"[dim]audit log:[/] {r.audit_log}")


@table_for("k3sops.services.scale.status.HpaReport")
def hpa_table(r: HpaReport, out: Console) -> None:
    """Every HPA of `scale status`, with its warnings."""
    from rich.table import Table

    if not r.hpas:
        out.print("no HorizontalPodAutoscalers")
        return
    t = Table("namespace", "hpa", "target", "min", "max", "current", "desired", "cpu now/target",
              "warnings", title="HorizontalPodAutoscalers")
    for h in r.hpas:
        cpu = (f"{h.cpu_current_percent if h.cpu_current_percent is not None else '?'}%/"
               f"{h.cpu_target_percent if h.cpu_target_percent is not None else '?'}%")
        t.add_row(h.namespace, h.name, h.target, str(h.min_replicas), str(h.max_replicas),
                  str(h.current_replicas), str(h.desired_replicas), cpu,
                  "\n".join(f"[yellow]{w}[/]" for w in h.warnings))
    out.print(t)


@table_for("k3sops.services.scale.resources.ResourcesReport")
def resources_table(r: ResourcesReport, out: Console) -> None:
    """Recommendations and changes of `scale resources`."""
    from rich.table import Table

    from k3sops.domain.sizing import format_cpu, format_memory

    t = Table("namespace", "workload", "container", "cpu req", "cpu lim", "mem req", "mem lim",
              "samples", "notes",
              title=f"Requests and limits: current -> recommended (strategy {r.strategy}, "
                    f"{r.window} of history)")

    def pair(cur: str, new: str | None) -> str:
        if new is None or new == cur:
            return cur
        return f"{cur} -> [bold]{new}[/]"

    for rec in r.recommendations:
        c, n = rec.current, rec.recommended
        t.add_row(
            rec.ref.namespace, f"{rec.ref.kind}/{rec.ref.workload}", rec.ref.container,
            pair(format_cpu(c.cpu_request), format_cpu(n.cpu_request) if n else None),
            pair(format_cpu(c.cpu_limit), format_cpu(n.cpu_limit) if n else None),
            pair(format_memory(c.memory_request), format_memory(n.memory_request) if n else None),
            pair(format_memory(c.memory_limit), format_memory(n.memory_limit) if n else None),
            str(rec.samples),
            ("[yellow]no recommendation: [/]" if n is None else "")
            + ("; ".join(rec.reasons) if n is None else
               (f"OOM kills {rec.oom_kills}" if rec.oom_kills else "")))
    out.print(t)
    if r.changes:
        mode = "applied" if r.applied else "plan (dry run; pass --apply to make these changes)"
        ct = Table("target", "via", "change", "result", "error", title=f"Changes: {mode}")
        for ch in r.changes:
            ct.add_row(ch.target, ch.via, ch.detail, ch.result, ch.error or "")
        out.print(ct)
    for s in r.sources:
        if not s.get("ok"):
            out.print(f"[red]unavailable:[/] {s['name']}: {s.get('error')}")
    if r.audit_log:
        out.print(f"[dim]audit log:[/] {r.audit_log}")


@table_for("k3sops.services.scale.pvc.PvcReport")
def pvc_table(r: PvcReport, out: Console) -> None:
    """Checks and result of `scale pvc`."""
    from rich.table import Table

    t = Table("check", "ok", "detail",
              title=f"PVC {r.namespace}/{r.name} ({r.storage_class}): {r.current} -> "
                    f"{r.requested} (capacity {r.capacity or 'unknown'})")
    for c in r.checks:
        t.add_row(c.name, "[green]yes[/]" if c.ok else "[red]no[/]", c.detail)
    out.print(t)
    if not r.applied:
        out.print("plan (dry run): patch spec.resources.requests.storage to "
                  f"{r.requested}; pass --apply to make this change")
    else:
        out.print(f"result: {r.result}" + (f"; resize state: {r.state}" if r.state else ""))
    if r.audit_log:
        out.print(f"[dim]audit log:[/] {r.audit_log}")
