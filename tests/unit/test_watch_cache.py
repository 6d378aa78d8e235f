"""WatchCache on recorded API server answers: 410 Gone re-lists, forbidden is unreadable.

The 410 answer is the one a real kube-apiserver sent (tests/data/kube/gone.json); the other
answers follow the API's shapes (a LIST page, watch lines, a 403 Status).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2

from k3sops.adapters.kube import KubeClient, KubeconfigSource
from k3sops.adapters.kube.recorded import ReplayTransport
from k3sops.serve.cache import WatchCache

DATA = Path(__file__).parent.parent / "data" / "kube"
GONE = json.loads((DATA / "gone.json").read_text())["exchanges"][0]["response"]["body"]


def _pod(name: str, rv: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "a", "uid": f"u-{name}",
                         "resourceVersion": rv, "managedFields": [{"manager": "x"}]}}


def _ex(path: str, query: str, body: str | dict[str, Any], status: int = 200,
        ) -> dict[str, Any]:
    return {"request": {"method": "GET", "path": path, "query": query},
            "response": {"status": status, "content_type": "application/json",
                         "body": body if isinstance(body, str) else json.dumps(body)}}


def _list(path: str, rv: str, *items: dict[str, Any]) -> dict[str, Any]:
    return _ex(path, "limit=500", {"kind": "List", "metadata": {"resourceVersion": rv},
                                   "items": list(items)})


def _watch(path: str, rv: str, *lines: str) -> dict[str, Any]:
    return _ex(path, f"watch=true&timeoutSeconds=1&allowWatchBookmarks=true&resourceVersion={rv}",
               "\n".join(lines) + "\n")


def _event(typ: str, obj: dict[str, Any]) -> str:
    return json.dumps({"type": typ, "object": obj})


class _Idle(httpx2.BaseTransport):
    """The recorded answers, then watches that end at once (a quiet API server)."""

    def __init__(self, replay: ReplayTransport) -> None:
        self.replay = replay
        self.done = threading.Event()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return self.replay.handle_request(request)
        except LookupError:
            self.done.set()
            self.done.wait(0.05)
            return httpx2.Response(200, content=b"", request=request)


def _client(tmp_path: Path, exchanges: list[dict[str, Any]]) -> tuple[KubeClient, _Idle]:
    kc = tmp_path / "kubeconfig"
    kc.write_text("apiVersion: v1\nkind: Config\nclusters:\n- name: l\n  cluster:\n"
                  "    server: https://127.0.0.1:6443\n    insecure-skip-tls-verify: true\n"
                  "users:\n- name: u\n  user:\n    token: not-a-real-token\n"
                  "contexts:\n- name: c\n  context: {cluster: l, user: u}\n"
                  "current-context: c\n")
    version = _ex("/version", "", {"gitVersion": "v1.34.4"})
    idle = _Idle(ReplayTransport([version, *exchanges]))
    return KubeClient(KubeconfigSource(kc, "test"), transport=idle), idle


def test_gone_relists_and_watches_from_the_new_list(tmp_path: Path) -> None:
    path = "/api/v1/pods"
    k, idle = _client(tmp_path, [
        _list(path, "2", _pod("old", "1")),
        _watch(path, "2", GONE),
        _list(path, "50", _pod("new", "49")),
        _watch(path, "50", _event("ADDED", _pod("added", "51")),
               _event("BOOKMARK", {"kind": "Pod", "metadata": {"resourceVersion": "60"}})),
    ])
    c = WatchCache(k, ["pods"], watch_seconds=1, retry_seconds=0.1)
    c.start()
    try:
        assert idle.done.wait(10), idle.replay.unused
        st = c.status()["pods"]
        assert st.relists == 1 and st.resource_version == "60" and st.synced
        snap = c.snapshot(datetime.now(UTC))
        assert [o["metadata"]["name"] for o in snap.get("pods")] == ["added", "new"]
        assert all("managedFields" not in o["metadata"] for o in snap.get("pods"))
        assert snap.server_version == "v1.34.4" and not snap.errors
    finally:
        c.stop()
    assert idle.replay.unused == []


def test_forbidden_is_synced_as_unreadable_and_an_absent_crd_is_absent(tmp_path: Path) -> None:
    forbidden = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                 "reason": "Forbidden",
                 "message": 'secrets is forbidden: User "system:serviceaccount:a:b" cannot '
                            'list resource "secrets" in API group "" at the cluster scope'}
    not_found = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                 "reason": "NotFound", "message": "the server could not find the requested "
                                                  "resource"}
    k, _ = _client(tmp_path, [
        _ex("/api/v1/secrets", "limit=500", forbidden, 403),
        _ex("/apis/longhorn.io/v1beta2/volumes", "limit=500", not_found, 404),
    ])
    c = WatchCache(k, ["secrets", "volumes.longhorn.io"], retry_seconds=30)
    c.start()
    try:
        assert c.wait_synced(10) and c.in_sync()
        st = c.status()
        assert st["secrets"].error == "forbidden" and st["secrets"].synced
        assert st["volumes.longhorn.io"].absent and st["volumes.longhorn.io"].error is None
        snap = c.snapshot(datetime.now(UTC))
        assert snap.errors == {"secrets": "forbidden"} and snap.objects == {}
        assert snap.unread("secrets") == "forbidden"
        assert snap.unread("volumes.longhorn.io") is None
        src = c.source()
        assert src.error == "could not list secrets (forbidden)"
        assert "not-a-real-token" not in repr(st) + json.dumps(src.model_dump())
        # a kind the cache does not watch is never silently empty
        assert c.snapshot(datetime.now(UTC), ["pods"]).unread("pods") == "not watched"
    finally:
        c.stop()


def test_secrets_keep_keys_never_values(tmp_path: Path) -> None:
    path = "/api/v1/secrets"
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": "s", "namespace": "a", "uid": "u1",
                           "resourceVersion": "5"},
              "data": {"password": "aHVudGVyMg=="}}
    changed = {**secret, "metadata": {**secret["metadata"], "resourceVersion": "7"},
               "data": {"password": "c2VjcmV0", "user": "dQ=="}}
    k, idle = _client(tmp_path, [_list(path, "5", secret),
                                 _watch(path, "5", _event("MODIFIED", changed))])
    seen: list[Any] = []
    c = WatchCache(k, ["secrets"], watch_seconds=1)
    c.on_change(lambda kind, typ, obj: seen.append((kind, typ, obj)))
    c.start()
    try:
        assert idle.done.wait(10)
        [obj] = c.snapshot(datetime.now(UTC)).get("secrets")
        assert obj["keys"] == ["password", "user"] and "data" not in obj
        assert seen and "data" not in seen[0][2] and seen[0][:2] == ("secrets", "MODIFIED")
        assert "c2VjcmV0" not in json.dumps(obj) + repr(seen)
    finally:
        c.stop()


def test_an_unreachable_api_server_is_not_in_sync(tmp_path: Path) -> None:
    """Down is lag, not unreadable: in_sync False, the kind named in errors, no stale data."""
    class Down(httpx2.BaseTransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            raise httpx2.ConnectError("connection refused", request=request)

    k, _ = _client(tmp_path, [])
    k = KubeClient(k.source, transport=Down())
    c = WatchCache(k, ["pods"], retry_seconds=30)
    c.start()
    try:
        assert not c.wait_synced(1.0) and not c.in_sync()
        st = c.status()["pods"]
        assert not st.synced and st.error == "unreachable" and st.objects == 0
        assert c.snapshot(datetime.now(UTC)).errors == {"pods": "unreachable"}
    finally:
        c.stop()
