"""Server-side apply and plain reads of API objects by path (for GitOps deployments).

Built on :class:`KubeAdapter` (its credentials and error mapping). Server-side apply sends
``application/apply-patch+yaml`` with ``fieldManager=k3sops`` and ``force=true``: k3sops applies
what git says and takes over the fields it sets, as ArgoCD does with ``ServerSideApply=true``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx2

from k3sops.adapters.kube import KubeAdapter
from k3sops.errors import NotFound

FIELD_MANAGER = "k3sops"
APPLY_PATCH = "application/apply-patch+yaml"


def object_path(api_version: str, kind: str, namespace: str | None,
                name: str | None = None) -> str:
    """The API path of a kind's collection (or of one object) in a namespace.

    The plural is the lowercased kind plus ``s`` (Deployment, Service, Application,
    ReplicaSet): enough for the kinds GitOps deployments touch.
    """
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    ns = f"/namespaces/{namespace}" if namespace else ""
    return f"{base}{ns}/{kind.lower()}s" + (f"/{name}" if name else "")


class KubeObjects:
    """Reads and server-side applies objects by API path; raises k3sops errors only."""

    def __init__(self, kube: KubeAdapter) -> None:
        self.kube = kube
        self._http: httpx2.Client | None = None

    @property
    def context(self) -> str:
        """The kube context in use."""
        return self.kube.context

    def close(self) -> None:
        """Release connections."""
        if self._http is not None:
            self._http.close()
            self._http = None
        self.kube.close()

    def _client(self) -> httpx2.Client:
        if self._http is None:
            self._http = self.kube.http()
        return self._http

    def get(self, path: str, what: str, namespace: str | None = None,
            ) -> dict[str, Any] | None:
        """GET an object; None when it does not exist."""
        url = f"{self.kube.server.rstrip('/')}{path}"
        with self.kube.errors("get", what, namespace):
            resp = self._client().get(url)
        if resp.status_code == 404:
            return None
        self.kube._raise_for(resp, "get", what)
        data: dict[str, Any] = resp.json()
        return data

    def list(self, path: str, what: str) -> list[dict[str, Any]] | None:
        """LIST a collection as plain dicts; None when the kind is not served (no CRD)."""
        try:
            return self.kube.list_raw(path, what, client=self._client())
        except NotFound:
            return None

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply one object as field manager ``k3sops`` (forcing conflicts)."""
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace")
        path = object_path(str(obj["apiVersion"]), str(obj["kind"]), ns, str(meta["name"]))
        what = f"{str(obj['kind']).lower()}s/{meta['name']}"
        with self.kube.errors("apply", what, ns):
            resp = self._client().patch(
                f"{self.kube.server.rstrip('/')}{path}",
                params={"fieldManager": FIELD_MANAGER, "force": "true"},
                headers={"Content-Type": APPLY_PATCH},
                content=json.dumps(obj).encode())  # JSON is YAML
        self.kube._raise_for(resp, "apply", what)
        data: dict[str, Any] = resp.json()
        return data
