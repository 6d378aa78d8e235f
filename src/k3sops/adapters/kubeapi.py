"""Plain-JSON access to any Kubernetes API path (HPAs, PVCs, StorageClasses, Longhorn volumes).

Built on :class:`KubeAdapter` (credentials, error mapping). One difference from the generic
mapping: an HTTP 403 that is not an RBAC denial — an admission plugin's refusal, such as
PersistentVolumeClaimResize's "only dynamically provisioned pvc can be resized and the
storageclass that provisions the pvc must support resize" — is the server's verdict on the
request, not a credentials problem, so it is raised as :class:`~k3sops.errors.PlanRejected`
carrying the server's own message. 422 (Invalid) is reported the same way.
"""

from __future__ import annotations

from typing import Any

import httpx2

from k3sops.adapters.kube import KubeAdapter
from k3sops.errors import AdapterError, Conflict, NotFound, PlanRejected, Unauthorized

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


def api_path(group_version: str, plural: str, namespace: str | None = None,
             name: str | None = None, sub: str | None = None) -> str:
    """The REST path of a resource: ``v1`` is the core group, others live under /apis."""
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    ns = f"/namespaces/{namespace}" if namespace else ""
    return (f"{base}{ns}/{plural}" + (f"/{name}" if name else "")
            + (f"/{sub}" if sub else ""))


class KubeApi:
    """GET, LIST, POST, PUT and PATCH on API paths as plain JSON; k3sops errors only."""

    def __init__(self, kube: KubeAdapter) -> None:
        self.kube = kube
        self._http: httpx2.Client | None = None

    def close(self) -> None:
        """Release the HTTP connection."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def request(self, method: str, path: str, what: str, namespace: str | None = None, *,
                body: Any = None, content_type: str | None = None,
                params: dict[str, str] | None = None) -> dict[str, Any]:
        """Send one request; return the decoded JSON body.

        Args:
            method: HTTP method.
            path: the API path (:func:`api_path`).
            what: the object, for messages (``persistentvolumeclaims/data``).
            namespace: for messages.
            body: JSON body.
            content_type: for PATCH.
            params: query parameters.

        Raises:
            NotFound, Conflict, Unauthorized, PlanRejected, AdapterError: as the server answered.
        """
        if self._http is None:
            self._http = self.kube.http()
        verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(method, method.lower())
        headers = {"Content-Type": content_type} if content_type else {}
        with self.kube.errors(verb, what, namespace):
            resp = self._http.request(method, f"{self.kube.server.rstrip('/')}{path}",
                                      json=body, headers=headers, params=params)
        self._check(resp, verb, what, namespace)
        data: dict[str, Any] = resp.json()
        return data

    def _check(self, resp: httpx2.Response, verb: str, what: str,
               namespace: str | None) -> None:
        if resp.status_code < 400:
            return
        try:
            reason = str(resp.json().get("message", ""))
        except ValueError:
            reason = resp.text[:200]
        code = resp.status_code
        where = f" in namespace {namespace}" if namespace else ""
        full = f"{verb} {what}{where}"
        server = self.kube.server
        if code == 401 or (code == 403 and " cannot " in reason):
            raise Unauthorized(f"API server {server} refused to {full} (HTTP {code}): {reason}",
                               hint=f"check the credentials of context {self.kube.context!r} "
                                    "and their RBAC permissions")
        if code in (403, 422):
            raise PlanRejected(f"the API server {server} refused to {full} (HTTP {code}): "
                               f"{reason}", hint="nothing was changed")
        if code == 404:
            raise NotFound(f"{full}: not found on {server}: {reason}")
        if code == 409:
            raise Conflict(f"{full}: conflict on {server}: {reason}",
                           hint="re-read the object and retry")
        raise AdapterError(f"{full} failed on {server} (HTTP {code}): {reason}")

    def get(self, group_version: str, plural: str, name: str,
            namespace: str | None = None) -> dict[str, Any]:
        """GET one object (NotFound when it does not exist)."""
        return self.request("GET", api_path(group_version, plural, namespace, name),
                            f"{plural}/{name}", namespace)

    def find(self, group_version: str, plural: str, name: str,
             namespace: str | None = None) -> dict[str, Any] | None:
        """GET one object, or None when it (or its kind) does not exist."""
        try:
            return self.get(group_version, plural, name, namespace)
        except NotFound:
            return None

    def list(self, group_version: str, plural: str, namespace: str | None = None,
             ) -> list[dict[str, Any]]:
        """LIST a kind (all namespaces when ``namespace`` is None), every page."""
        items: list[dict[str, Any]] = []
        params: dict[str, str] = {"limit": "500"}
        while True:
            body = self.request("GET", api_path(group_version, plural, namespace), plural,
                                namespace, params=params)
            items.extend(body.get("items") or [])
            cont = (body.get("metadata") or {}).get("continue")
            if not cont:
                return items
            params = {"limit": "500", "continue": cont}

    def create(self, group_version: str, plural: str, namespace: str | None,
               obj: dict[str, Any]) -> dict[str, Any]:
        """POST a new object."""
        name = str((obj.get("metadata") or {}).get("name", ""))
        return self.request("POST", api_path(group_version, plural, namespace),
                            f"{plural}/{name}", namespace, body=obj,
                            content_type="application/json")

    def replace(self, group_version: str, plural: str, namespace: str | None,
                obj: dict[str, Any]) -> dict[str, Any]:
        """PUT an object (its metadata.resourceVersion guards against lost updates)."""
        name = str((obj.get("metadata") or {}).get("name", ""))
        return self.request("PUT", api_path(group_version, plural, namespace, name),
                            f"{plural}/{name}", namespace, body=obj,
                            content_type="application/json")

    def patch(self, group_version: str, plural: str, name: str, namespace: str | None,
              body: dict[str, Any], content_type: str = MERGE) -> dict[str, Any]:
        """PATCH an object (merge patch unless told otherwise)."""
        return self.request("PATCH", api_path(group_version, plural, namespace, name),
                            f"{plural}/{name}", namespace, body=body, content_type=content_type)
