"""Domain models shared by services and output (pydantic, JSON-stable)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectRef(_Model):
    """A Kubernetes object named in output."""

    kind: str
    namespace: str | None = None
    name: str


class NodeStatus(_Model):
    """One node as `status` shows it."""

    name: str
    roles: list[str]
    ready: Literal["True", "False", "Unknown"]
    schedulable: bool
    version: str
    pressure: list[str]
    cpu: str | None
    memory: str | None


class PodCounts(_Model):
    """Pods of one namespace by phase."""

    namespace: str
    total: int
    running: int
    pending: int
    failed: int
    succeeded: int
    not_ready: int
    restarts: int


class PodProblem(_Model):
    """A pod that is not Running and ready, with the reason a person would look for."""

    namespace: str
    name: str
    phase: str
    reason: str
    restarts: int
    node: str | None


class Target(_Model):
    """A Prometheus scrape target."""

    job: str
    instance: str
    health: Literal["up", "down", "unknown"]
    last_error: str
    scrape_url: str


class SourceStatus(_Model):
    """Whether a data source could be read (for partial results, exit code 4)."""

    name: str
    ok: bool
    endpoint: str
    error: str | None = None


class StatusReport(_Model):
    """What `k3sops status` prints: nodes, pods and monitoring targets."""

    cluster: str
    server_version: str | None
    nodes: list[NodeStatus]
    pods: list[PodCounts]
    problems: list[PodProblem]
    targets: list[Target]
    sources: list[SourceStatus]
