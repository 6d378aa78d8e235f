"""`backup volume`, `backup schedule`, `backup etcd --k3s` and `backup restore --etcd`/volume.

Mounted into the `backup` group (:mod:`k3sops.cli.backup_cmd`) by :func:`register`; the
K3s etcd snapshot and the two restores are reached from that module's `etcd` and `restore`
commands through :func:`run_k3s_etcd`, :func:`run_restore_etcd` and :func:`run_restore_volume`.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from k3sops.cli.options import get_options
from k3sops.errors import ConfigError, PlanRejected

if TYPE_CHECKING:
    from k3sops.services import backup as core
    from k3sops.services import backup_schedule, etcd_restore, k3s_snapshot, volume_backup

_err = Console(stderr=True, highlight=False)

StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", envvar="K3SOPS_STATE_DIR",
    help="Audit log, history and lock files (default ~/.local/state/k3sops).")]


def register(backup: typer.Typer) -> None:
    """Add `volume` and `schedule` to the `backup` group."""
    backup.command("volume")(volume_cmd)
    backup.command("schedule")(schedule_cmd)


def _ctx(ctx: typer.Context, state_dir: Path | None) -> core.BackupContext:
    from k3sops.services import backup as core
    from k3sops.services import context

    opts = get_options(ctx)
    settings = context.resolve(opts.kubeconfig, opts.context, opts.config, os.environ,
                               Path.cwd())
    return core.BackupContext(settings, os.environ, Path.home(), state=state_dir)


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


# --------------------------------------------------------------------------------------------
# backup volume


def _volume_table(r: volume_backup.VolumeBackupResult, out: Console) -> None:
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
    from k3sops.domain.alerting import parse_duration
    from k3sops.output.render import render
    from k3sops.services import volume_backup

    seconds = parse_duration(timeout).total_seconds()
    c = _ctx(ctx, state_dir)
    with _progress(f"longhorn backup of {namespace}/{pvc}") as on_progress:
        r = volume_backup.backup_volume(c, volume_backup.longhorn(c), namespace, pvc,
                                        timeout=seconds, on_progress=on_progress)
    render(r, get_options(ctx).output.value, _volume_table)


def _volume_restore_table(r: volume_backup.VolumeRestoreReport, out: Console) -> None:
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


def run_restore_volume(ctx: typer.Context, backup_id: str, *, to: str | None,
                       namespace: str | None, size: str | None, yes: bool,
                       state_dir: Path | None) -> None:
    """`backup restore ID --to PVC` for a volume backup: always a new PVC."""
    from k3sops.output.render import render
    from k3sops.services import volume_backup

    c = _ctx(ctx, state_dir)
    manifest, record = volume_backup.load(c, backup_id)
    source_ns = str((record.get("pvc") or {}).get("namespace") or "default")
    if not to:
        raise PlanRejected(f"{backup_id} is a volume backup: name the new PVC with --to NAME",
                           hint="a restore never writes over an existing volume")
    r = volume_backup.restore_volume(volume_backup.longhorn(c), manifest, record,
                                     namespace or source_ns, to, apply=yes,
                                     audit=volume_backup.audit_log(c), size=size)
    render(r, get_options(ctx).output.value, _volume_restore_table)


# --------------------------------------------------------------------------------------------
# K3s etcd snapshots and the cluster-reset restore


def _ansible(c: core.BackupContext) -> Any:
    a = c.platform.ansible
    if a is None:
        raise ConfigError("K3s etcd snapshots and restores need the Ansible inventory of the "
                          "servers", hint="add ansible: inventory: hosts.yaml to platform.yaml "
                                          "(servers in the `server` group)")
    return a


def k3s_auto(ctx: typer.Context) -> bool:
    """Whether `backup etcd` should go the K3s way.

    It does when the platform lists its servers in an Ansible inventory and names no etcd
    endpoints of its own (then the snapshot API is not reachable from here, the servers are).
    """
    from k3sops.services import context

    opts = get_options(ctx)
    settings = context.resolve(opts.kubeconfig, opts.context, opts.config, os.environ,
                               Path.cwd())
    p = settings.platform
    return bool(p and p.ansible and p.backup and "etcd" not in p.backup.model_fields_set)


def _snapshot_table(r: k3s_snapshot.K3sSnapshotResult, out: Console) -> None:
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


def run_k3s_etcd(ctx: typer.Context, *, node: str | None, data_dir: str,
                 state_dir: Path | None) -> None:
    """`backup etcd --k3s`: k3s etcd-snapshot save on a server over SSH, then stored."""
    from k3sops.output.render import render
    from k3sops.services import k3s_snapshot

    c = _ctx(ctx, state_dir)
    a = _ansible(c)
    r = k3s_snapshot.backup_k3s(c, a.inventory, node=node, data_dir=data_dir,
                                private_key_file=a.private_key_file, user=a.user,
                                on_event=_ansible_progress)
    render(r, get_options(ctx).output.value, _snapshot_table)


def _ansible_progress(event: Any) -> None:
    if event.kind == "task":
        _err.print(f"[dim]{event.play}: {event.task}[/]")
    elif event.kind in ("failed", "unreachable"):
        _err.print(f"[red]{event.task} {event.kind} on {event.host}[/]")


def _restore_etcd_table(r: etcd_restore.EtcdRestoreReport, out: Console) -> None:
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


def run_restore_etcd(ctx: typer.Context, backup_id: str, *, yes: bool,
                     restore_on: str | None, data_dir: str, state_dir: Path | None) -> None:
    """`backup restore --etcd ID`: preflight, plan, and with --yes the restore."""
    from k3sops.domain.etcd_restore import require_ok
    from k3sops.output.render import render
    from k3sops.services import etcd_restore

    c = _ctx(ctx, state_dir)
    a = _ansible(c)
    r = etcd_restore.restore(c, backup_id, a.inventory, yes=yes, restore_host=restore_on,
                             data_dir=data_dir, private_key_file=a.private_key_file,
                             user=a.user, on_event=_ansible_progress)
    render(r, get_options(ctx).output.value, _restore_etcd_table)
    if not r.plan.ok:
        require_ok(r.plan)  # a dry run with a failed preflight exits 1 too


# --------------------------------------------------------------------------------------------
# backup schedule


def _schedule_table(r: backup_schedule.ScheduleReport, out: Console) -> None:
    """Summary, and in a dry run the manifests (or units) alone on stdout.

    So `k3sops backup schedule | kubectl apply -f -` works; summary and notes go to stderr.
    """
    from rich.table import Table

    mode = "applied" if r.applied else "dry run (pass --apply)"
    t = Table("name", "schedule (UTC)", "command", title=f"backup schedule ({r.kind}): {mode}")
    for e in r.entries:
        t.add_row(e.name, e.cron, "k3sops " + " ".join(e.args))
    (out if r.applied else _err).print(t)
    if not r.applied:
        if r.kind == "cronjob":
            import yaml

            out.file.write(yaml.safe_dump_all(r.manifests, sort_keys=False))
        else:
            for name, text in r.units.items():
                out.file.write(f"# {name}\n{text}\n")
    if r.verified is not None:
        _err.print("systemd-analyze verify: " + ("ok" if r.verified else "FAILED"))
    for w in r.written:
        out.print(f"[green]applied[/] {w}")
    for n in r.notes:
        _err.print(f"[dim]note:[/] {n}")


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
    from k3sops.output.render import render
    from k3sops.services import backup_schedule, context

    if kind not in ("cronjob", "systemd"):
        raise typer.BadParameter("--kind must be cronjob or systemd")
    opts = get_options(ctx)
    settings = context.resolve(opts.kubeconfig, opts.context, opts.config, os.environ,
                               Path.cwd())
    if settings.platform is None or settings.platform.backup is None:
        raise ConfigError("no backup section in platform.yaml",
                          hint="the schedules come from backup.schedule and backup.targets")
    cfg = settings.platform.backup
    entries = backup_schedule.entries_from_platform(cfg)
    audit = backup_schedule.audit_log(state_dir, os.environ, Path.home())
    if kind == "cronjob":
        objects = (backup_schedule.kube_objects(settings, os.environ, Path.home())
                   if apply else None)
        r = backup_schedule.cronjobs(entries, namespace=cfg.schedule.namespace,
                                     image=cfg.schedule.image,
                                     password=backup_schedule.password_source(cfg),
                                     objects=objects, apply=apply, audit=audit)
    else:
        exe = binary or shutil.which("k3sops") or str(Path(sys.executable).parent / "k3sops")
        conf = config_path or str(opts.config.resolve() if opts.config else "/etc/k3sops/"
                                  "platform.yaml")
        r = backup_schedule.systemd_units(entries, binary=exe, config=conf, env_file=env_file,
                                          user=user, out=out, apply=apply, audit=audit)
    render(r, opts.output.value, _schedule_table)
