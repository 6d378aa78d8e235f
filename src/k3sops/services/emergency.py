"""`k3sops emergency`: walk a procedure step by step, ask before changing, keep a timeline.

Each step of :mod:`k3sops.domain.emergency` names the facts it needs; they are gathered here
just before the step runs (once per run), so the caller sees each check's result as it
happens through ``on_entry``. The proposals of the checks are then decided one by one:

* ``mode="yes"`` (``--yes``): made without asking;
* ``mode="ask"`` (a terminal): ``confirm(proposal)`` decides;
* ``mode="propose"`` (no terminal, no ``--yes``): only proposed, never made.

Changes go through the remediation plans (:mod:`k3sops.services.remediate`), so they are
re-read before being made and written to the audit log. After a change the checks that
proposed it are re-run until they pass or ``wait`` seconds have gone (verification).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from k3sops.adapters.files import write_atomic
from k3sops.adapters.kube import KubeAdapter
from k3sops.adapters.probes import Probes
from k3sops.adapters.prometheus import HttpApi, PrometheusAdapter
from k3sops.domain import checks as registry
from k3sops.domain import diagnose as dg
from k3sops.domain import emergency as em
from k3sops.domain.emergency import (
    ActionRecord,
    CheckResult,
    EmergencyReport,
    Facts,
    Probe,
    Proposal,
    TimelineEntry,
)
from k3sops.domain.snapshot import get, meta
from k3sops.errors import AdapterError, K3sopsError, NotFound, UsageError
from k3sops.services import check as check_service
from k3sops.services import dnsprobe, remediate
from k3sops.services import logs as logs_service
from k3sops.services.context import Settings, kube, monitoring

Mode = Literal["yes", "ask", "propose"]
LOG_TAIL = 20
MAX_LOG_PODS = 2
VERIFY_EVERY = 2.0
SNAPSHOT_CHECKS: dict[em.Procedure, tuple[str, ...]] = {
    "cluster-unresponsive": ("cert-expiry-horizon",),
    "app-down": ("alert-firing",),
    "network-lost": (),
}
"""Checks whose Prometheus queries or Alertmanager alerts the snapshot must carry."""


def _now() -> datetime:
    return datetime.now(UTC)


class _Run:
    """One procedure run: the facts gathered so far and the report being built."""

    def __init__(self, settings: Settings, env: Mapping[str, str], home: Path,
                 procedure: em.Procedure, facts: Facts,
                 on_entry: Callable[[TimelineEntry], None], probe_dns_timeout: float) -> None:
        self.settings, self.env, self.home = settings, env, home
        self.procedure = procedure
        self.facts = facts
        self.on_entry = on_entry
        self.gathered: set[str] = set()
        self.k: KubeAdapter = kube(settings, env, home)
        self.probe_dns_timeout = probe_dns_timeout
        self.report = EmergencyReport(procedure=procedure, target=_target(procedure, facts),
                                      started_at=facts.now)

    def close(self) -> None:
        self.k.close()

    def entry(self, kind: str, step: str, result: str, detail: str = "") -> None:
        e = TimelineEntry.model_validate({"at": _now(), "kind": kind, "step": step,
                                          "result": result, "detail": detail})
        self.report.timeline.append(e)
        self.on_entry(e)

    def gather(self, need: str, again: bool = False) -> None:
        if need in self.gathered and not again:
            return
        self.gathered.add(need)
        self.facts.now = _now()
        getattr(self, f"_gather_{need}")()

    def _gather_api(self) -> None:
        probes = Probes(self.k)
        for key, path in (("livez", "/livez"), ("readyz", "/readyz?verbose")):
            try:
                status, body, seconds = probes.get_path(path)
                self.facts.probes[key] = Probe(path=path, reachable=True, status=status,
                                               seconds=round(seconds, 4), body=body)
            except K3sopsError as e:
                self.facts.probes[key] = Probe(path=path, reachable=False, error=e.message)

    def _gather_snapshot(self) -> None:
        specs = [registry.REGISTRY[c] for c in SNAPSHOT_CHECKS[self.procedure]
                 if c in registry.REGISTRY]
        snap, sources = check_service.collect(self.k, self.settings, specs, self.facts.now)
        self.facts.snapshot = snap
        self.facts.sources = sources

    def _gather_etcd(self) -> None:
        mon = monitoring(self.settings)
        self.facts.etcd_enabled = mon.etcd_metrics
        if not mon.etcd_metrics:
            return
        api = None
        try:
            api = HttpApi.from_endpoint("Prometheus", mon.prometheus, self.k)
            answers = PrometheusAdapter(api).query_many(em.ETCD_QUERIES)
        except K3sopsError as e:
            self.facts.etcd_error = e.message
            return
        finally:
            if api is not None:
                api.close()
        errors = [a.message for a in answers.values() if isinstance(a, K3sopsError)]
        self.facts.etcd = {n: a for n, a in answers.items() if not isinstance(a, K3sopsError)}
        self.facts.etcd_error = errors[0] if errors else None

    def _gather_cert(self) -> None:
        try:
            subject, issuer, not_after = Probes(self.k).server_certificate()
            self.facts.cert = em.CertInfo(subject=subject, issuer=issuer, not_after=not_after)
        except K3sopsError as e:
            self.facts.cert_error = e.message

    def _gather_logs(self) -> None:
        snap = self.facts.snapshot
        found = em.find_workload(snap, self.facts.app or "", self.facts.namespace) \
            if snap is not None else []
        if len(found) != 1 or snap is None:
            return
        kind, obj = found[0]
        ns = str(meta(obj)[0])
        pods = em.workload_pods(snap, kind, obj)
        bad = [p for p in dg.unhealthy_pods(snap, ns) if p in pods] or pods[:1]
        for pod in bad[:MAX_LOG_PODS]:
            name = meta(pod)[1]
            for cs in get(pod, "status", "containerStatuses", default=[]) or []:
                container = str(cs.get("name"))
                previous = int(cs.get("restartCount") or 0) > 0
                key = f"{name}/{container}" + (" (previous)" if previous else "")
                try:
                    res = logs_service.pod_logs(self.settings, self.env, self.home, pod=name,
                                                namespace=ns, container=container,
                                                previous=previous, tail=LOG_TAIL)
                    self.facts.logs[key] = [ln.line for ln in res.lines]
                except K3sopsError as e:
                    self.facts.logs[key] = [f"(logs unavailable: {e.message})"]

    def _gather_dns(self) -> None:
        if not self.facts.dns_requested:
            return
        self.entry("check", "DNS probe pod", "started",
                   f"busybox nslookup kubernetes.default in {dnsprobe.PROBE_NAMESPACE}")
        self.facts.dns = dnsprobe.run_or_explain(self.settings, self.env, self.home,
                                                 timeout=self.probe_dns_timeout)

    def run_step(self, spec: em.StepSpec, kind: str = "check") -> CheckResult:
        for need in spec.needs:
            self.gather(need)
        res = spec.fn(self.facts)
        self.entry(kind, spec.title, res.status, res.detail)
        return res


def _target(procedure: em.Procedure, facts: Facts) -> str:
    if procedure == "app-down":
        return f"{facts.namespace + '/' if facts.namespace else ''}{facts.app}"
    return "cluster"


def _validate_app(run: _Run) -> None:
    """An app that does not exist (or is ambiguous) is a usage error, before any step runs."""
    run.gather("snapshot")
    facts = run.facts
    if not facts.kube_ok() or facts.snapshot is None:
        return  # the steps will say the cluster cannot be read
    found = em.find_workload(facts.snapshot, facts.app or "", facts.namespace)
    if not found:
        close = sorted({*dg.similar(facts.snapshot, "deployments", facts.app or "",
                                    facts.namespace),
                        *dg.similar(facts.snapshot, "statefulsets", facts.app or "",
                                    facts.namespace)})
        where = f" in namespace {facts.namespace}" if facts.namespace else ""
        raise NotFound(f"no Deployment or StatefulSet named {facts.app}{where}",
                       hint=("similar: " + ", ".join(close)) if close else
                       "list them with `kubectl get deploy,sts -A`")
    if len(found) > 1:
        where = ", ".join(f"{k}/{meta(o)[1]} in {meta(o)[0]}" for k, o in found)
        raise UsageError(f"{facts.app} is ambiguous: {where}",
                         hint=f"pass -n NAMESPACE, e.g. k3sops emergency app-down {facts.app} "
                              f"-n {meta(found[0][1])[0]}")
    if facts.namespace is None:
        facts.namespace = str(meta(found[0][1])[0])
        run.report.target = _target(run.procedure, facts)


def _apply(settings: Settings, env: Mapping[str, str], home: Path, p: Proposal,
           state: Path | None) -> tuple[str, str | None, str | None]:
    """Make one change through its remediation plan: (result, error, audit log path)."""
    runner = remediate.Runner(settings, env, home, apply=True, state=state)
    ns = p.namespace or "default"
    try:
        if p.action == "restart":
            rr = remediate.restart(runner, p.target, ns)
        elif p.action == "scale":
            rr = remediate.scale(runner, p.target, ns, int(p.replicas or 0))
        else:
            rr = remediate.uncordon(runner, p.target)
    except K3sopsError as e:
        return "failed", e.message, str(runner.audit.path)
    if rr.failures:
        return "failed", "; ".join(s.error or "" for s in rr.failures), rr.audit_log
    results = {s.result for s in rr.steps}
    return ("ok" if "ok" in results else "skipped"), None, rr.audit_log


def run(settings: Settings, env: Mapping[str, str], home: Path, procedure: em.Procedure, *,
        app: str | None = None, namespace: str | None = None, mode: Mode = "propose",
        confirm: Callable[[Proposal], bool] | None = None,
        on_entry: Callable[[TimelineEntry], None] | None = None,
        state: Path | None = None, wait: float = 60.0, settle: float = 20.0,
        probe_dns: bool = False, probe_dns_timeout: float = 60.0) -> EmergencyReport:
    """Run ``procedure``; return the report with its timeline (Markdown included).

    Raises:
        UsageError: app-down without an APP, an ambiguous APP, or ``mode="ask"`` without
            ``confirm``.
        NotFound: app-down's APP does not exist (the hint lists similar names).
        ConfigError: no kubeconfig.
    """
    if procedure == "app-down" and not app:
        raise UsageError("emergency app-down needs the APP (Deployment or StatefulSet name)",
                         hint="k3sops emergency app-down web -n production")
    if mode == "ask" and confirm is None:
        raise UsageError("confirmations need a terminal", hint="pass --yes")
    facts = Facts(now=_now(), app=app, namespace=namespace, dns_requested=probe_dns)
    r = _Run(settings, env, home, procedure, facts, on_entry or (lambda e: None),
             probe_dns_timeout)
    try:
        r.entry("start", procedure, "started", r.report.target)
        if procedure == "app-down":
            _validate_app(r)
        try:
            for spec in em.PROCEDURE_STEPS[procedure]:
                r.report.checks.append(r.run_step(spec))
            r.report.sources = list(facts.sources)
            applied = _decide(r, settings, env, home, mode, confirm, state)
            if applied:
                _verify(r, applied, wait, settle)
        except KeyboardInterrupt:
            # Ctrl-C in an incident: keep what was seen and done (the caller writes the
            # timeline, then exits 130); no further step runs.
            r.report.interrupted = True
            r.entry("end", procedure, "interrupted", "Ctrl-C: the remaining steps did not run")
        steps, runbooks = em.next_steps(procedure, r.report.checks, r.report.actions)
        manual = [f"{p.reason}: {p.command}" + (f" (runbook {p.runbook})" if p.runbook else "")
                  for p in em.proposals(r.report.checks) if p.action == "manual"]
        r.report.next_steps = steps + manual
        r.report.runbooks = runbooks
        r.report.finished_at = _now()
        if not r.report.interrupted:
            r.entry("end", procedure, f"{len(r.report.failed)} check(s) failed, "
                    f"{len(r.report.unresolved)} unresolved",
                    f"{sum(1 for a in r.report.actions if a.decision == 'applied')} "
                    "change(s) made")
        r.report.timeline_markdown = em.timeline_markdown(r.report)
        return r.report
    finally:
        r.close()


def _decide(r: _Run, settings: Settings, env: Mapping[str, str], home: Path, mode: Mode,
            confirm: Callable[[Proposal], bool] | None,
            state: Path | None) -> list[Proposal]:
    """Ask about each change k3sops can make; make the accepted ones. Returns those made."""
    applied: list[Proposal] = []
    for p in em.proposals(r.report.checks):
        if p.action == "manual":
            continue
        if mode == "yes":
            decision, why = "applied", "--yes"
        elif mode == "ask" and confirm is not None:
            ok = confirm(p)
            decision, why = ("applied", "confirmed at the prompt") if ok else \
                ("declined", "declined at the prompt")
        else:
            decision, why = "proposed", "no terminal and no --yes: only proposed"
        rec = ActionRecord.model_validate({"proposal": p, "decision": decision, "why": why})
        r.entry("decision", p.text, decision, why)
        if decision == "applied":
            result, error, audit = _apply(settings, env, home, p, state)
            rec = rec.model_copy(update={"result": result, "error": error, "audit_log": audit})
            r.entry("action", p.text, result, error or (f"audit log {audit}" if audit else ""))
            if result in ("ok", "skipped"):
                applied.append(p)
        r.report.actions.append(rec)
    return applied


def _verify(r: _Run, applied: list[Proposal], wait: float, settle: float) -> None:
    """Re-run the checks that did not pass until they hold for ``settle`` seconds in a row.

    Gives up when they never passed within ``wait``, or at ``wait`` + ``settle``.

    Those that proposed a change, and every other failing check that reads only the cluster's
    objects (a scaled-up app also repairs its Service's endpoints). Passing once is not enough:
    a restarted crash-looping pod is Running and ready for a while before it crashes again.
    """
    keys = {p.key for p in applied}
    specs = [s for s, c in zip(em.PROCEDURE_STEPS[r.procedure], r.report.checks, strict=True)
             if any(p.key in keys for p in c.proposals)
             or (c.status in ("fail", "warn") and set(s.needs) <= {"snapshot"})]
    start = time.monotonic()
    deadline = start + wait + settle
    ok_since: float | None = None
    results: dict[str, CheckResult] = {}
    while True:
        r.gather("snapshot", again=True)
        results = {s.id: s.fn(r.facts) for s in specs}
        now = time.monotonic()
        # "passing" as the exit code counts it: no check fails (a warning, such as a BackOff
        # event still in the recent-events window, does not hold the verification back).
        if all(c.status != "fail" for c in results.values()):
            ok_since = now if ok_since is None else ok_since
            if now - ok_since >= settle:
                break
        else:
            ok_since = None
            if now >= start + wait:
                break  # never passed within --wait: no point settling
        if now >= deadline:
            break
        time.sleep(VERIFY_EVERY)
    for s in specs:
        res = results[s.id]
        r.entry("verify", s.title, res.status, res.detail)
        r.report.verification.append(res)


def write_timeline(path: Path, report: EmergencyReport) -> None:
    """Write the report's Markdown timeline to ``path`` atomically.

    Raises:
        AdapterError: the file cannot be written.
    """
    try:
        write_atomic(path, report.timeline_markdown)
    except OSError as e:
        raise AdapterError(f"cannot write the timeline to {path}: {e.strerror}",
                           hint="name a writable file with --timeline") from e
