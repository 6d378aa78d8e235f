"""Changes to Kubernetes objects for remediations: cordon, evict, delete, restart, scale.

Built on :class:`KubeAdapter` (its credentials and its error mapping). Requests are plain
JSON over the adapter's HTTP client so that subresources (``pods/eviction``,
``deployments/scale``) are sent exactly as the API documents them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx2

from k3sops.adapters.kube import KubeAdapter
from k3sops.errors import AdapterError, Conflict, NotFound, Timeout, Unauthorized

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


def _path(kind: str, name: str | None, namespace: str | None) -> str:
    group = "/api/v1" if kind in ("nodes", "pods") else "/apis/apps/v1"
    ns = f"/namespaces/{namespace}" if namespace else ""
    return f"{group}{ns}/{kind}" + (f"/{name}" if name else "")


class KubeActions:
    """Reads and changes the objects remediations act on; raises k3sops errors only."""

    def __init__(self, kube: KubeAdapter) -> None:
        self.kube = kube
        self._http: httpx2.Client | None = None

    def close(self) -> None:
        """Release the HTTP connection."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def _request(self, method: str, path: str, verb: str, resource: str,
                 namespace: str | None, *, body: Any = None, content_type: str | None = None,
                 params: dict[str, str] | None = None) -> httpx2.Response:
        if self._http is None:
            self._http = self.kube.http()
        headers = {"Content-Type": content_type} if content_type else {}
        with self.kube.errors(verb, resource, namespace):
            return self._http.request(method, f"{self.kube.server.rstrip('/')}{path}",
                                      json=body, headers=headers, params=params)

    def _check(self, resp: httpx2.Response, verb: str, resource: str,
               namespace: str | None) -> None:
        if resp.status_code < 400:
            return
        try:
            reason = str(resp.json().get("message", ""))
        except ValueError:
            reason = resp.text[:200]
        code = resp.status_code
        where = f" in namespace {namespace}" if namespace else ""
        what = f"{verb} {resource}{where}"
        server = self.kube.server
        if code in (401, 403):
            raise Unauthorized(f"API server {server} refused to {what} (HTTP {code}): {reason}",
                               hint=f"check the credentials of context {self.kube.context!r} "
                                    "and their RBAC permissions")
        if code == 404:
            raise NotFound(f"{what}: not found on {server}: {reason}")
        if code == 409:
            raise Conflict(f"{what}: conflict on {server}: {reason}",
                           hint="re-read the object and retry")
        raise AdapterError(f"{what} failed on {server} (HTTP {code}): {reason}")

    def _json(self, method: str, kind: str, name: str | None, namespace: str | None,
              verb: str, *, sub: str = "", body: Any = None, content_type: str | None = None,
              params: dict[str, str] | None = None) -> dict[str, Any]:
        path = _path(kind, name, namespace) + (f"/{sub}" if sub else "")
        resource = f"{kind}/{name}" + (f"/{sub}" if sub else "") if name else kind
        resp = self._request(method, path, verb, resource, namespace, body=body,
                             content_type=content_type, params=params)
        self._check(resp, verb, resource, namespace)
        data: dict[str, Any] = resp.json()
        return data

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """GET one object as plain JSON (raises NotFound when it does not exist)."""
        return self._json("GET", kind, name, namespace, "get")

    def find(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """GET one object, or None when it does not exist."""
        try:
            return self.get(kind, name, namespace)
        except NotFound:
            return None

    def pods(self, namespace: str | None = None, node: str | None = None,
             ) -> list[dict[str, Any]]:
        """LIST pods (all namespaces when ``namespace`` is None), optionally on one node."""
        params = {"fieldSelector": f"spec.nodeName={node}"} if node else None
        items: list[dict[str, Any]] = []
        while True:
            body = self._json("GET", "pods", None, namespace, "list", params=params)
            items.extend(body.get("items") or [])
            cont = (body.get("metadata") or {}).get("continue")
            if not cont:
                return items
            params = {**(params or {}), "continue": cont}

    def set_unschedulable(self, node: str, value: bool) -> None:
        """Cordon (True) or uncordon (False) a node: patch ``spec.unschedulable``."""
        self._json("PATCH", "nodes", node, None, "patch",
                   body={"spec": {"unschedulable": value}}, content_type=STRATEGIC)

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
        resource = f"pods/{name}/eviction"
        deadline = time.monotonic() + timeout
        while True:
            resp = self._request("POST", _path("pods", name, namespace) + "/eviction", "create",
                                 resource, namespace, body=body, content_type="application/json")
            if resp.status_code == 404:
                return False
            if resp.status_code != 429:
                self._check(resp, "create", resource, namespace)
                return True
            # 429: a PodDisruptionBudget does not allow the disruption right now; kubectl
            # retries too, as the budget frees up when replacements become ready.
            try:
                reason = str(resp.json().get("message", ""))
            except ValueError:
                reason = "too many requests"
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
            pod = self.find("pods", name, namespace)
            if pod is None or (pod.get("metadata") or {}).get("uid") != uid:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(every)

    def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete a pod (only the one with ``uid`` when given); False when it was gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1",
                **({"preconditions": {"uid": uid}} if uid else {})}
        try:
            self._json("DELETE", "pods", name, namespace, "delete", body=body,
                       content_type="application/json")
        except NotFound:
            return False
        return True

    def restart(self, kind: str, namespace: str, name: str, annotation: str, at: str) -> None:
        """Stamp the pod template with ``annotation: at``, as ``kubectl rollout restart`` does."""
        body = {"spec": {"template": {"metadata": {"annotations": {annotation: at}}}}}
        self._json("PATCH", kind, name, namespace, "patch", body=body, content_type=STRATEGIC)

    def replicas(self, kind: str, namespace: str, name: str) -> int:
        """The desired replica count, read from the scale subresource."""
        scale = self._json("GET", kind, name, namespace, "get", sub="scale")
        return int((scale.get("spec") or {}).get("replicas") or 0)

    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> None:
        """Set the desired replica count through the scale subresource."""
        self._json("PATCH", kind, name, namespace, "patch", sub="scale",
                   body={"spec": {"replicas": replicas}}, content_type=MERGE)
