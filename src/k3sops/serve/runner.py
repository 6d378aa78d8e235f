"""`k3sops serve`'s lifecycle: cache, store, election, schedule, alert intake, HTTP.

Start: the watch cache (every kind any rule reads), the history store (platform.yaml's
``state``), the leader election and the scheduler (only the leader runs scheduled checklists,
claimed once across replicas in the store), Alertmanager's intake, then uvicorn.

SIGTERM (and SIGINT): uvicorn stops accepting connections and lets the requests in flight
finish; then the scheduler stops (a run in progress finishes first), the Lease is released
(``holderIdentity`` cleared: a follower takes over at once instead of after the lease
duration), the watch threads end, the store closes. Exit 0.

The leader and alerts parts are imported by name, so this module runs with or without them
(a single replica leads itself; without intake ``POST /api/v1/alerts`` answers 503).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from k3sops.config.schema import Platform, Serve
from k3sops.config.schema.serve import split_listen
from k3sops.domain import checks as registry
from k3sops.errors import ConfigError, UsageError
from k3sops.serve.api import ApiContext, Reports
from k3sops.serve.auth import Authorizer, SharedToken
from k3sops.serve.cache import WatchCache
from k3sops.serve.metrics import ServiceMetrics
from k3sops.services import check as check_service
from k3sops.services.context import Settings, kube
from k3sops.services.history import open_history
from k3sops.services.secrets import env_secret, file_secret

log = logging.getLogger("k3sops.serve")

SYNC_TIMEOUT = 120.0
"""How long `--once` waits for the cache before judging what it has."""


def serve_settings(platform: Platform | None) -> Serve:
    """platform.yaml's ``serve`` section, or its defaults without a platform file."""
    return platform.serve if platform is not None else Serve()


def every_kind() -> list[str]:
    """The kinds any rule of any period reads: what the cache watches."""
    return check_service.kinds_for(registry.selected("monthly"))


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def alertmanager_token(cfg: Serve, env: Mapping[str, str]) -> SecretStr | None:
    """Alertmanager's bearer token from the variable or file ``serve`` names (None: none)."""
    if cfg.alertmanager_token_file is not None:
        return file_secret(cfg.alertmanager_token_file, "serve.alertmanager_token_file")
    return env_secret(env, cfg.alertmanager_token_env, "serve.alertmanager_token_env",
                      required=cfg.alertmanager_token_env is not None)


def receivers(cfg: Serve, env: Mapping[str, str], alerts_module: Any) -> list[Any]:
    """serve.alerts.Receiver of each configured receiver, its URL read from env or file."""
    out = []
    for r in cfg.receivers:
        url = (file_secret(r.url_file, f"serve.receivers[{r.name}].url_file")
               if r.url_file is not None else
               env_secret(env, r.url_env, f"serve.receivers[{r.name}].url_env", required=True))
        out.append(alerts_module.Receiver(name=r.name, kind=r.type, url=url))
    return out


@dataclass
class Service:
    """The running parts (built by :func:`build`, stopped by :meth:`stop`)."""

    cfg: Serve
    client: Any
    cache: WatchCache
    store: Any
    context: ApiContext
    elector: Any = None
    scheduler: Any = None
    workers: Any = None
    """The remediation worker (a ThreadPoolExecutor), when policies are configured."""
    evaluator: Any = None
    """serve.evaluator.Evaluator: the report kept current in the background."""

    def stop(self) -> None:
        """Scheduler, Lease (released), watch threads, store, client; each step runs."""
        steps: list[tuple[str, Callable[[], None]]] = []
        if self.scheduler is not None:
            steps.append(("scheduler", self.scheduler.stop))
        if self.workers is not None:
            # a remediation in progress finishes (each step is audited) before the Lease goes
            steps.append(("remediation", lambda: self.workers.shutdown(wait=True,
                                                                       cancel_futures=True)))
        if self.elector is not None:
            steps.append(("lease", lambda: self.elector.stop(release=True)))
        if self.evaluator is not None:
            steps.append(("evaluator", self.evaluator.stop))
        steps += [("cache", self.cache.stop), ("store", self.store.close),
                  ("client", self.client.close)]
        for name, step in steps:
            try:
                step()
            except Exception as e:  # one part failing must not keep the others running
                log.warning("stopping %s failed: %s", name, type(e).__name__)


def build(settings: Settings, env: Mapping[str, str], home: Path,
          state_dir: Path | None = None, *, background: bool = True,
          evaluate: bool | None = None) -> Service:
    """Open and start everything but the HTTP server.

    ``background`` False (``--once``): no leader election, no scheduler, no alert intake.
    ``evaluate``: keep the daily report current in the background (default: ``background``).
    """
    cfg = serve_settings(settings.platform)
    # secrets first: a missing variable or file is a config error before anything starts
    token = alertmanager_token(cfg, env)
    alerts_mod = _optional("k3sops.serve.alerts") if background else None
    targets = receivers(cfg, env, alerts_mod) if alerts_mod is not None else []
    client = kube(settings, env, home)
    store = open_history(settings.platform, state_dir, env, home)
    cache = WatchCache(client, every_kind())
    cache.start()
    reports = Reports(settings, cache, client, store)
    evaluator = None
    if background if evaluate is None else evaluate:
        from k3sops.serve.evaluator import Evaluator

        evaluator = Evaluator(reports, lambda: cache.generation, ready=cache.in_sync)
        cache.on_generation(evaluator.poke)
        evaluator.start()
    identity = f"{socket.gethostname()}-{os.getpid()}"

    leader_mod = _optional("k3sops.serve.leader") if background else None
    elector = None
    is_leader: Callable[[], bool] = lambda: True  # noqa: E731 - one replica leads itself
    if leader_mod is not None:
        elector = leader_mod.LeaderElector(client, cfg.lease.namespace, cfg.lease.name,
                                           identity, lease_seconds=cfg.lease.seconds,
                                           renew_seconds=max(1.0, cfg.lease.seconds / 3))
        elector.on_change(lambda leading: log.info("leadership: %s",
                                                   "leader" if leading else "follower"))
        is_leader = elector.is_leader
    metrics = ServiceMetrics(reports.reports, cache.status, is_leader)
    scheduler = None
    sched_mod = _optional("k3sops.serve.scheduler") if background else None
    if sched_mod is not None:
        scheduler = sched_mod.Scheduler(cfg.schedule.crons(), cfg.schedule.timezone, store,
                                        reports.scheduled, is_leader, identity)
        scheduler.start()
    remediator, workers = _remediator(cfg, settings, env, home, state_dir, store, is_leader,
                                      metrics) if background else (None, None)
    if remediator is not None:
        reports.on_findings = remediator.on_findings
        if elector is not None:
            # what a replica killed mid-apply left reserved is closed by the next leader
            elector.on_change(lambda leading: remediator.submit(remediator.close_interrupted)
                              if leading else None)
    if elector is not None:
        # started once every leadership callback is registered: the first change is seen
        elector.start()
    intake = None
    if alerts_mod is not None:
        # the crashed instance's log is the evidence people open first; without `get
        # pods/log` the diagnosis says why it is missing instead
        enrich = alerts_mod.enricher(lambda: cache.snapshot(datetime.now(UTC)), settings,
                                     previous_logs=alerts_mod.cli_previous_logs(settings, env,
                                                                                home))
        intake = alerts_mod.AlertIntake(store, enrich, targets,
                                        on_stored=remediator.on_alert if remediator else None)
    ctx = ApiContext(reports=reports, authorizer=Authorizer(client),
                     alertmanager=SharedToken(token), metrics=metrics, is_leader=is_leader,
                     intake=intake, evaluator=evaluator)
    return Service(cfg=cfg, client=client, cache=cache, store=store, context=ctx,
                   elector=elector, scheduler=scheduler, workers=workers, evaluator=evaluator)


def _remediator(cfg: Serve, settings: Settings, env: Mapping[str, str], home: Path,
                state_dir: Path | None, store: Any, is_leader: Callable[[], bool],
                metrics: ServiceMetrics) -> tuple[Any, Any]:
    """serve.remediation's policies on one worker thread (None, None without policies)."""
    if not cfg.remediation.policies:
        return None, None
    from concurrent.futures import ThreadPoolExecutor

    from k3sops.serve import remediation

    # one worker: remediations run one at a time, off the webhook's and scheduler's threads
    workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="remediation")

    def submit(job: Callable[[], Any]) -> None:
        def guarded() -> None:
            try:
                job()
            except Exception:  # logged, the worker goes on with the next trigger
                log.exception("remediation failed")
        workers.submit(guarded)

    return remediation.Remediator(
        cfg.remediation, settings.platform, store, is_leader,
        remediation.cluster_executor(settings, env, home, state_dir),
        count=lambda policy, mode: metrics.remediations.labels(policy=policy, mode=mode).inc(),
        submit=submit), workers


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server without re-raising the signal once it has shut down.

        uvicorn raises a captured SIGTERM again after its shutdown, so the process would die
        of it before the Lease is released and the store closed; here the signal only asks
        the server to stop, and :func:`run` returns 0 after the rest has stopped too.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {s: signal.signal(s, self.handle_exit)
                        for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)

    return Server


def run(settings: Settings, env: Mapping[str, str], home: Path, *, listen: str | None = None,
        once: bool = False, state_dir: Path | None = None,
        out: Callable[[str], None] = print) -> int:
    """Serve until SIGTERM/SIGINT (exit 0); or, with ``once``, run the daily checklist once.

    ``once``: sync the cache, judge the daily checklist from it, record it, print its
    summary as JSON and stop.

    Raises:
        UsageError: ``listen`` is not HOST:PORT.
        ConfigError: a token or URL named in ``serve`` is unset or unreadable.
    """
    cfg = serve_settings(settings.platform)
    address = listen or cfg.listen
    try:
        host, port = split_listen(address)
    except ValueError as e:
        raise UsageError(f"--listen {address[:60]!r}: {e}",
                         hint="HOST:PORT, e.g. 127.0.0.1:8443") from None
    if cfg.tls is not None and not (cfg.tls.cert_file.is_file() and cfg.tls.key_file.is_file()):
        raise ConfigError("serve.tls: the certificate or key file cannot be read",
                          hint=f"check {cfg.tls.cert_file} and {cfg.tls.key_file}")
    # A service logs its lifecycle (the CLI's root logger shows warnings only, unless -v);
    # basicConfig is a no-op when the CLI already set up the root handler.
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    service = build(settings, env, home, state_dir, background=not once)
    try:
        if once:
            synced = service.cache.wait_synced(SYNC_TIMEOUT)
            report = service.context.reports.run("daily", record=True)
            import json

            out(json.dumps({"synced": synced, "summary": report.summary.model_dump(mode="json"),
                            "sources": [s.model_dump(mode="json") for s in report.sources]}))
            return 0
        import uvicorn

        from k3sops.serve.app import create_app
        from k3sops.serve.views import PlatformViews

        # the views keep their GitOps clone in --state-dir and read versions from the cache
        app = create_app(service.context, views=PlatformViews.of(
            settings, service.store, env=dict(env), home=home, state=state_dir,
            cache=service.cache))
        # log_config None: uvicorn keeps the logging set up above instead of replacing it
        # (and disabling the k3sops loggers created before it)
        config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=True,
                                log_config=None,
                                ssl_certfile=str(cfg.tls.cert_file) if cfg.tls else None,
                                ssl_keyfile=str(cfg.tls.key_file) if cfg.tls else None,
                                timeout_graceful_shutdown=30, server_header=False)
        log.info("k3sops serve: listening on %s:%d, watching %d kinds", host, port,
                 len(every_kind()))
        _server_class()(config).run()  # returns after SIGTERM/SIGINT, in-flight requests done
        return 0
    finally:
        service.stop()
        log.info("k3sops serve: stopped")
