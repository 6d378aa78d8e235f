"""Dashboards as ConfigMaps for Grafana's dashboard sidecar, and their JSON/YAML text."""

from __future__ import annotations

import json
from typing import Any

import yaml

from k3sops.domain.dashboards.model import RenderedDashboard
from k3sops.errors import UsageError

__all__ = ["SIDECAR_LABEL", "configmap", "configmaps_yaml", "dashboard_json", "to_yaml"]

SIDECAR_LABEL = ("grafana_dashboard", "1")
"""The label Grafana's sidecar (k8s-sidecar, kube-prometheus-stack default) watches for."""
# The API server rejects objects over 1 MiB (etcd's request limit); fail early with a reason.
_CONFIGMAP_MAX_BYTES = 1024 * 1024


def dashboard_json(d: RenderedDashboard) -> str:
    """The dashboard JSON as written to files: sorted keys, so re-renders diff cleanly."""
    return json.dumps(d.json_model, indent=2, sort_keys=True) + "\n"


def configmap(d: RenderedDashboard, namespace: str) -> dict[str, Any]:
    """A ConfigMap holding the dashboard JSON under ``k3sops-<name>.json``.

    Args:
        d: The rendered dashboard.
        namespace: Namespace Grafana's sidecar watches (platform.yaml ``monitoring.namespace``).

    Raises:
        UsageError: the JSON is too large for a ConfigMap.
    """
    body = dashboard_json(d)
    if len(body.encode()) > _CONFIGMAP_MAX_BYTES:
        raise UsageError(f"dashboard {d.definition.uid} is {len(body.encode())} bytes, over "
                         "the 1 MiB a ConfigMap can hold",
                         hint="render it as a file (without --configmap) and import it")
    key, value = SIDECAR_LABEL
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"k3sops-dashboard-{d.definition.name}",
            "namespace": namespace,
            "labels": {
                key: value,
                "app.kubernetes.io/managed-by": "k3sops",
                "app.kubernetes.io/part-of": "k3sops",
            },
        },
        "data": {d.definition.file_name: body},
    }


class _LiteralDumper(yaml.SafeDumper):
    """Writes multi-line strings as ``|`` blocks so the embedded JSON stays readable."""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_LiteralDumper.add_representer(str, _str_presenter)


def to_yaml(obj: dict[str, Any]) -> str:
    """One Kubernetes object as a YAML document (JSON bodies as literal blocks)."""
    return yaml.dump(obj, Dumper=_LiteralDumper, sort_keys=False, allow_unicode=True)


def configmaps_yaml(dashboards: list[RenderedDashboard], namespace: str) -> str:
    """All dashboards as one multi-document YAML stream (``kubectl apply -f -`` ready)."""
    return "---\n".join(to_yaml(configmap(d, namespace)) for d in dashboards)
