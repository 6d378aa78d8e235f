"""`k3sops backup`: etcd, application and volume backups, verify, list, prune, restore, schedule.

Every command resolves the settings once (:func:`k3sops.cli.options.get_settings`) into a
:class:`k3sops.services.backup.BackupContext`; the tables are in
:mod:`k3sops.output.tables.backup`, found by report type.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from k3sops.cli.options import get_options, get_settings
from k3sops.errors import AdapterError, ConfigError, FindingsAtThreshold, PlanRejected

if TYPE_CHECKING:
    from k3sops.config.schema import Ansible
    from k3sops.services.backup.context import BackupContext

backup = typer.Typer(help="Backups proven by restore drills: etcd, application data "
                          "(restic repository).", no_args_is_help=True)

StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", envvar="K3SOPS_STATE_DIR",
    help="Audit log, history and lock files (default ~/.local/state/k3sops).")]

_err = Console(stderr=True, highlight=False)


def register(app: typer.Typer) -> None:
    """Attach the `backup` group to the root app."""
    app.add_typer(backup, name="backup")


def backup_context(ctx: typer.Context, state_dir: Path | None = None) -> BackupContext:
    """The backup settings of this invocation (flags > env > platform.yaml)."""
    from k3sops.services.backup.context import BackupContext

    return BackupContext(get_settings(ctx), os.environ, Path.home(), state=state_dir)


def _show(ctx: typer.Context, report: Any) -> None:
    from k3sops.output.render import render

    render(report, get_options(ctx).output.value)


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
    from k3sops.services.backup import etcd

    if k3s or (k3s is None and snapshot_file is None and _k3s_auto(ctx)):
        c = backup_context(ctx, state_dir)
        a = _ansible(c)
        _show(ctx, etcd.backup_k3s(c, a.inventory, node=node, data_dir=k3s_data_dir,
                                   private_key_file=a.private_key_file, user=a.user,
                                   on_event=_ansible_progress))
        return
    _show(ctx, etcd.backup_etcd(backup_context(ctx, state_dir), snapshot_file))


def _k3s_auto(ctx: typer.Context) -> bool:
    """Whether `backup etcd` should go the K3s way.

    It does when the platform lists its servers in an Ansible inventory and names no etcd
    endpoints of its own (then the snapshot API is not reachable from here, the servers are).
    """
    p = get_settings(ctx).platform
    return bool(p and p.ansible and p.backup and "etcd" not in p.backup.model_fields_set)


def _ansible(c: BackupContext) -> Ansible:
    a = c.platform.ansible
    if a is None:
        raise ConfigError("K3s etcd snapshots and restores need the Ansible inventory of the "
                          "servers", hint="add ansible: inventory: hosts.yaml to platform.yaml "
                                          "(servers in the `server` group)")
    return a


def _ansible_progress(event: Any) -> None:
    if event.kind == "task":
        _err.print(f"[dim]{event.play}: {event.task}[/]")
    elif event.kind in ("failed", "unreachable"):
        _err.print(f"[red]{event.task} {event.kind} on {event.host}[/]")


@backup.command("app")
def app_cmd(ctx: typer.Context,
            name: Annotated[str, typer.Argument(help="A target of backup.targets.")],
            state_dir: StateDir = None) -> None:
    """Back up application data: pg_dump -Fc through exec (or a DSN), or a tar of a path."""
    from k3sops.services.backup import app

    _show(ctx, app.backup_app(backup_context(ctx, state_dir), name))


@backup.command("list")
def list_cmd(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help="Only this kind (etcd, postgres, ...).")] = None,
    target: Annotated[str | None, typer.Option(help="Only this target.")] = None,
) -> None:
    """Backups with status, age, size and whether they were verified."""
    from k3sops.services.backup import repository

    _show(ctx, repository.list_backups(backup_context(ctx), kind, target))


@backup.command("show")
def show_cmd(ctx: typer.Context, backup_id: Annotated[str, typer.Argument(metavar="ID")]
             ) -> None:
    """The manifest of one backup and its verification records (JSON)."""
    from k3sops.services.backup import repository

    typer.echo(json.dumps(repository.manifest_json(backup_context(ctx), backup_id), indent=2))


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
    from k3sops.services.backup import verify

    r = verify.verify(backup_context(ctx, state_dir), backup_id, all_, since, read_data_subset)
    _show(ctx, r)
    if r.failed:
        raise FindingsAtThreshold(f"{len(r.failed)} of {len(r.records)} backup(s) failed "
                                  "verification: " + ", ".join(x.backup_id for x in r.failed),
                                  hint="see the failed checks above; do not rely on them")


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
    from k3sops.services.backup import repository

    policy = Retention(keep_daily=keep_daily, keep_weekly=keep_weekly,
                       keep_monthly=keep_monthly, keep_last=keep_last)
    _show(ctx, repository.prune(backup_context(ctx, state_dir), policy, dry_run))


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
    from k3sops.services.backup import restore

    c = backup_context(ctx, state_dir)
    if etcd:
        _restore_etcd(ctx, c, backup_id, yes=yes, restore_on=restore_on, data_dir=k3s_data_dir)
        return
    if to is not None:
        _restore_volume(ctx, c, backup_id, to=to, namespace=namespace, size=size, yes=yes)
        return
    r = restore.restore(c, backup_id, namespace=namespace, pod=pod, database=database,
                        dsn=dsn, path=path, create_database=create_database, yes=yes)
    _show(ctx, r)
    if any(s.result == "failed" for s in r.steps):  # pragma: no cover - raised before
        raise AdapterError("the restore failed")


def _restore_etcd(ctx: typer.Context, c: BackupContext, backup_id: str, *, yes: bool,
                  restore_on: str | None, data_dir: str) -> None:
    """`backup restore --etcd ID`: preflight, plan, and with --yes the restore."""
    from k3sops.domain.etcd_restore import require_ok
    from k3sops.services.backup import etcd_restore

    a = _ansible(c)
    r = etcd_restore.restore(c, backup_id, a.inventory, yes=yes, restore_host=restore_on,
                             data_dir=data_dir, private_key_file=a.private_key_file,
                             user=a.user, on_event=_ansible_progress)
    _show(ctx, r)
    if not r.plan.ok:
        require_ok(r.plan)  # a dry run with a failed preflight exits 1 too


def _restore_volume(ctx: typer.Context, c: BackupContext, backup_id: str, *, to: str | None,
                    namespace: str | None, size: str | None, yes: bool) -> None:
    """`backup restore ID --to PVC` for a volume backup: always a new PVC."""
    from k3sops.services.backup import volume

    manifest, record = volume.load(c, backup_id)
    source_ns = str((record.get("pvc") or {}).get("namespace") or "default")
    if not to:
        raise PlanRejected(f"{backup_id} is a volume backup: name the new PVC with --to NAME",
                           hint="a restore never writes over an existing volume")
    _show(ctx, volume.restore_volume(volume.longhorn(c), manifest, record,
                                     namespace or source_ns, to, apply=yes,
                                     audit=volume.audit_log(c), size=size))


@contextmanager
def _progress(what: str) -> Iterator[Callable[[str, int], None]]:
    """A progress bar on a terminal (stderr); plain state lines otherwise, only on change."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if not _err.is_terminal:
        last: list[str] = []

        def plain(state: str, pct: int) -> None:
            if [state] != last:
                last[:] = [state]
                print(f"{what}: {state} {pct}%", file=sys.stderr)
        yield plain
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[state]}"),
                  TimeElapsedColumn(), console=_err, transient=True) as bar:
        task = bar.add_task(what, total=100, state="Pending")
        yield lambda state, pct: bar.update(task, completed=pct, state=state)


@backup.command("volume")
def volume_cmd(
    ctx: typer.Context,
    pvc: Annotated[str, typer.Argument(help="The PVC whose Longhorn volume to back up.")],
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the PVC.")
                         ] = "default",
    timeout: Annotated[str, typer.Option(help="Give up waiting for Longhorn after this long.")
                       ] = "1h",
    state_dir: StateDir = None,
) -> None:
    """Back up a PVC's Longhorn volume (Snapshot + Backup) and record it, waiting for Longhorn.

    Completed only when Longhorn says Completed and the backup has a URL and a size.
    """
    from k3sops.services.backup import volume
    from k3sops.timeparse import parse_duration

    seconds = parse_duration(timeout).total_seconds()
    c = backup_context(ctx, state_dir)
    with _progress(f"longhorn backup of {namespace}/{pvc}") as on_progress:
        r = volume.backup_volume(c, volume.longhorn(c), namespace, pvc, timeout=seconds,
                                 on_progress=on_progress)
    _show(ctx, r)


@backup.command("schedule")
def schedule_cmd(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option("--kind", help="cronjob or systemd.")] = "cronjob",
    apply: Annotated[bool, typer.Option("--apply", help="Apply the CronJobs / write the unit "
                                                        "files (default: print them).")
                     ] = False,
    out: Annotated[Path | None, typer.Option(help="Directory for systemd units (--apply).")
                   ] = None,
    binary: Annotated[str | None, typer.Option(help="k3sops path in the systemd units.")
                      ] = None,
    env_file: Annotated[str | None, typer.Option(
        "--env-file", help="EnvironmentFile with the repository password (systemd).")] = None,
    user: Annotated[str | None, typer.Option(help="User= of the systemd services.")] = None,
    config_path: Annotated[str | None, typer.Option(
        "--config-path", help="platform.yaml path the scheduled runs use (systemd; default: "
                              "this one's absolute path).")] = None,
    state_dir: StateDir = None,
) -> None:
    """Schedule the backups and a weekly verify: CronJobs (Forbid) or systemd timers."""
    from k3sops.services.backup import schedule

    if kind not in ("cronjob", "systemd"):
        raise typer.BadParameter("--kind must be cronjob or systemd")
    settings = get_settings(ctx)
    if settings.platform is None or settings.platform.backup is None:
        raise ConfigError("no backup section in platform.yaml",
                          hint="the schedules come from backup.schedule and backup.targets")
    cfg = settings.platform.backup
    entries = schedule.entries_from_platform(cfg)
    audit = schedule.audit_log(state_dir, os.environ, Path.home())
    if kind == "cronjob":
        objects = schedule.kube_objects(settings, os.environ, Path.home()) if apply else None
        r = schedule.cronjobs(entries, namespace=cfg.schedule.namespace,
                              image=cfg.schedule.image, password=schedule.password_source(cfg),
                              objects=objects, apply=apply, audit=audit)
    else:
        exe = binary or shutil.which("k3sops") or str(Path(sys.executable).parent / "k3sops")
        opts = get_options(ctx)
        conf = config_path or str(opts.config.resolve() if opts.config else "/etc/k3sops/"
                                  "platform.yaml")
        r = schedule.systemd_units(entries, binary=exe, config=conf, env_file=env_file,
                                   user=user, out=out, apply=apply, audit=audit)
    _show(ctx, r)
