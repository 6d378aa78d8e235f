"""Configuration files of the lab's processes (pure text builders)."""

from __future__ import annotations

from pathlib import Path

import yaml

from k3sops.lab.layout import LabLayout
from k3sops.lab.pki import Pki

CLUSTER_LABEL = "k3sops-lab"


def prometheus_yaml(layout: LabLayout, pki: Pki) -> str:
    """prometheus.yml: scrape every lab component, alert to the lab's Alertmanager."""
    h = layout.host
    tls = {"ca_file": str(pki.crt("ca")), "cert_file": str(pki.crt("admin")),
           "key_file": str(pki.key("admin"))}

    def job(name: str, port: str, scheme: str = "http", path: str = "/metrics",
            extra: dict[str, object] | None = None) -> dict[str, object]:
        j: dict[str, object] = {"job_name": name, "scheme": scheme, "metrics_path": path,
                                "static_configs": [{"targets": [f"{h}:{layout.port(port)}"]}]}
        if scheme == "https":
            j["tls_config"] = tls
        j.update(extra or {})
        return j

    cfg = {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s",
                   "external_labels": {"cluster": CLUSTER_LABEL}},
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [f"{h}:{layout.port('alertmanager')}"]}]}]},
        "rule_files": [str(layout.run_dir / "rules" / "*.yml")],
        "scrape_configs": [
            job("prometheus", "prometheus"),
            job("alertmanager", "alertmanager"),
            job("node-exporter", "node-exporter",
                extra={"relabel_configs": [{"target_label": "node", "replacement": "lab-host"}]}),
            job("apiserver", "apiserver", "https"),
            job("kube-controller-manager", "controller-manager", "https"),
            job("kube-scheduler", "scheduler", "https"),
            job("etcd", "etcd-metrics"),
            job("kube-state-metrics", "kube-state-metrics",
                extra={"honor_labels": True}),
            job("kwok", "kwok", "https"),
            kubelet_resource_job(layout, tls),
        ],
    }
    return yaml.safe_dump(cfg, sort_keys=False)


def kubelet_resource_job(layout: LabLayout, tls: dict[str, str]) -> dict[str, object]:
    """Scrape job "kubelet": each kwok node's /metrics/resource, as a kubelet serves it.

    kwok serves every node it manages on its one port, at /metrics/nodes/NODE/metrics/resource
    (container_cpu_usage_seconds_total, container_memory_working_set_bytes, ...), and lists
    those paths for Prometheus' HTTP service discovery at /discovery/prometheus, so nodes added
    later are scraped too (the Debian Prometheus has no Kubernetes discovery).
    """
    kwok = f"{layout.host}:{layout.port('kwok')}"
    return {
        "job_name": "kubelet", "scheme": "https", "tls_config": tls,
        "http_sd_configs": [{"url": f"https://{kwok}/discovery/prometheus",
                             "refresh_interval": "15s", "tls_config": tls}],
        "relabel_configs": [
            {"source_labels": ["__metrics_path__"], "regex": "/metrics/nodes/([^/]+)/.*",
             "target_label": "node", "replacement": "$1"},
            {"source_labels": ["metrics_name"], "regex": "metrics-resource", "action": "keep"},
            {"target_label": "metrics_path", "replacement": "/metrics/resource"},
            {"regex": "metrics_name", "action": "labeldrop"},
        ],
    }


def alertmanager_yaml() -> str:
    """alertmanager.yml: one default receiver (no delivery: the API is what the lab tests)."""
    cfg = {
        "route": {"receiver": "default", "group_by": ["alertname", "namespace"],
                  "group_wait": "5s", "group_interval": "30s", "repeat_interval": "4h"},
        "receivers": [{"name": "default"}],
    }
    return yaml.safe_dump(cfg, sort_keys=False)


def audit_policy_yaml() -> str:
    """The API server's audit policy: ServiceAccounts' requests at Metadata level, nothing else.

    Who asked for which verb on which resource, and the answer's code, without bodies: what
    the RBAC proof reads (tests/lab/test_rbac_lab.py). The lab's own components (controllers,
    scheduler, kwok) use certificates, not ServiceAccounts, so their traffic is not logged.
    """
    cfg = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
           "omitStages": ["RequestReceived"],
           "rules": [{"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
                     {"level": "None"}]}
    return yaml.safe_dump(cfg, sort_keys=False)


def audit_log_path(layout: LabLayout) -> Path:
    """Where the API server writes its audit log (JSON lines, rotated at 50 MB)."""
    return layout.log_dir / "audit.log"


def write(path: Path, text: str) -> Path:
    """Write a config file (creating its directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
