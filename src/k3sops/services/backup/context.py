"""What every backup command needs, resolved once: settings, repository, tools, failpoints.

The repository password and the database passwords come from environment variables named in
platform.yaml; :meth:`BackupContext.secret` is the one place that reads them, with one rule:
an empty value is the same as an unset one (a variable exported empty is a mistake, not a
password).

Every step of a backup run has a named failpoint (:data:`FAILPOINTS`): listed in
``$K3SOPS_FAILPOINTS`` (comma-separated, read at call time), the process kills itself there
with SIGKILL, so tests can prove that no kill point yields a Completed backup (as etcd's
gofail does).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from k3sops.adapters import postgres as pg
from k3sops.adapters.audit import AuditLog, current_user, state_dir
from k3sops.adapters.backup_metrics import BackupMetrics
from k3sops.adapters.etcd import EtcdTools
from k3sops.adapters.kube import KubeAdapter
from k3sops.adapters.restic import Restic
from k3sops.config import Backup, Platform
from k3sops.errors import ConfigError
from k3sops.services import context
from k3sops.services.secrets import env_secret

MANIFEST_FILE = "manifest.json"
VERIFICATION_FILE = "verification.json"
FAILPOINTS_ENV = "K3SOPS_FAILPOINTS"
FAILPOINTS: tuple[str, ...] = (
    "start", "after-config", "before-lock", "after-lock", "after-list", "before-mark-failed",
    "after-mark-failed", "after-forget-leftovers", "after-tool-versions",
    "before-running-manifest", "after-running-manifest", "after-pre-hooks",
    "after-source-snapshot", "after-source-checks", "before-stream", "stream-first-chunk",
    "stream-chunk", "after-stream", "after-data-snapshot", "after-post-hooks",
    "before-final-manifest",
    # PostgreSQL only
    "after-export-snapshot", "after-facts", "after-dump-start",
)
"""Named kill points of a backup run, in order (all before the final manifest)."""


def failpoint(name: str, env: Mapping[str, str]) -> None:
    """SIGKILL this process when ``name`` is listed in ``$K3SOPS_FAILPOINTS`` (tests only)."""
    active = env.get(FAILPOINTS_ENV, "")
    if active and name in active.split(","):
        os.kill(os.getpid(), signal.SIGKILL)



class BackupContext:
    """Everything a backup command needs, resolved once (flags > env > platform.yaml)."""

    def __init__(self, settings: context.Settings, env: Mapping[str, str], home: Path,
                 state: Path | None = None, now: Callable[[], dt.datetime] | None = None,
                 ) -> None:
        if settings.platform is None or settings.platform.backup is None:
            raise ConfigError("no backup section in platform.yaml",
                              hint="add backup: with repository and password_env or "
                                   "password_file (`k3sops init` shows an example)")
        self.settings = settings
        self.platform: Platform = settings.platform
        self.cfg: Backup = settings.platform.backup
        self.env = env
        self.home = home
        self.state = state_dir(state, env, home)
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self.restic = self._restic()
        self._kube: KubeAdapter | None = None
        self._kubeconfig: Path | None = None

    def _restic(self) -> Restic:
        cfg = self.cfg
        if cfg.password_env is not None:
            password = self.secret(cfg.password_env, "backup.password_env", required=True)
            return Restic(cfg.repository, password=password, binary=cfg.binaries.restic,
                          env=self.env)
        if cfg.password_file is None or not cfg.password_file.is_file():
            raise ConfigError(f"password file {cfg.password_file} (backup.password_file) "
                              "does not exist", hint="create it (mode 0600) or fix the path")
        return Restic(cfg.repository, password_file=cfg.password_file,
                      binary=cfg.binaries.restic, env=self.env)

    def secret(self, variable: str | None, setting: str, *, required: bool
               ) -> SecretStr | None:
        """The password in environment variable ``variable`` (named by ``setting``).

        The one rule for every password k3sops reads from the environment: unset and empty
        are the same. A required one is an error then; an optional one (a database that may
        find its password in ``~/.pgpass``) is None.

        Raises:
            ConfigError: ``required`` and the variable is unset or empty (the message names
                the variable, never a value).
        """
        return env_secret(self.env, variable, setting, required=required)

    def kube(self) -> KubeAdapter:
        """The cluster (created on first use)."""
        if self._kube is None:
            self._kube = context.kube(self.settings, self.env, self.home)
            self._kubeconfig = self._kube.source.path
        return self._kube

    def etcd(self) -> EtcdTools:
        """Etcd's tools and endpoints from the backup section."""
        b, e = self.cfg.binaries, self.cfg.etcd
        return EtcdTools(etcdctl=b.etcdctl, etcdutl=b.etcdutl, etcd=b.etcd,
                         endpoints=tuple(e.endpoints), cacert=e.cacert, cert=e.cert, key=e.key)

    def work(self) -> Path:
        """Scratch directory (created)."""
        d = self.cfg.work_dir or Path(tempfile.gettempdir())
        d.mkdir(parents=True, exist_ok=True)
        return d

    def metrics(self) -> BackupMetrics | None:
        """The metrics file, if configured."""
        return BackupMetrics(self.cfg.metrics_file) if self.cfg.metrics_file else None

    def pod_exec(self, namespace: str, pod: str, container: str | None) -> pg.PodExec:
        """Exec into a pod: the context of ``--context``, else of the namespace's environment."""
        kube = self.kube()
        wanted = self.settings.context or self._env_context(namespace)
        if wanted is not None and wanted != kube.context:
            kube = context.kube(dataclasses.replace(self.settings, context=wanted), self.env,
                                self.home)
        return pg.PodExec(kube=kube, namespace=namespace, pod=pod, container=container)

    def _env_context(self, namespace: str) -> str | None:
        for env in self.platform.environments.values():
            if namespace in env.namespaces and env.context:
                return env.context
        return None

    def environment(self, namespace: str) -> str | None:
        """The platform environment ``namespace`` belongs to (a backup tag), if any."""
        for name, env in self.platform.environments.items():
            if namespace in env.namespaces:
                return name
        return None

    def fp(self, name: str) -> None:
        """A failpoint (see :data:`FAILPOINTS`)."""
        failpoint(name, self.env)

    def audit(self, record: Mapping[str, Any]) -> None:
        """Append to the audit log."""
        AuditLog(self.state / "audit.jsonl").append({"who": current_user(), **record})

