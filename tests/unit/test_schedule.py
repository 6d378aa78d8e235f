"""Backup schedules: cron checks, cron -> OnCalendar, CronJob and unit rendering, platform.yaml."""

from __future__ import annotations

import pytest

from k3sops.config import PlatformConfigError, parse_platform
from k3sops.domain import schedule as sch
from k3sops.errors import UsageError
from k3sops.services.backup.schedule import entries_from_platform, password_source

pytestmark = pytest.mark.unit

MINIMAL = "name: shop\nenvironments:\n  production:\n"


@pytest.mark.parametrize(("cron", "calendar"), [
    ("0 2 * * *", "*-*-* 02:00:00 UTC"),
    ("*/15 * * * *", "*-*-* *:00/15:00 UTC"),
    ("30 1 * * 1-5", "Mon..Fri *-*-* 01:30:00 UTC"),
    ("0 4 * * sun", "Sun *-*-* 04:00:00 UTC"),
    ("0 3 1 * *", "*-*-01 03:00:00 UTC"),
    ("0 0,12 * * *", "*-*-* 00,12:00:00 UTC"),
    ("@weekly", "Sun *-*-* 00:00:00 UTC"),
    ("5 */6 * 1-3 *", "*-01..03-* 00/6:05:00 UTC"),
])
def test_cron_to_on_calendar(cron: str, calendar: str) -> None:
    assert sch.on_calendar(cron) == calendar


@pytest.mark.parametrize(("cron", "match"), [
    ("0 2 * *", "5-field"),
    ("60 2 * * *", "out of range for the minute"),
    ("0 24 * * *", "hour"),
    ("0 2 * * 8", "day of week"),
    ("0 2 */x * *", "bad step"),
])
def test_bad_cron_is_refused(cron: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        sch.cron_fields(cron)


def test_day_of_month_and_week_together_are_refused_for_systemd() -> None:
    with pytest.raises(UsageError, match="either matches"):
        sch.on_calendar("0 2 1 * 1")


def test_cronjob_forbids_overlap_and_keeps_the_password_off_the_command_line() -> None:
    entry = sch.ScheduleEntry(name="backup-etcd", cron="0 2 * * *", args=["backup", "etcd"])
    cj = sch.cronjob(entry, namespace="k3sops", image="img:1",
                     password=sch.PasswordSource(env="RESTIC_PASSWORD"))
    spec = cj["spec"]
    assert (spec["concurrencyPolicy"], spec["timeZone"], spec["schedule"]) == (
        "Forbid", "Etc/UTC", "0 2 * * *")
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    c = pod["containers"][0]
    assert c["args"] == ["--config", "/etc/k3sops/platform.yaml", "backup", "etcd"]
    assert c["env"] == [{"name": "RESTIC_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "k3sops-backup", "key": "restic-password"}}}]
    assert pod["restartPolicy"] == "Never"


def test_systemd_units_read_the_password_from_an_environment_file() -> None:
    entry = sch.ScheduleEntry(name="backup-orders", cron="30 1 * * 1-5",
                              args=["backup", "app", "orders"])
    units = sch.systemd_units(entry, binary="/usr/local/bin/k3sops", config="/etc/k3sops/p.yaml",
                              env_file="/etc/k3sops/backup.env")
    service, timer = units["k3sops-backup-orders.service"], units["k3sops-backup-orders.timer"]
    assert ("ExecStart=/usr/local/bin/k3sops --config /etc/k3sops/p.yaml backup app orders"
            in service)
    assert "EnvironmentFile=/etc/k3sops/backup.env" in service
    assert "OnCalendar=Mon..Fri *-*-* 01:30:00 UTC" in timer and "Persistent=true" in timer


def test_duplicate_or_bad_names_are_refused() -> None:
    e = sch.ScheduleEntry(name="backup-etcd", cron="0 2 * * *", args=["backup", "etcd"])
    with pytest.raises(UsageError, match="unique"):
        sch.all_systemd_units([e, e], binary="k3sops", config="c", env_file=None)
    bad = e.model_copy(update={"name": "Backup_Etcd"})
    with pytest.raises(UsageError, match="DNS-1123"):
        sch.cronjob(bad, namespace="k3sops", image="i", password=sch.PasswordSource())


def test_platform_schedule_gives_etcd_apps_volumes_and_weekly_verify() -> None:
    p = parse_platform(MINIMAL + """backup:
  repository: /srv/restic
  password_env: RESTIC_PASSWORD
  targets:
    - {name: orders, namespace: production, pod: postgres-0, schedule: "15 1 * * *"}
    - {name: cache, namespace: production, pod: redis-0, schedule: null}
  schedule:
    volumes:
      - {namespace: production, pvc: data-orders}
""", "platform.yaml")
    assert p.backup is not None
    entries = entries_from_platform(p.backup)
    assert [(e.name, e.cron, " ".join(e.args)) for e in entries] == [
        ("backup-etcd", "0 2 * * *", "backup etcd"),
        ("backup-orders", "15 1 * * *", "backup app orders"),
        ("backup-volume-production-data-orders", "0 3 * * *",
         "backup volume data-orders -n production"),
        ("verify-weekly", "0 4 * * 0", "backup verify --since 8d"),
    ]
    assert password_source(p.backup) == sch.PasswordSource(env="RESTIC_PASSWORD")


def test_a_bad_schedule_in_platform_yaml_names_file_line_and_field() -> None:
    with pytest.raises(PlatformConfigError) as e:
        parse_platform(MINIMAL + "backup:\n  repository: /srv/restic\n  password_env: PW\n"
                                 "  schedule:\n    etcd: '0 25 * * *'\n", "platform.yaml")
    assert "platform.yaml:8: backup.schedule.etcd: " in e.value.message
    assert "out of range for the hour" in e.value.message
