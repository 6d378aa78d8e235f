"""`k3sops serve`'s access reviews and watch cache on the lab's real API server, recorded.

The service's :class:`Authorizer` asks the real kube-apiserver, through the service's own
least-privilege ServiceAccount, about real ServiceAccount tokens: a reader (granted ``get`` on
the k3sops.io resources), a nobody (no rights), an invalid token, the token of a
ServiceAccount deleted since, and the reader again once its binding is deleted. With
``K3SOPS_RECORD_REVIEWS=1`` the exchanges are written (tokens redacted) to
tests/data/serve_reviews/reviews.json, a watch cache of the nodes (LIST, then one quiet
WATCH) to cache-nodes.json: the answers the serve unit tests replay (tests/unit/servekit.py);
and the LISTs, WATCHes and 403 that tests/unit/test_watch_cache.py replays to cache-*.json.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from kit.reviews import DATA, BodyRecordingTransport, save
from kit.serve import Rbac, accounts, apply, binding, label, sa_token, token_kubeconfig
from lightkube.config.client_adapter import verify_cluster

from conftest import Lab, wait_for
from k3sops.adapters.kube import KubeClient, KubeconfigSource
from k3sops.adapters.kube._config import load_single
from k3sops.adapters.kube.recorded import recording_client
from k3sops.adapters.kube.recorded import save as save_exchanges
from k3sops.domain.snapshot import CORE_PATHS
from k3sops.errors import Unauthorized
from k3sops.serve.auth import AuthFailure, Authorizer
from k3sops.serve.cache import WatchCache

pytestmark = pytest.mark.lab

RESOURCES = ("reports", "findings", "metrics", "diagnoses", "backups", "environments",
             "alerts", "remediations", "capacity", "silences")
"""The virtual resources the routes and console pages ``get``."""
CREATES = ("acks", "approvals", "remediations", "silences")
"""The virtual resources the console and API ``create``."""
WATCH_SECONDS = 5
"""The recorded ConfigMaps WATCH's timeoutSeconds (long enough for the server's BOOKMARK)."""
DELETES = ("silences",)
"""The virtual resources the console ``delete`` (a silence expired)."""

GRANTS: dict[str, set[tuple[str, str]]] = {
    "reader": {("get", r) for r in RESOURCES},
    "acker": {("get", r) for r in RESOURCES} | {("create", "acks")},
    "operator": {("get", r) for r in RESOURCES} | {("create", "approvals"),
                                                   ("create", "silences"),
                                                   ("delete", "silences")},
    "reports-only": {("get", "reports")},
    "backups-only": {("get", "backups")},
    "nobody": set(),
}
"""Who may do what: the reader's ClusterRole (tests/lab/kit/serve.py) plus the rest granted
here; every (verb, resource) of RESOURCES and CREATES is reviewed for each."""


def _role(name: str, ns: str, rules: set[tuple[str, str]]) -> dict[str, Any]:
    by_verb: dict[str, list[str]] = {}
    for verb, resource in sorted(rules):
        by_verb.setdefault(verb, []).append(resource)
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": label(ns)},
            "rules": [{"apiGroups": ["k3sops.io"], "verbs": [v], "resources": rs}
                      for v, rs in by_verb.items()]}


@pytest.fixture(scope="module")
def rbac(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Rbac]]:
    ns = f"k3sops-reviews-{uuid.uuid4().hex[:5]}"
    with accounts(lab, ns, tmp_path_factory.mktemp("reviews")) as r:
        # the kit's reader role lacks the last two of RESOURCES; the others start bare
        more = {"reader": {("get", "alerts"), ("get", "remediations"), ("get", "capacity"),
                           ("get", "silences")},
                **{u: GRANTS[u] for u in ("acker", "operator", "reports-only",
                                          "backups-only")}}
        apply(lab, [{"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": u, "namespace": ns}} for u in more if u != "reader"])
        for user, rules in more.items():
            apply(lab, [_role(f"{ns}-{user}-more", ns, rules),
                        binding(f"{ns}-{user}-more", f"{ns}-{user}-more", user, ns)])
        r.tokens.update({u: sa_token(lab, u, ns) for u in more if u != "reader"})
        yield ns, r


def _client(kubeconfig: Path) -> tuple[KubeClient, BodyRecordingTransport]:
    source = KubeconfigSource(kubeconfig, "serve")
    single = load_single(source, None)
    assert single.user is not None
    rec = BodyRecordingTransport(httpx2.HTTPTransport(
        verify=verify_cluster(single.cluster, single.user, single.abs_file)))
    return KubeClient(source, None, 30, transport=rec), rec


def _status(auth: Authorizer, token: str, resource: str = "reports") -> int:
    try:
        auth.check(token, "get", resource)
    except AuthFailure as e:
        return e.status
    return 200


def test_real_reviews_of_real_tokens(lab: Lab, rbac: tuple[str, Rbac]) -> None:
    ns, r = rbac
    client, rec = _client(r.kubeconfig)
    unrecorded = Authorizer(KubeClient(KubeconfigSource(r.kubeconfig, "serve")), ttl=0)
    auth = Authorizer(client, ttl=0)  # ttl 0: every check asks the API server
    tokens = {u: r.tokens[u] for u in GRANTS}
    # a JWT-shaped token no issuer signed
    tokens["invalid"] = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJub2JvZHkifQ.c2lnbmF0dXJl"

    # the bindings made in the fixture are seen by the API server's authorizer
    assert wait_for(lambda: all(_status(unrecorded, tokens[u], res) == 200 for u, res in (
        ("reader", "remediations"), ("reports-only", "reports"), ("backups-only", "backups"),
        ("acker", "alerts"), ("operator", "silences"))), timeout=30)
    reader = auth.check(tokens["reader"], "get", "reports")
    assert reader.name == f"system:serviceaccount:{ns}:reader"
    assert reader.uid and "system:serviceaccounts" in reader.groups
    for user, grants in GRANTS.items():
        for verb, resource in ([("get", x) for x in RESOURCES] + [("create", x)
                               for x in CREATES] + [("delete", x) for x in DELETES]):
            if (verb, resource) in grants:
                assert auth.check(tokens[user], verb, resource).name.endswith(f":{user}")
                continue
            with pytest.raises(AuthFailure) as denied:
                auth.check(tokens[user], verb, resource)
            assert denied.value.status == 403
            assert f"system:serviceaccount:{ns}:{user} may not {verb} {resource}" \
                in denied.value.message

    assert _status(auth, tokens["invalid"]) == 401

    # a ServiceAccount's token outlives nothing: once the account is deleted it is refused
    lab.kubectl("create", "serviceaccount", "gone", "-n", ns)
    tokens["deleted"] = sa_token(lab, "gone", ns)
    assert _status(unrecorded, tokens["deleted"]) == 403  # known, and granted nothing
    lab.kubectl("delete", "serviceaccount", "gone", "-n", ns)
    assert wait_for(lambda: _status(unrecorded, tokens["deleted"]) == 401, timeout=60)
    assert _status(auth, tokens["deleted"]) == 401

    # revoking the reader's binding: the next review (after the ttl) says no
    lab.kubectl("delete", "clusterrolebinding", f"{ns}-reader")
    assert wait_for(lambda: _status(unrecorded, tokens["reader"]) == 403, timeout=60)
    rec.scene = "revoked"
    assert _status(auth, tokens["reader"]) == 403

    for x in rec.exchanges:
        assert x["response"]["status"] == 201, x["response"]
    if os.environ.get("K3SOPS_RECORD_REVIEWS"):
        save(rec.exchanges, tokens, namespace=ns,
             recorded_from=f"k3sops lab, kube-apiserver {lab.binaries['kubectl'].parent.name}",
             users={n: f"system:serviceaccount:{ns}:{n}" for n in GRANTS})


def test_a_watch_cache_of_the_nodes(lab: Lab, rbac: tuple[str, Rbac]) -> None:
    """The service's cache of one kind through its own account: a LIST, then quiet WATCHes."""
    _, r = rbac
    client, rec = recording_client(KubeconfigSource(r.kubeconfig, "serve"))
    cache = WatchCache(client, ["nodes"], watch_seconds=1)
    cache.start()
    try:
        assert cache.wait_synced(60)

        def watches() -> list[int]:
            return [i for i, x in enumerate(rec.exchanges) if "watch=true" in
                    x["request"]["query"]]
        assert wait_for(lambda: len(watches()) >= 1, timeout=30)
        snap = cache.snapshot(datetime.now(UTC))
    finally:
        cache.stop()
    nodes = json.loads(lab.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(o["metadata"]["name"] for o in snap.get("nodes")) == \
        sorted(n["metadata"]["name"] for n in nodes)
    assert cache.status()["nodes"].objects == len(nodes)
    kept = rec.exchanges[:watches()[0] + 1]  # up to the first whole watch: the quiet one
    assert [x["response"]["status"] for x in kept] == [200] * len(kept)
    if os.environ.get("K3SOPS_RECORD_REVIEWS"):
        save_exchanges(DATA / "cache-nodes.json", kept,
                       f"k3sops lab, kube-apiserver {lab.binaries['kubectl'].parent.name}",
                       nodes=str(len(nodes)))


def _configmap(name: str, ns: str, value: str = "1") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
            "data": {"value": value}}


def test_a_watch_cache_s_list_watch_and_refusals(lab: Lab, rbac: tuple[str, Rbac]) -> None:
    """What test_watch_cache replays: ConfigMaps listed twice (the second LIST after one was
    deleted: the relist after 410 Gone), then a WATCH with ADDED, MODIFIED, DELETED and the
    BOOKMARK before its end; a Secret listed then changed; a LIST the API server refuses (403,
    the nobody's)."""
    ns, r = rbac
    client, rec = recording_client(KubeconfigSource(r.kubeconfig, "serve"))
    assert client.version()
    kind = "configmaps"
    path = CORE_PATHS[kind]
    apply(lab, [_configmap("before", ns)])
    first = client.listing(path, kind)
    assert f"{ns}/before" in {f"{o['metadata']['namespace']}/{o['metadata']['name']}"
                              for o in first.items}
    lab.kubectl("delete", "configmap", "before", "-n", ns)
    second = client.listing(path, kind)
    assert "before" not in {o["metadata"]["name"] for o in second.items
                            if o["metadata"]["namespace"] == ns}
    with ThreadPoolExecutor(1) as pool:
        watching = pool.submit(lambda: [
            (e.type.value, e.object["metadata"].get("name"))
            for e in client.watch(path, second.resource_version, WATCH_SECONDS)])
        # the changes come while the watch is open: the server then sends a BOOKMARK about
        # 2 s before timeoutSeconds ends the stream (not when it only replays older events)
        time.sleep(1)
        apply(lab, [_configmap("added", ns), _configmap("gone", ns)])
        apply(lab, [_configmap("added", ns, "2")])
        lab.kubectl("delete", "configmap", "gone", "-n", ns)
        events = watching.result()
    assert {("ADDED", "added"), ("MODIFIED", "added"), ("ADDED", "gone"),
            ("DELETED", "gone")} <= set(events), events
    assert events[-1][0] == "BOOKMARK", events

    secrets = "/api/v1/secrets"
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": "s", "namespace": ns},
              "stringData": {"password": "hunter2"}}
    apply(lab, [secret])
    listed = client.listing(secrets, "secrets")
    apply(lab, [{**secret, "stringData": {"password": "secret", "user": "u"}}])
    changed = [e.type.value for e in client.watch(secrets, listed.resource_version, 2)]
    assert "MODIFIED" in changed, changed
    # the recording keeps Secrets' values: only the test's own, made up here
    assert {o["metadata"]["namespace"] for o in listed.items} == {ns}, \
        "the lab holds other Secrets: record on a fresh lab"

    nobody, rec_nobody = recording_client(KubeconfigSource(
        token_kubeconfig(lab, r.tokens["nobody"], r.tmp / "nobody.kubeconfig"), "nobody"))
    with pytest.raises(Unauthorized):
        nobody.listing(secrets, "secrets")
    if os.environ.get("K3SOPS_RECORD_REVIEWS"):
        text = json.dumps(rec.exchanges + rec_nobody.exchanges)
        assert not any(t in text for t in r.tokens.values()) and "eyJ" not in text
        source = f"k3sops lab, kube-apiserver {lab.binaries['kubectl'].parent.name}"
        kept = rec.exchanges
        at = [x["request"]["path"] for x in kept]
        save_exchanges(DATA / "cache-configmaps.json", kept[:at.index(secrets)], source,
                       namespace=ns)
        save_exchanges(DATA / "cache-secrets.json", kept[at.index(secrets):], source,
                       namespace=ns)
        save_exchanges(DATA / "cache-forbidden.json", rec_nobody.exchanges, source,
                       namespace=ns)
