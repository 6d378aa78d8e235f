"""WatchCache on recorded API server answers: 410 Gone re-lists, forbidden is unreadable.

Every answer is one the lab's real kube-apiserver sent: the 410 (tests/data/kube/gone.json),
and the LISTs, WATCH streams and 403 recorded by tests/lab/test_serve_reviews_lab.py into
tests/data/serve_reviews/cache-*.json (ConfigMaps listed before and after one was deleted, then
watched: ADDED, MODIFIED, DELETED, BOOKMARK; a Secret listed then changed; the nobody account's
LIST of Secrets). Only the 404 of a CRD that is not installed is written here: the lab installs
every CRD the cache reads.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
from servekit import REVIEWS

from k3sops.adapters.kube import KubeClient, KubeconfigSource
from k3sops.adapters.kube.recorded import ReplayTransport
from k3sops.serve.cache import WatchCache

DATA = Path(__file__).parent.parent / "data" / "kube"
GONE = json.loads((DATA / "gone.json").read_text())["exchanges"][0]["response"]


def _recorded(name: str) -> tuple[str, list[dict[str, Any]]]:
    """The namespace the recording's objects are in, and its exchanges."""
    rec = json.loads((REVIEWS / f"cache-{name}.json").read_text())
    return rec["namespace"], rec["exchanges"]


_, _CONFIGMAPS = _recorded("configmaps")
VERSION = _CONFIGMAPS[0]
"""The recorded ``/version`` (the cache asks it once, before its first LIST)."""


def _body(x: dict[str, Any]) -> Any:
    return json.loads(x["response"]["body"])


def _events(x: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in x["response"]["body"].splitlines()]


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
    idle = _Idle(ReplayTransport([VERSION, *exchanges]))
    return KubeClient(KubeconfigSource(kc, "test"), transport=idle), idle


def test_gone_relists_and_watches_from_the_new_list(tmp_path: Path) -> None:
    ns, (_, old, new, watch) = _recorded("configmaps")
    # the watch from the first LIST's resourceVersion is answered by the recorded 410 Gone
    old_rv, new_rv = (_body(x)["metadata"]["resourceVersion"] for x in (old, new))
    query = watch["request"]["query"].replace(f"resourceVersion={new_rv}",
                                              f"resourceVersion={old_rv}")
    assert query != watch["request"]["query"]
    gone = {"request": {**watch["request"], "query": query}, "response": GONE}
    k, idle = _client(tmp_path, [old, gone, new, watch])
    events = _events(watch)
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
    c = WatchCache(k, ["configmaps"], watch_seconds=5, retry_seconds=0.1)
    c.start()
    try:
        assert idle.done.wait(10), idle.replay.unused
        st = c.status()["configmaps"]
        bookmark = events[-1]["object"]["metadata"]["resourceVersion"]
        assert st.relists == 1 and st.resource_version == bookmark and st.synced
        snap = c.snapshot(datetime.now(UTC))
        mine = [o for o in snap.get("configmaps") if o["metadata"]["namespace"] == ns]
        # "before" was only in the first LIST; "gone" was added and deleted in the watch
        assert [o["metadata"]["name"] for o in mine] == ["added", "kube-root-ca.crt"]
        assert mine[0]["data"] == {"value": "2"}  # as MODIFIED left it
        others = [(o["metadata"]["namespace"], o["metadata"]["name"])
                  for o in _body(new)["items"] if o["metadata"]["namespace"] != ns]
        assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in snap.get(
            "configmaps") if o["metadata"]["namespace"] != ns] == sorted(others)
        assert all("managedFields" in o["metadata"] for o in _body(new)["items"])
        assert all("managedFields" not in o["metadata"] for o in snap.get("configmaps"))
        assert snap.server_version == "v1.34.4" and not snap.errors
    finally:
        c.stop()
    assert idle.replay.unused == []


def test_forbidden_is_synced_as_unreadable_and_an_absent_crd_is_absent(tmp_path: Path) -> None:
    _, [forbidden] = _recorded("forbidden")
    assert forbidden["response"]["status"] == 403
    not_found = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                 "reason": "NotFound", "message": "the server could not find the requested "
                                                  "resource"}
    k, _ = _client(tmp_path, [
        forbidden,
        {"request": {"method": "GET", "path": "/apis/longhorn.io/v1beta2/volumes",
                     "query": "limit=500"},
         "response": {"status": 404, "content_type": "application/json",
                      "body": json.dumps(not_found)}},
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
    _, (listed, watch) = _recorded("secrets")
    [secret] = _body(listed)["items"]
    [changed] = _events(watch)
    assert secret["data"] == {"password": "aHVudGVyMg=="} and changed["type"] == "MODIFIED"
    assert changed["object"]["data"] == {"password": "c2VjcmV0", "user": "dQ=="}
    k, idle = _client(tmp_path, [listed, watch])
    seen: list[Any] = []
    c = WatchCache(k, ["secrets"], watch_seconds=2)
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
