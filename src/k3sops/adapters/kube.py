"""Kubernetes API access through lightkube, with kubeconfig discovery and error wrapping.

Kubeconfig discovery order (first that applies wins; documented in the README):

1. ``--kubeconfig`` flag, or ``K3SOPS_KUBECONFIG`` (the CLI folds the env var into the flag);
2. ``kubeconfig:`` in platform.yaml;
3. ``$KUBECONFIG`` (the first existing file of a ``:``-separated list, as kubectl reads it);
4. ``~/.kube/config``;
5. ``/etc/rancher/k3s/k3s.yaml`` (where K3s writes its admin kubeconfig on a server);
6. the in-cluster service account (when k3sops runs in a pod).
"""

from __future__ import annotations

import builtins
import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import lightkube
from lightkube.config.client_adapter import Client as _raw_client
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core.exceptions import ConfigError as LightkubeConfigError
from lightkube.core.resource import NamespacedResource, Resource

from k3sops.errors import (
    AdapterError,
    ConfigError,
    Conflict,
    NotFound,
    Timeout,
    Unauthorized,
    Unreachable,
)

log = logging.getLogger(__name__)

K3S_KUBECONFIG = Path("/etc/rancher/k3s/k3s.yaml")
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
LIST_CHUNK = 500
"""Objects per page of a LIST: large enough for few round trips, small enough for etcd."""



@dataclass(frozen=True)
class KubeconfigSource:
    """Where the kubeconfig was found, for messages (``path`` is None for in-cluster)."""

    path: Path | None
    origin: str


def discover_kubeconfig(
    explicit: Path | None,
    platform_kubeconfig: Path | None,
    env: Mapping[str, str],
    home: Path,
) -> KubeconfigSource:
    """Find the kubeconfig to use, in the documented order (see the module docstring).

    Raises:
        ConfigError: an explicitly named file does not exist, or nothing was found.
    """
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"kubeconfig {explicit} (from --kubeconfig) does not exist",
                              hint="pass an existing file, or drop the flag to use discovery")
        return KubeconfigSource(explicit, "--kubeconfig")
    if platform_kubeconfig is not None:
        if not platform_kubeconfig.is_file():
            raise ConfigError(f"kubeconfig {platform_kubeconfig} (from platform.yaml) "
                              "does not exist",
                              hint="fix `kubeconfig:` in platform.yaml or pass --kubeconfig")
        return KubeconfigSource(platform_kubeconfig, "platform.yaml")
    for item in env.get("KUBECONFIG", "").split(":"):
        if item and Path(item).expanduser().is_file():
            return KubeconfigSource(Path(item).expanduser(), "$KUBECONFIG")
    for candidate, origin in ((home / ".kube" / "config", "~/.kube/config"),
                              (K3S_KUBECONFIG, "K3s default")):
        if candidate.is_file():
            return KubeconfigSource(candidate, origin)
    if (SERVICE_ACCOUNT_DIR / "token").is_file():
        return KubeconfigSource(None, "in-cluster service account")
    raise ConfigError(
        "no kubeconfig found (looked at --kubeconfig, platform.yaml, $KUBECONFIG, "
        f"~/.kube/config, {K3S_KUBECONFIG}, in-cluster)",
        hint="pass --kubeconfig FILE, or for the local lab: k3sops lab up",
    )


def _load_single(source: KubeconfigSource, context: str | None) -> SingleConfig:
    try:
        kc = (KubeConfig.from_service_account() if source.path is None
              else KubeConfig.from_file(source.path))
    except (LightkubeConfigError, OSError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"cannot read kubeconfig {source.path} ({source.origin}): "
                          f"{type(e).__name__}",
                          hint="check that it is a valid kubeconfig (kubectl config view)") from e
    if context is not None and context not in kc.contexts:
        known = ", ".join(sorted(kc.contexts)) or "none"
        raise ConfigError(f"context {context!r} is not in kubeconfig {source.path}",
                          hint=f"contexts there: {known}")
    single = kc.get(context)
    if single is None:
        raise ConfigError(f"kubeconfig {source.path} has no current context",
                          hint="pass --context NAME")
    return single


def _describe(verb: str, resource: str, namespace: str | None) -> str:
    where = f" in namespace {namespace}" if namespace else ""
    return f"{verb} {resource}{where}"


class KubeAdapter:
    """A Kubernetes API client that raises k3sops errors and names the server in them."""

    def __init__(self, source: KubeconfigSource, context: str | None = None,
                 timeout: float = 15.0) -> None:
        self.source = source
        self._single = _load_single(source, context)
        self.server: str = self._single.cluster.server
        self.context: str = self._single.context_name
        try:
            self.client = lightkube.Client(self._single, timeout=httpx2.Timeout(timeout),
                                           field_manager="k3sops")
        except (LightkubeConfigError, OSError, ValueError) as e:
            raise ConfigError(f"cannot use kubeconfig {source.path}: {type(e).__name__}: "
                              "bad certificate or key data",
                              hint="check the cluster and user entries") from e
        self._timeout = timeout

    @contextlib.contextmanager
    def errors(self, verb: str, resource: str, namespace: str | None = None) -> Iterator[None]:
        """Translate lightkube/httpx failures inside the block into k3sops errors."""
        what = _describe(verb, resource, namespace)
        try:
            yield
        except lightkube.ApiError as e:
            code = e.status.code or 0
            reason = e.status.message or e.status.reason or ""
            if code in (401, 403):
                raise Unauthorized(
                    f"API server {self.server} refused to {what} (HTTP {code}): {reason}",
                    hint="check the credentials of context "
                         f"{self.context!r} and their RBAC permissions") from e
            if code == 404:
                raise NotFound(f"{what}: not found on {self.server}: {reason}") from e
            if code == 409:
                raise Conflict(f"{what}: conflict on {self.server}: {reason}",
                               hint="re-read the object and retry") from e
            raise AdapterError(f"{what} failed on {self.server} (HTTP {code}): {reason}") from e
        except httpx2.TimeoutException as e:
            raise Timeout(f"API server {self.server} did not answer within {self._timeout:g}s "
                          f"to {what}", hint="is the API server overloaded or unreachable?") from e
        except (httpx2.ConnectError, httpx2.RemoteProtocolError, httpx2.ReadError) as e:
            raise Unreachable(
                f"cannot reach the API server at {self.server} to {what}: {e}",
                hint=f"is the cluster up? kubeconfig {self.source.path} ({self.source.origin}), "
                     f"context {self.context!r}; for the local lab run `k3sops lab up`") from e

    def list(self, kind: type[Any], namespace: str | None = None,
             labels: dict[str, Any] | None = None) -> list[Any]:
        """One paginated LIST of ``kind`` (all namespaces when ``namespace`` is None)."""
        ns: Any = namespace if namespace is not None else lightkube.ALL_NS
        client: Any = self.client
        with self.errors("list", _plural(kind), namespace):
            if _namespaced(kind):
                return [*client.list(kind, namespace=ns, chunk_size=LIST_CHUNK, labels=labels)]
            return [*client.list(kind, chunk_size=LIST_CHUNK, labels=labels)]

    def list_many(self, kinds: Sequence[type[Resource]], namespace: str | None = None,
                  ) -> dict[type[Resource], Sequence[Any] | AdapterError]:
        """LIST several kinds concurrently; a failing kind yields its error, not an exception."""
        def one(k: type[Resource]) -> Sequence[Any] | AdapterError:
            try:
                return self.list(k, namespace)
            except AdapterError as e:
                return e

        with ThreadPoolExecutor(max_workers=min(8, max(1, len(kinds)))) as pool:
            return dict(zip(kinds, pool.map(one, kinds), strict=True))

    def list_raw(self, path: str, what: str, client: httpx2.Client | None = None,
                 ) -> builtins.list[dict[str, Any]]:
        """One paginated LIST of an API path (``/api/v1/pods``) as plain dicts.

        Plain JSON rather than lightkube models: a check of tens of thousands of pods should cost
        what the LIST costs, not a model object per pod.
        """
        own = client is None
        http = client or self.http()
        items: builtins.list[dict[str, Any]] = []
        params: dict[str, str | int] = {"limit": LIST_CHUNK}
        try:
            with self.errors("list", what):
                while True:
                    resp = http.get(f"{self.server.rstrip('/')}{path}", params=params)
                    self._raise_for(resp, "list", what)
                    body = resp.json()
                    items.extend(body.get("items") or [])
                    cont = (body.get("metadata") or {}).get("continue")
                    if not cont:
                        return items
                    params = {"limit": LIST_CHUNK, "continue": cont}
        finally:
            if own:
                http.close()

    def _raise_for(self, resp: httpx2.Response, verb: str, what: str) -> None:
        if resp.status_code < 400:
            return
        try:
            reason = str(resp.json().get("message", ""))
        except ValueError:
            reason = resp.text[:200]
        code = resp.status_code
        if code in (401, 403):
            raise Unauthorized(
                f"API server {self.server} refused to {verb} {what} (HTTP {code}): {reason}",
                hint=f"check the credentials of context {self.context!r} and their RBAC "
                     "permissions")
        if code == 404:
            raise NotFound(f"{verb} {what}: not found on {self.server}: {reason}")
        raise AdapterError(f"{verb} {what} failed on {self.server} (HTTP {code}): {reason}")

    def list_raw_many(self, paths: Mapping[str, str], workers: int = 8,
                      ) -> dict[str, builtins.list[dict[str, Any]] | AdapterError]:
        """LIST several API paths concurrently over one connection pool; errors are returned."""
        http = self.http()

        def one(item: tuple[str, str]) -> builtins.list[dict[str, Any]] | AdapterError:
            for attempt in (1, 2):
                try:
                    return self.list_raw(item[1], item[0], client=http)
                except (Timeout, Unreachable) as e:
                    # One retry: a busy API server drops or stalls the odd request.
                    if attempt == 2:
                        return e
                except AdapterError as e:
                    return e
            raise AssertionError("unreachable")  # pragma: no cover

        try:
            with ThreadPoolExecutor(max_workers=max(1, min(workers, len(paths)))) as pool:
                return dict(zip(paths, pool.map(one, paths.items()), strict=True))
        finally:
            http.close()

    def version(self) -> str:
        """The API server's gitVersion (a cheap reachability probe)."""
        with self.errors("get", "/version"), self.http() as http:
            resp = http.get(f"{self.server.rstrip('/')}/version")
            self._raise_for(resp, "get", "/version")
            data: dict[str, Any] = resp.json()
        return str(data.get("gitVersion", "unknown"))

    def http(self) -> httpx2.Client:
        """A raw HTTP client with this context's TLS and credentials (service proxy, /version)."""
        return _raw_client(self._single, ConnectionParams(timeout=httpx2.Timeout(self._timeout)))

    def close(self) -> None:
        """Release connections."""
        with contextlib.suppress(Exception):
            inner: Any = self.client._client  # lightkube exposes no close()
            inner.close()


def _plural(kind: type[Resource]) -> str:
    return str(kind._api_info.plural)


def _namespaced(kind: type[Resource]) -> bool:
    return issubclass(kind, NamespacedResource)
