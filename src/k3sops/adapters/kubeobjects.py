"""Plain-JSON objects by API group/version/plural: KubeApi plus what backups need.

:class:`~k3sops.adapters.kubeapi.KubeApi` does the requests and the error mapping. Added
here: LIST with a label selector, POST of an object that names its own apiVersion and
namespace, server-side apply (field manager ``k3sops``, optionally as a server-side dry run),
status-subresource patches and DELETE.
"""

from __future__ import annotations

from typing import Any

from k3sops.adapters.kubeapi import MERGE, KubeApi, api_path
from k3sops.errors import NotFound

APPLY = "application/apply-patch+yaml"

__all__ = ["APPLY", "KubeObjects", "api_path"]


class KubeObjects(KubeApi):
    """KubeApi with label selectors, object-driven create, server-side apply, status, delete."""

    def list(self, group_version: str, plural: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        """LIST objects (every page), optionally only those matching ``label_selector``."""
        if label_selector is None:
            return super().list(group_version, plural, namespace)
        items: list[dict[str, Any]] = []
        params: dict[str, str] = {"limit": "500", "labelSelector": label_selector}
        while True:
            body = self.request("GET", api_path(group_version, plural, namespace), plural,
                                namespace, params=params)
            items.extend(body.get("items") or [])
            cont = (body.get("metadata") or {}).get("continue")
            if not cont:
                return items
            params = {**params, "continue": cont}

    def create_object(self, obj: dict[str, Any], plural: str) -> dict[str, Any]:
        """POST ``obj`` to its own apiVersion and namespace (Conflict when the name exists)."""
        ns = (obj.get("metadata") or {}).get("namespace")
        return self.create(obj["apiVersion"], plural, ns, obj)

    def apply(self, obj: dict[str, Any], plural: str, *, dry_run: bool = False,
              ) -> dict[str, Any]:
        """Server-side apply ``obj`` as field manager ``k3sops`` (force: k3sops owns it)."""
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace")
        params = {"fieldManager": "k3sops", "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        return self.request("PATCH", api_path(obj["apiVersion"], plural, ns, meta["name"]),
                            f"{plural}/{meta['name']}", ns, body=obj, content_type=APPLY,
                            params=params)

    def patch_status(self, group_version: str, plural: str, name: str,
                     namespace: str | None, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource (what a controller does)."""
        return self.request("PATCH", api_path(group_version, plural, namespace, name, "status"),
                            f"{plural}/{name}/status", namespace, body={"status": status},
                            content_type=MERGE)

    def delete(self, group_version: str, plural: str, name: str,
               namespace: str | None = None) -> bool:
        """DELETE one object; False when it was already gone."""
        try:
            self.request("DELETE", api_path(group_version, plural, namespace, name),
                         f"{plural}/{name}", namespace)
        except NotFound:
            return False
        return True
