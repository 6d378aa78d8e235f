"""`k3sops backup`: etcd and application backups, verify (restore drills), list, prune, restore.

Extension point: other modules add their commands to :data:`backup` (the Typer group) with
``backup.command(...)`` or ``backup.add_typer(...)`` from their own ``register(backup)``,
called next to :func:`register` in ``cli/app.py``; :func:`backup_context` gives them the
resolved repository and settings the same way these commands get them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from k3sops.cli.options import get_options
from k3sops.errors import AdapterError, FindingsAtThreshold

if TYPE_CHECKING:
    from k3sops.services import backup as svc

backup = typer.Typer(help="Backups proven by restore drills: etcd, application data "
                          "(restic repository).", no_args_is_help=True)

StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", envvar="K3SOPS_STATE_DIR",
    help="Audit log, history and lock files (default ~/.local/state/k3sops).")]

_err = Console(stderr=True, highlight=False)


def register(app: typer.Typer) -> None:
    """Attach the `backup` group to the root app."""
    app.add_typer(backup, name="backup")


def backup_context(ctx: typer.Context, state_dir: Path | None = None) -> svc.BackupContext:
    """The backup settings of this invocation (flags > env > platform.yaml)."""
    from k3sops.services import backup as svc
    from k3sops.services import context

    opts = get_options(ctx)
    settings = context.resolve(opts.kubeconfig, opts.context, opts.config, os.environ,
                               Path.cwd())
    return svc.BackupContext(settings, os.environ, Path.home(), state=state_dir)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def _result_table(r: svc.BackupResult, out: Console) -> None:
    from rich.table import Table

    m = r.manifest
    t = Table("field", "value", title=f"backup {m.id}: {m.status}")
    for k, v in (("kind", m.kind), ("target", m.target), ("source", m.source),
                 ("size", _size(m.size)), ("sha256", m.sha256 or "-"),
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


@backup.command("init")
def init_cmd(ctx: typer.Context) -> None:
    """Create the restic repository named in platform.yaml unless it exists."""
    c = backup_context(ctx)
    created = c.restic.init_if_missing()
    _err.print(f"repository {c.restic.where} " + ("created" if created else "already exists"))


@backup.command("etcd")
def etcd_cmd(
    ctx: typer.Context,
    snapshot_file: Annotated[Path | None, typer.Option(
        "--snapshot-file", help="Store this existing etcd snapshot file instead of taking "
                                "one (its hash and status are checked first).")] = None,
    k3s: Annotated[bool | None, typer.Option(
        "--k3s/--no-k3s", help="K3s: `k3s etcd-snapshot save` on a server over SSH (default: "
                               "when platform.yaml has ansible: and no backup.etcd).")] = None,
    node: Annotated[str | None, typer.Option(help="--k3s: inventory host (default: the first "
                                                  "of group server).")] = None,
    k3s_data_dir: Annotated[str, typer.Option(help="--k3s: K3s' data dir on the server.")
                            ] = "/var/lib/rancher/k3s",
    state_dir: StateDir = None,
) -> None:
    """Snapshot etcd through its snapshot API, check it and stream it into the repository."""
    from k3sops.cli import backup_more_cmd  # K3s snapshots over SSH live there
    from k3sops.output.render import render
    from k3sops.services import backup as svc

    if k3s or (k3s is None and snapshot_file is None and backup_more_cmd.k3s_auto(ctx)):
        backup_more_cmd.run_k3s_etcd(ctx, node=node, data_dir=k3s_data_dir,
                                     state_dir=state_dir)
        return
    c = backup_context(ctx, state_dir)
    r = svc.backup_etcd(c, snapshot_file)
    render(r, get_options(ctx).output.value, _result_table)


@backup.command("app")
def app_cmd(ctx: typer.Context,
            name: Annotated[str, typer.Argument(help="A target of backup.targets.")],
            state_dir: StateDir = None) -> None:
    """Back up application data: pg_dump -Fc through exec (or a DSN), or a tar of a path."""
    from k3sops.output.render import render
    from k3sops.services import backup as svc

    c = backup_context(ctx, state_dir)
    r = svc.backup_app(c, name)
    render(r, get_options(ctx).output.value, _result_table)


def _list_table(r: svc.ListReport, out: Console) -> None:
    from rich.table import Table

    t = Table(title=f"backups in {r.repository}")
    t.add_column("id", no_wrap=True)
    for col in ("kind", "target", "status", "age", "size", "verified"):
        t.add_column(col)
    colours = {"Completed": "green", "Failed": "red", "Running": "yellow"}
    for b in r.backups:
        verified = {True: "[green]yes[/]", False: "[red]FAILED[/]", None: "no"}[b.verified]
        t.add_row(b.id, b.kind, b.target, f"[{colours[b.status]}]{b.status}[/]",
                  _age(b.age_seconds), _size(b.size), verified)
    out.print(t if r.backups else "no backups")


@backup.command("list")
def list_cmd(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help="Only this kind (etcd, postgres, ...).")] = None,
    target: Annotated[str | None, typer.Option(help="Only this target.")] = None,
) -> None:
    """Backups with status, age, size and whether they were verified."""
    from k3sops.output.render import render
    from k3sops.services import backup as svc

    c = backup_context(ctx)
    render(svc.list_backups(c, kind, target), get_options(ctx).output.value, _list_table)


@backup.command("show")
def show_cmd(ctx: typer.Context, backup_id: Annotated[str, typer.Argument(metavar="ID")]
             ) -> None:
    """The manifest of one backup and its verification records (JSON)."""
    from k3sops.services import backup as svc

    c = backup_context(ctx)
    typer.echo(json.dumps(svc.manifest_json(c, backup_id), indent=2))


def _verify_table(r: svc.VerifyReport, out: Console) -> None:
    from rich.table import Table

    t = Table("backup", "result", "drill (RTO)", "failed checks", title=f"verify {r.repository}")
    for rec in r.records:
        t.add_row(rec.backup_id, "[green]ok[/]" if rec.ok else "[red]FAILED[/]",
                  f"{rec.drill_seconds:.1f}s" if rec.drill_seconds is not None else "-",
                  "; ".join(f"{c.name}: {c.detail}" for c in rec.failed)[:400])
    out.print(t if r.records else "nothing verified")
    for bid, why in r.skipped.items():
        out.print(f"[dim]skipped {bid}: {why}[/]")


@backup.command("verify")
def verify_cmd(
    ctx: typer.Context,
    backup_id: Annotated[str | None, typer.Argument(metavar="[ID]")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every Completed backup.")] = False,
    since: Annotated[str | None, typer.Option(help="Backups started within, e.g. 7d.")] = None,
    read_data_subset: Annotated[str | None, typer.Option(
        help="restic check --read-data-subset (default: backup.drill.read_data_subset).")
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Integrity (restic check, sha256) and a restore drill; exit 3 when one fails."""
    from k3sops.output.render import render
    from k3sops.services import backup as svc

    c = backup_context(ctx, state_dir)
    r = svc.verify(c, backup_id, all_, since, read_data_subset)
    render(r, get_options(ctx).output.value, _verify_table)
    if r.failed:
        raise FindingsAtThreshold(f"{len(r.failed)} of {len(r.records)} backup(s) failed "
                                  "verification: " + ", ".join(x.backup_id for x in r.failed),
                                  hint="see the failed checks above; do not rely on them")


def _prune_table(r: svc.PruneReport, out: Console) -> None:
    from rich.table import Table

    mode = "dry run (nothing deleted)" if r.dry_run else "applied"
    t = Table("backup", "decision", "why", title=f"prune {r.repository}: {mode}")
    for bid, why in sorted(r.keep.items()):
        t.add_row(bid, "[green]keep[/]", why)
    for bid, why in sorted(r.remove.items()):
        t.add_row(bid, "[red]remove[/]", why)
    out.print(t)


@backup.command("prune")
def prune_cmd(
    ctx: typer.Context,
    keep_daily: Annotated[int, typer.Option(min=0, help="Newest of each of N days.")] = 0,
    keep_weekly: Annotated[int, typer.Option(min=0, help="Newest of each of N weeks.")] = 0,
    keep_monthly: Annotated[int, typer.Option(min=0, help="Newest of each of N months.")] = 0,
    keep_last: Annotated[int, typer.Option(min=0, help="The N newest.")] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show the decision.")] = False,
    state_dir: StateDir = None,
) -> None:
    """Forget backups outside the policy (per target; the newest verified one always stays)."""
    from k3sops.domain.backups import Retention
    from k3sops.output.render import render
    from k3sops.services import backup as svc

    c = backup_context(ctx, state_dir)
    policy = Retention(keep_daily=keep_daily, keep_weekly=keep_weekly,
                       keep_monthly=keep_monthly, keep_last=keep_last)
    render(svc.prune(c, policy, dry_run), get_options(ctx).output.value, _prune_table)


def _restore_table(r: svc.RestoreReport, out: Console) -> None:
    from rich.table import Table

    mode = "applied" if r.applied else "plan (dry run; pass --yes to restore)"
    t = Table("#", "action", "detail", "result", title=f"restore {r.backup_id}: {mode}")
    for i, s in enumerate(r.steps, 1):
        t.add_row(str(i), s.action, s.detail, s.result + (f": {s.error}" if s.error else ""))
    out.print(t)


@backup.command("restore")
def restore_cmd(
    ctx: typer.Context,
    backup_id: Annotated[str, typer.Argument(metavar="ID")],
    namespace: Annotated[str | None, typer.Option("--namespace", "-n",
                                                  help="Namespace of the pod.")] = None,
    pod: Annotated[str | None, typer.Option(help="Pod to restore into.")] = None,
    database: Annotated[str | None, typer.Option(help="Database to restore into.")] = None,
    dsn: Annotated[str | None, typer.Option(help="Restore into this DSN instead.")] = None,
    path: Annotated[str | None, typer.Option(help="Directory (tar backups).")] = None,
    create_database: Annotated[bool, typer.Option(
        "--create-database", help="Create the database first.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Restore (default: print the plan).")
                   ] = False,
    etcd: Annotated[bool, typer.Option("--etcd", help="ID is an etcd backup: run the K3s "
                                                      "cluster-reset restore on the servers.")
                    ] = False,
    restore_on: Annotated[str | None, typer.Option(
        "--restore-on", help="--etcd: the server to reset onto the snapshot.")] = None,
    k3s_data_dir: Annotated[str, typer.Option(help="--etcd: K3s' data dir on the servers.")
                            ] = "/var/lib/rancher/k3s",
    to: Annotated[str | None, typer.Option(help="Volume backups: the NEW PVC to create.")
                  ] = None,
    size: Annotated[str | None, typer.Option(help="Volume backups: size of the new PVC "
                                                  "(default: the original's).")] = None,
    state_dir: StateDir = None,
) -> None:
    """Restore a backup: app data, a Longhorn volume (--to NEW_PVC) or K3s etcd (--etcd).

    Application data goes into the same or another namespace/database; a volume always into a
    new PVC; etcd through the K3s cluster-reset procedure across the servers.
    """
    from k3sops.cli import backup_more_cmd  # volume and K3s etcd restores live there
    from k3sops.output.render import render
    from k3sops.services import backup as svc

    if etcd:
        backup_more_cmd.run_restore_etcd(ctx, backup_id, yes=yes, restore_on=restore_on,
                                         data_dir=k3s_data_dir, state_dir=state_dir)
        return
    if to is not None:
        backup_more_cmd.run_restore_volume(ctx, backup_id, to=to, namespace=namespace,
                                           size=size, yes=yes, state_dir=state_dir)
        return
    c = backup_context(ctx, state_dir)
    r = svc.restore(c, backup_id, namespace=namespace, pod=pod, database=database, dsn=dsn,
                    path=path, create_database=create_database, yes=yes)
    render(r, get_options(ctx).output.value, _restore_table)
    if any(s.result == "failed" for s in r.steps):  # pragma: no cover - raised before
        raise AdapterError("the restore failed")

