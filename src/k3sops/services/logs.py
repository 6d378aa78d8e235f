"""`k3sops logs`: a pod's logs through the Kubernetes API, or a LogQL query over Loki."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

import httpx2

from k3sops.adapters.kube import KubeAdapter, api_path, status_message
from k3sops.adapters.loki import LokiAdapter
from k3sops.domain import logs as dlogs
from k3sops.domain.alerting import parse_duration
from k3sops.domain.logs import Direction, LogsResult
from k3sops.errors import AdapterError, ConfigError, UsageError
from k3sops.services.context import Settings, kube, monitoring

DEFAULT_LOKI_SINCE = "1h"
DEFAULT_LOKI_LIMIT = 100


def _read_pod_log(k: KubeAdapter, namespace: str, pod: str,
                  params: dict[str, str]) -> list[str]:
    resp = k.request("GET", api_path("v1", "pods", namespace, pod, "log"), params=params,
                     accept=(400, 500, 502, 503, 504))
    if resp.status_code == 400:
        # The request does not fit the pod: unknown container, no previous instance…
        raise UsageError(f"cannot read logs of pod {namespace}/{pod}: "
                         f"{status_message(resp.content)}",
                         hint="check -c/--container and --previous against "
                              f"`kubectl -n {namespace} get pod {pod} -o yaml`")
    if resp.status_code >= 500:
        raise AdapterError(f"the API server {k.server} could not get the logs of pod "
                           f"{namespace}/{pod} (HTTP {resp.status_code}): "
                           f"{status_message(resp.content)}",
                           hint="it fetches them from the kubelet of the pod's node: "
                                "check that node's addresses and that its kubelet answers")
    return resp.text.splitlines()


def pod_logs(settings: Settings, env: Mapping[str, str], home: Path, *, pod: str,
             namespace: str | None = None, container: str | None = None,
             previous: bool = False, tail: int | None = None,
             since: str | None = None) -> LogsResult:
    """A pod's logs from the API server (what `kubectl logs` shows), with timestamps parsed.

    Raises:
        UsageError: bad --since or --tail, or the request does not fit the pod (container,
            previous instance).
        NotFound: no such pod.
    """
    if tail is not None and tail < 0:
        raise UsageError(f"--tail must be 0 or more (got {tail})")
    params: dict[str, str] = {"timestamps": "true"}
    if since is not None:
        params["sinceSeconds"] = str(int(parse_duration(since).total_seconds()))
    if container:
        params["container"] = container
    if previous:
        params["previous"] = "true"
    if tail is not None:
        params["tailLines"] = str(tail)
    k = kube(settings, env, home)
    try:
        ns = namespace or k.namespace
        lines = _read_pod_log(k, ns, pod, params)
        server = k.server
    finally:
        k.close()
    target = f"{ns}/{pod}" + (f"/{container}" if container else "")
    return LogsResult(source="kubernetes", endpoint=server, target=target,
                      lines=dlogs.kube_lines(lines))


def loki_logs(settings: Settings, env: Mapping[str, str], home: Path, *, now: datetime,
              query: str | None = None, pod: str | None = None, namespace: str | None = None,
              container: str | None = None, since: str | None = None,
              limit: int | None = None, direction: Direction = Direction.backward,
              transport: httpx2.BaseTransport | None = None) -> LogsResult:
    """Log lines from Loki: ``query`` (LogQL), or the pod's stream selector; oldest first.

    ``transport`` replaces the network for URL endpoints (tests with recorded answers).

    Raises:
        ConfigError: Loki is not configured (monitoring.loki in platform.yaml).
        UsageError: bad --since/--limit, neither a query nor a pod, or Loki rejected the query.
    """
    endpoint = monitoring(settings).loki
    if endpoint is None:
        raise ConfigError("Loki is not configured, so --query/--loki cannot be used",
                          hint="set monitoring.loki (url or service) in platform.yaml, or "
                               "drop --query/--loki to read logs through the Kubernetes API")
    if query is None:
        if pod is None:
            raise UsageError("give a pod or a LogQL --query",
                             hint="k3sops logs POD -n NS --loki, or --query '{app=\"web\"}'")
        query = dlogs.pod_selector(namespace or "default", pod, container)
    window = parse_duration(since) if since is not None else timedelta(hours=1)
    q = dlogs.loki_query(query, now, window, limit if limit is not None else DEFAULT_LOKI_LIMIT,
                         direction)
    k = kube(settings, env, home) if endpoint.url is None else None
    try:
        loki = LokiAdapter.from_endpoint(endpoint, k, transport)
        try:
            body = loki.query_range(q.params())
            where = loki.where
        finally:
            loki.close()
    finally:
        if k is not None:
            k.close()
    return LogsResult(source="loki", endpoint=where, target=q.query,
                      lines=dlogs.loki_lines(body, where))
