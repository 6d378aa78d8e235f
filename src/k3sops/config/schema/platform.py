"""The whole ``platform.yaml``, with its Ansible, GitOps and suppression sections."""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from k3sops.config.schema.backup import Backup
from k3sops.config.schema.environment import Environment
from k3sops.config.schema.fields import (
    ENVIRONMENT_NAMES,
    MODEL_CONFIG,
    SCP_LIKE,
    URL_LIKE,
    DnsLabel,
    EnvironmentName,
    EnvVarName,
    FilePath,
    check_duration,
    invalid,
    none_as_empty,
    resolve_local,
)
from k3sops.config.schema.monitoring import Monitoring
from k3sops.config.schema.serve import Serve
from k3sops.config.schema.state import State


class Ansible(BaseModel):
    """Node provisioning with Ansible."""

    model_config = MODEL_CONFIG

    inventory: FilePath
    """Inventory file or directory listing the K3s nodes (servers and agents)."""
    private_key_file: FilePath | None = None
    """SSH private key used to reach the nodes; unset: the SSH agent / Ansible's default."""
    user: str | None = None
    """Remote SSH user; unset: the inventory's or Ansible's default."""
    token_env: EnvVarName | None = None
    """Environment variable holding the K3s cluster token (the playbooks need it to install or
    join nodes); the token is never written here."""
    token_file: FilePath | None = None
    """File holding the K3s cluster token (keep it mode 0600); alternative to token_env."""
    timeout_seconds: float = Field(default=1800, gt=0, strict=True)
    """How long one playbook run may take before it is stopped."""
    node_ready_timeout_seconds: float = Field(default=300, gt=0, strict=True)
    """How long `scale nodes add` waits for new Nodes to become Ready."""

    @model_validator(mode="after")
    def _one_token_source(self) -> Ansible:
        if self.token_env is not None and self.token_file is not None:
            raise invalid("both token_env and token_file given; at most one is allowed",
                           "token_env: VARIABLE or token_file: PATH")
        return self


class GitOps(BaseModel):
    """The GitOps repository ArgoCD deploys from, holding per-environment values files."""

    model_config = MODEL_CONFIG

    repo: str
    """Local path or URL (https://, ssh://, git@host:path) of the GitOps repository."""
    branch: str = "main"
    """Branch ArgoCD tracks; promotions are committed here."""
    values_path: str = "environments/{env}/values.yaml"
    """Path of an environment's values file inside the repo; ``{env}`` is the environment."""
    push: Literal["direct", "branch"] = "direct"
    """``direct``: promotions are pushed to ``branch`` (rebased onto a concurrent change);
    ``branch``: pushed to a review branch ``k3sops/<env>/<app>-<version>`` to merge by hand."""
    deploy: Literal["argocd", "apply", "none"] = "argocd"
    """How a pushed change reaches the cluster: ``argocd`` (wait for the app's Application to
    sync and be healthy), ``apply`` (k3sops renders the manifests and server-side applies them,
    as in the lab), ``none`` (only git is changed)."""
    argocd_namespace: DnsLabel = "argocd"
    """Namespace of ArgoCD's Application objects (``<app>-<env>``)."""
    rollout_timeout: str = "5m"
    """How long to wait for a rollout (or an ArgoCD sync) to finish after a change."""

    @field_validator("rollout_timeout")
    @classmethod
    def _check_rollout_timeout(cls, value: str) -> str:
        if value == "0":  # a rollout wait of nothing is refused (0s passes, as it always did)
            raise invalid(f"{value!r} is not a Prometheus duration", "e.g. 90s, 5m")
        return check_duration(value, "e.g. 90s, 5m")

    @field_validator("repo")
    @classmethod
    def _check_repo(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise invalid("the repository is empty", "a local path or a git URL")
        if URL_LIKE.match(value) or SCP_LIKE.match(value):
            return value
        return resolve_local(value, info)

    @field_validator("branch")
    @classmethod
    def _check_branch(cls, value: str) -> str:
        if not value or ".." in value or re.search(r"[\s~^:?*\[\\]", value) or value[0] == "-":
            raise invalid(f"{value[:60]!r} is not a git branch name", "e.g. main, release/1.2")
        return value

    @field_validator("values_path")
    @classmethod
    def _check_values_path(cls, value: str) -> str:
        if "{env}" not in value:
            raise invalid("values_path must contain {env}", "e.g. environments/{env}/values.yaml")
        try:
            value.format(env="x")
        except (KeyError, IndexError, ValueError) as e:
            raise invalid("values_path may use only the {env} placeholder") from e
        return value

    def values_file(self, env: str) -> str:
        """Return the values file path inside the repo for environment ``env``."""
        return self.values_path.format(env=env)


class Suppression(BaseModel):
    """Hide a check's findings for some objects, or change their severity (with a reason).

    Every field given must match: ``check`` (an id or a glob such as ``container-*``), ``kind``,
    ``namespace`` (a glob), ``name`` (a regular expression matching the whole name) and
    ``labels`` (each must equal the object's label). Suppressed findings are counted in every
    report and listed with ``--show-suppressed``; a suppression past ``expires`` stops applying
    and is itself reported (``suppression-expired``).
    """

    model_config = MODEL_CONFIG

    check: str = Field(min_length=1)
    """Check id or glob (``image-latest``, ``rbac-*``)."""
    kind: str | None = None
    """Kind of the object (``Pod``, ``Deployment``...)."""
    namespace: str | None = None
    """Namespace glob (``dev-*``)."""
    name: str | None = None
    """Regular expression the object's whole name must match (``tmp-.*``)."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels the object must carry."""
    severity: Literal["critical", "warning", "info"] | None = None
    """Report at this severity instead of hiding the finding."""
    reason: str = Field(min_length=1)
    """Why: shown with every suppressed finding."""
    expires: date | None = None
    """Last day the suppression applies (YYYY-MM-DD); afterwards it is reported."""

    @field_validator("name")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as e:
                raise invalid(f"{value[:60]!r} is not a regular expression: {e}",
                               "a Python regular expression, e.g. tmp-.*") from e
        return value

    @field_validator("reason")
    @classmethod
    def _check_reason(cls, value: str) -> str:
        if not value.strip():
            raise invalid("the reason is empty", "why this finding may be ignored")
        return value


class Platform(BaseModel):
    """The whole ``platform.yaml``."""

    model_config = MODEL_CONFIG

    name: DnsLabel
    """Name of the platform (DNS-1123 label); used in labels, backup tags and report titles."""
    kubeconfig: FilePath | None = None
    """Kubeconfig file; --kubeconfig and $K3SOPS_KUBECONFIG override it. Unset: $KUBECONFIG,
    then ~/.kube/config."""
    environments: dict[EnvironmentName, Environment]
    """The environments, at least one, keyed by name."""
    monitoring: Monitoring = Field(default_factory=Monitoring)
    """Where the monitoring stack answers."""
    ansible: Ansible | None = None
    """Node provisioning; unset: node operations that need Ansible are refused."""
    backup: Backup | None = None
    """restic backups; unset: backup and restore commands are refused."""
    gitops: GitOps | None = None
    """GitOps repository; unset: promotion is refused."""
    suppressions: list[Suppression] = Field(default_factory=list)
    """Findings to hide or re-grade, each with a reason and an optional expiry."""
    state: State = Field(default_factory=State)
    """Where the history lives; unset: SQLite in the state directory."""
    serve: Serve = Field(default_factory=Serve)
    """`k3sops serve`: listener, schedule, leader election, alert receivers, remediation."""

    @field_validator("monitoring", "state", "serve", mode="before")
    @classmethod
    def _empty_monitoring(cls, value: object) -> object:
        return none_as_empty(value)

    @field_validator("environments", mode="before")
    @classmethod
    def _none_envs_as_defaults(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: none_as_empty(v) for k, v in value.items()}
        return value

    @field_validator("environments")
    @classmethod
    def _at_least_one(
        cls, value: dict[EnvironmentName, Environment]
    ) -> dict[EnvironmentName, Environment]:
        if not value:
            raise invalid("at least one environment is needed", ", ".join(ENVIRONMENT_NAMES))
        return value


