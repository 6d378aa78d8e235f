"""The watch cache's compaction (projection.for_cache) changes no rule's or diagnosis' answer.

Every capture of tests/data/rules is judged twice by the whole rule catalogue (every period's
rules, through the engine) and every object in it is diagnosed twice: once on the objects as
the CLI's collect keeps them, once on the objects as ``k3sops serve``'s cache keeps them. The
answers must be identical, evidence included. Each object is first given the last-applied
annotation ``kubectl apply`` would write (the captures were made without it), so dropping it
is put to the test too.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from labdata import DATA, load

from k3sops.domain import engine
from k3sops.domain.checks import REGISTRY, CheckContext
from k3sops.domain.diagnose import diagnose_object, diagnose_pod
from k3sops.domain.projection import LAST_APPLIED, for_cache, interned, project
from k3sops.domain.snapshot import CLUSTER_SCOPED, ClusterSnapshot, parse_time

CAPTURES = sorted(p.name for p in DATA.glob("*.json"))


def applied(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with the annotation kubectl apply leaves: the object as applied, as JSON."""
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    last = {k: v for k, v in obj.items() if k != "status"}
    meta["annotations"] = {**(meta.get("annotations") or {}),
                           LAST_APPLIED: json.dumps(last, sort_keys=True)}
    return out


def snapshots(name: str) -> tuple[ClusterSnapshot, ClusterSnapshot]:
    """(as the CLI keeps the capture, as the cache keeps it), both annotated as applied."""
    data = load(name)
    now = parse_time(data["captured_at"])
    assert now is not None
    cli = {k: project(k, [applied(o) for o in v]) for k, v in data["objects"].items()}
    cache = {k: for_cache(k, [applied(o) for o in v]) for k, v in data["objects"].items()}
    return ClusterSnapshot(now=now, objects=cli), ClusterSnapshot(now=now, objects=cache)


def judged(snap: ClusterSnapshot) -> dict[str, Any]:
    ctx = CheckContext(snapshot=snap, platform=None, period="monthly")
    result = engine.evaluate(ctx, REGISTRY.values())
    return {"findings": [f.model_dump(mode="json") for f in result.findings],
            "not_evaluated": [n.model_dump(mode="json") for n in result.not_evaluated],
            "ran": result.ran}


def diagnoses(snap: ClusterSnapshot) -> Iterator[tuple[str, Any]]:
    for kind, items in sorted(snap.objects.items()):
        if kind == "events":
            continue
        for o in items:
            ns, name = o["metadata"].get("namespace"), o["metadata"]["name"]
            label = f"{kind}/{ns}/{name}"
            if kind == "pods":
                d = diagnose_pod(snap, ns, name, None)
            else:
                d = diagnose_object(snap, kind, None if kind in CLUSTER_SCOPED else ns, name)
            yield label, d.report(label, []).model_dump(mode="json")


@pytest.mark.parametrize("name", CAPTURES)
def test_every_rule_answers_the_same_on_the_cache_s_objects(name: str) -> None:
    cli, cache = snapshots(name)
    assert sum(len(v) for v in cache.objects.values()) > 0
    a, b = judged(cli), judged(cache)
    assert a == b
    assert a["ran"], "some rules ran on the capture"


@pytest.mark.parametrize("name", CAPTURES)
def test_every_diagnosis_is_the_same_on_the_cache_s_objects(name: str) -> None:
    cli, cache = snapshots(name)
    a, b = dict(diagnoses(cli)), dict(diagnoses(cache))
    assert a.keys() == b.keys() and a
    for label, answer in a.items():
        assert answer == b[label], label


def test_the_cache_keeps_no_last_applied_annotation_and_shares_strings() -> None:
    pods = load("pods.json")["objects"]["pods"]
    kept = for_cache("pods", [applied(o) for o in pods[:2]])
    for o in kept:
        assert LAST_APPLIED not in (o["metadata"].get("annotations") or {})
    first, second = kept
    # keys and a namespace decoded from separate documents are one object, not two copies
    k1 = next(k for k in first if k == "metadata")
    k2 = next(k for k in second if k == "metadata")
    assert k1 is k2
    ns = json.loads(json.dumps(pods[0]["metadata"]["namespace"]))
    assert interned(ns) is sys.intern(pods[0]["metadata"]["namespace"])
    # the values are equal: only the sharing differs
    assert interned(copy.deepcopy(pods)) == pods


def test_secrets_are_still_reduced_to_their_key_names() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": "s", "namespace": "n",
                           "annotations": {LAST_APPLIED: '{"data":{"password":"aHVudGVyMg=="}}'}},
              "data": {"password": "aHVudGVyMg=="}}
    kept = for_cache("secrets", [secret])[0]
    assert kept["keys"] == ["password"] and "data" not in kept
    assert "aHVudGVyMg==" not in json.dumps(kept)
