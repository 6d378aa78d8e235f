"""`k3sops dashboards render`: build the dashboards, write them, check their queries."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from k3sops.adapters.files import write_atomic
from k3sops.adapters.kube import KubeAdapter
from k3sops.adapters.prometheus import HttpApi
from k3sops.domain import dashboards as dd
from k3sops.errors import AdapterError, K3sopsError, NotFound, Timeout, Unauthorized, Unreachable
from k3sops.services.context import Settings, kube, monitoring

__all__ = ["check", "render", "stdout_text", "write"]

# These mean Prometheus itself cannot be asked: stop, rather than mark every panel as failed.
_FATAL = (Unreachable, Timeout, Unauthorized, NotFound)
# HttpApi prefixes Prometheus' own error with where and what was sent; the panel row says that.
_HTTP_PREFIX = re.compile(r"^.*? failed \(HTTP \d+\): ")


def render(settings: Settings, environment: str | None) -> list[dd.RenderedDashboard]:
    """Render every dashboard for the platform (narrowed to ``environment`` when given).

    Raises:
        UsageError: ``environment`` is unknown, or given without a platform.yaml.
    """
    ctx = dd.DashboardContext.from_platform(settings.platform, environment)
    return dd.render_all(ctx)


def _namespace(settings: Settings) -> str:
    return monitoring(settings).namespace


def stdout_text(settings: Settings, dashboards: list[dd.RenderedDashboard],
                as_configmaps: bool) -> str:
    """The dashboards as one text for stdout.

    Returns:
        With ``as_configmaps``, a multi-document YAML stream of ConfigMaps; otherwise one JSON
        object mapping each file name (``k3sops-<name>.json``) to its dashboard.
    """
    if as_configmaps:
        return dd.configmaps_yaml(dashboards, _namespace(settings))
    doc = {d.definition.file_name: d.json_model for d in dashboards}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def write(settings: Settings, dashboards: list[dd.RenderedDashboard], out_dir: Path,
          as_configmaps: bool) -> list[dd.WrittenFile]:
    """Write each dashboard to ``out_dir`` atomically (a reader never sees half a file).

    Files are ``k3sops-<name>.json``, or ``k3sops-<name>.yaml`` holding a ConfigMap with
    ``as_configmaps``. ``out_dir`` is created if missing.

    Raises:
        K3sopsError: the directory or a file cannot be written.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise K3sopsError(f"cannot create output directory {out_dir}: {e.strerror}",
                          hint="choose another --out or fix its permissions") from e
    written = []
    for d in dashboards:
        if as_configmaps:
            path = out_dir / f"{d.definition.uid}.yaml"
            text = dd.to_yaml(dd.configmap(d, _namespace(settings)))
        else:
            path = out_dir / d.definition.file_name
            text = dd.dashboard_json(d)
        _write_atomic(path, text)
        written.append(dd.WrittenFile(dashboard=d.definition.uid, title=d.definition.title,
                                      panels=len(d.definition.panels), path=str(path),
                                      kind="configmap" if as_configmaps else "json"))
    return written


def _write_atomic(path: Path, text: str) -> None:
    try:
        write_atomic(path, text)  # 0644: dashboards are not secret
    except OSError as e:
        raise K3sopsError(f"cannot write {path}: {e.strerror}",
                          hint="check that the --out directory is writable") from e


def check(settings: Settings, dashboards: list[dd.RenderedDashboard], env: Mapping[str, str],
          home: Path) -> dd.CheckReport:
    """Run every panel query of ``dashboards`` against Prometheus (instant query, now).

    Template variables are replaced with ``.*`` (Grafana's "All"). A query Prometheus rejects
    is an ``error`` row; an empty answer is ``no data`` (a problem only for panels that expect
    data on a healthy platform).

    Raises:
        Unreachable, Timeout, Unauthorized, NotFound: Prometheus cannot be asked at all.
    """
    endpoint = monitoring(settings).prometheus
    k: KubeAdapter | None = kube(settings, env, home) if endpoint.service is not None else None
    api: HttpApi | None = None
    try:
        api = HttpApi.from_endpoint("Prometheus", endpoint, k)
        results = []
        for d in dashboards:
            for q in dd.panel_queries(d):
                try:
                    body = api.get_json("/api/v1/query", {"query": q.query})
                except _FATAL:
                    raise
                except AdapterError as e:
                    results.append(dd.failed(q, _HTTP_PREFIX.sub("", e.message)))
                    continue
                results.append(dd.classify(q, body))
        return dd.CheckReport(prometheus=api.how, panels=results)
    finally:
        if api is not None:
            api.close()
        if k is not None:
            k.close()
