"""What remediation, scaling and provisioning do to objects, composed of KubeClient calls.

Cordon, evict (through the Eviction API, retrying while a PodDisruptionBudget blocks it, as
``kubectl drain`` does), delete, restart (the pod-template annotation ``kubectl rollout
restart`` sets), scale through the scale subresource, annotate and delete Nodes, and wait for
pods to go or Nodes to become Ready. No request is sent here but through the client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from k3sops.adapters.kube._client import JSON, MERGE, STRATEGIC, KubeClient
from k3sops.adapters.kube._errors import status_of
from k3sops.adapters.kube._paths import api_path
from k3sops.errors import Timeout

WORKLOADS = "apps/v1"


class KubeActions:
    """Changes to pods, workloads and Nodes; raises k3sops errors only.

    Args:
        kube: the client (closed by :meth:`close`).
    """

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    def close(self) -> None:
        """Release the client's connections."""
        self.kube.close()

    # Pods ------------------------------------------------------------------------------------

    def pods(self, namespace: str | None = None, node: str | None = None,
             ) -> list[dict[str, Any]]:
        """Pods (all namespaces when ``namespace`` is None), optionally only on ``node``."""
        return self.kube.list("v1", "pods", namespace,
                              field_selector=f"spec.nodeName={node}" if node else None)

    def evict(self, namespace: str, name: str, timeout: float,
              on_blocked: Callable[[str], None] | None = None, every: float = 2.0) -> bool:
        """Evict a pod through the Eviction API (policy/v1), retrying while a PDB blocks it.

        Returns:
            True when the eviction was accepted, False when the pod was already gone.

        Raises:
            Timeout: a PodDisruptionBudget still blocked the eviction after ``timeout`` seconds.
        """
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": name, "namespace": namespace}}
        deadline = time.monotonic() + timeout
        while True:
            resp = self.kube.request("POST", api_path("v1", "pods", namespace, name, "eviction"),
                                     verb="create", body=body, content_type=JSON,
                                     accept=(404, 429))
            if resp.status_code == 404:
                return False
            if resp.status_code != 429:
                return True
            # 429: a PodDisruptionBudget does not allow the disruption right now; kubectl
            # retries too, as the budget frees up when replacements become ready.
            reason = str(status_of(resp.content).get("message") or "too many requests")
            if on_blocked is not None:
                on_blocked(reason)
            if time.monotonic() + every > deadline:
                raise Timeout(f"eviction of pod {namespace}/{name} still blocked after "
                              f"{timeout:g}s: {reason}",
                              hint="a PodDisruptionBudget allows no disruption; scale the "
                                   "workload up, relax the budget, or raise --timeout")
            time.sleep(every)

    def wait_gone(self, namespace: str, name: str, uid: str, timeout: float,
                  every: float = 1.0) -> bool:
        """Wait until the pod with ``uid`` no longer exists; True if it went in time."""
        deadline = time.monotonic() + timeout
        while True:
            pod = self.kube.find("v1", "pods", name, namespace)
            if pod is None or (pod.get("metadata") or {}).get("uid") != uid:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(every)

    def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete a pod (only the one with ``uid`` when given); False when it was gone."""
        return self.kube.delete("v1", "pods", name, namespace,
                                {"kind": "DeleteOptions", "apiVersion": "v1",
                                 **({"preconditions": {"uid": uid}} if uid else {})})

    # Workloads -------------------------------------------------------------------------------

    def restart(self, kind: str, namespace: str, name: str, annotation: str, at: str) -> None:
        """Stamp the pod template with ``annotation: at``, as ``kubectl rollout restart`` does."""
        body = {"spec": {"template": {"metadata": {"annotations": {annotation: at}}}}}
        self.kube.patch(WORKLOADS, kind, name, namespace, body, STRATEGIC)

    def replicas(self, kind: str, namespace: str, name: str) -> int:
        """The desired replica count, read from the scale subresource."""
        scale = self.kube.get(WORKLOADS, kind, name, namespace, sub="scale")
        return int((scale.get("spec") or {}).get("replicas") or 0)

    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> None:
        """Set the desired replica count through the scale subresource."""
        self.kube.patch(WORKLOADS, kind, name, namespace, {"spec": {"replicas": replicas}},
                        MERGE, sub="scale")

    # Nodes -----------------------------------------------------------------------------------

    def nodes(self) -> list[dict[str, Any]]:
        """Every Node."""
        return self.kube.list("v1", "nodes")

    def set_unschedulable(self, node: str, value: bool) -> None:
        """Cordon (True) or uncordon (False) a node: patch ``spec.unschedulable``."""
        self.kube.patch("v1", "nodes", node, None, {"spec": {"unschedulable": value}},
                        STRATEGIC)

    def annotate(self, node: str, key: str, value: str) -> bool:
        """Set an annotation on a Node; False when it already had that value."""
        current = ((self.kube.get("v1", "nodes", node).get("metadata") or {})
                   .get("annotations") or {})
        if current.get(key) == value:
            return False
        self.kube.patch("v1", "nodes", node, None, {"metadata": {"annotations": {key: value}}})
        return True

    def delete_node(self, node: str) -> bool:
        """Delete a Node; False when it was already gone."""
        return self.kube.delete("v1", "nodes", node)

    def wait_ready(self, names: list[str], timeout: float, every: float = 2.0,
                   ) -> dict[str, bool]:
        """Poll until every named Node is Ready or ``timeout`` passes; Ready state by name."""
        deadline = time.monotonic() + timeout
        while True:
            state = {n: _ready(self.kube.find("v1", "nodes", n)) for n in names}
            if all(state.values()) or time.monotonic() >= deadline:
                return state
            time.sleep(every)


def _ready(node: dict[str, Any] | None) -> bool:
    for c in (((node or {}).get("status") or {}).get("conditions") or []):
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False
