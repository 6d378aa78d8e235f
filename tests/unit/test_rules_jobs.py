"""Job and CronJob rules on a lab capture, and the cron schedules they are judged by.

Data: tests/data/rules/autoscaling.json (see test_rules_autoscaling.py), namespace r1-batch of
tests/data/rules/autoscaling-lab.yaml four minutes after it was applied: the real job and
cronjob controllers ran ``nightly`` (every run exceeds its 1-second deadline), ``hourly``
(every minute, succeeding; its newest run had just started), ``sync`` (Forbid, its first run's
pod unschedulable: later runs skipped), ``cleanup`` (suspended), ``yearly`` (1 January in
Europe/Berlin); Jobs ``export`` (unschedulable), ``reindex`` (running: kwok's completion
delayed), ``done`` (complete) and ``held`` (suspended). From the admission capture: CronJob
r1-refs/sync, whose Job cannot create its pod (missing ServiceAccount), and CronJob
r1-compute/report, whose Jobs a ResourceQuota refuses (workload-create-failed's).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from labdata import (
    assert_uses_are_evidence_only,
    by_name,
    keys,
    load,
    not_evaluated_without,
    objects,
    run,
    snapshot,
)

from k3sops.domain.checks import REGISTRY, cron
from k3sops.domain.snapshot import parse_time

pytestmark = pytest.mark.unit

DATA = load("autoscaling.json")
B = "r1-batch"


def test_job_stuck() -> None:
    assert run("job-stuck", snapshot(DATA)) == []  # no Job is 15 minutes old yet
    found = run("job-stuck", snapshot(DATA, later=timedelta(minutes=16)))
    # Not: reindex (runs), done (complete), held (suspended), r1-limits/export and the
    # r1-refs/sync Job (their pods are refused at creation: workload-create-failed).
    # hourly-29941142 had just been created at capture time: frozen 16 minutes later, its
    # Pending pod is as stuck as the others.
    assert keys(found) == {("Job", "export", B, "warning"), ("Job", "sync-29941139", B, "warning"),
                           ("Job", "hourly-29941142", B, "warning")}
    export = by_name(found, "export")
    assert export.message.endswith("pod export-2f54k cannot be scheduled")
    assert export.evidence["cause_ref"] == {"kind": "Pod", "namespace": B,
                                            "name": "export-2f54k"}
    assert by_name(found, "sync-29941139").evidence["cronjob"] == "sync"


def test_job_stuck_without_events_cannot_tell_refused_creates() -> None:
    """Without events nobody can say the pods are refused: the Job is reported as stuck."""
    later = timedelta(minutes=16)
    full = objects(run("job-stuck", snapshot(DATA, later=later)))
    blind = run("job-stuck", snapshot(DATA, later=later, unread=["events"]))
    extra = objects(blind) - full
    assert extra == {("Job", "r1-limits", "export"), ("Job", "r1-refs", "sync-29941123")}
    for f in blind:
        if (f.resource.kind, f.resource.namespace, f.resource.name) in extra:
            assert f.message.endswith("no pod exists")


def test_cronjob_failing() -> None:
    found = run("cronjob-failing", snapshot(DATA))
    # Not hourly (its runs succeed), sync (its run has not finished), the suspended cleanup.
    assert keys(found) == {("CronJob", "nightly", B, "warning")}
    f = found[0]
    assert f.evidence["reason"] == "DeadlineExceeded"
    assert f.evidence["failed_in_a_row"] == 2
    assert f.evidence["cause_ref"]["kind"] == "Job"


def test_cronjob_not_scheduling() -> None:
    found = run("cronjob-not-scheduling", snapshot(DATA))
    # Not: nightly/hourly (ran this minute), yearly (next run in January), cleanup
    # (suspended), r1-compute/report (its Jobs are refused: workload-create-failed).
    assert keys(found) == {("CronJob", "sync", B, "warning"),
                           ("CronJob", "sync", "r1-refs", "warning")}
    sync = next(f for f in found if f.resource.namespace == B)
    assert sync.evidence["cause_ref"] == {"kind": "Job", "namespace": B, "name": "sync-29941139"}
    assert "is still active and concurrencyPolicy is Forbid" in sync.message
    blind = run("cronjob-not-scheduling", snapshot(DATA, unread=["events"]))
    # without events the refused CronJob cannot be told apart: it is reported too
    assert objects(blind) - objects(found) == {("CronJob", "r1-compute", "report")}


def test_cronjob_suspended() -> None:
    assert REGISTRY["cronjob-suspended"].periods == ("weekly",)
    found = run("cronjob-suspended", snapshot(DATA))
    assert keys(found) == {("CronJob", "cleanup", B, "info")}


def test_the_cron_schedule_matches_the_controllers_runs() -> None:
    """The last run the controller made is the last time the parser says the schedule fired."""
    now = parse_time(DATA["captured_at"])
    assert now is not None
    checked = 0
    for cj in DATA["objects"]["cronjobs"]:
        last = parse_time((cj.get("status") or {}).get("lastScheduleTime"))
        if cj["metadata"]["name"] not in ("nightly", "hourly") or last is None:
            continue
        runs = cron.previous_runs(cron.parse(cj["spec"]["schedule"]), now, 1)
        assert runs == [last]
        checked += 1
    assert checked == 2


@pytest.mark.parametrize(("expr", "tz", "expected"), [
    # 5 December 2026 is a Saturday
    ("*/15 9-17 * * mon-fri", None, ["2026-12-04T17:45:00+00:00", "2026-12-04T17:30:00+00:00"]),
    ("0 3 * * *", None, ["2026-12-05T03:00:00+00:00", "2026-12-04T03:00:00+00:00"]),
    ("@weekly", None, ["2026-11-29T00:00:00+00:00", "2026-11-22T00:00:00+00:00"]),
    ("0 9 * * 7", None, ["2026-11-29T09:00:00+00:00", "2026-11-22T09:00:00+00:00"]),
    # both day fields restricted: either matches (Friday 4 Dec, Friday 27 Nov, 13 Nov)
    ("0 0 13 * 5", None, ["2026-12-04T00:00:00+00:00", "2026-11-27T00:00:00+00:00"]),
    ("0 0 1 1 *", "Europe/Berlin", ["2026-01-01T00:00:00+01:00", "2025-01-01T00:00:00+01:00"]),
    ("30 2 * * *", "Asia/Kolkata", ["2026-12-05T02:30:00+05:30", "2026-12-04T02:30:00+05:30"]),
])
def test_previous_runs(expr: str, tz: str | None, expected: list[str]) -> None:
    now = datetime(2026, 12, 5, 11, 3, 20, tzinfo=UTC)
    zone = cron.zone(tz)
    runs = cron.previous_runs(cron.parse(expr), now.astimezone(zone) if zone else now)
    assert [r.isoformat() for r in runs] == expected


def test_every_and_bad_schedules() -> None:
    start = datetime(2026, 12, 5, 0, 30, tzinfo=UTC)
    runs = cron.previous_runs(cron.parse("@every 2h"), datetime(2026, 12, 5, 11, 3, tzinfo=UTC),
                              since=start)
    assert [r.isoformat() for r in runs] == ["2026-12-05T10:30:00+00:00",
                                             "2026-12-05T08:30:00+00:00"]
    for bad in ("* * * *", "61 * * * *", "*/0 * * * *", "@every", "0 0 * foo *"):
        with pytest.raises(cron.CronError):
            cron.parse(bad)


@pytest.mark.parametrize("rule", ["job-stuck", "cronjob-failing", "cronjob-not-scheduling",
                                  "cronjob-suspended"])
def test_reads(rule: str) -> None:
    for kind in REGISTRY[rule].reads:
        assert not_evaluated_without(rule, DATA, kind), kind


def test_cronjob_failing_uses_nothing_else() -> None:
    assert REGISTRY["cronjob-failing"].uses == ()
    assert_uses_are_evidence_only("cronjob-failing", DATA)
