"""The one way k3sops talks to a Kubernetes API server.

:class:`KubeClient` sends every request (a timeout on each), pages through LISTs
(``limit``/``continue``), server-side applies (field manager ``k3sops``), patches status,
deletes, selects by label or field, WATCHes (typed events, :class:`~k3sops.errors.Gone` on an
expired resourceVersion), reads logs and runs commands in pods over a WebSocket; every failure
is a k3sops error from one mapping (``_errors``: 401/403 → Unauthorized naming the verb and
resource, 404 → NotFound, 409 → Conflict, 410 → Gone, 400/422 → Invalid, admission refusals
→ PlanRejected, timeouts → Timeout, connection failures → Unreachable).
:class:`KubeActions` composes it into what remediation, scaling and provisioning do (cordon,
evict through PodDisruptionBudgets, restart, scale, wait).

Kubeconfig discovery order (first that applies wins; documented in the README):

1. ``--kubeconfig`` flag, or ``K3SOPS_KUBECONFIG`` (the CLI folds the env var into the flag);
2. ``kubeconfig:`` in platform.yaml;
3. ``$KUBECONFIG`` (the first existing file of a ``:``-separated list, as kubectl reads it);
4. ``~/.kube/config``;
5. ``/etc/rancher/k3s/k3s.yaml`` (where K3s writes its admin kubeconfig on a server);
6. the in-cluster service account (when k3sops runs in a pod).
"""

from __future__ import annotations

from k3sops.adapters.kube._client import (
    APPLY,
    FIELD_MANAGER,
    JSON,
    LIST_CHUNK,
    MERGE,
    STRATEGIC,
    KubeClient,
    Listing,
)
from k3sops.adapters.kube._config import (
    K3S_KUBECONFIG,
    SERVICE_ACCOUNT_DIR,
    KubeconfigSource,
    discover_kubeconfig,
    load_single,
)
from k3sops.adapters.kube._errors import status_message
from k3sops.adapters.kube._exec import ExecSession
from k3sops.adapters.kube._paths import api_path, plural_of
from k3sops.adapters.kube._watch import EventType, WatchEvent
from k3sops.adapters.kube.actions import WORKLOADS, KubeActions

KubeAdapter = KubeClient
"""The name services have used for the client since the beginning; the same class."""

__all__ = [
    "APPLY",
    "FIELD_MANAGER",
    "JSON",
    "K3S_KUBECONFIG",
    "LIST_CHUNK",
    "MERGE",
    "SERVICE_ACCOUNT_DIR",
    "STRATEGIC",
    "WORKLOADS",
    "EventType",
    "ExecSession",
    "KubeActions",
    "KubeAdapter",
    "KubeClient",
    "KubeconfigSource",
    "Listing",
    "WatchEvent",
    "api_path",
    "discover_kubeconfig",
    "load_single",
    "plural_of",
    "status_message",
]
