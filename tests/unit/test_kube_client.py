"""KubeClient through its swappable transport, on API server answers recorded from the lab.

tests/data/kube/*.json are written by tests/lab/test_kube_client_lab.py
(``K3SOPS_RECORD_KUBE=1``) from the lab's real kube-apiserver; each test here makes the same
calls as the lab test that recorded them, so the requests must match what was recorded
(method, path, query) and the answers are the server's own. Only the transport failures at
the end are made here: a refused connection and a timeout have no answer to record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from k3sops.adapters.kube import APPLY, EventType, KubeClient, KubeconfigSource
from k3sops.adapters.kube.recorded import ReplayTransport
from k3sops.errors import (
    Conflict,
    Gone,
    Invalid,
    NotFound,
    PlanRejected,
    Timeout,
    Unauthorized,
    Unreachable,
)

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data" / "kube"
SERVER = "https://apiserver.recorded:6443"
LABEL = "k3sops.io/test=kube-client"


def _kubeconfig(tmp_path: Path, context: str = "lab") -> Path:
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": context,
           "clusters": [{"name": "c", "cluster": {"server": SERVER,
                                                  "insecure-skip-tls-verify": True}}],
           "users": [{"name": "u", "user": {"token": "recorded-not-a-secret"}}],
           "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(doc))
    return path


def _replay(tmp_path: Path, name: str, context: str = "lab",
            ) -> tuple[KubeClient, ReplayTransport, str]:
    transport = ReplayTransport.load(DATA / f"{name}.json")
    ns = json.loads((DATA / f"{name}.json").read_text())["namespace"]
    source = KubeconfigSource(_kubeconfig(tmp_path, context), "test")
    return KubeClient(source, transport=transport), transport, ns


def _configmap(ns: str, name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "labels": {"k3sops.io/test":
                                                                   "kube-client"}},
            "data": data}


def test_a_list_follows_continue_tokens_to_the_last_page(tmp_path: Path) -> None:
    k, t, ns = _replay(tmp_path, "list-pages")
    got = k.listing(f"/api/v1/namespaces/{ns}/configmaps", "configmaps", label_selector=LABEL,
                    limit=2)
    assert sorted(o["metadata"]["name"] for o in got.items) == ["cm-a", "cm-b", "cm-c"]
    first, second = t.requests
    assert "continue" not in first.url.params and second.url.params["continue"]
    assert second.url.params["labelSelector"] == LABEL and second.url.params["limit"] == "2"
    assert got.resource_version.isdigit()
    assert not t.unused


def test_a_continue_token_older_than_the_compaction_raises_gone(tmp_path: Path) -> None:
    """The second page's token names a revision etcd compacted between the pages: 410."""
    k, t, ns = _replay(tmp_path, "list-expired")
    with pytest.raises(Gone) as e:
        k.listing(f"/api/v1/namespaces/{ns}/events", "events", limit=2)
    assert e.value.message.startswith(
        f"list events in namespace {ns}: the resourceVersion is too old on {SERVER} (HTTP 410):"
        " The provided continue parameter is too old to display a consistent list result.")
    assert e.value.hint == "list again and watch from the list's resourceVersion"
    first, second = t.requests
    assert "continue" not in first.url.params and second.url.params["limit"] == "2"
    assert second.url.params["continue"]
    assert not t.unused


def test_error_answers_map_to_k3sops_errors_naming_verb_and_resource(tmp_path: Path) -> None:
    k, t, ns = _replay(tmp_path, "errors")
    k.create_object(_configmap(ns, "cm-a", k="v"))
    with pytest.raises(NotFound) as nf:
        k.get("v1", "configmaps", "absent", ns)
    assert nf.value.message == (f"get configmaps/absent in namespace {ns}: not found on "
                                f'{SERVER}: configmaps "absent" not found')
    assert k.find("v1", "configmaps", "absent", ns) is None
    with pytest.raises(Conflict) as cf:
        k.create_object(_configmap(ns, "cm-a", k="v"))
    assert 'configmaps "cm-a" already exists' in cf.value.message
    assert cf.value.message.startswith(f"create configmaps/cm-a in namespace {ns}")
    with pytest.raises(Invalid) as iv:
        k.create_object(_configmap(ns, "Not_A_Name", k="v"))
    assert "refused to create configmaps/Not_A_Name" in iv.value.message
    assert "(HTTP 422)" in iv.value.message and "metadata.name: Invalid value" in iv.value.message
    with pytest.raises(PlanRejected) as ps:
        k.create_object({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": "privileged", "namespace": ns},
                         "spec": {"containers": [{"name": "app", "image": "example/app:1.0",
                                                  "securityContext": {"privileged": True}}]}})
    assert "violates PodSecurity" in ps.value.message and "(HTTP 403)" in ps.value.message
    assert ps.value.hint and "nothing was changed" in ps.value.hint
    with pytest.raises(PlanRejected) as vap:
        k.create_object(_configmap(ns, "refused", forbidden="yes"))
    assert "(HTTP 422)" in vap.value.message and "denied request" in vap.value.message
    with pytest.raises(PlanRejected) as quota:
        k.create_object(_configmap(ns, "over-quota", k="v"))
    assert "exceeded quota" in quota.value.message
    assert [r.url.params.get("fieldManager") for r in t.requests if r.method == "POST"] == [
        "k3sops"] * 6
    assert not t.unused


def test_an_rbac_denial_is_unauthorized_and_names_the_context(tmp_path: Path) -> None:
    k, _, ns = _replay(tmp_path, "forbidden", context="nobody")
    with pytest.raises(Unauthorized) as e:
        k.list("v1", "pods", ns)
    assert e.value.message.startswith(f"API server {SERVER} refused to list pods in namespace "
                                      f"{ns} (HTTP 403): pods is forbidden: User ")
    assert e.value.hint == ("check the credentials of context 'nobody' and their RBAC "
                            "permissions")


def test_apply_is_server_side_with_the_k3sops_field_manager(tmp_path: Path) -> None:
    k, t, ns = _replay(tmp_path, "apply")
    first = k.apply(_configmap(ns, "applied", a="1"))
    again = k.apply(_configmap(ns, "applied", a="1"))
    assert first["metadata"]["resourceVersion"] == again["metadata"]["resourceVersion"]
    assert k.apply(_configmap(ns, "applied", a="2"))["data"] == {"a": "2"}
    assert k.apply(_configmap(ns, "applied", a="3"), dry_run=True)["data"] == {"a": "3"}
    assert k.get("v1", "configmaps", "applied", ns)["data"] == {"a": "2"}
    assert k.delete("v1", "configmaps", "applied", ns) is True
    assert k.delete("v1", "configmaps", "applied", ns) is False
    patches = [r for r in t.requests if r.method == "PATCH"]
    assert {r.headers["content-type"] for r in patches} == {APPLY}
    assert all(r.url.params["fieldManager"] == "k3sops" and r.url.params["force"] == "true"
               for r in patches)
    assert [r.url.params.get("dryRun") for r in patches] == [None, None, None, "All"]
    assert not t.unused


def test_status_goes_to_the_status_subresource_as_a_merge_patch(tmp_path: Path) -> None:
    k, t, ns = _replay(tmp_path, "status")
    k.create_object({"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
                     "metadata": {"name": "b1", "namespace": ns},
                     "spec": {"snapshotName": "snap-1"}})
    k.patch("longhorn.io/v1beta2", "backups", "b1", ns, {"status": {"state": "Error"}})
    done = k.patch_status("longhorn.io/v1beta2", "backups", "b1", ns,
                          {"state": "Completed", "url": "s3://bucket/b1"})
    assert (done["status"]["state"], done["status"]["url"]) == ("Completed", "s3://bucket/b1")
    last = t.requests[-1]
    assert last.url.path == f"/apis/longhorn.io/v1beta2/namespaces/{ns}/backups/b1/status"
    assert last.headers["content-type"] == "application/merge-patch+json"
    assert json.loads(last.content) == {"status": {"state": "Completed", "url": "s3://bucket/b1"}}
    assert not t.unused


def test_watch_yields_typed_events_from_the_list_version(tmp_path: Path) -> None:
    k, t, ns = _replay(tmp_path, "watch")
    listed = k.listing(f"/api/v1/namespaces/{ns}/pods")
    events = list(k.watch(f"/api/v1/namespaces/{ns}/pods", listed.resource_version, 5))
    types = [e.type for e in events]
    assert types[0] is EventType.ADDED and EventType.BOOKMARK in types
    assert set(types) <= {EventType.ADDED, EventType.MODIFIED, EventType.BOOKMARK}
    assert events[0].object["metadata"]["name"] == "watched"
    assert all(int(e.resource_version or 0) > int(listed.resource_version) for e in events)
    params = t.requests[-1].url.params
    assert (params["watch"], params["allowWatchBookmarks"], params["timeoutSeconds"],
            params["resourceVersion"]) == ("true", "true", "5", listed.resource_version)


def test_an_expired_resource_version_raises_gone(tmp_path: Path) -> None:
    k, _, ns = _replay(tmp_path, "gone")
    with pytest.raises(Gone) as e:
        list(k.watch(f"/api/v1/namespaces/{ns}/pods", "2", 5))
    assert e.value.message.startswith(f"watch pods in namespace {ns} from resourceVersion 2: "
                                      f"too old on {SERVER} (ERROR 410): too old resource "
                                      "version: 2 (")
    assert e.value.hint == "list again and watch from the list's resourceVersion"


class _Failing(httpx2.BaseTransport):
    """The network failing: no API server answer exists to record for these."""

    def __init__(self, error: type[httpx2.TransportError]) -> None:
        self.error = error

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        raise self.error("simulated", request=request)


@pytest.mark.parametrize(("error", "expected", "text"), [
    (httpx2.ConnectError, Unreachable, f"cannot reach the API server at {SERVER} to list "
                                       "nodes: ConnectError: simulated"),
    (httpx2.ReadTimeout, Timeout, f"API server {SERVER} did not answer within 15s to list "
                                  "nodes"),
])
def test_transport_failures_name_the_server_and_the_request(
        tmp_path: Path, error: type[httpx2.TransportError], expected: type[Exception],
        text: str) -> None:
    source = KubeconfigSource(_kubeconfig(tmp_path), "test")
    k = KubeClient(source, transport=_Failing(error))
    with pytest.raises(expected) as e:
        k.list("v1", "nodes")
    assert str(e.value).startswith(text)
    failed = k.list_raw_many({"nodes": "/api/v1/nodes", "pods": "/api/v1/pods"})
    assert all(isinstance(v, expected) for v in failed.values())
