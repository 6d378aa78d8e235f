"""Tables of `k3sops status`: nodes, pods, problem pods, monitoring targets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.models import StatusReport


@table_for("k3sops.domain.models.StatusReport")
def status_table(r: StatusReport, out: Console) -> None:
    """Nodes, pods and monitoring targets of `k3sops status`."""
    from rich.table import Table

    ready = sum(1 for n in r.nodes if n.ready == "True")
    out.print(f"[bold]cluster[/] {r.cluster}  (Kubernetes {r.server_version})  "
              f"nodes ready {ready}/{len(r.nodes)}")
    t = Table("node", "roles", "ready", "version", "cpu", "memory", "notes", title="Nodes")
    for n in r.nodes:
        notes = ", ".join([*n.pressure, *([] if n.schedulable else ["cordoned"])])
        colour = "green" if n.ready == "True" else "red"
        t.add_row(n.name, ",".join(n.roles), f"[{colour}]{n.ready}[/]", n.version,
                  n.cpu or "", n.memory or "", notes)
    out.print(t)
    t = Table("namespace", "pods", "running", "pending", "failed", "not ready", "restarts",
              title="Pods")
    for c in r.pods:
        t.add_row(c.namespace, str(c.total), str(c.running), str(c.pending), str(c.failed),
                  str(c.not_ready), str(c.restarts))
    out.print(t)
    if r.problems:
        t = Table("namespace", "pod", "phase", "reason", "restarts", "node",
                  title="Pods needing attention")
        for p in r.problems:
            t.add_row(p.namespace, p.name, p.phase, f"[yellow]{p.reason}[/]", str(p.restarts),
                      p.node or "")
        out.print(t)
    if r.targets:
        up = sum(1 for x in r.targets if x.health == "up")
        t = Table("job", "instance", "health", "last error",
                  title=f"Monitoring targets ({up}/{len(r.targets)} up)")
        for x in r.targets:
            colour = "green" if x.health == "up" else "red"
            t.add_row(x.job, x.instance, f"[{colour}]{x.health}[/]", x.last_error)
        out.print(t)
    for s in r.sources:
        if not s.ok:
            out.print(f"[red]unavailable:[/] {s.name} ({s.endpoint}): {s.error}")
