"""Alertmanager webhooks: parse, enrich with the object's diagnosis and runbook, store, forward.

`k3sops serve` receives Alertmanager's webhook payload (version 4, the body of
``POST /api/v1/alerts``; see Alertmanager's ``notify/webhook``: the template data plus
``version``, ``groupKey`` and ``truncatedAlerts``). For each alert:

* firing: the Kubernetes object is found from its labels (``pod``, ``deployment``,
  ``persistentvolumeclaim``, ``node``…, :data:`OBJECT_LABELS`), diagnosed with the same
  engine and walk as `k3sops diagnose` on the service's snapshot, given the runbook its rule
  names (``runbook_id``), stored once per (fingerprint, startsAt) and forwarded to each
  receiver (generic JSON webhook, or a Slack-compatible incoming webhook) by the replica
  whose insert won. Alertmanager repeats a firing alert every ``repeat_interval``: a repeat
  is stored once and forwarded once;
* resolved: the stored alert is closed (``endsAt``) and the replica that closed it tells the
  receivers (the record they got, with ``status: resolved`` and ``endsAt``), once.

Forwarding is not the leader's alone: Alertmanager delivers to the Service, which may pick
either replica (and keeps the connection), so a leader-only forward would lose every alert
that reached the follower. The store's unique (fingerprint, startsAt) key decides instead:
whichever replica stores or closes the record forwards it, exactly once across replicas
sharing the PostgreSQL store.

A body that is not a version-4 payload (:mod:`.webhook_payload` parses it) is refused whole
(:class:`PayloadInvalid`, HTTP 400; :class:`PayloadTooLarge`, HTTP 413) before anything is
stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from k3sops.adapters.store import AlertRecord, HistoryStore
from k3sops.adapters.webhook import WebhookSender
from k3sops.domain import diagnose as dg
from k3sops.domain import runbooks
from k3sops.domain.findings import Source
from k3sops.domain.snapshot import KIND_NAMES, ClusterSnapshot, Obj
from k3sops.errors import K3sopsError, PayloadInvalid
from k3sops.serve.webhook_payload import (
    MAX_BODY,
    WEBHOOK_VERSION,
    WebhookAlert,
    WebhookMessage,
    parse_payload,
)
from k3sops.services import diagnose as diagnose_service
from k3sops.services.context import Settings

__all__ = ["MAX_BODY", "MAX_SNAPSHOT_AGE", "OBJECT_LABELS", "WEBHOOK_VERSION", "AlertIntake",
           "Enricher", "IntakeResult", "Receiver", "WebhookAlert", "WebhookMessage",
           "cli_previous_logs", "diagnose_for", "enricher", "object_of", "parse_payload",
           "runbook_of", "slack_message"]

log = logging.getLogger(__name__)

MAX_SNAPSHOT_AGE = 10.0
"""Seconds one analysed snapshot serves alerts before a fresh one replaces it: the engine's
pass costs ~1 s of CPU at 10,000 pods (bench/alert_enrich.py), too much to repeat every
second during an alert storm; 10 s is well inside Alertmanager's own group_wait (30 s)."""

OBJECT_LABELS: tuple[tuple[str, str], ...] = (
    ("pod", "pods"), ("deployment", "deployments"), ("statefulset", "statefulsets"),
    ("daemonset", "daemonsets"), ("job_name", "jobs"), ("cronjob", "cronjobs"),
    ("replicaset", "replicasets"), ("persistentvolumeclaim", "persistentvolumeclaims"),
    ("horizontalpodautoscaler", "horizontalpodautoscalers"), ("ingress", "ingresses"),
    ("service", "services"), ("persistentvolume", "persistentvolumes"), ("node", "nodes"),
)
"""Label -> kind, most specific first: a crash-looping pod's alert also names its node.

kube-state-metrics names a Job ``job_name`` (``job`` is Prometheus' scrape job). An alert
with none of these but a ``namespace`` is diagnosed as that namespace."""

Enrich = Callable[[Mapping[str, str], Mapping[str, str]], dict[str, Any]]
PreviousLogs = Callable[[list[Obj]], Mapping[str, Mapping[str, list[str]]]]
"""Pods -> ``{pod name: {container: the tail of its previous log}}``."""


@dataclass(frozen=True)
class Receiver:
    """Where enriched alerts are forwarded; ``url`` may hold a token (Slack puts it there)."""

    name: str
    kind: Literal["webhook", "slack"]
    url: SecretStr


@dataclass
class IntakeResult:
    """What one delivery did (the endpoint answers it as JSON)."""

    alerts: int = 0
    stored: int = 0
    duplicates: int = 0
    resolved: int = 0
    forwarded: int = 0
    failed: int = 0
    """Deliveries to receivers that failed (each receiver of each new alert counts once)."""
    fingerprints: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The result as the endpoint's JSON answer."""
        return {"alerts": self.alerts, "stored": self.stored, "duplicates": self.duplicates,
                "resolved": self.resolved, "forwarded": self.forwarded, "failed": self.failed}


# -- enrichment ---------------------------------------------------------------------------


def object_of(labels: Mapping[str, str]) -> dict[str, Any] | None:
    """The object an alert is about, from its labels: ``{kind, plural, namespace, name}``."""
    namespace = labels.get("namespace") or None
    for label, plural in OBJECT_LABELS:
        name = labels.get(label)
        if name:
            scoped = plural not in ("nodes", "persistentvolumes")
            if scoped and namespace is None:
                continue  # a namespaced object without its namespace cannot be found
            return {"kind": KIND_NAMES[plural], "plural": plural, "label": label,
                    "namespace": namespace if scoped else None, "name": name}
    if namespace:
        return {"kind": "Namespace", "plural": "namespaces", "label": "namespace",
                "namespace": None, "name": namespace}
    return None


def runbook_of(labels: Mapping[str, str], annotations: Mapping[str, str],
               report: dg.DiagnosisReport | None) -> dict[str, Any] | None:
    """The runbook the rule names (``runbook_id`` annotation, else label), with its steps.

    Without one, the first root cause's runbook (the finding that explains the alert).
    """
    wanted = annotations.get("runbook_id") or labels.get("runbook_id")
    source = "rule"
    if not wanted and report is not None:
        wanted = next((r.runbook for r in report.root_causes if r.runbook), None)
        source = "root cause"
    if not wanted:
        return None
    out: dict[str, Any] = {"id": wanted, "from": source,
                           "show": f"k3sops runbook show {wanted}"}
    if url := annotations.get("runbook_url"):
        out["url"] = url
    rb = runbooks.by_id().get(wanted)
    if rb is None:
        out["known"] = False
        return out
    out.update(known=True, title=rb.title, summary=rb.summary,
               steps=[s.model_dump(mode="json", exclude_none=True) for s in rb.steps])
    return out


def diagnose_for(snapshot: ClusterSnapshot, obj: Mapping[str, Any], settings: Settings,
                 sources: Sequence[Source],
                 logs: PreviousLogs | None = None) -> dg.DiagnosisReport | None:
    """The diagnosis `k3sops diagnose` gives for ``obj`` (None: not in the snapshot).

    ``logs`` reads the previous log of crash-looping pods (as the CLI attaches them); without
    it the diagnosis stays within the snapshot.
    """
    platform = settings.platform
    plural, ns, name = obj["plural"], obj["namespace"], obj["name"]
    dg.analyse(snapshot, platform, {s.name for s in sources if not s.ok})
    src = list(sources)
    if plural == "namespaces":
        return dg.diagnose_cluster(snapshot, name, {}, platform).report(
            f"namespace/{name}", src)
    found = dg.find(snapshot, plural, name, ns)
    if not snapshot.unread(plural) and found is None:
        return None
    if plural == "pods":
        pod_logs = logs([found]).get(name) if logs and found and dg.crashlooping(found) else None
        return dg.diagnose_pod(snapshot, ns, name, pod_logs, platform=platform).report(
            f"pod/{ns}/{name}", src)
    if plural == "nodes":
        return dg.diagnose_node(snapshot, name, platform=platform).report(f"node/{name}", src)
    if plural == "deployments":
        looping = [p for p in dg.pods_of_deployment(snapshot, ns, name) if dg.crashlooping(p)]
        return dg.diagnose_deployment(snapshot, ns, name, logs(looping) if logs and looping
                                      else {}, platform).report(f"deployment/{ns}/{name}", src)
    prefix = f"{ns}/" if ns else ""
    return dg.diagnose_object(snapshot, plural, ns, name, platform=platform).report(
        f"{KIND_NAMES[plural].lower()}/{prefix}{name}", src)


def cli_previous_logs(settings: Settings, env: Mapping[str, str],
                      home: Path) -> PreviousLogs:
    """Previous logs read as `k3sops diagnose` reads them (one API call per container)."""
    return lambda pods: diagnose_service.previous_logs(settings, env, home, pods)


class _Snapshots:
    """The snapshot alerts are diagnosed on, analysed once and refreshed in the background.

    The engine's pass over a large snapshot takes seconds (1.6 s for 10,000 crash-looping
    pods on the lab's machine); alerts arriving meanwhile are diagnosed on the previous
    snapshot (its ``now`` is in the record) instead of queueing behind the refresh. Only the
    first alert waits for a snapshot.
    """

    def __init__(self, build: Callable[[], tuple[ClusterSnapshot, list[Source]]],
                 max_age: float, clock: Callable[[], float]) -> None:
        self._build = build
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._first = threading.Lock()
        self._held: tuple[float, ClusterSnapshot, list[Source]] | None = None
        self._refreshing = False
        self.built = 0

    def _make(self) -> tuple[float, ClusterSnapshot, list[Source]]:
        at = self._clock()
        snap, srcs = self._build()
        self.built += 1
        return at, snap, srcs

    def _refresh(self) -> None:
        try:
            fresh = self._make()
            with self._lock:
                self._held = fresh
        except Exception:
            # The previous snapshot stays; the next stale read tries again.
            log.exception("alert enrichment: snapshot refresh failed")
        finally:
            with self._lock:
                self._refreshing = False

    def get(self) -> tuple[ClusterSnapshot, list[Source]]:
        with self._lock:
            held = self._held
            if held is not None and (self._clock() - held[0] > self._max_age
                                     and not self._refreshing):
                self._refreshing = True
                threading.Thread(target=self._refresh, name="alert-snapshot",
                                 daemon=True).start()
        if held is None:
            with self._first:  # one first build, however many alerts arrive together
                with self._lock:
                    held = self._held
                if held is None:
                    held = self._make()
                    with self._lock:
                        self._held = held
        return held[1], held[2]


class Enricher:
    """The enrich function: call it with an alert's labels and annotations (:func:`enricher`)."""

    def __init__(self, snapshots: _Snapshots, settings: Settings,
                 logs: PreviousLogs | None = None) -> None:
        """Diagnose on ``snapshots`` with ``settings``' platform (and ``logs``, if given)."""
        self._snapshots = snapshots
        self._settings = settings
        self._logs = logs

    @property
    def snapshots_built(self) -> int:
        """How many snapshots were built (and analysed) so far."""
        return self._snapshots.built

    def warm(self) -> None:
        """Build and analyse the first snapshot now, so that the first alert does not wait.

        `serve` calls it once its watch cache is in sync.
        """
        self._snapshots.get()

    def __call__(self, labels: Mapping[str, str],
                 annotations: Mapping[str, str]) -> dict[str, Any]:
        """The object the labels name, its diagnosis and the runbook (JSON-ready)."""
        obj = object_of(labels)
        report = None
        out: dict[str, Any] = {}
        if obj is not None:
            snapshot, srcs = self._snapshots.get()
            report = diagnose_for(snapshot, obj, self._settings, srcs, self._logs)
            obj = {**obj, "found": report is not None}
            out["snapshot_at"] = snapshot.now.isoformat()
        out.update(object=obj,
                   diagnosis=report.model_dump(mode="json") if report is not None else None,
                   runbook=runbook_of(labels, annotations, report))
        return out


def enricher(cache_snapshot: Callable[[], ClusterSnapshot], settings: Settings, *,
             sources: Callable[[], Sequence[Source]] | None = None,
             max_age: float = MAX_SNAPSHOT_AGE,
             clock: Callable[[], float] = time.monotonic,
             previous_logs: PreviousLogs | None = None) -> Enricher:
    """The enrich function: alert labels and annotations -> object, diagnosis, runbook.

    ``cache_snapshot``: where objects come from (the watch cache's snapshot in `serve`, a
    fresh collect in tests); ``sources``: the state of what the snapshot was read from.
    The engine runs once per snapshot (its result is cached on it); a snapshot older than
    ``max_age`` seconds is replaced in the background while alerts keep being diagnosed on
    it (:class:`_Snapshots`). The result names the snapshot's time (``snapshot_at``).
    ``previous_logs`` (e.g. :func:`cli_previous_logs`) attaches crash-looping containers'
    previous logs to the diagnosis, as `k3sops diagnose` does.
    """
    platform = settings.platform

    def build() -> tuple[ClusterSnapshot, list[Source]]:
        snap = cache_snapshot()
        srcs = list(sources()) if sources else []
        dg.analyse(snap, platform, {s.name for s in srcs if not s.ok})
        return snap, srcs

    return Enricher(_Snapshots(build, max_age, clock), settings, previous_logs)


# -- forwarding formats -------------------------------------------------------------------


def _mrkdwn(text: str) -> str:
    # Slack's three control characters; anything else in alert text is shown as is.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(record: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook message (``text`` + Block Kit ``blocks``)."""
    annotations = record.get("annotations") or {}
    labels = record.get("labels") or {}
    title = annotations.get("summary") or record.get("alertname") or "alert"
    head = f"[{str(record.get('status', 'firing')).upper()}] {record.get('alertname', '')}"
    text = f"{head}: {title}"
    fields = [f"*Severity:* {labels.get('severity', '?')}",
              f"*Environment:* {labels.get('environment', '?')}"]
    obj = record.get("object")
    if obj:
        where = f"{obj['namespace']}/" if obj.get("namespace") else ""
        fields.append(f"*Object:* {obj['kind']} {where}{obj['name']}"
                      + ("" if obj.get("found", True) else " (not found)"))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(title)},
         "fields": [{"type": "mrkdwn", "text": _mrkdwn(f)} for f in fields]}]
    diagnosis = record.get("diagnosis") or {}
    roots = diagnosis.get("root_causes") or []
    if roots:
        lines = [f"• {r['resource']['kind']} {r['resource'].get('namespace') or ''}"
                 f"{'/' if r['resource'].get('namespace') else ''}{r['resource']['name']}: "
                 f"{r['message']}" for r in roots[:5]]
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": _mrkdwn("*Root causes*\n" + "\n".join(lines))[:3000]}})
    runbook = record.get("runbook")
    if runbook:
        ref = runbook.get("url") or runbook["show"]
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _mrkdwn(
            f"Runbook {runbook['id']}: {runbook.get('title', '')} ({ref})")}]})
    return {"text": _mrkdwn(text), "blocks": blocks}


# -- the intake ---------------------------------------------------------------------------


class AlertIntake:
    """Receives webhook deliveries; stores, enriches and forwards alerts, each once.

    Counters (totals since start, for ``/metrics``): ``received`` alerts in valid deliveries,
    ``enriched`` firing alerts enriched without error, ``forwarded`` deliveries to receivers
    that succeeded, ``failed`` that failed, ``rejected`` refused bodies.
    """

    def __init__(self, store: HistoryStore, enrich: Enrich, receivers: Sequence[Receiver],
                 *, max_body: int = MAX_BODY,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sender: WebhookSender | None = None,
                 on_stored: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Wire the intake; ``sender`` posts to receivers (a default one if None).

        ``on_stored`` is called with each firing alert's enriched record once this replica
        stored it (remediation by policy, :mod:`k3sops.serve.remediation`).
        """
        self.store = store
        self.on_stored = on_stored
        self.enrich = enrich
        self.receivers = list(receivers)
        self.max_body = max_body
        self.clock = clock
        self.sender = sender or WebhookSender()
        self._lock = threading.Lock()
        self.received = 0
        self.enriched = 0
        self.forwarded = 0
        self.failed = 0
        self.rejected = 0

    def _count(self, **by: int) -> None:
        with self._lock:
            for name, n in by.items():
                setattr(self, name, getattr(self, name) + n)

    def receive(self, body: bytes) -> IntakeResult:
        """Handle one delivery.

        Raises:
            PayloadTooLarge: over ``max_body`` (HTTP 413); PayloadInvalid: not a version-4
                payload (HTTP 400). Nothing is stored when either is raised.
        """
        try:
            message = parse_payload(body, self.max_body)
        except PayloadInvalid:
            self._count(rejected=1)
            raise
        result = IntakeResult(alerts=len(message.alerts))
        self._count(received=len(message.alerts))
        for alert in message.alerts:
            result.fingerprints.append(alert.fingerprint)
            if alert.status == "resolved":
                self._resolve(alert, result)
                continue
            if self.store.alert(alert.fingerprint, alert.starts_at) is not None:
                # A repeat: skip the diagnosis too (record_alert below still arbitrates a
                # race between two deliveries of the same alert).
                result.duplicates += 1
                continue
            record = self._enriched(message, alert)
            stored = self.store.record_alert(AlertRecord(
                fingerprint=alert.fingerprint, starts_at=alert.starts_at,
                alertname=alert.alertname, status="firing", received_at=self.clock(),
                labels=alert.labels, enriched=record))
            if not stored:
                result.duplicates += 1
                continue
            result.stored += 1
            ok, failed = self._forward(record)
            result.forwarded += ok
            result.failed += failed
            if self.on_stored is not None:
                try:
                    self.on_stored(record)
                except Exception:  # a remediation's failure must not fail the webhook
                    log.exception("alert %s: on_stored hook failed", alert.fingerprint)
        return result

    def _resolve(self, alert: WebhookAlert, result: IntakeResult) -> None:
        # parse_payload refuses a resolved alert without endsAt
        ended = alert.ends_at or self.clock()
        if not self.store.resolve_alert(alert.fingerprint, alert.starts_at, ended):
            return  # unknown, or already closed: a repeat is not forwarded again
        result.resolved += 1
        stored = self.store.alert(alert.fingerprint, alert.starts_at)
        if stored is not None:
            # The receivers hear that it ended, with what they were told when it fired.
            ok, failed = self._forward({**stored.enriched, "status": "resolved",
                                        "endsAt": ended.isoformat()})
            result.forwarded += ok
            result.failed += failed

    def _enriched(self, message: WebhookMessage, alert: WebhookAlert) -> dict[str, Any]:
        record: dict[str, Any] = {
            "alertname": alert.alertname, "status": alert.status,
            "fingerprint": alert.fingerprint, "startsAt": alert.starts_at.isoformat(),
            "labels": alert.labels, "annotations": alert.annotations,
            "generatorURL": alert.generator_url, "groupKey": message.group_key,
            "receiver": message.receiver, "externalURL": message.external_url}
        try:
            record.update(self.enrich(alert.labels, alert.annotations))
            self._count(enriched=1)
        except K3sopsError as e:
            # The alert is kept and forwarded without its diagnosis; the reason says why.
            record.update(object=object_of(alert.labels), diagnosis=None,
                          runbook=runbook_of(alert.labels, alert.annotations, None),
                          enrich_error=e.message)
            log.warning("alert %s %s not enriched: %s", alert.alertname, alert.fingerprint,
                        e.message)
        return record

    def _forward(self, record: Mapping[str, Any]) -> tuple[int, int]:
        ok = failed = 0
        for r in self.receivers:
            document = slack_message(record) if r.kind == "slack" else dict(record)
            try:
                self.sender.post(r.name, r.url, document)
                ok += 1
            except K3sopsError as e:
                failed += 1
                log.warning("alert %s not forwarded: %s", record.get("fingerprint"), e.message)
        self._count(forwarded=ok, failed=failed)
        return ok, failed

    def close(self) -> None:
        """Close the sender's connections."""
        self.sender.close()
