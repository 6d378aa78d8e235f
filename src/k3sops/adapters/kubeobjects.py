"""Plain-JSON access to any Kubernetes object by API group/version/plural (CRDs included).

Built on :class:`KubeAdapter` (its credentials and error wording). Used where lightkube has no
model (Longhorn, K3s CRDs) and for server-side apply of rendered manifests (CronJobs).
"""

from __future__ import annotations

import json
from typing import Any

import httpx2

from k3sops.adapters.kube import KubeAdapter
from k3sops.errors import AdapterError, Conflict, NotFound, Unauthorized

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


def api_path(api_version: str, plural: str, namespace: str | None = None,
             name: str | None = None, sub: str | None = None) -> str:
    """``/api/v1/...`` or ``/apis/GROUP/VERSION/...`` for a resource (and one object of it)."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    ns = f"/namespaces/{namespace}" if namespace else ""
    path = f"{base}{ns}/{plural}"
    if name:
        path += f"/{name}"
        if sub:
            path += f"/{sub}"
    return path


class KubeObjects:
    """GET, LIST, CREATE, PATCH and server-side APPLY of objects as plain dicts."""

    def __init__(self, kube: KubeAdapter) -> None:
        self.kube = kube
        self._http: httpx2.Client | None = None

    def close(self) -> None:
        """Release the HTTP connection."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def _call(self, method: str, path: str, verb: str, what: str, namespace: str | None, *,
              body: Any = None, content_type: str | None = None,
              params: dict[str, str] | None = None) -> dict[str, Any]:
        if self._http is None:
            self._http = self.kube.http()
        headers = {"Content-Type": content_type} if content_type else {}
        data = json.dumps(body) if body is not None else None
        with self.kube.errors(verb, what, namespace):
            resp = self._http.request(method, f"{self.kube.server.rstrip('/')}{path}",
                                      content=data, headers=headers, params=params)
        self._check(resp, verb, what, namespace)
        out: dict[str, Any] = resp.json()
        return out

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
        if code in (401, 403):
            raise Unauthorized(f"API server {server} refused to {full} (HTTP {code}): {reason}",
                               hint=f"check the credentials of context {self.kube.context!r} "
                                    "and their RBAC permissions")
        if code == 404:
            raise NotFound(f"{full}: not found on {server}: {reason}")
        if code == 409:
            raise Conflict(f"{full}: conflict on {server}: {reason}",
                           hint="the object already exists or changed; re-read it")
        raise AdapterError(f"{full} failed on {server} (HTTP {code}): {reason}")

    def get(self, api_version: str, plural: str, name: str,
            namespace: str | None = None) -> dict[str, Any]:
        """GET one object (raises NotFound when it does not exist)."""
        return self._call("GET", api_path(api_version, plural, namespace, name), "get",
                          f"{plural}/{name}", namespace)

    def find(self, api_version: str, plural: str, name: str,
             namespace: str | None = None) -> dict[str, Any] | None:
        """GET one object, or None when it does not exist."""
        try:
            return self.get(api_version, plural, name, namespace)
        except NotFound:
            return None

    def list(self, api_version: str, plural: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        """LIST objects (paginated)."""
        params: dict[str, str] = {"limit": "500"}
        if label_selector:
            params["labelSelector"] = label_selector
        items: list[dict[str, Any]] = []
        while True:
            body = self._call("GET", api_path(api_version, plural, namespace), "list", plural,
                              namespace, params=params)
            items.extend(body.get("items") or [])
            cont = (body.get("metadata") or {}).get("continue")
            if not cont:
                return items
            params = {**params, "continue": cont}

    def create(self, obj: dict[str, Any], plural: str) -> dict[str, Any]:
        """POST a new object (raises Conflict when one of that name exists)."""
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace")
        return self._call("POST", api_path(obj["apiVersion"], plural, ns), "create",
                          f"{plural}/{meta.get('name', '')}", ns, body=obj,
                          content_type="application/json")

    def apply(self, obj: dict[str, Any], plural: str, *, dry_run: bool = False,
              ) -> dict[str, Any]:
        """Server-side apply ``obj`` as field manager ``k3sops`` (force: k3sops owns it)."""
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace")
        params = {"fieldManager": "k3sops", "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        return self._call("PATCH", api_path(obj["apiVersion"], plural, ns, meta["name"]),
                          "apply", f"{plural}/{meta['name']}", ns, body=obj,
                          content_type=APPLY, params=params)

    def patch_status(self, api_version: str, plural: str, name: str, namespace: str | None,
                     status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource (what a controller does)."""
        return self._call("PATCH", api_path(api_version, plural, namespace, name, "status"),
                          "patch", f"{plural}/{name}/status", namespace,
                          body={"status": status}, content_type=MERGE)

    def delete(self, api_version: str, plural: str, name: str,
               namespace: str | None = None) -> bool:
        """DELETE one object; False when it was already gone."""
        try:
            self._call("DELETE", api_path(api_version, plural, namespace, name), "delete",
                       f"{plural}/{name}", namespace)
        except NotFound:
            return False
        return True
