"""Backup schedules rendered as Kubernetes CronJobs or systemd timer + service units (pure).

Each :class:`ScheduleEntry` is one recurring k3sops command (``backup etcd``, ``backup app
orders``, ``backup verify --since 8d``) with a 5-field cron expression. Rendered as:

* a CronJob (batch/v1) with ``concurrencyPolicy: Forbid`` (two runs of one backup never
  overlap: the second is skipped while the first runs), ``timeZone: Etc/UTC``, no retries of a
  failed Job (a half-made backup is marked Failed by the next run; retrying at once only doubles
  the load), the platform file from a ConfigMap and the repository password from a Secret;
* or a ``.service`` (Type=oneshot) and ``.timer`` (``OnCalendar`` from the cron expression,
  ``Persistent=true`` so a run missed while the machine was off happens at boot). The password
  comes from an ``EnvironmentFile`` (mode 0600), never from the command line.

Cron and ``OnCalendar`` differ where day of month and day of week are both restricted: cron
runs when *either* matches, systemd when *both* do. Such expressions are refused rather than
silently changed.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.errors import UsageError
from k3sops.timeparse import CRON_DAY_NAMES, cron_fields

MANAGED_BY = "app.kubernetes.io/managed-by"
PART_OF = "app.kubernetes.io/part-of"
CONFIG_MAP = "k3sops-platform"
"""ConfigMap holding ``platform.yaml`` (key ``platform.yaml``), mounted at /etc/k3sops."""
SECRET = "k3sops-backup"  # noqa: S105 - the name of a Secret, not a secret
"""Secret holding the restic repository password (key ``restic-password``)."""
SECRET_KEY = "restic-password"  # noqa: S105 - a key name in that Secret
CONFIG_PATH = "/etc/k3sops/platform.yaml"

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ScheduleEntry(BaseModel):
    """One recurring k3sops command."""

    name: str = Field(description="DNS-1123 label; the CronJob/unit is k3sops-<name>")
    cron: str = Field(description="5-field cron expression (or @daily, @weekly ...)")
    args: list[str] = Field(description="k3sops arguments, e.g. ['backup', 'etcd']")
    kind: Literal["backup", "verify"] = "backup"


class PasswordSource(BaseModel):
    """How the scheduled job gets the restic password (names only, never the value)."""

    env: str | None = Field(default=None, description="environment variable k3sops reads")
    file: str | None = Field(default=None, description="file k3sops reads")


def _calendar_part(value: str, width: int) -> str:
    out = []
    for part in value.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            start = "0" if width == 2 else "1"
            out.append(f"{start.zfill(width)}/{step}" if step else "*")
            continue
        lo, _, hi = base.partition("-")
        text = lo.zfill(width) + (f"..{hi.zfill(width)}" if hi else "")
        out.append(text + (f"/{step}" if step else ""))
    return ",".join(out)


def on_calendar(expr: str) -> str:
    """The systemd ``OnCalendar=`` value equivalent to a cron expression (in UTC).

    Raises:
        UsageError: the expression is invalid, or restricts both day of month and day of
            week (cron ORs them, systemd ANDs them), or uses steps on day of week.
    """
    minute, hour, dom, month, dow = cron_fields(expr)
    if dom != "*" and dow != "*":
        raise UsageError(f"schedule {expr!r} restricts both day of month and day of week",
                         hint="cron runs when either matches, systemd when both do; use one")
    days = ""
    if dow != "*":
        if "/" in dow:
            raise UsageError(f"schedule {expr!r}: steps in the day of week are not supported")
        parts = []
        for part in dow.split(","):
            lo, _, hi = part.partition("-")
            name = CRON_DAY_NAMES[lo.lower()]
            parts.append(f"{name}..{CRON_DAY_NAMES[hi.lower()]}" if hi else name)
        days = ",".join(parts) + " "
    mon = "*" if month == "*" else _calendar_part(month, 2)
    day = "*" if dom == "*" else _calendar_part(dom, 2)
    return (f"{days}*-{mon}-{day} {_calendar_part(hour, 2)}:{_calendar_part(minute, 2)}:00 "
            "UTC")


def _check_name(name: str) -> None:
    if not _NAME.match(name) or len(name) > 45:
        raise UsageError(f"schedule name {name!r} is not a DNS-1123 label of 45 characters "
                         "or fewer", hint="lowercase letters, digits and '-'")


def cronjob(entry: ScheduleEntry, *, namespace: str, image: str, password: PasswordSource,
            service_account: str = "k3sops") -> dict[str, Any]:
    """A CronJob running ``k3sops --config /etc/k3sops/platform.yaml ARGS``."""
    _check_name(entry.name)
    env: list[dict[str, Any]] = []
    mounts = [{"name": "platform", "mountPath": "/etc/k3sops", "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "platform",
                                      "configMap": {"name": CONFIG_MAP}}]
    if password.env:
        env.append({"name": password.env, "valueFrom": {"secretKeyRef": {
            "name": SECRET, "key": SECRET_KEY}}})
    if password.file:
        directory, _, filename = password.file.rpartition("/")
        mounts.append({"name": "restic-password", "mountPath": directory or "/",
                       "readOnly": True})
        volumes.append({"name": "restic-password", "secret": {
            "secretName": SECRET, "defaultMode": 0o400,
            "items": [{"key": SECRET_KEY, "path": filename}]}})
    labels = {MANAGED_BY: "k3sops", PART_OF: "k3sops-backup", "k3sops.io/schedule": entry.kind}
    container = {"name": "k3sops", "image": image,
                 "args": ["--config", CONFIG_PATH, *entry.args],
                 "env": env, "volumeMounts": mounts,
                 "securityContext": {"allowPrivilegeEscalation": False,
                                     "readOnlyRootFilesystem": False}}
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": f"k3sops-{entry.name}", "namespace": namespace, "labels": labels},
        "spec": {
            "schedule": " ".join(cron_fields(entry.cron)),
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {"backoffLimit": 0,
                         "template": {"metadata": {"labels": labels},
                                      "spec": {"restartPolicy": "Never",
                                               "serviceAccountName": service_account,
                                               "containers": [container],
                                               "volumes": volumes}}}},
        },
    }


def cronjobs(entries: Sequence[ScheduleEntry], *, namespace: str, image: str,
             password: PasswordSource) -> list[dict[str, Any]]:
    """One CronJob per entry (names must be unique).

    Raises:
        UsageError: two entries share a name, or an entry is invalid.
    """
    _unique(entries)
    return [cronjob(e, namespace=namespace, image=image, password=password) for e in entries]


def _unique(entries: Sequence[ScheduleEntry]) -> None:
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"schedule names must be unique: {', '.join(dupes)} repeated")


def systemd_units(entry: ScheduleEntry, *, binary: str, config: str,
                  env_file: str | None, user: str | None = None) -> dict[str, str]:
    """``k3sops-NAME.service`` and ``k3sops-NAME.timer`` as file name -> content."""
    _check_name(entry.name)
    calendar = on_calendar(entry.cron)
    unit = f"k3sops-{entry.name}"
    cmd = shlex.join([binary, "--config", config, *entry.args])
    service = [
        "[Unit]",
        f"Description=k3sops {' '.join(entry.args)} ({entry.kind})",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        f"ExecStart={cmd}",
        "Environment=K3SOPS_OUTPUT=json",
    ]
    if env_file:
        # The restic password: a 0600 file of VAR=value lines, read by systemd, not argv.
        service.append(f"EnvironmentFile={env_file}")
    if user:
        service.append(f"User={user}")
    service += ["Nice=10", "IOSchedulingClass=best-effort", "IOSchedulingPriority=7",
                "TimeoutStartSec=6h", ""]
    timer = [
        "[Unit]",
        f"Description=Run {unit}.service on schedule {entry.cron}",
        "",
        "[Timer]",
        f"OnCalendar={calendar}",
        "Persistent=true",
        "RandomizedDelaySec=5min",
        f"Unit={unit}.service",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ]
    return {f"{unit}.service": "\n".join(service), f"{unit}.timer": "\n".join(timer)}


def all_systemd_units(entries: Sequence[ScheduleEntry], *, binary: str, config: str,
                      env_file: str | None, user: str | None = None) -> dict[str, str]:
    """Units of every entry.

    Raises:
        UsageError: two entries share a name, or an entry is invalid.
    """
    _unique(entries)
    out: dict[str, str] = {}
    for e in entries:
        out.update(systemd_units(e, binary=binary, config=config, env_file=env_file,
                                 user=user))
    return out


def entry_name(prefix: str, text: str) -> str:
    """A schedule name from free text (a PVC's namespace and name): DNS-1123, short enough."""
    clean = re.sub(r"[^a-z0-9-]+", "-", f"{prefix}-{text}".lower()).strip("-")
    return clean[:38].rstrip("-")


def default_entries(targets: Sequence[tuple[str, list[str], str]], *,
                    verify_cron: str = "0 4 * * 0") -> list[ScheduleEntry]:
    """Entries for backup targets ``(name, k3sops args, cron)`` plus a weekly verify.

    The weekly verify checks every backup made since just over a week ago (8 days: a slow
    previous verify never leaves a gap).
    """
    entries = [ScheduleEntry(name=f"backup-{name}", cron=cron, args=args)
               for name, args, cron in targets]
    entries.append(ScheduleEntry(name="verify-weekly", cron=verify_cron, kind="verify",
                                 args=["backup", "verify", "--since", "8d"]))
    return entries
