"""Runbooks for backups: stale, missing and failed backups, and restore drills."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

_SNAPSHOTS = step(
    "List etcd snapshots", "K3s snapshots on schedule (--etcd-snapshot-schedule-cron, "
    "default every 12 hours) and keeps --etcd-snapshot-retention (default 5).",
    "sudo k3s etcd-snapshot ls; kubectl get etcdsnapshotfiles.k3s.cattle.io",
    "The newest snapshot's time on each server; snapshots not ready to use.", "k3sops check")

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="backup-stale", title="Backup too old",
        summary="The last successful backup (etcd snapshot, Longhorn or application backup) "
                "is older than allowed: a restore now would lose that much data.",
        severity_hint="warning",
        steps=[
            _SNAPSHOTS,
            step("Check the backup job or schedule", "A suspended CronJob or a failing "
                 "schedule stops backups silently.",
                 "kubectl get cronjobs -A; kubectl -n longhorn-system get "
                 "recurringjobs.longhorn.io", "Suspended jobs, last schedule times long ago."),
            step("Take a backup now", "Closes the gap while you fix the schedule.",
                 "sudo k3s etcd-snapshot save --name on-demand",
                 "A new snapshot in `k3s etcd-snapshot ls`."),
        ],
        related=["backup-failed", "backup-missing"]),
    Runbook(
        id="backup-missing", title="No backup recorded",
        summary="platform.yaml configures backups but no successful backup was ever recorded: "
                "there may be nothing to restore from.",
        severity_hint="warning",
        steps=[
            step("Check the backup metric", "k3sops records each success as a metric.",
                 "promtool query instant <prometheus-url> "
                 "'k3sops_backup_last_success_timestamp_seconds'",
                 "No series: backups never ran, or their metric is not scraped.",
                 "k3sops metrics --query 'k3sops_backup_last_success_timestamp_seconds'"),
            _SNAPSHOTS,
        ],
        related=["backup-stale", "restore-drill"]),
    Runbook(
        id="backup-failed", title="Backup failed",
        summary="The newest backup (etcd snapshot or Longhorn backup) failed: the previous "
                "one is the last restore point.",
        severity_hint="critical",
        steps=[
            step("Read the error", "K3s and Longhorn record why.",
                 "kubectl get etcdsnapshotfiles.k3s.cattle.io -o yaml | grep -A3 error; "
                 "kubectl -n longhorn-system get backups.longhorn.io -o wide",
                 "S3 credentials or reachability, a full disk, or a volume not attached."),
            step("Check the server's logs", "Snapshot errors are logged by k3s.",
                 "journalctl -u k3s --since '-1 day' | grep -i snapshot",
                 "Upload timeouts (--etcd-s3-timeout), permission errors."),
            step("Retry once fixed", "Do not run two snapshot saves at once: concurrent "
                 "saves have corrupted each other.", "sudo k3s etcd-snapshot save",
                 "A new snapshot ready to use."),
        ],
        related=["backup-stale", "job-failed"]),
    Runbook(
        id="restore-drill", title="Restore drill due",
        summary="No backup was restored and verified recently: a backup reported as "
                "completed is not proof that it restores.",
        severity_hint="warning",
        steps=[
            step("Pick a recent backup", "Use the backup you would restore in an emergency.",
                 "sudo k3s etcd-snapshot ls", "A snapshot from the last day.", "k3sops check"),
            step("Restore it somewhere harmless", "A scratch server or namespace, never "
                 "production.", "k3s server --cluster-reset "
                 "--cluster-reset-restore-path=<snapshot-path>",
                 "The restore completes and the restored data is what you expect."),
            step("Confirm the check sees it", "The weekly and monthly checks look for a "
                 "verified restore.", None,
                 "restore-not-verified and restore-test-due are no longer reported.",
                 "k3sops check --monthly"),
        ],
        related=["emergency-etcd-restore", "backup-stale"]),
]
