"""The service's watch cache against the lab's real API server (issue 14).

The cache must hold what a fresh LIST returns (same objects by uid and resourceVersion) after
creates, updates and deletes; re-list when the API server answers 410 Gone; report a kind that
real RBAC forbids as unreadable; and give `report_from` the same findings as the CLI's LISTs.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from conftest import Lab, wait_for
from k3sops.adapters.kube import KubeClient, KubeconfigSource
from k3sops.domain import checks as registry
from k3sops.domain.snapshot import ClusterSnapshot
from k3sops.serve.cache import WatchCache
from k3sops.services import check as check_service
from k3sops.services.context import resolve

pytestmark = pytest.mark.lab
NS = f"t-watch-cache-{uuid.uuid4().hex[:6]}"
KINDS = ["pods", "configmaps", "secrets", "services", "namespaces"]


def _client(path: Path) -> KubeClient:
    return KubeClient(KubeconfigSource(path, "lab"))


def _ids(snap: ClusterSnapshot, kind: str) -> dict[str, str]:
    return {o["metadata"]["uid"]: o["metadata"]["resourceVersion"] for o in snap.get(kind)}


def _fresh(k: KubeClient, kinds: list[str]) -> ClusterSnapshot:
    """What the CLI's collect lists right now (Kubernetes objects only)."""
    sources: list[Any] = []
    objects, errors, version = check_service._collect_kube(k, sources, kinds)
    return ClusterSnapshot(now=datetime.now(UTC), objects=objects, errors=errors,
                           server_version=version)


def _converged(cache: WatchCache, k: KubeClient, kinds: list[str]) -> list[str]:
    """Kinds whose cache differs from a fresh LIST (empty: equal); retried while events land."""
    last: list[str] = []

    def same() -> bool:
        fresh = _fresh(k, kinds)
        snap = cache.snapshot(datetime.now(UTC), kinds)
        last[:] = [kind for kind in kinds if _ids(fresh, kind) != _ids(snap, kind)]
        return not last
    wait_for(same, timeout=30, every=0.5)
    return last


@pytest.fixture(scope="module")
def admin(lab: Lab) -> Iterator[KubeClient]:
    k = _client(lab.layout.kubeconfig)
    lab.kubectl("create", "namespace", NS, check=False)
    yield k
    lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)
    lab.kubectl("delete", "clusterrole,clusterrolebinding", "-l", "k3sops.io/test=watch-cache",
                check=False)
    k.close()


@pytest.fixture()
def cache(admin: KubeClient) -> Iterator[WatchCache]:
    c = WatchCache(admin, KINDS, watch_seconds=3, retry_seconds=1)
    c.start()
    assert c.wait_synced(60), c.status()
    yield c
    c.stop()


def _cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NS}, "data": data}


def test_cache_equals_a_fresh_list_after_create_update_delete(
        admin: KubeClient, cache: WatchCache) -> None:
    """Objects by uid and resourceVersion equal a fresh LIST's after each kind of change."""
    assert cache.in_sync()
    assert not _converged(cache, admin, KINDS)
    events: list[tuple[str, str, str]] = []
    cache.on_change(lambda kind, typ, obj: events.append((kind, typ, obj["metadata"]["name"])))

    admin.create_object(_cm("one", a="1"))
    admin.create_object(_cm("two", b="2"))
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": "creds", "namespace": NS},
              "stringData": {"password": "cache-must-not-keep-this"}}
    admin.create_object(secret)
    assert not _converged(cache, admin, KINDS)
    admin.patch("v1", "configmaps", "one", NS, {"data": {"a": "changed"}})
    assert not _converged(cache, admin, KINDS)
    admin.delete("v1", "configmaps", "two", NS)
    assert not _converged(cache, admin, KINDS)

    snap = cache.snapshot(datetime.now(UTC), KINDS)
    names = {o["metadata"]["name"]: o for o in snap.get("configmaps")
             if o["metadata"]["namespace"] == NS}
    assert "two" not in names and names["one"]["data"] == {"a": "changed"}
    assert ("configmaps", "ADDED", "two") in events and ("configmaps", "DELETED", "two") in events
    assert ("configmaps", "MODIFIED", "one") in events
    # Secrets: projected as the CLI's collect projects them: keys only, no value anywhere.
    creds = next(o for o in snap.get("secrets") if o["metadata"]["name"] == "creds")
    assert creds["keys"] == ["password"] and "data" not in creds
    assert "cache-must-not-keep-this" not in json.dumps(list(snap.get("secrets")))
    st = cache.status()["configmaps"]
    assert st.synced and st.error is None and st.objects == len(snap.get("configmaps"))


class _FirstListStale(KubeClient):
    """The real client; its first LIST of pods reports resourceVersion 2, as a LIST served
    long before would (the cache LISTs page by page through ``request``)."""

    stale_given = False

    def request(self, method: str, path: str, **kw: Any) -> httpx2.Response:
        resp = super().request(method, path, **kw)
        if kw.get("verb") == "list" and kw.get("what") == "pods" and not self.stale_given:
            body = resp.json()
            if not (body.get("metadata") or {}).get("continue"):  # the page the cache keeps
                type(self).stale_given = True
                body["metadata"]["resourceVersion"] = "2"
                return httpx2.Response(resp.status_code, json=body, request=resp.request)
        return resp


def test_a_watch_from_an_old_resource_version_still_converges(
        lab: Lab, admin: KubeClient) -> None:
    """Watching pods from resourceVersion 2. An API server whose watch window starts later
    answers 410 Gone and the cache lists again (the recorded real answer replays that in
    tests/unit/test_watch_cache.py); a young lab's API server (started on an empty etcd)
    still holds revision 2 and replays every change since. Either way: equal to a fresh LIST.
    """
    k = _FirstListStale(KubeconfigSource(lab.layout.kubeconfig, "lab"))
    c = WatchCache(k, KINDS, watch_seconds=3, retry_seconds=1)
    c.start()
    try:
        assert c.wait_synced(60)
        assert _FirstListStale.stale_given
        admin.create_object(_cm("after-old", c="3"))
        assert wait_for(lambda: c.status()["pods"].resource_version not in (None, "2"),
                        timeout=30), c.status()["pods"]
        assert not _converged(c, admin, KINDS)
        assert any(o["metadata"]["name"] == "after-old"
                   for o in c.snapshot(datetime.now(UTC), ["configmaps"]).get("configmaps"))
    finally:
        c.stop()
        k.close()


def test_a_kind_forbidden_by_rbac_is_synced_as_unreadable(
        lab: Lab, admin: KubeClient, tmp_path: Path) -> None:
    """A ServiceAccount that may list and watch everything here but secrets."""
    sa = "cache-reader"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "k3sops-cache-reader",
                         "labels": {"k3sops.io/test": "watch-cache"}},
            "rules": [{"apiGroups": [""], "verbs": ["list", "watch", "get"],
                       "resources": ["pods", "configmaps", "services", "namespaces"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "k3sops-cache-reader",
                            "labels": {"k3sops.io/test": "watch-cache"}},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "k3sops-cache-reader"},
               "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": NS}]}
    lab.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": NS}},
        role, binding]))
    token = lab.kubectl("create", "token", sa, "-n", NS, "--duration=1h").stdout.strip()
    kc = tmp_path / "sa.kubeconfig"
    kc.write_text(f"apiVersion: v1\nkind: Config\nclusters:\n- name: l\n  cluster:\n"
                  f"    server: https://127.0.0.1:{lab.layout.port('apiserver')}\n"
                  f"    certificate-authority: {lab.layout.pki_dir / 'ca.crt'}\n"
                  f"users:\n- name: u\n  user:\n    token: {token}\n"
                  "contexts:\n- name: c\n  context: {cluster: l, user: u}\n"
                  "current-context: c\n")
    limited = _client(kc)
    c = WatchCache(limited, KINDS, watch_seconds=3, retry_seconds=1)
    c.start()
    try:
        assert c.wait_synced(60), c.status()
        st = c.status()
        assert st["secrets"].synced and st["secrets"].error == "forbidden"
        assert all(st[k].error is None and st[k].objects > 0 for k in KINDS if k != "secrets")
        snap = c.snapshot(datetime.now(UTC), KINDS)
        assert snap.unread("secrets") == "forbidden" and not snap.has("secrets")
        # the CLI's LISTs with the same token say the same
        fresh = _fresh(limited, KINDS)
        assert fresh.errors == snap.errors == {"secrets": "forbidden"}
        src = c.source(KINDS)
        assert not src.ok and src.error == "could not list secrets (forbidden)"
        assert token not in json.dumps(src.model_dump()) + repr(st)
    finally:
        c.stop()
        limited.close()


def test_report_from_the_cache_equals_the_cli_check(lab: Lab, admin: KubeClient) -> None:
    """The weekly checklist judged on the cache's snapshot and on the CLI's LISTs: same
    findings, same not-evaluated rules; and the same non-live findings as `k3sops check`."""
    period = "weekly"
    specs = registry.selected(period)
    kinds = check_service.kinds_for(specs)
    c = WatchCache(admin, kinds, watch_seconds=30)
    c.start()
    try:
        assert c.wait_synced(120), {k: s for k, s in c.status().items() if not s.synced}
        settings = resolve(None, None, lab.layout.platform_file, lab.env, Path.cwd())
        cli_report = None
        for _ in range(5):  # the lab's controllers may write between the two reads: retry
            now = datetime.now(UTC)
            time.sleep(1)  # let the cache apply what happened before the LISTs start
            cli_snap, cli_sources = check_service.collect(admin, settings, specs, now, kinds)
            cached = replace(c.snapshot(now, kinds), metrics=cli_snap.metrics,
                             metric_errors=cli_snap.metric_errors, alerts=cli_snap.alerts)
            cache_sources = [c.source(kinds),
                             *(s for s in cli_sources if s.name != "kubernetes")]
            cli_report = check_service.report_from(cli_snap, cli_sources, settings, period,
                                                   None, None)
            cache_report = check_service.report_from(cached, cache_sources, settings, period,
                                                     None, None)
            if [f.key for f in cli_report.findings] == [f.key for f in cache_report.findings]:
                break
        assert cli_report is not None
        assert [f.key for f in cache_report.findings] == [f.key for f in cli_report.findings]
        assert cache_report.findings, "the lab has faults: some finding is expected"
        assert cache_report.not_evaluated == cli_report.not_evaluated
        assert cache_report.summary.health_score == cli_report.summary.health_score
        assert [s.model_dump() for s in cache_report.sources] == \
            [s.model_dump() for s in cli_report.sources]
        # and what a person's `k3sops check` prints, rules on live metrics aside
        live = {s.id for s in registry.REGISTRY.values()
                if {"prometheus", "alertmanager"} & set(s.needs)}
        r = lab.k3sops("-o", "json", "check", f"--{period}", "--state-dir",
                       str(lab.layout.run_dir / "cache-test-state"), timeout=180)
        printed = json.loads(r.stdout)
        cli_keys = {"|".join((f["check"], f["resource"]["kind"],
                              f["resource"]["namespace"] or "", f["resource"]["name"]))
                    for f in printed["findings"] if f["check"] not in live}
        assert cli_keys == {f.key for f in cache_report.findings if f.check not in live}
    finally:
        c.stop()
