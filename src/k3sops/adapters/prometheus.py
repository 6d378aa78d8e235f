"""Prometheus HTTP API (also Alertmanager's), by URL or through the API server's service proxy."""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx2

from k3sops.adapters.kube import KubeAdapter
from k3sops.config import Endpoint
from k3sops.domain.metrics import InstantResult, parse_result, point_at
from k3sops.errors import (
    AdapterError,
    ConfigError,
    K3sopsError,
    NotFound,
    QueryError,
    Timeout,
    Unauthorized,
    Unreachable,
)

QUERY_WORKERS = 8
"""Queries sent at once by query_many: enough to hide latency, few enough not to load
Prometheus (its own --query.max-concurrency defaults to 20)."""


class HttpApi:
    """A JSON HTTP API at a base URL; names the endpoint in every error it raises."""

    def __init__(self, name: str, base_url: str, client: httpx2.Client, how: str) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.how = how

    @classmethod
    def from_endpoint(cls, name: str, endpoint: Endpoint, kube: KubeAdapter | None) -> HttpApi:
        """Reach ``endpoint`` by URL, or by service through the API server's service proxy."""
        timeout = httpx2.Timeout(endpoint.timeout_seconds)
        if endpoint.url is not None:
            url = str(endpoint.url)
            # A plain-HTTP endpoint needs no TLS: skip loading the CA bundle (~25 ms a client,
            # two clients per `k3sops check`). https keeps the default verification.
            verify = not url.startswith("http://")
            return cls(name, url, httpx2.Client(timeout=timeout, verify=verify), url)
        if kube is None:
            raise ConfigError(f"{name} is configured as service {endpoint.service}, which needs "
                              "the Kubernetes API", hint="configure a kubeconfig or give a url")
        client = kube.http()
        client.timeout = timeout
        return cls(name, kube.server.rstrip("/") + endpoint.proxy_path(), client,
                   f"service {endpoint.service} via {kube.server}")

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET base_url+path and decode JSON; raise k3sops errors naming the endpoint."""
        return self.request_json("GET", path, params=params)

    def send(self, method: str, path: str, params: dict[str, str] | None = None,
             body: Any = None) -> httpx2.Response:
        """Send a request; map transport failures, 401/403 and 404 to k3sops errors."""
        url = f"{self.base_url}{path}"
        where = f"{self.name} at {self.how}"
        try:
            resp = self.client.request(method, url, params=params, json=body)
        except httpx2.TimeoutException as e:
            raise Timeout(f"{where} did not answer {path} in time",
                          hint="is it overloaded? raise timeout_seconds in platform.yaml") from e
        except httpx2.HTTPError as e:
            raise Unreachable(f"cannot reach {where}: {e}",
                              hint=f"check that {self.name} runs and the endpoint in "
                                   "platform.yaml is right") from e
        if resp.status_code in (401, 403):
            raise Unauthorized(f"{where} refused {method} {path} (HTTP {resp.status_code})")
        if resp.status_code == 404:
            raise NotFound(f"{where}: {method} {path} not found (HTTP 404)",
                           hint="is this the right service and port?")
        return resp

    def request_json(self, method: str, path: str, params: dict[str, str] | None = None,
                     body: Any = None, expect_json: bool = True) -> Any:
        """Send a request and decode the JSON answer; raise k3sops errors naming the endpoint.

        With ``expect_json=False`` a 2xx answer with any body is accepted and None returned
        (Prometheus' /-/reload, Alertmanager's DELETE of a silence).
        """
        resp = self.send(method, path, params=params, body=body)
        where = f"{self.name} at {self.how}"
        if not expect_json and resp.status_code < 400:
            return None
        try:
            body = resp.json()
        except ValueError as e:
            raise AdapterError(f"{where}: {method} {path} returned HTTP {resp.status_code}, "
                               f"not JSON: {resp.text[:200]}") from e
        if resp.status_code >= 400:
            msg = body.get("error") if isinstance(body, dict) else None
            raise AdapterError(f"{where}: {method} {path} failed (HTTP {resp.status_code}): "
                               f"{msg or resp.text[:200]}")
        return body

    def close(self) -> None:
        """Release connections."""
        self.client.close()


class PrometheusAdapter:
    """The Prometheus queries k3sops needs."""

    def __init__(self, api: HttpApi) -> None:
        self.api = api

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets (/api/v1/targets?state=active)."""
        body = self.api.get_json("/api/v1/targets", {"state": "active"})
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise AdapterError(f"{self.api.name}: unexpected /api/v1/targets answer")
        active = data.get("activeTargets") or []
        return [t for t in active if isinstance(t, dict)]

    def reload(self) -> None:
        """Make Prometheus re-read its config and rule files (needs --web.enable-lifecycle)."""
        self.api.request_json("POST", "/-/reload", expect_json=False)

    def rules(self) -> list[dict[str, Any]]:
        """Loaded rule groups (/api/v1/rules)."""
        body = self.api.get_json("/api/v1/rules")
        groups = body.get("data", {}).get("groups", []) if isinstance(body, dict) else []
        return [g for g in groups if isinstance(g, dict)]

    def query(self, expr: str, at: datetime | float | None = None) -> InstantResult:
        """Run an instant query (/api/v1/query).

        Args:
            expr: the PromQL expression.
            at: evaluation time (a datetime or Unix seconds); None: Prometheus' now.

        Returns:
            The answer's samples.

        Raises:
            QueryError: Prometheus refused the expression (bad_data, e.g. a parse error); the
                message is Prometheus' own text, with the position.
            Unreachable, Timeout, Unauthorized, NotFound: the endpoint could not be asked.
            AdapterError: the query failed while running (execution, timeout, canceled) or the
                answer was not a Prometheus answer.
        """
        params = {"query": expr}
        if isinstance(at, datetime):
            params["time"] = at.isoformat()
        elif at is not None:
            params["time"] = f"{at:.3f}"
        data = self._call("/api/v1/query", params, expr)
        try:
            return parse_result(data)
        except ValueError as e:
            raise AdapterError(f"{self.api.name} at {self.api.how}: unexpected answer to "
                               f"query {expr[:200]!r}: {e}") from e

    def query_many(self, exprs: Mapping[str, str], at: datetime | float | None = None,
                   ) -> dict[str, InstantResult | K3sopsError]:
        """Run several instant queries concurrently; a failing query yields its error.

        Args:
            exprs: name -> PromQL expression.
            at: evaluation time shared by every query; None: each query's own now.

        Returns:
            name -> the answer, or the k3sops error that query raised (never raised here).
        """
        def one(expr: str) -> InstantResult | K3sopsError:
            try:
                return self.query(expr, at)
            except K3sopsError as e:
                return e

        if not exprs:
            return {}
        # The HTTP client is thread-safe and keeps one connection pool for all workers.
        # Daemon threads, not a ThreadPoolExecutor: on Ctrl-C the executor's threads are joined
        # at exit, so `metrics --watch` would wait for a slow query before exiting 130; these
        # are reads, nothing is lost by dropping them.
        work: queue.SimpleQueue[str] = queue.SimpleQueue()
        for name in exprs:
            work.put(name)
        answers: dict[str, InstantResult | K3sopsError] = {}
        crashed: list[BaseException] = []

        def worker() -> None:
            while not crashed:
                try:
                    name = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    answers[name] = one(exprs[name])
                except BaseException as e:  # a bug, not an answer: raised in the caller
                    crashed.append(e)

        threads = [threading.Thread(target=worker, name="prometheus-query", daemon=True)
                   for _ in range(min(QUERY_WORKERS, len(exprs)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if crashed:
            raise crashed[0]
        return {name: answers[name] for name in exprs}

    def _call(self, path: str, params: dict[str, str], expr: str) -> Any:
        """GET a query API path and return its ``data``, mapping Prometheus' error answers.

        HttpApi.request_json cannot be used here: it folds every other 4xx/5xx into one
        AdapterError, and a query needs Prometheus' errorType to tell bad PromQL (exit 2) from a
        failure.
        """
        where = f"{self.api.name} at {self.api.how}"
        resp = self.api.send("GET", path, params=params)
        try:
            body = resp.json()
        except ValueError as e:
            raise AdapterError(f"{where}: GET {path} returned HTTP {resp.status_code}, "
                               f"not JSON: {resp.text[:200]}") from e
        if not isinstance(body, dict):
            raise AdapterError(f"{where}: GET {path}: the answer is not a JSON object")
        if body.get("status") == "error" or resp.status_code >= 400:
            kind = str(body.get("errorType") or f"HTTP {resp.status_code}")
            error = str(body.get("error") or resp.text[:200])
            if kind == "bad_data":
                # The caret goes in the hint so that .message stays Prometheus' own text.
                caret = point_at(expr, error)
                shown = "\n".join(f"    {line}" for line in caret.splitlines()) if caret else ""
                raise QueryError(f"{where} rejected the query: {error}",
                                 hint="fix the PromQL (the position is line:column)"
                                      + (f":\n{shown}" if shown else ""))
            raise AdapterError(f"{where}: query failed ({kind}): {error}")
        return body.get("data")

    def close(self) -> None:
        """Release the HTTP connections."""
        self.api.close()
