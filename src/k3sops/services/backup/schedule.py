"""`backup schedule`: the backups and the weekly verify as CronJobs or systemd timers.

Dry run (default): the manifests or unit files are rendered and returned (systemd units are
checked with ``systemd-analyze verify`` when it is installed; otherwise the report says they
were not). With ``apply``: CronJobs are server-side applied (field manager ``k3sops``), after
the API server accepted all of them in a server-side dry run; unit files are written into the
output directory. Each applied object or file is audited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.adapters import systemd
from k3sops.adapters.audit import AuditLog, current_user, state_dir
from k3sops.adapters.kube import KubeClient
from k3sops.config import Backup
from k3sops.domain import schedule as sch
from k3sops.errors import PlanRejected
from k3sops.services import context

Kind = Literal["cronjob", "systemd"]


def entries_from_platform(cfg: Backup) -> list[sch.ScheduleEntry]:
    """The scheduled commands platform.yaml asks for, plus the weekly verify.

    That is etcd, each app target and each Longhorn volume that has a schedule.
    """
    sched = cfg.schedule
    targets: list[tuple[str, list[str], str]] = []
    if sched.etcd:
        targets.append(("etcd", ["backup", "etcd"], sched.etcd))
    targets += [(t.name, ["backup", "app", t.name], t.schedule) for t in cfg.targets
                if t.schedule]
    for v in sched.volumes:
        name = sch.entry_name("volume", f"{v.namespace}-{v.pvc}")
        targets.append((name, ["backup", "volume", v.pvc, "-n", v.namespace], v.schedule))
    return sch.default_entries(targets, verify_cron=sched.verify)


def password_source(cfg: Backup) -> sch.PasswordSource:
    """Where scheduled runs read the repository password (names only)."""
    return sch.PasswordSource(env=cfg.password_env,
                              file=str(cfg.password_file) if cfg.password_file else None)


def audit_log(state: Path | None, env: Mapping[str, str], home: Path) -> AuditLog:
    """The audit log under the state directory (``--state-dir`` > K3SOPS_STATE_DIR > default)."""
    return AuditLog(state_dir(state, env, home) / "audit.jsonl")


def kube_objects(settings: context.Settings, env: Mapping[str, str], home: Path,
                 ) -> KubeClient:
    """The platform's cluster, for applying CronJobs."""
    return context.kube(settings, env, home)


class ScheduleReport(BaseModel):
    """What was rendered, how it was checked, and what was applied or written."""

    kind: Kind
    applied: bool
    entries: list[sch.ScheduleEntry]
    manifests: list[dict[str, Any]] = Field(default_factory=list)
    units: dict[str, str] = Field(default_factory=dict)
    verified: bool | None = Field(
        default=None, description="systemd-analyze verify passed (None: not available)")
    notes: list[str] = Field(default_factory=list)
    written: list[str] = Field(default_factory=list)
    audit_log: str | None = None


def cronjobs(entries: Sequence[sch.ScheduleEntry], *, namespace: str, image: str,
             password: sch.PasswordSource, objects: KubeClient | None, apply: bool,
             audit: AuditLog | None) -> ScheduleReport:
    """Render (and with ``apply`` server-side apply) the CronJobs.

    Raises:
        UsageError: an invalid entry.
        AdapterError: the API server refused a CronJob (nothing is applied then).
    """
    docs = sch.cronjobs(entries, namespace=namespace, image=image, password=password)
    report = ScheduleReport(kind="cronjob", applied=apply, entries=list(entries),
                            manifests=docs)
    report.notes.append(f"needs ConfigMap {sch.CONFIG_MAP} (key platform.yaml), Secret "
                        f"{sch.SECRET} (key {sch.SECRET_KEY}) and ServiceAccount k3sops "
                        f"in namespace {namespace}")
    if not apply or objects is None:
        return report
    report.audit_log = str(audit.path) if audit else None
    if objects.find("v1", "namespaces", namespace) is None:
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        objects.apply(ns, "namespaces")
        _audit(audit, objects, "apply", f"namespaces/{namespace}")
    for d in docs:  # all or nothing: the API server checks every one before any is stored
        objects.apply(d, "cronjobs", dry_run=True)
    for d in docs:
        objects.apply(d, "cronjobs")
        target = f"{namespace}/cronjobs/{d['metadata']['name']}"
        report.written.append(target)
        _audit(audit, objects, "apply", target)
    return report


def _audit(audit: AuditLog | None, objects: KubeClient, action: str, target: str) -> None:
    if audit is not None:
        audit.append({"who": current_user(), "context": objects.context,
                      "what": {"action": action, "target": target, "detail": "backup schedule"},
                      "result": "ok", "error": None})


def systemd_units(entries: Sequence[sch.ScheduleEntry], *, binary: str, config: str,
                  env_file: str | None, user: str | None, out: Path | None, apply: bool,
                  audit: AuditLog | None) -> ScheduleReport:
    """Render, verify (when possible) and with ``apply`` write the unit files into ``out``.

    Raises:
        UsageError: an invalid entry (e.g. a cron expression systemd cannot express).
        PlanRejected: systemd-analyze found a problem, or ``apply`` without ``out``.
    """
    units = sch.all_systemd_units(entries, binary=binary, config=config, env_file=env_file,
                                  user=user)
    report = ScheduleReport(kind="systemd", applied=apply, entries=list(entries), units=units)
    if systemd.analyze_available():
        problems = systemd.verify_units(units)
        report.verified = not problems
        if problems:
            raise PlanRejected("systemd-analyze verify found problems in the rendered units: "
                               + "; ".join(problems[:5]),
                               hint="is --binary the path of an installed k3sops?")
    else:
        report.notes.append("systemd-analyze is not installed here: units not verified")
    if env_file:
        report.notes.append(f"{env_file}: put the repository password there as VAR=value "
                            "(mode 0600); systemd reads it, it never reaches a command line")
    if not apply:
        return report
    if out is None:
        raise PlanRejected("--apply needs --out DIR for the unit files",
                           hint="e.g. --out /etc/systemd/system, then systemctl daemon-reload "
                                "and systemctl enable --now k3sops-*.timer")
    report.audit_log = str(audit.path) if audit else None
    for path in systemd.write_units(out, units):
        report.written.append(str(path))
        if audit is not None:
            audit.append({"who": current_user(), "context": "local",
                          "what": {"action": "write", "target": str(path),
                                   "detail": "backup schedule"}, "result": "ok", "error": None})
    report.notes.append("then: systemctl daemon-reload && systemctl enable --now "
                        + " ".join(n for n in units if n.endswith(".timer")))
    return report
