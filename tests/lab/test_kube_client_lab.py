"""The Kubernetes client against the lab's real API server: pages, errors, apply, watch, exec.

Each scenario runs in a scratch namespace (PodSecurity ``restricted`` enforced, deleted
afterwards) through a client whose transport keeps every exchange; with
``K3SOPS_RECORD_KUBE=1`` the exchanges are written to tests/data/kube/, the answers the unit
tests (tests/unit/test_kube_client.py) replay. Exec is a WebSocket upgrade, which no
recording transport sees: it is tested here only.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from conftest import Lab, wait_for
from k3sops.adapters.kube import EventType, KubeClient, KubeconfigSource
from k3sops.adapters.kube.recorded import RecordingTransport, recording_client, save
from k3sops.errors import Conflict, Gone, Invalid, NotFound, PlanRejected, Unauthorized

pytestmark = pytest.mark.lab

DATA = Path(__file__).parent.parent / "data" / "kube"
LABEL = "k3sops.io/test=kube-client"


def _recorded(lab: Lab) -> str:
    return f"k3sops lab, kube-apiserver {lab.binaries['kubectl'].parent.name}"


@pytest.fixture
def ns(lab: Lab) -> Iterator[str]:
    name = f"k3sops-kube-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", name)
    lab.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    try:
        yield name
    finally:
        lab.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _client(lab: Lab, kubeconfig: Path | None = None) -> tuple[KubeClient, RecordingTransport]:
    return recording_client(KubeconfigSource(kubeconfig or lab.layout.kubeconfig, "lab"))


def _keep(lab: Lab, name: str, rec: RecordingTransport, **facts: str) -> None:
    if os.environ.get("K3SOPS_RECORD_KUBE"):
        DATA.mkdir(parents=True, exist_ok=True)
        save(DATA / f"{name}.json", rec.exchanges, _recorded(lab), **facts)


def _configmap(ns: str, name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "labels": {"k3sops.io/test":
                                                                   "kube-client"}},
            "data": data}


def _pod(ns: str, name: str, *, privileged: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "example/app:1.0"}
    if privileged:
        container["securityContext"] = {"privileged": True}
    else:
        container["securityContext"] = {"allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [container]}}


@contextlib.contextmanager
def _deny_policy(lab: Lab, ns: str) -> Iterator[None]:
    """A ValidatingAdmissionPolicy refusing configmaps with a key ``forbidden`` in ``ns``."""
    name = f"k3sops-test-{ns}"
    docs = [{"apiVersion": "admissionregistration.k8s.io/v1",
             "kind": "ValidatingAdmissionPolicy", "metadata": {"name": name},
             "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [
                 {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                  "resources": ["configmaps"]}]},
                      "validations": [{"expression": "!has(object.data) || "
                                                     "!('forbidden' in object.data)",
                                       "message": "configmaps may not carry a key forbidden"}]}},
            {"apiVersion": "admissionregistration.k8s.io/v1",
             "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
             "spec": {"policyName": name, "validationActions": ["Deny"],
                      "matchResources": {"namespaceSelector": {"matchLabels": {
                          "kubernetes.io/metadata.name": ns}}}}}]
    lab.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
    try:
        # The policy takes effect once the API server has compiled it: probe with dry runs.
        probe = json.dumps(_configmap(ns, "probe", forbidden="yes"))
        assert wait_for(lambda: "denied request" in lab.kubectl(
            "create", "--dry-run=server", "-f", "-", input=probe, check=False).stderr,
            timeout=30), "the admission policy never took effect"
        yield
    finally:
        lab.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy",
                    name, "--ignore-not-found", check=False)


def _quota_refusal(lab: Lab, ns: str) -> bool:
    r = lab.kubectl("create", "configmap", "probe", "--dry-run=server", "-n", ns, check=False)
    return "exceeded quota" in r.stderr


def test_list_follows_continue_and_selects_by_label(lab: Lab, ns: str) -> None:
    setup = KubeClient(KubeconfigSource(lab.layout.kubeconfig, "lab"))
    for name in ("cm-a", "cm-b", "cm-c"):
        setup.create_object(_configmap(ns, name, k=name))
    setup.create_object({**_configmap(ns, "other"), "metadata": {"name": "other",
                                                                "namespace": ns}})
    setup.close()
    k, rec = _client(lab)
    got = k.listing(f"/api/v1/namespaces/{ns}/configmaps", "configmaps",
                    label_selector=LABEL, limit=2)
    assert sorted(o["metadata"]["name"] for o in got.items) == ["cm-a", "cm-b", "cm-c"]
    assert int(got.resource_version) > 0
    pages = [e for e in rec.exchanges if e["request"]["path"].endswith("/configmaps")]
    assert len(pages) == 2 and "continue=" in pages[1]["request"]["query"]
    assert json.loads(pages[0]["response"]["body"])["metadata"]["continue"]
    _keep(lab, "list-pages", rec, namespace=ns)


class _CompactAfterFirstPage(httpx2.BaseTransport):
    """Passes requests on; once the first page of a LIST is back, the lab's etcd is written
    to and compacted past that page's revision (what etcd's periodic compaction does to a
    client that pages slowly), before the client asks for the next page."""

    def __init__(self, inner: httpx2.BaseTransport, lab: Lab, ns: str) -> None:
        self.inner, self.lab, self.ns = inner, lab, ns
        self.compacted: int | None = None

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        resp = self.inner.handle_request(request)
        if self.compacted is None and "continue" not in request.url.params:
            resp.read()
            self.compacted = _write_and_compact(self.lab, self.ns, "after-first-page")
        return resp


def _write_and_compact(lab: Lab, ns: str, name: str) -> int:
    """Write one object, then compact the lab's etcd at its current revision (what the API
    server's periodic compaction does); returns that revision."""
    lab.kubectl("create", "configmap", name, "-n", ns)
    etcdctl = [str(lab.binaries["etcdctl"]), "--endpoints", lab.layout.url("etcd")]
    status = subprocess.run([*etcdctl, "endpoint", "status", "-w", "json"],
                            capture_output=True, text=True, check=True, timeout=30)
    revision = int(json.loads(status.stdout)[0]["Status"]["header"]["revision"])
    subprocess.run([*etcdctl, "compact", str(revision)], capture_output=True, check=True,
                   timeout=30)
    return revision


def test_a_compressed_answer_is_recorded_and_handed_on_decoded(lab: Lab, ns: str,
                                                              tmp_path: Path) -> None:
    # kube-apiserver gzips answers over 128 KiB; the recorder reads (decodes) the body and
    # must not hand it on under the server's content-encoding (the client decoded it again)
    big = "x" * 200_000
    (tmp_path / "data").write_text(big)
    lab.kubectl("create", "configmap", "big", "-n", ns, f"--from-file={tmp_path / 'data'}")
    k, rec = _client(lab)
    try:
        listing = k.listing(f"/api/v1/namespaces/{ns}/configmaps", "configmaps")
    finally:
        k.close()
    [cm] = [o for o in listing.items if o["metadata"]["name"] == "big"]
    assert cm["data"]["data"] == big
    [answer] = [x["response"] for x in rec.exchanges
                if x["request"]["path"].endswith("/configmaps")]
    assert answer["content_encoding"] == "gzip"
    assert json.loads(answer["body"])["kind"] == "ConfigMapList"


def test_a_continue_token_older_than_the_compaction_is_gone(lab: Lab, ns: str) -> None:
    """Events: the API server keeps no watch cache of them, so every page comes from etcd,
    and a continue token whose revision etcd has compacted away is refused with 410."""
    setup = KubeClient(KubeconfigSource(lab.layout.kubeconfig, "lab"))
    for name in ("ev-a", "ev-b", "ev-c"):
        setup.create_object({"apiVersion": "v1", "kind": "Event",
                             "metadata": {"name": name, "namespace": ns},
                             "involvedObject": {"kind": "ConfigMap", "name": "kube-root-ca.crt",
                                                "namespace": ns},
                             "reason": "Probe", "message": name, "type": "Normal"})
    setup.close()
    k, rec = _client(lab)
    compactor = _CompactAfterFirstPage(rec.inner, lab, ns)
    rec.inner = compactor
    with pytest.raises(Gone) as gone:
        k.listing(f"/api/v1/namespaces/{ns}/events", "events", limit=2)
    assert "continue parameter is too old" in gone.value.message
    first, second = (e for e in rec.exchanges if e["request"]["path"].endswith("/events"))
    token_rv = int(json.loads(first["response"]["body"])["metadata"]["resourceVersion"])
    assert compactor.compacted is not None and token_rv < compactor.compacted
    assert "continue=" in second["request"]["query"] and second["response"]["status"] == 410
    _keep(lab, "list-expired", rec, namespace=ns)


def test_errors_are_mapped_with_the_verb_and_resource(lab: Lab, ns: str,
                                                      tmp_path: Path) -> None:
    k, rec = _client(lab)
    k.create_object(_configmap(ns, "cm-a", k="v"))
    with pytest.raises(NotFound) as nf:
        k.get("v1", "configmaps", "absent", ns)
    assert 'configmaps "absent" not found' in nf.value.message
    assert nf.value.message.startswith(f"get configmaps/absent in namespace {ns}")
    assert k.find("v1", "configmaps", "absent", ns) is None
    with pytest.raises(Conflict) as cf:
        k.create_object(_configmap(ns, "cm-a", k="v"))
    assert "already exists" in cf.value.message and cf.value.hint
    with pytest.raises(Invalid) as iv:
        k.create_object(_configmap(ns, "Not_A_Name", k="v"))
    assert "HTTP 422" in iv.value.message and "Not_A_Name" in iv.value.message
    # PodSecurity's admission verdict is the server refusing the plan, not a credentials issue.
    with pytest.raises(PlanRejected) as pr:
        k.create_object(_pod(ns, "privileged", privileged=True))
    assert "violates PodSecurity" in pr.value.message and "HTTP 403" in pr.value.message
    # A ValidatingAdmissionPolicy denies with 422 Invalid: still admission, not validation.
    with _deny_policy(lab, ns):
        with pytest.raises(PlanRejected) as vap:
            k.create_object(_configmap(ns, "refused", forbidden="yes"))
        assert "HTTP 422" in vap.value.message and "denied request" in vap.value.message
    # A ResourceQuota's refusal is a 403 "is forbidden: exceeded quota".
    lab.kubectl("create", "quota", "one-configmap", "--hard=configmaps=1", "-n", ns)
    quota = wait_for(lambda: _quota_refusal(lab, ns), timeout=30)
    assert quota, "the quota never refused a configmap"
    with pytest.raises(PlanRejected) as qr:
        k.create_object(_configmap(ns, "over-quota", k="v"))
    assert "exceeded quota" in qr.value.message and "HTTP 403" in qr.value.message
    _keep(lab, "errors", rec, namespace=ns)

    # A ServiceAccount without any RBAC: a 403 from the authorizer is Unauthorized.
    lab.kubectl("create", "serviceaccount", "nobody", "-n", ns)
    token = lab.kubectl("create", "token", "nobody", "-n", ns).stdout.strip()
    doc = yaml.safe_load(lab.layout.kubeconfig.read_text())
    doc["users"] = [{"name": "nobody", "user": {"token": token}}]
    doc["contexts"] = [{"name": "nobody", "context": {"cluster": doc["clusters"][0]["name"],
                                                      "user": "nobody"}}]
    doc["current-context"] = "nobody"
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(doc))
    (tmp_path / "kubeconfig").chmod(0o600)
    nobody, rec = _client(lab, tmp_path / "kubeconfig")
    with pytest.raises(Unauthorized) as ua:
        nobody.list("v1", "pods", ns)
    assert f"refused to list pods in namespace {ns} (HTTP 403)" in ua.value.message
    assert "cannot list resource" in ua.value.message and "'nobody'" in str(ua.value.hint)
    _keep(lab, "forbidden", rec, namespace=ns)


def test_apply_is_server_side_as_k3sops_and_idempotent(lab: Lab, ns: str) -> None:
    k, rec = _client(lab)
    first = k.apply(_configmap(ns, "applied", a="1"))
    again = k.apply(_configmap(ns, "applied", a="1"))
    assert first["metadata"]["resourceVersion"] == again["metadata"]["resourceVersion"]
    changed = k.apply(_configmap(ns, "applied", a="2"))
    assert changed["data"] == {"a": "2"}
    managers = {m["manager"]: m["operation"] for m in changed["metadata"]["managedFields"]}
    assert managers == {"k3sops": "Apply"}
    dry = k.apply(_configmap(ns, "applied", a="3"), dry_run=True)
    assert dry["data"] == {"a": "3"} and k.get("v1", "configmaps", "applied", ns)["data"] == {
        "a": "2"}
    assert k.delete("v1", "configmaps", "applied", ns) is True
    assert k.delete("v1", "configmaps", "applied", ns) is False
    _keep(lab, "apply", rec, namespace=ns)


def test_status_is_written_through_its_subresource_only(lab: Lab, ns: str) -> None:
    """A Longhorn Backup (the lab installs its CRD, with a status subresource)."""
    k, rec = _client(lab)
    k.create_object({"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
                     "metadata": {"name": "b1", "namespace": ns},
                     "spec": {"snapshotName": "snap-1"}})
    # Through the main resource the status is ignored, as a controller's readers expect.
    ignored = k.patch("longhorn.io/v1beta2", "backups", "b1", ns, {"status": {"state": "Error"}})
    assert "state" not in (ignored.get("status") or {})
    done = k.patch_status("longhorn.io/v1beta2", "backups", "b1", ns,
                          {"state": "Completed", "url": "s3://bucket/b1"})
    assert (done["status"]["state"], done["status"]["url"]) == ("Completed", "s3://bucket/b1")
    assert done["spec"] == {"snapshotName": "snap-1"}
    assert rec.exchanges[-1]["request"]["path"].endswith("/backups/b1/status")
    _keep(lab, "status", rec, namespace=ns)


def test_watch_from_a_list_sees_a_new_pod_and_an_expired_version_is_gone(
        lab: Lab, ns: str) -> None:
    """List pods, watch from the list's resourceVersion with bookmarks, create a pod: ADDED.

    Then a watch from a revision etcd has compacted away: events have no watch cache in the
    API server, so that watch goes to etcd, and the server answers 410. (A pods watch from an
    old revision is answered from the watch cache, whose window on a fresh lab still reaches
    back to the first revisions: it was not refused there.)
    """
    k, rec = _client(lab)
    listed = k.listing(f"/api/v1/namespaces/{ns}/pods")
    assert listed.items == []
    writer = KubeClient(KubeconfigSource(lab.layout.kubeconfig, "lab"))
    writer.create_object(_pod(ns, "watched"))
    writer.close()
    seen = []
    for event in k.watch(f"/api/v1/namespaces/{ns}/pods", listed.resource_version, 5):
        seen.append(event)
    added = [e for e in seen if e.type is EventType.ADDED]
    assert [e.object["metadata"]["name"] for e in added] == ["watched"]
    assert int(added[0].resource_version or 0) > int(listed.resource_version)
    # The server sends a bookmark shortly before it ends a watch at timeoutSeconds.
    bookmarks = [e for e in seen if e.type is EventType.BOOKMARK]
    assert bookmarks and all(e.resource_version for e in bookmarks)
    watch_req = rec.exchanges[-1]["request"]
    assert "allowWatchBookmarks=true" in watch_req["query"]
    _keep(lab, "watch", rec, namespace=ns)

    k, rec = _client(lab)
    old = k.listing(f"/api/v1/namespaces/{ns}/events").resource_version
    # Two writes: the watch needs the revision after ``old``, and that one must be gone too.
    lab.kubectl("create", "configmap", "before-watch", "-n", ns)
    compacted = _write_and_compact(lab, ns, "before-watch-2")
    assert int(old) + 1 < compacted
    with pytest.raises(Gone) as gone:
        list(k.watch(f"/api/v1/namespaces/{ns}/events", old, 5))
    assert "(ERROR 410)" in gone.value.message and "too old" in gone.value.message
    assert gone.value.hint
    _keep(lab, "gone", rec, namespace=ns)


def test_exec_streams_stdout_stderr_and_the_exit_code(lab: Lab) -> None:
    """kwok runs the command against the lab's PostgreSQL (its ClusterExec for postgres-0)."""
    k = KubeClient(KubeconfigSource(lab.layout.kubeconfig, "lab"))
    try:
        s = k.exec("production", "postgres-0", ["psql", "-X", "-A", "-t", "-q", "-d",
                                                 "postgres"], stdin=True)
        s.stdin.write(b"SELECT 40 + 2;\n\\echo __END__\n")
        s.stdin.flush()
        assert s.stdout.readline() == b"42\n" and s.stdout.readline() == b"__END__\n"
        s.stdin.write(b"SELECT nope;\n\\q\n")  # psql's quit: kwok does not pass end of input
        s.stdin.flush()
        assert s.wait() == 0 and 'column "nope" does not exist' in s.stderr_text()
        s = k.exec("production", "postgres-0",
                   ["sh", "-c", "head -c 3000000 /dev/zero; echo oops >&2; exit 3"])
        assert len(s.stdout.read()) == 3_000_000
        assert s.wait() == 3 and "oops" in s.stderr_text()
        with pytest.raises(NotFound):
            k.exec("production", "no-such-pod", ["true"])
    finally:
        k.close()
