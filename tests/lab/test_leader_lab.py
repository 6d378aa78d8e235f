"""Leader election and scheduled runs of `k3sops serve` across replicas, on the lab (issue 14).

Replicas are separate host processes (tests/lab/kit/elector.py: a real LeaderElector and, in
the failover test, a real Scheduler on the lab's PostgreSQL) with a least-privilege
ServiceAccount token (get/create/update on leases in one namespace). The test watches the
Lease on the real API server and judges takeover from its timestamps (renewTime of the dead
holder, acquireTime of the new one), never from wall-clock thresholds of its own; the times it
measures are printed.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kit.replicas import LeaseLog, Replica, elector_kubeconfig, lease_time
from kit.users import user_kubeconfig

from conftest import Lab, wait_for
from history_kit import fresh_database
from k3sops.adapters.kube import KubeClient, KubeconfigSource
from k3sops.adapters.store.postgres import PostgresStore
from k3sops.serve.leader import LEASE_API, LeaderElector, micro_time

pytestmark = pytest.mark.lab
NS = f"t-leader-{uuid.uuid4().hex[:6]}"
SA = "serve-elector"
LEASE_S, RENEW_S = 3.0, 1.0
EVERY = 10
"""Seconds between the scheduled runs of the failover test (``@every 10s``)."""
LATENCY = 0.5
"""Allowance for the follower's own round (a GET and a PUT) on top of lease + renew."""


def _client(path: Path) -> KubeClient:
    return KubeClient(KubeconfigSource(path, "lab"))


@pytest.fixture(scope="module")
def admin(lab: Lab) -> Iterator[KubeClient]:
    k = _client(lab.layout.kubeconfig)
    lab.kubectl("create", "namespace", NS)
    yield k
    lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)
    k.close()


@pytest.fixture(scope="module")
def sa_kubeconfig(lab: Lab, admin: KubeClient, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ServiceAccount token that may only get/create/update Leases in NS."""
    return elector_kubeconfig(admin, NS, SA, lab.layout.pki_dir / "ca.crt",
                              tmp_path_factory.mktemp("leader") / "sa.kubeconfig")


def start(lab: Lab, kubeconfig: Path, lease: str, identity: str, log_dir: Path,
          database: str | None = None) -> Replica:
    return Replica.start(lab.env, kubeconfig, NS, lease, identity, log_dir,
                         lease_seconds=LEASE_S, renew_seconds=RENEW_S, database=database,
                         every=EVERY)


def test_one_leader_kill_9_failover_and_scheduled_runs_exactly_once(
        lab: Lab, admin: KubeClient, sa_kubeconfig: Path, tmp_path: Path) -> None:
    lease = "serve-failover"
    log = LeaseLog(admin, NS, lease)
    with fresh_database(lab) as url:
        PostgresStore.open(url).close()  # migrated once, before the replicas race
        replicas = {i: start(lab, sa_kubeconfig, lease, i, tmp_path, url)
                    for i in ("replica-a", "replica-b")}
        try:
            assert wait_for(lambda: any(r.leading() for r in replicas.values()), timeout=60)
            # Several renew rounds of the follower: still exactly one leader.
            time.sleep(3 * RENEW_S)
            leaders = [r for r in replicas.values() if r.leading()]
            assert len(leaders) == 1, [r.events for r in replicas.values()]
            leader = leaders[0]
            follower = next(r for r in replicas.values() if r is not leader)
            assert not follower.saw("leading")
            assert log.holders() == [leader.identity]
            assert len(log.revisions) >= 3  # created, then renewed every round
            assert log.revisions[-1].get("leaseTransitions", 0) == 0

            # Only the leader schedules: it runs the due times as they pass.
            assert wait_for(lambda: len(leader.ran()) >= 1, timeout=EVERY + 10)
            revs_before = len(log.revisions)
            due_in_gap, killed_at = _kill_before_next_due(leader)
            dead = admin.get(LEASE_API, "leases", lease, NS)["spec"]
            assert dead["holderIdentity"] == leader.identity
            last_renew = lease_time(dead, "renewTime")

            assert wait_for(lambda: log.first(follower.identity, revs_before), timeout=30)
            took = log.first(follower.identity, revs_before)
            assert took is not None
            seen_at = datetime.now(UTC)
            gap = (lease_time(took, "acquireTime") - last_renew).total_seconds()
            print(f"\nkill -9 -> takeover: {gap:.3f}s from the dead leader's last renewTime "
                  f"to the new acquireTime (lease {LEASE_S:g}s, renew {RENEW_S:g}s); "
                  f"{(seen_at - killed_at).total_seconds():.3f}s from kill to the test "
                  f"seeing it")
            # Never before the lease lapsed (no two leaders), and at the follower's next
            # round after it did.
            assert LEASE_S <= gap <= LEASE_S + RENEW_S + LATENCY
            assert took["leaseTransitions"] == 1
            assert log.holders() == [leader.identity, follower.identity]

            # The due time that passed while nobody led is run once, by the new leader.
            assert wait_for(lambda: due_in_gap in follower.ran(), timeout=EVERY + 10)
            assert wait_for(lambda: len(follower.ran()) >= 2, timeout=EVERY + 10)
            assert follower.end(signal.SIGTERM) == 0
        finally:
            for r in replicas.values():
                r.end(signal.SIGKILL)
            log.stop()

        _assert_scheduled_once(url, leader, follower, due_in_gap)


def _kill_before_next_due(leader: Replica) -> tuple[datetime, datetime]:
    """``kill -9`` the leader one second before a due time; (that due time, when killed)."""
    now = time.time()
    next_due = math.ceil(now / EVERY) * EVERY
    if next_due - now < 2.5:
        next_due += EVERY
    time.sleep(next_due - 1.0 - time.time())
    killed_at = datetime.now(UTC)
    leader.end(signal.SIGKILL)
    return datetime.fromtimestamp(next_due, UTC), killed_at


def _assert_scheduled_once(url: str, leader: Replica, follower: Replica,
                           due_in_gap: datetime) -> None:
    """Every due time from the first run to the last ran exactly once, and the store agrees."""
    ran = leader.ran() + follower.ran()
    print(f"scheduled runs: {len(leader.ran())} by {leader.identity}, "
          f"{len(follower.ran())} by {follower.identity}")
    assert len(ran) == len(set(ran))  # none twice
    assert max(leader.ran()) < due_in_gap <= min(follower.ran())
    # none lost: every due time from the first to the last, EVERY seconds apart
    first, last = min(ran), max(ran)
    expected = [first + timedelta(seconds=EVERY * k)
                for k in range(int((last - first).total_seconds()) // EVERY + 1)]
    assert sorted(ran) == expected
    store = PostgresStore.open(url)
    try:
        claims = store.schedule_claims(limit=1000)
    finally:
        store.close()
    assert sorted(c.due_at for c in claims) == expected
    assert all(c.status == "done" for c in claims)
    assert {c.owner for c in claims if c.due_at >= due_in_gap} == {follower.identity}


def test_sigterm_releases_the_lease_and_the_follower_takes_over_at_once(
        lab: Lab, admin: KubeClient, sa_kubeconfig: Path, tmp_path: Path) -> None:
    lease = "serve-release"
    log = LeaseLog(admin, NS, lease)
    first = start(lab, sa_kubeconfig, lease, "replica-1", tmp_path)
    second: Replica | None = None
    try:
        assert wait_for(first.leading, timeout=60)
        second = start(lab, sa_kubeconfig, lease, "replica-2", tmp_path)
        assert wait_for(lambda: second is not None and second.saw("started"), timeout=60)
        time.sleep(2 * RENEW_S)  # the follower has tried and lost at least once
        assert not second.leading()
        revs_before = len(log.revisions)
        assert first.end(signal.SIGTERM) == 0
        assert first.saw("stopped")

        assert wait_for(lambda: log.first("replica-2", revs_before), timeout=30)
        released = log.first("", revs_before)
        took = log.first("replica-2", revs_before)
        assert released is not None, log.revisions[revs_before:]
        assert took is not None
        # The release came first and set the lease as client-go's release does.
        assert log.holders() == ["replica-1", "", "replica-2"]
        assert released["leaseDurationSeconds"] == 1
        gap = (lease_time(took, "acquireTime") - lease_time(released, "renewTime")).total_seconds()
        print(f"\nSIGTERM -> takeover: {gap:.3f}s from the release to the new acquireTime "
              f"(lease {LEASE_S:g}s, renew {RENEW_S:g}s)")
        # Taken at the follower's next round, without waiting for the lease to lapse.
        assert 0 <= gap <= RENEW_S + LATENCY < LEASE_S
        assert took["leaseTransitions"] == 1
        assert wait_for(second.leading, timeout=10)
    finally:
        first.end(signal.SIGKILL)
        if second is not None:
            second.end(signal.SIGTERM)
        log.stop()


def test_racing_replicas_take_an_expired_lease_once(admin: KubeClient,
                                                    sa_kubeconfig: Path) -> None:
    """Five electors take one expired Lease at the same instant: the resourceVersion-guarded
    PUT lets exactly one win (the others get 409 Conflict and follow), every round."""
    lease = "serve-race"
    electors = [LeaderElector(_client(sa_kubeconfig), NS, lease, f"racer-{i}",
                              lease_seconds=LEASE_S, renew_seconds=RENEW_S) for i in range(5)]
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    admin.create(LEASE_API, "leases", NS, {
        "apiVersion": LEASE_API, "kind": "Lease", "metadata": {"name": lease},
        "spec": {"holderIdentity": "dead-replica", "leaseDurationSeconds": 3,
                 "renewTime": micro_time(long_ago), "acquireTime": micro_time(long_ago),
                 "leaseTransitions": 4}})
    try:
        for round_ in range(3):
            barrier = threading.Barrier(len(electors))
            won: dict[str, bool] = {}

            def race(e: LeaderElector, barrier: threading.Barrier = barrier,
                     won: dict[str, bool] = won) -> None:
                barrier.wait()
                won[e.identity] = e.try_acquire_or_renew()
            threads = [threading.Thread(target=race, args=(e,)) for e in electors]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            winners = [i for i, w in won.items() if w]
            spec = admin.get(LEASE_API, "leases", lease, NS)["spec"]
            assert len(winners) == 1, won
            assert next(e for e in electors if e.identity == winners[0]).holder == winners[0]
            assert spec["holderIdentity"] == winners[0]
            assert spec["leaseTransitions"] == 5 + round_
            assert [e.is_leader() for e in electors].count(True) == 1
            # Next round: the Lease is again a dead replica's, lapsed (the winner would renew
            # its own without a transition).
            lease_obj = admin.get(LEASE_API, "leases", lease, NS)
            lease_obj["spec"].update(holderIdentity="dead-replica",
                                     renewTime=micro_time(long_ago))
            admin.replace(LEASE_API, "leases", NS, lease_obj)
    finally:
        for e in electors:
            e.client.close()


def test_a_leader_that_cannot_renew_steps_down_by_the_renew_deadline(
        lab: Lab, admin: KubeClient, sa_kubeconfig: Path, tmp_path: Path) -> None:
    """Its rights are taken away while it leads: the API server refuses the renewal (403), the
    elector stops calling itself leader once the renew deadline passes, before the lease
    lapses for anyone else, and leads again when it may."""
    user, lease = "serve-elector-revoked", "serve-revoked"
    assert sa_kubeconfig.exists()  # the fixture made the Role (leases: get/create/update)
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": user, "namespace": NS},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SA},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                             "name": user}]}
    lab.kubectl("apply", "-f", "-", input=json.dumps(binding))
    client = _client(user_kubeconfig(lab, user, tmp_path / "user.kubeconfig"))
    elector = LeaderElector(client, NS, lease, "revoked-replica", lease_seconds=LEASE_S,
                            renew_seconds=RENEW_S)
    changes: list[bool] = []
    elector.on_change(changes.append)
    elector.start()
    try:
        assert wait_for(elector.is_leader, timeout=30)
        lab.kubectl("delete", "rolebinding", user, "-n", NS)
        assert wait_for(lambda: not elector.is_leader() and changes[-1:] == [False],
                        timeout=30)
        assert elector.last_error is not None and "403" in elector.last_error
        spec = admin.get(LEASE_API, "leases", lease, NS)["spec"]
        # The Lease still names it (nobody else competes here) until it lapses; is_leader()
        # said False from renewTime + the renew deadline, one renew period before that.
        assert spec["holderIdentity"] == "revoked-replica"
        lab.kubectl("apply", "-f", "-", input=json.dumps(binding))
        assert wait_for(elector.is_leader, timeout=30)
        assert changes == [True, False, True]
        assert elector.last_error is None
    finally:
        elector.stop(release=True)
        client.close()
    assert admin.get(LEASE_API, "leases", lease, NS)["spec"].get("holderIdentity") is None
