"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Every replica runs a :class:`LeaderElector` on the same Lease. Each round (every
``renew_seconds``) it reads the Lease and:

- creates it, holding it, when it does not exist;
- takes it when ``spec.holderIdentity`` is empty (released) or the holder's
  ``renewTime + leaseDurationSeconds`` has passed (the holder died): ``acquireTime`` is now and
  ``leaseTransitions`` goes up by one;
- renews it (``renewTime`` now) when it already holds it;
- otherwise leaves it alone: another replica leads.

Every write is a PUT carrying the ``resourceVersion`` that was read (optimistic concurrency):
two replicas racing for an expired Lease both PUT, the API server accepts one and answers the
other ``409 Conflict`` — that one lost. A leader that has not renewed for ``renew deadline``
(the lease duration less one renew period, as client-go's RenewDeadline < LeaseDuration) stops
calling itself leader before any other replica may take the Lease, so two replicas never both
believe they lead (on clocks that agree within that margin).

``stop(release=True)`` clears ``holderIdentity`` (client-go's ReleaseOnCancel): the follower
takes over at its next round instead of waiting for the lease to expire.

Expiry is judged from the Lease's own ``renewTime`` (the holder's clock); client-go measures
it from when the follower last saw the record change, which tolerates clock skew between
nodes but makes a fresh replica wait a whole lease duration. Replicas of one service on one
cluster's nodes share NTP time, and the lab's run on one host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from k3sops.adapters.kube import JSON, KubeClient, api_path
from k3sops.errors import AdapterError, Conflict, NotFound
from k3sops.timeparse import parse_rfc3339

LEASE_API = "coordination.k8s.io/v1"
log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def micro_time(at: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds (``...T07:00:00.000000Z``)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_expired(spec: dict[str, Any], now: datetime) -> bool:
    """Whether a Lease's holder has let it lapse (or none holds it)."""
    if not spec.get("holderIdentity"):
        return True
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    if not renewed:
        return True
    try:
        at = parse_rfc3339(str(renewed))
    except ValueError:
        # An unreadable renewTime cannot prove the holder alive; client-go would fail to
        # decode the object altogether. Taking it is the only way the service recovers.
        return True
    return now >= at + timedelta(seconds=float(spec.get("leaseDurationSeconds") or 0))


class LeaderElector:
    """Campaigns for one Lease in a background thread; :meth:`is_leader` says who won.

    Args:
        client: the API server (its credentials need get/create/update on leases in
            ``namespace``); each Lease request is bounded by the renew deadline, whatever
            the client's own timeout.
        namespace: the Lease's namespace.
        name: the Lease's name (all replicas of one service use the same).
        identity: this replica's name in ``holderIdentity`` (unique per replica: the pod name).
        lease_seconds: ``leaseDurationSeconds``: how long a silent holder keeps the Lease.
        renew_seconds: how often the leader renews and a follower retries.
        clock: the current time (aware datetime); the Lease's timestamps come from it.

    Raises:
        ValueError: ``renew_seconds`` is not below ``lease_seconds`` or either is not positive.
    """

    def __init__(self, client: KubeClient, namespace: str, name: str, identity: str, *,
                 lease_seconds: float = 15.0, renew_seconds: float = 5.0,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        if not 0 < renew_seconds < lease_seconds:
            raise ValueError(f"leader election: the renew period ({renew_seconds:g}s) must be "
                             f"positive and shorter than the lease ({lease_seconds:g}s)")
        if not identity:
            raise ValueError("leader election: the identity must not be empty")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        # client-go: RenewDeadline < LeaseDuration; the leader gives up this long after its
        # last successful renewal, one renew period before anyone else may take the Lease.
        self.renew_deadline = timedelta(seconds=max(lease_seconds - renew_seconds,
                                                    renew_seconds))
        self._clock = clock
        self._lock = threading.Lock()
        self._leader = False
        self._renewed_at: datetime | None = None
        self._callbacks: list[Callable[[bool], None]] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        """Why the last round failed (API server unreachable, forbidden); None when it
        worked."""
        self.holder: str | None = None
        """Who held the Lease at the last round ("" released, None never read): the
        follower's API and /metrics can name the leader."""

    # -- public ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start campaigning in a daemon thread; returns at once."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        """Stop campaigning; if leading and ``release``, clear ``holderIdentity`` first."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        was_leader = self._leader
        if release and was_leader:
            self.release()
        self._set_leader(False)

    def is_leader(self) -> bool:
        """Whether this replica holds the Lease now (False past the renew deadline)."""
        with self._lock:
            if not self._leader or self._renewed_at is None:
                return False
            return self._clock() - self._renewed_at < self.renew_deadline

    def on_change(self, fn: Callable[[bool], None]) -> None:
        """Call ``fn(leading)`` from the election thread whenever leadership changes."""
        self._callbacks.append(fn)

    # -- one round ---------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One round: read the Lease, create/take/renew it if allowed; True: this replica leads.

        Raises:
            AdapterError: the API server could not be asked (the caller retries next round).
        """
        now = self._clock()
        try:
            lease = self._call("GET", self.name)
        except NotFound:
            try:
                self._call("POST", None, {
                    "apiVersion": LEASE_API, "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(now, acquired=now, transitions=0)})
            except Conflict:
                return False  # another replica created it first
            return self._renewed(now)
        spec: dict[str, Any] = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity") or ""
        self.holder = holder
        if holder == self.identity:
            acquired = spec.get("acquireTime")
            acquire_at = _parse_or(acquired, now)
            transitions = int(spec.get("leaseTransitions") or 0)
        elif lease_expired(spec, now):
            acquire_at = now
            transitions = int(spec.get("leaseTransitions") or 0) + 1
        else:
            return self._lost()
        lease["spec"] = {**spec, **self._spec(now, acquired=acquire_at,
                                              transitions=transitions)}
        try:
            # metadata.resourceVersion is the one just read: a 409 means someone else wrote
            # in between (renewed, or took it first).
            self._call("PUT", self.name, lease)
        except Conflict:
            if holder == self.identity:
                # Our own renewal raced another write (an edit of its labels, say): as
                # client-go, keep leading until the renew deadline and retry next round;
                # nobody can take the Lease before it lapses.
                return False
            return self._lost()
        return self._renewed(now)

    def release(self) -> bool:
        """Clear ``holderIdentity`` if this replica holds the Lease; True when it did.

        As client-go's release: holder empty, ``leaseDurationSeconds`` 1, renew and acquire
        times now, transitions kept.
        """
        try:
            lease = self._call("GET", self.name)
            spec: dict[str, Any] = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return False
            now = self._clock()
            spec.pop("holderIdentity", None)
            spec.update(leaseDurationSeconds=1, renewTime=micro_time(now),
                        acquireTime=micro_time(now))
            lease["spec"] = spec
            self._call("PUT", self.name, lease)
        except (Conflict, NotFound):
            return False
        except AdapterError as e:
            log.warning("lease %s/%s: could not release: %s", self.namespace, self.name, e)
            return False
        return True

    # -- internals ---------------------------------------------------------------------------

    def _call(self, method: str, name: str | None, body: Any = None) -> dict[str, Any]:
        # Each request ends within the renew deadline (client-go bounds its renewal the same
        # way): a hung API server must not keep this thread from noticing the lost lease.
        resp = self.client.request(
            method, api_path(LEASE_API, "leases", self.namespace, name), body=body,
            content_type=JSON if body is not None else None, what=f"leases/{self.name}",
            namespace=self.namespace, timeout=self.renew_deadline.total_seconds())
        try:
            data = resp.json()
        except ValueError as e:
            raise AdapterError(f"{method} lease {self.namespace}/{self.name}: the answer is "
                               f"not JSON (HTTP {resp.status_code})") from e
        if not isinstance(data, dict):
            raise AdapterError(f"{method} lease {self.namespace}/{self.name}: the answer is "
                               "not an object")
        return data

    def _spec(self, now: datetime, *, acquired: datetime, transitions: int) -> dict[str, Any]:
        return {"holderIdentity": self.identity,
                # A whole number of seconds is all the field holds; round up so a 2.5 s lease
                # is never advertised shorter than this replica honours.
                "leaseDurationSeconds": max(1, -int(-self.lease_seconds // 1)),
                "acquireTime": micro_time(acquired), "renewTime": micro_time(now),
                "leaseTransitions": transitions}

    def _renewed(self, now: datetime) -> bool:
        self.holder = self.identity
        with self._lock:
            self._renewed_at = now
        self._set_leader(True)
        return True

    def _lost(self) -> bool:
        self._set_leader(False)
        return False

    def _set_leader(self, leading: bool) -> None:
        with self._lock:
            changed = leading != self._leader
            self._leader = leading
            if not leading:
                self._renewed_at = None
        if changed:
            log.info("lease %s/%s: %s %s", self.namespace, self.name, self.identity,
                     "is now the leader" if leading else "is no longer the leader")
            for fn in list(self._callbacks):
                try:
                    fn(leading)
                except Exception:  # a callback's failure must not end the election
                    log.exception("lease %s/%s: on_change callback failed", self.namespace,
                                  self.name)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.try_acquire_or_renew()
                self.last_error = None
            except AdapterError as e:
                # The API server is down or refuses: keep leading only until the renew
                # deadline (is_leader checks it), then say so to the callbacks.
                # Logged when it changes, not every round while the API server is down.
                if str(e) != self.last_error:
                    log.warning("lease %s/%s: %s", self.namespace, self.name, e)
                self.last_error = str(e)
                if not self.is_leader():
                    self._set_leader(False)
            self._stopping.wait(self.renew_seconds)


def _parse_or(value: Any, default: datetime) -> datetime:
    try:
        return parse_rfc3339(str(value)) if value else default
    except ValueError:
        return default
