"""Node objects for provisioning: list, wait for Ready, annotate, delete (raises k3sops errors)."""

from __future__ import annotations

import time
from typing import Any

from k3sops.adapters.kubeactions import MERGE, KubeActions
from k3sops.errors import NotFound


class NodeApi(KubeActions):
    """The Node operations `scale nodes` needs, on top of the remediation actions."""

    def nodes(self) -> list[dict[str, Any]]:
        """LIST every Node (paginated)."""
        items: list[dict[str, Any]] = []
        params: dict[str, str] | None = None
        while True:
            body = self._json("GET", "nodes", None, None, "list", params=params)
            items.extend(body.get("items") or [])
            cont = (body.get("metadata") or {}).get("continue")
            if not cont:
                return items
            params = {"continue": cont}

    def annotate(self, node: str, key: str, value: str) -> bool:
        """Set an annotation on a Node; False when it already had that value."""
        current = ((self.get("nodes", node).get("metadata") or {}).get("annotations") or {})
        if current.get(key) == value:
            return False
        self._json("PATCH", "nodes", node, None, "patch",
                   body={"metadata": {"annotations": {key: value}}}, content_type=MERGE)
        return True

    def delete_node(self, node: str) -> bool:
        """Delete a Node; False when it was already gone."""
        try:
            self._json("DELETE", "nodes", node, None, "delete")
        except NotFound:
            return False
        return True

    def wait_ready(self, names: list[str], timeout: float, every: float = 2.0,
                   ) -> dict[str, bool]:
        """Poll until every named Node is Ready or ``timeout`` passes; Ready state by name."""
        deadline = time.monotonic() + timeout
        while True:
            state = {n: _ready(self.find("nodes", n)) for n in names}
            if all(state.values()) or time.monotonic() >= deadline:
                return state
            time.sleep(every)


def _ready(node: dict[str, Any] | None) -> bool:
    for c in (((node or {}).get("status") or {}).get("conditions") or []):
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False
