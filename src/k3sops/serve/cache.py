"""WatchCache: every kind the checks read, kept current by LIST then WATCH (issue 14).

One thread per kind: LIST (paged, as the CLI's collect does), then WATCH from the list's
resourceVersion with bookmarks, resuming from the last event's (or bookmark's) resourceVersion
when the server ends the stream at ``timeoutSeconds``. ``410 Gone`` (the resourceVersion was
compacted) or a broken stream means events may have been missed: the kind is listed again.

Objects are kept as the CLI's snapshot keeps them (:func:`k3sops.domain.projection.project`):
a Secret is reduced to its keys and certificate facts as soon as its event is decoded, so no
secret value stays in the cache. For the service's long life they are also compacted
(:func:`~k3sops.domain.projection.for_cache`): no last-applied annotation, and keys and short
strings shared across objects (each watch event is decoded alone).

A kind the API server forbids is "synced as unreadable": its error is recorded (``forbidden``,
as the CLI words it) and :meth:`WatchCache.snapshot` names it in ``errors``, so the engine
leaves the rules that read it not evaluated, exactly as with the CLI's LISTs. A custom kind
whose CRD is not installed is absent (nothing of it to judge).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from k3sops.adapters.kube import LIST_CHUNK, EventType, KubeClient
from k3sops.domain import projection
from k3sops.domain.findings import Source
from k3sops.domain.snapshot import CORE_PATHS, CUSTOM_PATHS, ClusterSnapshot, Obj
from k3sops.errors import AdapterError, Gone, NotFound, Unauthorized, short_reason

WATCH_SECONDS = 300.0
"""How long one WATCH request lasts before the server ends it and the cache resumes."""
RETRY_SECONDS = 5.0
"""Wait before listing again after a failed LIST (API server down, kind forbidden)."""

OnChange = Callable[[str, str, Obj], None]


@dataclass(frozen=True)
class KindStatus:
    """Where one kind's cache stands (``/readyz`` and ``/metrics`` report it)."""

    synced: bool
    """Listed and watching, refused by RBAC (synced as unreadable) or absent (no CRD); False
    while the API server cannot be reached or answers otherwise."""
    objects: int
    resource_version: str | None
    last_event_age: float | None
    """Seconds since the last event, bookmark or list (None: never listed)."""
    relists: int
    """LISTs after the first (410 Gone, broken stream, failed list)."""
    error: str | None
    """Why the kind cannot be read (``forbidden``, ``unreachable``…), None when it can."""
    absent: bool = False
    """A custom kind whose CRD is not installed."""


def _key(obj: Obj) -> str:
    # etcd's key order (<namespace>/<name>): a LIST returns objects in it, so sorting on it
    # gives the snapshot the CLI's order and the same findings in the same order.
    m = obj.get("metadata") or {}
    return f"{m.get('namespace') or ''}/{m.get('name') or ''}"


class _Kind:
    """One kind's objects and state; guarded by the cache's lock."""

    def __init__(self, kind: str, path: str) -> None:
        self.kind = kind
        self.path = path
        self.objects: dict[str, Obj] = {}
        self.resource_version: str | None = None
        self.listed = False
        self.error: str | None = None
        self.denied = False
        """The error is the API server's refusal (RBAC): synced as unreadable, not lag."""
        self.absent = False
        self.relists = 0
        self.lists = 0
        self.last_event: float | None = None

    @property
    def synced(self) -> bool:
        """Listed (and watching), refused by RBAC, or a CRD that is not installed."""
        return self.listed or self.absent or (self.error is not None and self.denied)


class WatchCache:
    """LIST then WATCH per kind; snapshots shaped as the CLI's collect builds them.

    Args:
        client: the Kubernetes client (the service's ServiceAccount).
        kinds: plural kind names (:data:`CORE_PATHS`, :data:`CUSTOM_PATHS`).
        clock: monotonic seconds (ages in :meth:`status`).
        watch_seconds: length of one WATCH request.
        retry_seconds: wait before listing again after a failed LIST.
    """

    def __init__(self, client: KubeClient, kinds: Sequence[str], *,
                 clock: Callable[[], float] = time.monotonic,
                 watch_seconds: float = WATCH_SECONDS,
                 retry_seconds: float = RETRY_SECONDS) -> None:
        paths = {**CORE_PATHS, **CUSTOM_PATHS}
        unknown = [k for k in kinds if k not in paths]
        if unknown:
            raise ValueError(f"unknown kinds for the watch cache: {', '.join(unknown)}")
        self._client = client
        self._clock = clock
        self._watch_seconds = watch_seconds
        self._retry_seconds = retry_seconds
        self._kinds = {k: _Kind(k, paths[k]) for k in dict.fromkeys(kinds)}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listeners: list[OnChange] = []
        self._server_version: str | None = None
        self._synced = threading.Condition(self._lock)
        self._generation = 0
        self._watchers: list[Callable[[], None]] = []

    # -----------------------------------------------------------------------------------------
    # Lifecycle

    def start(self) -> None:
        """One thread per kind; returns at once."""
        self._stop.clear()
        for state in self._kinds.values():
            t = threading.Thread(target=self._run, args=(state,), daemon=True,
                                 name=f"watch-{state.kind}")
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 2.0) -> None:
        """Ask every thread to end; a thread inside a WATCH ends when its stream does.

        The threads are daemons: a process exiting does not wait for an open stream.
        """
        self._stop.set()
        deadline = self._clock() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - self._clock()))
        self._threads = [t for t in self._threads if t.is_alive()]

    def on_change(self, fn: OnChange) -> None:
        """Call ``fn(kind, event type, object)`` after each applied event (watch threads)."""
        self._listeners.append(fn)

    def on_generation(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` after every change of what :meth:`snapshot` returns (any thread).

        Events, LISTs and a kind becoming unreadable all count; bookmarks do not (they move the
        resourceVersion, not the objects). ``fn`` must return quickly: it runs on the watch
        thread that applied the change.
        """
        self._watchers.append(fn)

    @property
    def generation(self) -> int:
        """How many changes of the snapshot's content this cache has applied so far."""
        with self._lock:
            return self._generation

    def _changed_locked(self) -> None:
        self._generation += 1

    def _notify(self) -> None:
        for fn in self._watchers:
            fn()

    # -----------------------------------------------------------------------------------------
    # State

    def _synced_locked(self) -> bool:
        return all(s.synced for s in self._kinds.values())

    def in_sync(self) -> bool:
        """Every kind listed and watching (what ``/readyz`` reports).

        Refused and absent kinds count as synced; kinds the API server could not be asked
        about (down, timing out) do not.
        """
        with self._lock:
            return self._synced_locked()

    def wait_synced(self, timeout: float) -> bool:
        """Wait until :meth:`in_sync` (True) or ``timeout`` seconds (False)."""
        with self._synced:
            return self._synced.wait_for(self._synced_locked, timeout)

    def status(self) -> dict[str, KindStatus]:
        """Per kind: synced, object count, resourceVersion, age of the last event, errors."""
        now = self._clock()
        with self._lock:
            return {k: KindStatus(
                synced=s.synced, objects=len(s.objects),
                resource_version=s.resource_version,
                last_event_age=None if s.last_event is None else now - s.last_event,
                relists=s.relists, error=s.error, absent=s.absent)
                for k, s in self._kinds.items()}

    def snapshot(self, now: datetime, kinds: Iterable[str] | None = None) -> ClusterSnapshot:
        """The cached objects as the CLI's collect would have listed them at ``now``.

        Kinds not in the cache, not yet listed, or failing are named in ``errors`` (the rules
        reading them are not evaluated); metrics and alerts are not the cache's: the caller
        adds them (``dataclasses.replace``) from its own Prometheus/Alertmanager queries.
        """
        wanted = list(self._kinds) if kinds is None else list(dict.fromkeys(kinds))
        objects: dict[str, list[Any]] = {}
        errors: dict[str, str] = {}
        with self._lock:
            for kind in wanted:
                s = self._kinds.get(kind)
                if s is None:
                    if kind in CORE_PATHS:
                        errors[kind] = "not watched"
                    continue
                if s.absent:
                    continue
                if s.error is not None:
                    errors[kind] = s.error
                elif not s.listed:
                    errors[kind] = "not synced yet"
                else:
                    # a shallow copy: objects are replaced on change, never mutated
                    objects[kind] = list(s.objects.values())
            version = self._server_version
        for items in objects.values():
            items.sort(key=_key)
        return ClusterSnapshot(now=now, objects=objects, errors=errors, server_version=version)

    def source(self, kinds: Iterable[str] | None = None) -> Source:
        """The ``kubernetes`` source of a report, worded as the CLI's collect words it."""
        snap = self.snapshot(datetime.now().astimezone(), kinds)
        failed = sorted(snap.errors)
        return Source(name="kubernetes", ok=not failed, endpoint=self._client.server,
                      error=("could not list " + ", ".join(
                          f"{kind} ({snap.errors[kind]})" for kind in failed))
                      if failed else None)

    # -----------------------------------------------------------------------------------------
    # The per-kind loop

    def _run(self, s: _Kind) -> None:
        while not self._stop.is_set():
            if not self._list(s):
                self._stop.wait(self._retry_seconds)
                continue
            self._watch(s)  # returns when events may have been missed: list again
            with self._lock:
                s.relists += 1

    def _list(self, s: _Kind) -> bool:
        try:
            if self._server_version is None:
                self._server_version = self._client.version()
            fresh, resource_version = self._list_pages(s)
        except AdapterError as e:
            with self._synced:
                if s.kind in CUSTOM_PATHS and isinstance(e, NotFound):
                    s.absent, s.error, s.listed, s.denied = True, None, False, False
                else:
                    # Cached objects of a kind that cannot be read now are no evidence.
                    # Refused (RBAC): synced as unreadable; anything else (API server down,
                    # timeouts): not in sync until a LIST succeeds.
                    s.error, s.listed, s.absent = short_reason(e), False, False
                    s.denied = isinstance(e, Unauthorized)
                s.objects = {}
                self._changed_locked()
                self._synced.notify_all()
            self._notify()
            return False
        with self._synced:
            s.objects = fresh
            s.resource_version = resource_version or None
            s.listed, s.error, s.absent, s.denied = True, None, False, False
            s.lists += 1
            s.last_event = self._clock()
            self._changed_locked()
            self._synced.notify_all()
        self._notify()
        return True

    def _list_pages(self, s: _Kind) -> tuple[dict[str, Obj], str]:
        """A paged LIST of the kind, each page compacted before the next is asked for.

        :meth:`KubeClient.listing` would hold every page decoded at once (30,000 whole pods)
        before anything is dropped; page by page, the peak is the kept objects plus one page.
        """
        params: dict[str, str | int] = {"limit": LIST_CHUNK}
        fresh: dict[str, Obj] = {}
        while True:
            resp = self._client.request("GET", s.path, verb="list", what=s.kind, params=params)
            try:
                body = resp.json()
            except ValueError as e:
                raise AdapterError(f"LIST {s.path}: the answer is not JSON "
                                   f"(HTTP {resp.status_code})") from e
            for o in projection.for_cache(s.kind, body.get("items") or []):
                fresh[_key(o)] = o
            meta = body.get("metadata") or {}
            del body, resp  # the page's whole objects go before the next page comes
            if not meta.get("continue"):
                return fresh, str(meta.get("resourceVersion") or "")
            params = {**params, "continue": meta["continue"]}

    def _watch(self, s: _Kind) -> None:
        while not self._stop.is_set():
            try:
                for event in self._client.watch(s.path, s.resource_version,
                                                self._watch_seconds, allow_bookmarks=True):
                    if self._stop.is_set():
                        return
                    if event.type is EventType.ERROR:
                        return  # a Status other than 410 mid-stream: start over from a LIST
                    self._apply(s, event.type, event.object, event.resource_version)
            except Gone:
                return
            except AdapterError:
                return  # a broken stream: events may be lost
            # the server ended the stream at timeoutSeconds: resume where it left off

    def _apply(self, s: _Kind, kind: EventType, obj: dict[str, Any], rv: str | None) -> None:
        if kind is EventType.BOOKMARK:
            with self._lock:
                s.resource_version = rv or s.resource_version
                s.last_event = self._clock()
            return
        projected = projection.for_cache(s.kind, [obj])[0]
        key = _key(projected)
        with self._lock:
            if kind is EventType.DELETED:
                s.objects.pop(key, None)
            else:
                s.objects[key] = projected
            s.resource_version = rv or s.resource_version
            s.last_event = self._clock()
            self._changed_locked()
        for fn in self._listeners:
            fn(s.kind, kind.value, projected)
        self._notify()
