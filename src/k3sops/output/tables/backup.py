"""Tables of `k3sops backup`: runs, list, verify, prune, restores, volumes, K3s, schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.services.backup.etcd import K3sSnapshotResult
    from k3sops.services.backup.etcd_restore import EtcdRestoreReport
    from k3sops.services.backup.repository import ListReport, PruneReport
    from k3sops.services.backup.restore import RestoreReport
    from k3sops.services.backup.run import BackupResult
    from k3sops.services.backup.schedule import ScheduleReport
    from k3sops.services.backup.verify import VerifyReport
    from k3sops.services.backup.volume import VolumeBackupResult, VolumeRestoreReport

STATUS_COLOURS = {"Completed": "green", "Failed": "red", "Running": "yellow"}
"""A backup's status (not a finding's severity: that palette is :data:`..COLOURS`)."""


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def size_text(n: int | None) -> str:
    """Bytes in binary units (``-`` when unknown)."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def age_text(seconds: float) -> str:
    """An age in the largest fitting unit (s, m, h, d)."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


@table_for("k3sops.services.backup.run.BackupResult")
def result_table(r: BackupResult, out: Console) -> None:
    """One backup run of `backup etcd` / `backup app`: its manifest and the drill facts."""
    from rich.table import Table

    m = r.manifest
    t = Table("field", "value", title=f"backup {m.id}: {m.status}")
    for k, v in (("kind", m.kind), ("target", m.target), ("source", m.source),
                 ("size", size_text(m.size)), ("sha256", m.sha256 or "-"),
                 ("duration", f"{m.duration_seconds:.1f}s" if m.duration_seconds else "-"),
                 ("snapshots", ", ".join(s[:8] for s in m.snapshot_ids))):
        t.add_row(k, str(v))
    for k, v in sorted(m.facts.items()):
        if k != "tables":
            t.add_row(k, str(v))
    if "tables" in m.facts:
        t.add_row("tables", str(len(m.facts["tables"])))
    out.print(t)
    for bid in r.cleaned:
        out.print(f"[yellow]note:[/] interrupted backup {bid} was marked Failed and cleaned")


@table_for("k3sops.services.backup.repository.ListReport")
def list_table(r: ListReport, out: Console) -> None:
    """`backup list`: status, age, size and verification of every backup."""
    from rich.table import Table

    t = Table(title=f"backups in {r.repository}")
    t.add_column("id", no_wrap=True)
    for col in ("kind", "target", "status", "age", "size", "verified"):
        t.add_column(col)
    for b in r.backups:
        verified = {True: "[green]yes[/]", False: "[red]FAILED[/]", None: "no"}[b.verified]
        t.add_row(b.id, b.kind, b.target, f"[{STATUS_COLOURS[b.status]}]{b.status}[/]",
                  age_text(b.age_seconds), size_text(b.size), verified)
    out.print(t if r.backups else "no backups")


@table_for("k3sops.services.backup.verify.VerifyReport")
def verify_table(r: VerifyReport, out: Console) -> None:
    """`backup verify`: one row per backup, its drill time and failed checks."""
    from rich.table import Table

    t = Table("backup", "result", "drill (RTO)", "failed checks", title=f"verify {r.repository}")
    for rec in r.records:
        t.add_row(rec.backup_id, "[green]ok[/]" if rec.ok else "[red]FAILED[/]",
                  f"{rec.drill_seconds:.1f}s" if rec.drill_seconds is not None else "-",
                  "; ".join(f"{c.name}: {c.detail}" for c in rec.failed)[:400])
    out.print(t if r.records else "nothing verified")
    for bid, why in r.skipped.items():
        out.print(f"[dim]skipped {bid}: {why}[/]")


@table_for("k3sops.services.backup.repository.PruneReport")
def prune_table(r: PruneReport, out: Console) -> None:
    """`backup prune`: keep or remove, and why, per backup."""
    from rich.table import Table

    mode = "dry run (nothing deleted)" if r.dry_run else "applied"
    t = Table("backup", "decision", "why", title=f"prune {r.repository}: {mode}")
    for bid, why in sorted(r.keep.items()):
        t.add_row(bid, "[green]keep[/]", why)
    for bid, why in sorted(r.remove.items()):
        t.add_row(bid, "[red]remove[/]", why)
    out.print(t)


@table_for("k3sops.services.backup.restore.RestoreReport")
def restore_table(r: RestoreReport, out: Console) -> None:
    """`backup restore` of application data: the steps and their results."""
    from rich.table import Table

    mode = "applied" if r.applied else "plan (dry run; pass --yes to restore)"
    t = Table("#", "action", "detail", "result", title=f"restore {r.backup_id}: {mode}")
    for i, s in enumerate(r.steps, 1):
        t.add_row(str(i), s.action, s.detail, s.result + (f": {s.error}" if s.error else ""))
    out.print(t)


@table_for("k3sops.services.backup.volume.VolumeBackupResult")
def volume_table(r: VolumeBackupResult, out: Console) -> None:
    """`backup volume`: the PVC, its Longhorn volume and Longhorn's backup."""
    from rich.table import Table

    m = r.manifest
    t = Table("field", "value", title=f"volume backup {m.id}: {m.status}")
    for k, v in (("pvc", f"{r.volume.namespace}/{r.volume.pvc}"), ("pv", r.volume.pv),
                 ("longhorn volume", r.volume.volume), ("longhorn backup", r.longhorn.name),
                 ("state", r.longhorn.state), ("url", r.longhorn.url),
                 ("size", str(r.longhorn.size)), ("backup target", r.longhorn.backup_target),
                 ("record sha256", m.sha256 or "-")):
        t.add_row(k, v)
    out.print(t)


@table_for("k3sops.services.backup.volume.VolumeRestoreReport")
def volume_restore_table(r: VolumeRestoreReport, out: Console) -> None:
    """`backup restore ID --to PVC`: the StorageClass and PVC to create."""
    from rich.table import Table

    mode = "applied" if r.applied else "plan (dry run; pass --yes to create)"
    t = Table("kind", "name", "detail", title=f"restore of {r.backup_id}: {mode}")
    for o in r.objects:
        meta = o["metadata"]
        name = f"{meta['namespace']}/{meta['name']}" if "namespace" in meta else meta["name"]
        detail = (f"fromBackup {o['parameters']['fromBackup']}" if o["kind"] == "StorageClass"
                  else f"{o['spec']['resources']['requests']['storage']} on "
                       f"{o['spec']['storageClassName']}")
        t.add_row(o["kind"], name, detail)
    out.print(t)
    if r.audit_log:
        out.print(f"[dim]audit log:[/] {r.audit_log}")


@table_for("k3sops.services.backup.etcd.K3sSnapshotResult")
def k3s_snapshot_table(r: K3sSnapshotResult, out: Console) -> None:
    """`backup etcd --k3s`: the stored snapshot and K3s' own listing of the node's ones."""
    from rich.table import Table

    m = r.manifest
    t = Table("field", "value", title=f"K3s etcd snapshot {m.id}: {m.status}")
    for k, v in (("node", r.node), ("file on the server", r.server_path),
                 ("size", str(m.size)), ("sha256", m.sha256 or "-"),
                 ("revision", str(m.facts.get("revision"))),
                 ("keys", str(m.facts.get("total_keys")))):
        t.add_row(k, v)
    out.print(t)
    s = Table("name", "node", "size", "ok", "from", title="K3s snapshots of the node")
    for rec in [*r.listing, *r.objects]:
        s.add_row(rec.name, rec.node, str(rec.size), str(rec.ok), rec.source)
    out.print(s)
    if r.objects_error:
        out.print(f"[yellow]note:[/] ETCDSnapshotFile objects not listed: {r.objects_error}")


@table_for("k3sops.services.backup.etcd_restore.EtcdRestoreReport")
def etcd_restore_table(r: EtcdRestoreReport, out: Console) -> None:
    """`backup restore --etcd`: the preflight, then the cluster-reset steps."""
    from rich.table import Table

    p = r.plan
    pre = Table("check", "host", "ok", "detail", title=f"preflight for {p.snapshot.id}")
    for c in p.preflight:
        pre.add_row(c.check, c.host or "-", "[green]yes[/]" if c.ok else "[red]NO[/]",
                    c.detail)
    out.print(pre)
    mode = "applied" if r.applied else "plan (dry run; pass --yes to run it)"
    t = Table("#", "host", "action", "command", "result",
              title=f"K3s cluster-reset restore onto {p.restore_host}: {mode}")
    for o in r.steps:
        t.add_row(str(o.step.order), o.step.host, o.step.action, o.step.command,
                  o.result + (f": {o.error}" if o.error else ""))
    if r.steps:
        out.print(t)
    if r.audit_log:
        out.print(f"[dim]audit log:[/] {r.audit_log}")


@table_for("k3sops.services.backup.schedule.ScheduleReport")
def schedule_table(r: ScheduleReport, out: Console) -> None:
    """Summary, and in a dry run the manifests (or units) alone on stdout.

    So `k3sops backup schedule | kubectl apply -f -` works; summary and notes go to stderr.
    """
    from rich.table import Table

    err = _stderr()
    mode = "applied" if r.applied else "dry run (pass --apply)"
    t = Table("name", "schedule (UTC)", "command", title=f"backup schedule ({r.kind}): {mode}")
    for e in r.entries:
        t.add_row(e.name, e.cron, "k3sops " + " ".join(e.args))
    (out if r.applied else err).print(t)
    if not r.applied:
        if r.kind == "cronjob":
            import yaml

            out.file.write(yaml.safe_dump_all(r.manifests, sort_keys=False))
        else:
            for name, text in r.units.items():
                out.file.write(f"# {name}\n{text}\n")
    if r.verified is not None:
        err.print("systemd-analyze verify: " + ("ok" if r.verified else "FAILED"))
    for w in r.written:
        out.print(f"[green]applied[/] {w}")
    for n in r.notes:
        err.print(f"[dim]note:[/] {n}")
