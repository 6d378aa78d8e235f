"""The K3s cluster-reset restore planner (order, preflight refusals, bad input); K3s listings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from k3sops.domain import k3s_snapshot as k3s_snapshots
from k3sops.domain.etcd_restore import (
    EtcdRestorePlan,
    ServerFacts,
    SnapshotFacts,
    plan_etcd_restore,
    require_ok,
)
from k3sops.errors import AdapterError, PlanRejected, UsageError

pytestmark = pytest.mark.unit


def _servers(*hosts: str, **overrides: ServerFacts) -> list[ServerFacts]:
    return [overrides.get(h) or ServerFacts(host=h, reachable=True, k3s_present=True,
                                            token_source="/var/lib/rancher/k3s/server/token")
            for h in hosts]


SNAP = SnapshotFacts(id="etcd-20261126-0101", name="on-demand-k3s-server-1-1795650000",
                     sha256="ab" * 32, status="Completed", verified=True,
                     verify_detail="hash ok, 1234 keys restored in a scratch etcd")


def _order(plan: EtcdRestorePlan) -> list[tuple[str, str]]:
    return [(s.action, s.host) for s in plan.steps]


def test_three_servers_are_stopped_then_reset_on_one_then_started_restored_first() -> None:
    plan = plan_etcd_restore(_servers("s1", "s2", "s3"), SNAP)
    require_ok(plan)
    assert _order(plan) == [
        ("copy-snapshot", "s1"),
        ("stop", "s1"), ("stop", "s2"), ("stop", "s3"),
        ("cluster-reset", "s1"),
        ("remove-db", "s2"), ("remove-db", "s3"),
        ("start", "s1"), ("start", "s2"), ("start", "s3"),
    ]
    reset = plan.steps[4]
    assert reset.command == ("k3s server --cluster-reset --cluster-reset-restore-path="
                             "/var/lib/rancher/k3s/server/db/restore/"
                             "on-demand-k3s-server-1-1795650000")
    assert [s.command for s in plan.steps if s.action == "remove-db"] == [
        "rm -rf /var/lib/rancher/k3s/server/db"] * 2
    assert [s.order for s in plan.steps] == list(range(1, 11))


def test_restore_host_and_data_dir_are_honoured() -> None:
    plan = plan_etcd_restore(_servers("s1", "s2", "s3"), SNAP, restore_host="s2",
                             data_dir="/srv/k3s/")
    assert plan.restore_host == "s2" and plan.other_hosts == ["s1", "s3"]
    assert ("cluster-reset", "s2") in _order(plan)
    assert _order(plan)[-3] == ("start", "s2")
    reset = next(s for s in plan.steps if s.action == "cluster-reset")
    assert "--data-dir=/srv/k3s" in reset.command
    assert "/srv/k3s/server/db/restore/" in reset.command


def test_single_server_has_no_remove_step() -> None:
    plan = plan_etcd_restore(_servers("only"), SNAP)
    assert _order(plan) == [("copy-snapshot", "only"), ("stop", "only"),
                            ("cluster-reset", "only"), ("start", "only")]


@pytest.mark.parametrize(("server", "snapshot", "expected"), [
    (ServerFacts(host="s2", reachable=True, k3s_present=True, token_source=None), SNAP,
     "token@s2"),
    (ServerFacts(host="s2", reachable=False, error="ssh: connection refused"), SNAP,
     "reachable@s2: ssh: connection refused"),
    (None, SNAP.model_copy(update={"verified": False, "verify_detail": ""}),
     "snapshot-verified: snapshot etcd-20261126-0101: no passing verification record"),
    (None, SNAP.model_copy(update={"status": "Failed"}),
     "manifest status is Failed"),
    (ServerFacts(host="s2", reachable=True, k3s_present=False, token_source="/x"), SNAP,
     "k3s-binary@s2"),
])
def test_failed_preflight_refuses_and_plans_no_step(server: ServerFacts | None,
                                                    snapshot: SnapshotFacts,
                                                    expected: str) -> None:
    servers = _servers("s1", "s2", "s3", **({"s2": server} if server else {}))
    plan = plan_etcd_restore(servers, snapshot)
    assert not plan.ok
    assert plan.steps == []
    with pytest.raises(PlanRejected, match="preflight failed") as e:
        require_ok(plan)
    assert expected in str(e.value)
    assert "nothing was changed" in str(e.value)


def test_every_failure_is_named_at_once() -> None:
    servers = _servers("s1", "s2", "s3",
                       s1=ServerFacts(host="s1", reachable=True, k3s_present=True),
                       s3=ServerFacts(host="s3", reachable=False))
    plan = plan_etcd_restore(servers, SNAP.model_copy(update={"verified": False}))
    failed = [(c.check, c.host) for c in plan.preflight if not c.ok]
    assert failed == [("token", "s1"), ("reachable", "s3"), ("snapshot-verified", None)]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"restore_host": "s9"}, "not one of the servers"),
    ({"data_dir": "var/lib"}, "not an absolute path"),
    ({"data_dir": "/var/../etc"}, "not an absolute path"),
])
def test_bad_input_is_a_usage_error(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        plan_etcd_restore(_servers("s1", "s2"), SNAP, **kwargs)  # type: ignore[arg-type]


def test_no_servers_duplicates_and_unsafe_names_are_refused() -> None:
    with pytest.raises(UsageError, match="no K3s servers"):
        plan_etcd_restore([], SNAP)
    with pytest.raises(UsageError, match="listed twice"):
        plan_etcd_restore(_servers("s1", "s1"), SNAP)
    with pytest.raises(UsageError, match="plain file name"):
        plan_etcd_restore(_servers("s1"), SNAP.model_copy(update={"name": "../../etc/x"}))


# K3s snapshot listings (k3s etcd-snapshot ls -o json): the File record shape of k3s'
# pkg/etcd/snapshot types, and ETCDSnapshotFile objects as in tests/data (lab-validated).
LS_FILES = json.dumps({
    "local-on-demand-k3s-server-1-1795650000": {
        "name": "on-demand-k3s-server-1-1795650000",
        "location": "file:///var/lib/rancher/k3s/server/db/snapshots/"
                    "on-demand-k3s-server-1-1795650000",
        "nodeName": "k3s-server-1", "createdAt": "2026-11-26T13:00:00Z", "size": 12632096,
        "status": "successful", "compressed": False},
    "s3-on-demand-k3s-server-1-1795650000": {
        "name": "on-demand-k3s-server-1-1795650000", "nodeName": "s3",
        "createdAt": "2026-11-26T13:00:02Z", "size": 12632096, "status": "failed",
        "message": "YWNjZXNzIGRlbmllZA==", "compressed": False}})


def test_k3s_ls_file_records_are_read() -> None:
    recs = k3s_snapshots.parse_ls(LS_FILES)
    assert [(r.name, r.node, r.size, r.ok, r.s3) for r in recs] == [
        ("on-demand-k3s-server-1-1795650000", "k3s-server-1", 12632096, True, False),
        ("on-demand-k3s-server-1-1795650000", "s3", 12632096, False, True)]


def test_k3s_ls_object_list_and_objects_are_read() -> None:
    data = json.loads((Path(__file__).parents[1] / "data" /
                       "check-prom-backup-objects.json").read_text())
    objs = data["etcdsnapshotfiles.k3s.cattle.io"]
    recs = k3s_snapshots.parse_ls(json.dumps({"items": objs}))
    assert len(recs) == len(objs)
    first = k3s_snapshots.from_object(objs[0])
    assert (first.name, first.node, first.size, first.ok) == (
        "etcd-snapshot-k3s-server-1-1795636800", "k3s-server-1", 12632096, True)
    assert first.source == "ETCDSnapshotFile/local-etcd-snapshot-k3s-server-1-1795636800"


def test_k3s_ls_garbage_is_a_clear_error() -> None:
    with pytest.raises(AdapterError, match="not JSON"):
        k3s_snapshots.parse_ls("level=fatal msg=...")
    assert k3s_snapshots.parse_ls("") == []


def test_snapshot_names_are_prefixed_and_safe() -> None:
    assert k3s_snapshots.snapshot_name("Shop-20261126T130000Z-ab12cd") == (
        "k3sops-shop-20261126t130000z-ab12cd")
