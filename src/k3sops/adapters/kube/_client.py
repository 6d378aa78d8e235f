"""The Kubernetes API client: every request k3sops sends to an API server goes through here.

Plain JSON over one httpx2 client per :class:`KubeClient` (the context's TLS and
credentials, a timeout on every request): a check of tens of thousands of pods should cost
what the LIST costs, not a model object per pod. Building a path is pure (``_paths``), mapping
an answer to an error is one function (``_errors``), and the network is a swappable httpx2
transport, so tests replay recorded API server answers without monkeypatching.
"""

from __future__ import annotations

import builtins
import json
import re
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx2

from k3sops.adapters.kube._config import KubeconfigSource, http_client, load_single
from k3sops.adapters.kube._errors import Call, status_error, transport_error
from k3sops.adapters.kube._exec import ExecSession
from k3sops.adapters.kube._paths import api_path, plural_of
from k3sops.adapters.kube._watch import EventType, WatchEvent, decode_event
from k3sops.errors import AdapterError, Gone, NotFound, Timeout, Unreachable

LIST_CHUNK = 500
"""Objects per page of a LIST: large enough for few round trips, small enough for etcd."""
FIELD_MANAGER = "k3sops"
"""The field manager of every server-side apply (and of status patches)."""
JSON = "application/json"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_NAMESPACE_IN_PATH = re.compile(r"/namespaces/([^/]+)/")


@dataclass(frozen=True)
class Listing:
    """Every item of a LIST (all pages) and the collection's resourceVersion (to watch from)."""

    items: builtins.list[dict[str, Any]]
    resource_version: str


def _resource_of(path: str) -> tuple[str, str | None]:
    """``(resource, namespace)`` of an API path, for messages (``pods/web-1``, ``production``)."""
    found = _NAMESPACE_IN_PATH.search(path + "/")
    namespace = found.group(1) if found else None
    tail = path.split("?", maxsplit=1)[0]
    if found:
        tail = tail[found.end() - 1:]
    parts = [p for p in tail.split("/") if p]
    if not found:
        # /api/v1/<plural>... or /apis/<group>/<version>/<plural>...
        parts = parts[2:] if parts[:1] == ["api"] else parts[3:]
    return "/".join(parts) or path, namespace


class KubeClient:
    """One API server, one authenticated connection pool; raises k3sops errors only.

    Args:
        source: where the kubeconfig was found (:func:`discover_kubeconfig`).
        context: the kubeconfig context (its current one when None).
        timeout: seconds any request may take (connect, each read, write).
        transport: replaces the network (tests replay recorded answers through it).

    Raises:
        ConfigError: the kubeconfig cannot be read or used.
    """

    def __init__(self, source: KubeconfigSource, context: str | None = None,
                 timeout: float = 15.0, *, transport: httpx2.BaseTransport | None = None,
                 ) -> None:
        self.source = source
        self._single = load_single(source, context)
        self.server: str = self._single.cluster.server.rstrip("/")
        self.context: str = self._single.context_name
        self.namespace: str = self._single.namespace or "default"
        """The context's namespace (``default`` when it names none), as kubectl uses it."""
        self.timeout = timeout
        self._transport = transport
        self._lock = threading.Lock()
        # Built now so that bad certificate data fails here, not at the first request.
        self._pool: httpx2.Client | None = http_client(self._single, source, timeout, transport)

    # ---------------------------------------------------------------------------------------
    # Connections

    def http(self) -> httpx2.Client:
        """A new HTTP client with this context's TLS and credentials; the caller closes it.

        For requests that are not Kubernetes API calls (the service proxy to Prometheus).
        """
        return http_client(self._single, self.source, self.timeout, self._transport)

    @property
    def _http(self) -> httpx2.Client:
        # After close() the next request opens a new pool: close releases connections, it
        # does not end the client (a runner closes it before the caller's last reads).
        with self._lock:
            if self._pool is None:
                self._pool = self.http()
            return self._pool

    def close(self) -> None:
        """Release connections (a later request opens new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _call(self, verb: str, resource: str, namespace: str | None,
              timeout: float | None = None) -> Call:
        return Call(verb=verb, resource=resource, namespace=namespace, server=self.server,
                    context=self.context, origin=f"{self.source.path} ({self.source.origin})",
                    timeout=self.timeout if timeout is None else timeout)

    # ---------------------------------------------------------------------------------------
    # Requests

    def request(self, method: str, path: str, *, verb: str | None = None,
                what: str | None = None, namespace: str | None = None,
                params: Mapping[str, str | int] | None = None, body: Any = None,
                content_type: str | None = None, timeout: float | None = None,
                accept: tuple[int, ...] = (), client: httpx2.Client | None = None,
                ) -> httpx2.Response:
        """Send one request; return the answer, or raise the k3sops error for it.

        Args:
            method: HTTP method.
            path: the API path (:func:`api_path`), query parameters in ``params``.
            verb: the Kubernetes verb, for messages (from the method when None).
            what: the resource, for messages (from the path when None).
            namespace: for messages (from the path when None).
            params: query parameters.
            body: JSON body.
            content_type: of the body (PATCH flavours, apply).
            timeout: seconds for this request instead of the client's.
            accept: error statuses returned instead of raised (a probe reads them).
            client: another HTTP client of this context (concurrent LISTs share one).

        Raises:
            Unauthorized, NotFound, Conflict, Gone, Invalid, PlanRejected, Timeout,
            Unreachable, AdapterError: as the server answered, or did not.
        """
        resource, ns_in_path = _resource_of(path)
        call = self._call(verb or _VERBS.get(method, method.lower()), what or resource,
                          namespace if namespace is not None else ns_in_path, timeout)
        headers = {"Content-Type": content_type} if content_type else None
        if method in ("POST", "PUT", "PATCH") and not (params and "fieldManager" in params):
            # Every write is recorded under k3sops in managedFields, not "python-httpx2".
            params = {**(params or {}), "fieldManager": FIELD_MANAGER}
        try:
            resp = (client or self._http).request(
                method, f"{self.server}{path}", params=params, headers=headers,
                content=None if body is None else json.dumps(body).encode(),
                timeout=httpx2.USE_CLIENT_DEFAULT if timeout is None else httpx2.Timeout(timeout))
        except httpx2.TransportError as e:
            raise transport_error(e, call) from e
        if resp.status_code >= 400 and resp.status_code not in accept:
            raise status_error(resp.status_code, resp.content, call)
        return resp

    def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        resp = self.request(method, path, **kw)
        try:
            data = resp.json()
        except ValueError as e:
            raise AdapterError(f"{method} {path} on {self.server}: the answer is not JSON "
                               f"(HTTP {resp.status_code})") from e
        return data if isinstance(data, dict) else {"items": data}

    def version(self) -> str:
        """The API server's gitVersion (a cheap reachability probe)."""
        return str(self._json("GET", "/version", what="/version").get("gitVersion", "unknown"))

    # ---------------------------------------------------------------------------------------
    # LIST

    def listing(self, path: str, what: str | None = None, *, label_selector: str | None = None,
                field_selector: str | None = None, client: httpx2.Client | None = None,
                limit: int = LIST_CHUNK) -> Listing:
        """Every page of a LIST of an API path (``/api/v1/pods``) and its resourceVersion.

        ``limit`` objects a page; the server's ``continue`` token fetches the next one.
        """
        params: dict[str, str | int] = {"limit": limit}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        items: builtins.list[dict[str, Any]] = []
        while True:
            body = self._json("GET", path, verb="list", what=what, params=params, client=client)
            items.extend(body.get("items") or [])
            meta = body.get("metadata") or {}
            if not meta.get("continue"):
                return Listing(items, str(meta.get("resourceVersion") or ""))
            params = {**params, "continue": meta["continue"]}

    def list_raw(self, path: str, what: str, client: httpx2.Client | None = None,
                 ) -> builtins.list[dict[str, Any]]:
        """Every item of a LIST of an API path (``/api/v1/pods``) as plain dicts."""
        return self.listing(path, what, client=client).items

    def list_raw_many(self, paths: Mapping[str, str], workers: int = 8,
                      ) -> dict[str, builtins.list[dict[str, Any]] | AdapterError]:
        """LIST several API paths concurrently over one connection pool; errors are returned.

        Args:
            paths: ``{what: path}``.
            workers: concurrent requests at most.
        """
        def one(item: tuple[str, str]) -> builtins.list[dict[str, Any]] | AdapterError:
            for attempt in (1, 2):
                try:
                    return self.list_raw(item[1], item[0])
                except (Timeout, Unreachable) as e:
                    # One retry: a busy API server drops or stalls the odd request.
                    if attempt == 2:
                        return e
                except AdapterError as e:
                    return e
            raise AssertionError("unreachable")  # pragma: no cover

        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(paths)))) as pool:
            return dict(zip(paths, pool.map(one, paths.items()), strict=True))

    def list(self, group_version: str, plural: str, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None,
             ) -> builtins.list[dict[str, Any]]:
        """Every object of a kind (all namespaces when ``namespace`` is None)."""
        return self.listing(api_path(group_version, plural, namespace), plural,
                            label_selector=label_selector, field_selector=field_selector).items

    # ---------------------------------------------------------------------------------------
    # Objects

    def get(self, group_version: str, plural: str, name: str, namespace: str | None = None,
            sub: str | None = None) -> dict[str, Any]:
        """One object (or its subresource ``sub``); NotFound when it does not exist."""
        return self._json("GET", api_path(group_version, plural, namespace, name, sub))

    def find(self, group_version: str, plural: str, name: str,
             namespace: str | None = None) -> dict[str, Any] | None:
        """One object, or None when it (or its kind) does not exist."""
        try:
            return self.get(group_version, plural, name, namespace)
        except NotFound:
            return None

    def create(self, group_version: str, plural: str, namespace: str | None,
               obj: Mapping[str, Any], sub: str | None = None, name: str | None = None,
               ) -> dict[str, Any]:
        """POST a new object (Conflict when the name exists); ``sub`` posts to a subresource."""
        what = f"{plural}/{name or (obj.get('metadata') or {}).get('name', '')}"
        return self._json("POST", api_path(group_version, plural, namespace, name, sub),
                          what=what + (f"/{sub}" if sub else ""), namespace=namespace,
                          body=obj, content_type=JSON)

    def create_object(self, obj: Mapping[str, Any], plural: str | None = None,
                      ) -> dict[str, Any]:
        """POST ``obj`` to its own apiVersion and namespace."""
        return self.create(str(obj["apiVersion"]), plural or plural_of(str(obj["kind"])),
                           (obj.get("metadata") or {}).get("namespace"), obj)

    def replace(self, group_version: str, plural: str, namespace: str | None,
                obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT an object (its metadata.resourceVersion guards against lost updates)."""
        name = str((obj.get("metadata") or {}).get("name", ""))
        return self._json("PUT", api_path(group_version, plural, namespace, name),
                          body=obj, content_type=JSON)

    def patch(self, group_version: str, plural: str, name: str, namespace: str | None,
              body: Mapping[str, Any], content_type: str = MERGE, sub: str | None = None,
              ) -> dict[str, Any]:
        """PATCH an object or its subresource (merge patch unless told otherwise)."""
        return self._json("PATCH", api_path(group_version, plural, namespace, name, sub),
                          body=body, content_type=content_type)

    def patch_status(self, group_version: str, plural: str, name: str,
                     namespace: str | None, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource (what a controller does)."""
        return self.patch(group_version, plural, name, namespace, {"status": status},
                          sub="status")

    def apply(self, obj: Mapping[str, Any], plural: str | None = None, *,
              dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply ``obj`` as field manager ``k3sops``, forcing conflicts.

        k3sops applies what its source (git, platform.yaml) says and takes over the fields it
        sets, as Argo CD does with ``ServerSideApply=true``.
        """
        meta = obj.get("metadata") or {}
        params = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        return self._json("PATCH", api_path(str(obj["apiVersion"]),
                                            plural or plural_of(str(obj["kind"])),
                                            meta.get("namespace"), str(meta["name"])),
                          verb="apply", params=params, body=obj, content_type=APPLY)

    def delete(self, group_version: str, plural: str, name: str, namespace: str | None = None,
               options: Mapping[str, Any] | None = None) -> bool:
        """DELETE one object (``options``: a DeleteOptions body); False when it was gone."""
        try:
            self.request("DELETE", api_path(group_version, plural, namespace, name),
                         body=options, content_type=JSON if options else None)
        except NotFound:
            return False
        return True

    # ---------------------------------------------------------------------------------------
    # Streams

    def watch(self, path: str, resource_version: str | None, timeout: float,
              allow_bookmarks: bool = True, *, label_selector: str | None = None,
              field_selector: str | None = None) -> Iterator[WatchEvent]:
        """Watch a collection from ``resource_version``; events until ``timeout`` seconds.

        The server ends the stream after ``timeout`` (``timeoutSeconds``); a consumer resumes
        from the last event's (or BOOKMARK's) resourceVersion.

        Raises:
            Gone: the resourceVersion is too old (HTTP 410 or an ERROR event with code 410):
                list again and watch from the new list's resourceVersion.
            Unauthorized, NotFound, Timeout, Unreachable, AdapterError: as for any request.
        """
        params: dict[str, str | int] = {"watch": "true", "timeoutSeconds": max(1, int(timeout)),
                                        "allowWatchBookmarks": str(allow_bookmarks).lower()}
        if resource_version:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        resource, namespace = _resource_of(path)
        call = self._call("watch", resource, namespace)
        # The server closes the stream at timeoutSeconds; reads may wait that long, plus slack.
        limit = httpx2.Timeout(self.timeout, read=timeout + self.timeout)
        try:
            with self._http.stream("GET", f"{self.server}{path}", params=params,
                                   timeout=limit) as resp:
                if resp.status_code >= 400:
                    raise status_error(resp.status_code, resp.read(), call)
                for line in resp.iter_lines():
                    if not line.strip():
                        continue
                    try:
                        event = decode_event(line)
                    except ValueError as e:
                        raise AdapterError(f"{call.what} on {self.server}: not a watch event: "
                                           f"{line[:200]}") from e
                    if event.type is EventType.ERROR and event.code == 410:
                        raise Gone(f"{call.what} from resourceVersion {resource_version}: "
                                   f"too old on {self.server} (ERROR 410): "
                                   f"{event.object.get('message', '')}",
                                   hint="list again and watch from the list's resourceVersion")
                    yield event
        except httpx2.TransportError as e:
            raise transport_error(e, call) from e

    def pod_log(self, namespace: str, pod: str, params: Mapping[str, str] | None = None,
                timeout: float | None = None) -> str:
        """The log of a pod's container (``container``, ``previous``, ``tailLines`` …)."""
        return self.request("GET", api_path("v1", "pods", namespace, pod, "log"),
                            params=params, timeout=timeout).text

    def exec(self, namespace: str, pod: str, command: builtins.list[str],
             container: str | None = None, stdin: bool = False) -> ExecSession:
        """Run ``command`` in a pod over a WebSocket (see :class:`ExecSession`)."""
        from k3sops.adapters.kube._exec import ExecSession  # only backups exec

        call = self._call("create", f"pods/{pod}/exec", namespace)
        return ExecSession.open(self._http, self.server, call, namespace, pod, command,
                                container=container, stdin=stdin)
