"""The ``backup`` section: restic repository, etcd access, targets, hooks, schedules, drills."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from k3sops.config.schema.fields import (
    MODEL_CONFIG,
    RESTIC_BACKENDS,
    DnsLabel,
    EnvironmentName,
    EnvVarName,
    FilePath,
    check_cron,
    invalid,
    none_as_empty,
    resolve_local,
)


def _version() -> str:
    import k3sops

    return k3sops.__version__


class BackupBinaries(BaseModel):
    """Executables the backups run (names are looked up on PATH; paths are used as given)."""

    model_config = MODEL_CONFIG

    restic: str = "restic"
    """restic, the repository client (0.14 or later)."""
    etcdctl: str = "etcdctl"
    """etcdctl (snapshot save through the etcd snapshot API, key counts)."""
    etcdutl: str = "etcdutl"
    """etcdutl (snapshot status and restore; etcd 3.5+)."""
    etcd: str = "etcd"
    """etcd server, started on free loopback ports for restore drills."""
    kubectl: str = "kubectl"
    """kubectl, the exec client for `pg_dump`/`tar` in a pod (what `kubectl exec` does)."""
    pg_bin_dir: FilePath | None = None
    """Directory of PostgreSQL's client and server binaries (psql, pg_dump, pg_restore,
    initdb, pg_ctl) for DSN backups and drills; unset: PATH, then /usr/lib/postgresql/*/bin."""


class EtcdAccess(BaseModel):
    """How to reach etcd's client API (the snapshot API) directly."""

    model_config = MODEL_CONFIG

    endpoints: list[str] = Field(default_factory=lambda: ["https://127.0.0.1:2379"])
    """Client URLs; K3s' embedded etcd answers on https://127.0.0.1:2379 on a server."""
    cacert: FilePath | None = None
    """CA of etcd's server certificate
    (K3s: /var/lib/rancher/k3s/server/tls/etcd/server-ca.crt)."""
    cert: FilePath | None = None
    """Client certificate (K3s: /var/lib/rancher/k3s/server/tls/etcd/client.crt)."""
    key: FilePath | None = None
    """Client key (K3s: /var/lib/rancher/k3s/server/tls/etcd/client.key)."""

    @field_validator("endpoints")
    @classmethod
    def _check_endpoints(cls, value: list[str]) -> list[str]:
        if not value:
            raise invalid("no endpoint given", "one or more http(s)://HOST:PORT URLs")
        for v in value:
            if not re.match(r"^https?://[^/\s]+$", v):
                raise invalid(f"{v[:60]!r} is not an etcd client URL", "http(s)://HOST:PORT")
        return value


class BackupHook(BaseModel):
    """A command run before or after a backup (e.g. flush a cache, pause a writer)."""

    model_config = MODEL_CONFIG

    command: list[str] = Field(min_length=1)
    """argv of the command (no shell unless you name one)."""
    where: Literal["pod", "local"] = "pod"
    """``pod``: run in the target's pod through exec; ``local``: on this host."""
    timeout_seconds: float = Field(default=60, gt=0, strict=True)
    """Seconds the hook may take before it is killed (and counts as failed)."""
    on_error: Literal["fail", "continue"] = "fail"
    """``fail``: a failing pre hook stops the backup (post: the backup is Failed);
    ``continue``: the failure is recorded in the manifest and the backup goes on."""


class BackupHooks(BaseModel):
    """Hooks of a backup target."""

    model_config = MODEL_CONFIG

    pre: list[BackupHook] = Field(default_factory=list)
    """Run in order before the data is read."""
    post: list[BackupHook] = Field(default_factory=list)
    """Run in order after the data was read (also when reading failed)."""


class BackupTarget(BaseModel):
    """Application data to back up: a PostgreSQL database or a directory (tar through exec)."""

    model_config = MODEL_CONFIG
    unknown_key_hints: ClassVar[dict[str, str]] = {
        "password": "platform.yaml never holds secrets: use password_env or password_file",
    }

    name: DnsLabel
    """Name used on the command line (`backup app NAME`), in tags and metrics."""
    kind: Literal["postgres", "tar"] = "postgres"
    """``postgres``: ``pg_dump -Fc``; ``tar``: a tar stream of ``path`` in the pod."""
    environment: EnvironmentName | None = None
    """Environment the data belongs to (a backup tag)."""
    namespace: DnsLabel | None = None
    """Namespace of the pod to exec into (pod form)."""
    pod: str | None = None
    """Pod to exec into, e.g. ``postgres-0`` (pod form)."""
    container: str | None = None
    """Container of the pod (unset: the pod's default container)."""
    database: str = "postgres"
    """Database to dump (postgres)."""
    user: str | None = None
    """Database user (postgres; unset: the pod's/libpq's default)."""
    dsn: str | None = None
    """libpq connection string without password, for a database reached directly (DSN form),
    e.g. ``host=db.example port=5432 dbname=app user=backup``."""
    password_env: EnvVarName | None = None
    """Environment variable holding the database password (DSN form; given to the client
    as PGPASSWORD, never on a command line)."""
    path: str | None = None
    """Directory to archive (tar)."""
    hooks: BackupHooks = Field(default_factory=BackupHooks)
    """Commands run before and after the backup."""
    schedule: str | None = "0 1 * * *"
    """Cron expression (UTC) `backup schedule` runs `backup app NAME` on; null: not
    scheduled."""

    @field_validator("schedule")
    @classmethod
    def _check_target_schedule(cls, value: str | None) -> str | None:
        return check_cron(value)

    @field_validator("dsn")
    @classmethod
    def _check_dsn(cls, value: str | None) -> str | None:
        if value is not None and (re.search(r"(^|[\s?&])password\s*=", value, re.IGNORECASE)
                                  or re.search(r"://[^/@]*:[^/@]*@", value)):
            raise invalid("the DSN carries a password", hint="put it in the variable named "
                           "by password_env; platform.yaml never holds secrets")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> BackupTarget:
        pod_form = self.namespace is not None and self.pod is not None
        if self.kind == "postgres" and pod_form == (self.dsn is not None):
            raise invalid("give either namespace+pod (exec) or dsn (direct), exactly one",
                           "namespace: NS, pod: NAME   or   dsn: 'host=... dbname=...'")
        if self.kind == "tar" and (not pod_form or not self.path):
            raise invalid("a tar target needs namespace, pod and path")
        return self


class VolumeSchedule(BaseModel):
    """A Longhorn volume (by its PVC) that `backup schedule` backs up."""

    model_config = MODEL_CONFIG

    namespace: DnsLabel
    """Namespace of the PVC."""
    pvc: str
    """Name of the PVC."""
    schedule: str = "0 3 * * *"
    """Cron expression (UTC) of `backup volume PVC -n NAMESPACE`."""

    @field_validator("schedule")
    @classmethod
    def _check_volume_schedule(cls, value: str) -> str:
        check_cron(value)
        return value


class BackupSchedule(BaseModel):
    """When `backup schedule` runs what (CronJobs or systemd timers); times are UTC."""

    model_config = MODEL_CONFIG

    etcd: str | None = "0 2 * * *"
    """Cron expression of `backup etcd`; null: etcd is not scheduled."""
    verify: str = "0 4 * * 0"
    """Cron expression of the weekly `backup verify --since 8d`."""
    volumes: list[VolumeSchedule] = Field(default_factory=list)
    """Longhorn volumes to back up."""
    namespace: DnsLabel = "k3sops"
    """Namespace of the CronJobs (and of their ConfigMap, Secret and ServiceAccount)."""
    image: str = Field(default_factory=lambda: f"k3sops:{_version()}")
    """Container image of the CronJobs (default: the image `scripts/build-image.sh` builds for
    this k3sops, as the Helm chart's; one with k3sops and restic)."""

    @field_validator("etcd", "verify")
    @classmethod
    def _check_schedules(cls, value: str | None) -> str | None:
        return check_cron(value)


class BackupDrill(BaseModel):
    """Where restore drills run."""

    model_config = MODEL_CONFIG

    postgres_dsn: str | None = None
    """Server where a scratch database is created for the drill (and dropped after); unset:
    a throwaway local PostgreSQL cluster (initdb) on a free loopback port."""
    postgres_password_env: EnvVarName | None = None
    """Environment variable with that server's password."""
    read_data_subset: str = "10%"
    """How much of the repository's data `backup verify` reads back (restic
    ``--read-data-subset``: ``N%`` or ``n/t``)."""

    @field_validator("read_data_subset")
    @classmethod
    def _check_subset(cls, value: str) -> str:
        if not re.match(r"^([0-9]{1,3}(\.[0-9]+)?%|[0-9]+/[0-9]+)$", value):
            raise invalid(f"{value!r} is not a data subset", "N% (e.g. 10%) or n/t (e.g. 1/5)")
        return value


class Backup(BaseModel):
    """Backups with restic. The repository password is never stored here."""

    model_config = MODEL_CONFIG
    unknown_key_hints: ClassVar[dict[str, str]] = {
        "password": "platform.yaml never holds secrets: name an environment variable with "
        "backup.password_env or a file with backup.password_file",
    }

    repository: str
    """restic repository: a local path, or ``sftp:``, ``rest:``, ``s3:``, ``b2:``, ``azure:``,
    ``gs:``, ``swift:``, ``rclone:`` repository string."""
    password_env: EnvVarName | None = None
    """Name of the environment variable holding the repository password."""
    password_file: FilePath | None = None
    """File holding the repository password (keep it mode 0600)."""
    binaries: BackupBinaries = Field(default_factory=BackupBinaries)
    """Executables used by backups and drills."""
    etcd: EtcdAccess = Field(default_factory=EtcdAccess)
    """etcd's client API, for `backup etcd` through the snapshot API."""
    targets: list[BackupTarget] = Field(default_factory=list)
    """Application data `backup app NAME` knows."""
    drill: BackupDrill = Field(default_factory=BackupDrill)
    """Where and how `backup verify` runs restore drills."""
    metrics_file: FilePath | None = None
    """node-exporter textfile-collector file the backup metrics are written to (e.g.
    /var/lib/node_exporter/textfile/k3sops_backup.prom); unset: no metrics file."""
    lease_namespace: DnsLabel = "kube-system"
    """Namespace of the Leases that keep two backups of one target from overlapping."""
    work_dir: FilePath | None = None
    """Scratch space for etcd snapshot files and drills (unset: the system temp dir)."""
    schedule: BackupSchedule = Field(default_factory=BackupSchedule)
    """When `backup schedule` runs the backups and the weekly verify."""

    @field_validator("binaries", "etcd", "drill", "schedule", mode="before")
    @classmethod
    def _empty_backup_sections(cls, value: object) -> object:
        return none_as_empty(value)

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, value: list[BackupTarget]) -> list[BackupTarget]:
        names = [t.name for t in value]
        if len(set(names)) != len(names):
            raise invalid("a target name is used more than once", "each name once")
        return value

    def target(self, name: str) -> BackupTarget | None:
        """The target called ``name``."""
        return next((t for t in self.targets if t.name == name), None)

    @field_validator("repository")
    @classmethod
    def _check_repository(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise invalid("the repository is empty", "a path or BACKEND:LOCATION")
        m = re.match(r"^([a-z0-9]+):", value)
        if m is None:
            return resolve_local(value, info)
        if m[1] not in RESTIC_BACKENDS:
            raise invalid(f"unknown restic backend {m[1]!r}", ", ".join(RESTIC_BACKENDS))
        if m[1] == "local":
            return "local:" + resolve_local(value[len("local:"):], info)
        return value

    @model_validator(mode="after")
    def _exactly_one_password_source(self) -> Backup:
        if (self.password_env is None) == (self.password_file is None):
            which = "both" if self.password_env is not None else "neither"
            raise invalid(
                f"{which} of password_env and password_file given; exactly one is needed",
                "password_env: VARIABLE or password_file: PATH",
            )
        return self


