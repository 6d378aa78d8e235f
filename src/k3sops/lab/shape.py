"""Shape the lab cluster like a K3s platform: nodes, system namespaces, monitoring, CRDs, apps.

Everything is created through the real API server; pods are scheduled by the real scheduler
onto kwok's fake nodes and reported Running by kwok's stages.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from k3sops.errors import LabError
from k3sops.lab.layout import LabLayout

K3S_VERSION = "v1.34.4+k3s1"
ENVIRONMENTS = ("development", "staging", "production")
LAB_CONTEXT = "k3sops-lab"
SCENARIO_NAMESPACE = "development"


def kubectl(layout: LabLayout, binaries: Mapping[str, Path], *args: str,
            stdin: str | None = None, timeout: float = 180) -> str:
    """Run the lab's kubectl against the lab (admin kubeconfig); raise LabError on failure."""
    cmd = [str(binaries["kubectl"]), "--kubeconfig", str(layout.run_dir / "admin.kubeconfig"),
           *args]
    try:
        out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout,
                             check=False)
    except subprocess.TimeoutExpired as e:
        raise LabError(f"kubectl {' '.join(args[:3])} timed out after {timeout:g}s") from e
    if out.returncode != 0:
        raise LabError(f"kubectl {' '.join(args[:4])} failed: {out.stderr.strip()[-1500:]}")
    return out.stdout


def apply(layout: LabLayout, binaries: Mapping[str, Path], docs: list[dict[str, Any]]) -> None:
    """Server-side apply a list of objects in one kubectl call."""
    text = yaml.safe_dump_all(docs, sort_keys=False)
    kubectl(layout, binaries, "apply", "--server-side", "--force-conflicts",
            "--field-manager=k3sops-lab", "-f", "-", stdin=text)


def node(name: str, server: bool, ip_index: int) -> dict[str, Any]:
    """A fake node labelled and annotated the way K3s labels its servers and agents."""
    labels = {
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "k3s", "type": "kwok",
    }
    if server:
        labels.update({"node-role.kubernetes.io/control-plane": "true",
                       "node-role.kubernetes.io/master": "true",
                       "node-role.kubernetes.io/etcd": "true"})
    cpu, mem = ("4", "8Gi") if server else ("8", "16Gi")
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {
            "kwok.x-k8s.io/node": "fake",
            "k3s.io/hostname": name, "k3s.io/internal-ip": f"192.0.2.{10 + ip_index}",
            "k3s.io/node-args": '["server","--cluster-init"]' if server else '["agent"]',
            **({"etcd.k3s.cattle.io/node-name": f"{name}-1a2b3c4d",
                "etcd.k3s.cattle.io/node-address": f"192.0.2.{10 + ip_index}"} if server else {}),
        }},
        "spec": {},
        "status": {
            "capacity": {"cpu": cpu, "memory": mem, "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": cpu, "memory": mem, "pods": "110",
                            "ephemeral-storage": "95Gi"},
            "nodeInfo": {"kubeletVersion": K3S_VERSION, "kubeProxyVersion": K3S_VERSION,
                         "containerRuntimeVersion": "containerd://2.0.5-k3s1",
                         "kernelVersion": "6.1.0-28-amd64", "osImage": "Debian GNU/Linux 12",
                         "operatingSystem": "linux", "architecture": "amd64"},
            # K3s' etcd controller keeps this condition on servers; kwok leaves it alone.
            **({"conditions": [{"type": "EtcdIsVoter", "status": "True",
                                "reason": "MemberNotLearner",
                                "message": "Node is a voting member of the etcd cluster"}]}
               if server else {}),
        },
    }


def _ns(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels or {}}}


def _container(name: str, image: str, port: int | None, cpu: str = "50m",
               mem: str = "64Mi", limit_mem: str | None = "256Mi") -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image,
                         "resources": {"requests": {"cpu": cpu, "memory": mem}}}
    if limit_mem:
        c["resources"]["limits"] = {"memory": limit_mem}
    if port:
        c["ports"] = [{"containerPort": port, "name": "http"}]
    return c


def workload(kind: str, name: str, ns: str, image: str, port: int | None, replicas: int = 1,
             labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """A Deployment, StatefulSet or DaemonSet with one container."""
    sel = {"app.kubernetes.io/name": name}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": sel},
        "template": {"metadata": {"labels": {**sel, **(labels or {})}},
                     "spec": {"containers": [_container(name, image, port)],
                              "terminationGracePeriodSeconds": 0}},
    }
    if kind != "DaemonSet":
        spec["replicas"] = replicas
    if kind == "StatefulSet":
        spec["serviceName"] = name
    spec.update(extra)
    return {"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": name, "namespace": ns, "labels": sel}, "spec": spec}


def service(name: str, ns: str, port: int, target: int, selector: dict[str, str] | None = None,
            svc_type: str = "ClusterIP", cluster_ip: str | None = None) -> dict[str, Any]:
    """A Service (selector defaults to the workload of the same name)."""
    spec: dict[str, Any] = {
        "type": svc_type,
        "selector": selector if selector is not None else {"app.kubernetes.io/name": name},
        "ports": [{"name": "http", "port": port, "targetPort": target}],
    }
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


def crd_documents() -> list[dict[str, Any]]:
    """The structural CRDs shipped in k3sops.lab/crds (Longhorn, MetalLB, ArgoCD, k3s, ...)."""
    docs: list[dict[str, Any]] = []
    for entry in sorted(resources.files("k3sops.lab").joinpath("crds").iterdir(),
                        key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(entry.read_text()) if d]
    return docs


def platform_objects(servers: int, agents: int) -> list[dict[str, Any]]:
    """Nodes, namespaces and workloads of a small K3s platform."""
    nodes = [node(f"k3s-server-{i}", True, i) for i in range(1, servers + 1)]
    nodes += [node(f"k3s-agent-{i}", False, servers + i) for i in range(1, agents + 1)]
    docs: list[dict[str, Any]] = [*nodes]
    docs += [_ns(n) for n in ("monitoring", "longhorn-system", "metallb-system", "argocd")]
    docs += [_ns(e, {"k3sops.io/environment": e}) for e in ENVIRONMENTS]
    ks = "kube-system"
    docs += [
        workload("Deployment", "coredns", ks, "rancher/mirrored-coredns-coredns:1.12.3", 53,
                 replicas=2, labels={"k8s-app": "kube-dns"}),
        {**service("kube-dns", ks, 53, 53, {"k8s-app": "kube-dns"}, cluster_ip="10.43.0.10"),
         "metadata": {"name": "kube-dns", "namespace": ks, "labels": {"k8s-app": "kube-dns"}}},
        workload("Deployment", "local-path-provisioner", ks,
                 "rancher/local-path-provisioner:v0.0.32", None),
        workload("Deployment", "metrics-server", ks, "rancher/mirrored-metrics-server:v0.8.0",
                 10250),
        workload("Deployment", "traefik", ks, "rancher/mirrored-library-traefik:3.3.6", 8000),
        service("traefik", ks, 80, 8000, svc_type="ClusterIP"),
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
         "metadata": {"name": "traefik",
                      "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
         "spec": {"controller": "traefik.io/ingress-controller"}},
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path",
         "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete"},
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": "longhorn",
                      "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
         "provisioner": "driver.longhorn.io", "allowVolumeExpansion": True,
         "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
         "parameters": {"numberOfReplicas": "3", "staleReplicaTimeout": "30"}},
    ]
    mon = "monitoring"
    docs += [
        workload("StatefulSet", "prometheus-server", mon, "quay.io/prometheus/prometheus:v2.42.0",
                 9090),
        service("prometheus-server", mon, 80, 9090),
        workload("StatefulSet", "alertmanager", mon, "quay.io/prometheus/alertmanager:v0.25.0",
                 9093),
        service("alertmanager", mon, 9093, 9093),
        workload("Deployment", "grafana", mon, "grafana/grafana:11.6.0", 3000),
        service("grafana", mon, 80, 3000),
        workload("StatefulSet", "loki", mon, "grafana/loki:3.4.2", 3100),
        service("loki", mon, 3100, 3100),
        workload("Deployment", "kube-state-metrics", mon,
                 "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.16.0", 8080),
        service("kube-state-metrics", mon, 8080, 8080),
        workload("DaemonSet", "node-exporter", mon, "quay.io/prometheus/node-exporter:v1.5.0",
                 9100),
    ]
    docs += [
        workload("DaemonSet", "longhorn-manager", "longhorn-system",
                 "longhornio/longhorn-manager:v1.9.1", 9500),
        workload("Deployment", "longhorn-ui", "longhorn-system", "longhornio/longhorn-ui:v1.9.1",
                 8000),
        workload("Deployment", "controller", "metallb-system", "quay.io/metallb/controller:v0.15.2",
                 7472),
        workload("DaemonSet", "speaker", "metallb-system", "quay.io/metallb/speaker:v0.15.2",
                 7472),
        workload("Deployment", "argocd-server", "argocd", "quay.io/argoproj/argocd:v3.1.0", 8080),
    ]
    for i, env in enumerate(ENVIRONMENTS, start=1):
        docs += [workload("Deployment", "web", env, "nginx:1.27", 8080, replicas=i),
                 service("web", env, 80, 8080)]
    docs += [workload("StatefulSet", "postgres", "production", "postgres:15", 5432),
             service("postgres", "production", 5432, 5432)]
    return docs


def custom_objects() -> list[dict[str, Any]]:
    """Objects of the CRDs (MetalLB pool and advertisement) that a K3s platform has."""
    return [
        {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
         "metadata": {"name": "default", "namespace": "metallb-system"},
         # TEST-NET-1 (RFC 5737): documentation addresses, never routed; nothing is sent there.
         "spec": {"addresses": ["192.0.2.240-192.0.2.250"]}},
        {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
         "metadata": {"name": "default", "namespace": "metallb-system"},
         "spec": {"ipAddressPools": ["default"]}},
    ]


def kwok_rules(layout: LabLayout) -> list[dict[str, object]]:
    """Kwok exec/logs/port-forward rules that connect lab pods to the real local processes."""
    api = "kwok.x-k8s.io/v1alpha1"
    pod_logs = layout.run_dir / "pod-logs"
    return [
        {"apiVersion": api, "kind": "ClusterExec", "metadata": {"name": "postgres"},
         "spec": {"selector": {"matchNamespaces": ["production"], "matchNames": ["postgres-0"]},
                  "execs": [{"local": {"workDir": str(layout.run_dir), "envs": [
                      {"name": "PGHOST", "value": layout.host},
                      {"name": "PGPORT", "value": str(layout.port("postgres"))},
                      {"name": "PGUSER", "value": "postgres"},
                      {"name": "PATH", "value": "/usr/lib/postgresql/15/bin:/usr/bin:/bin"}]}}]}},
        {"apiVersion": api, "kind": "ClusterPortForward", "metadata": {"name": "prometheus"},
         "spec": {"selector": {"matchNamespaces": ["monitoring"],
                               "matchNames": ["prometheus-server-0"]},
                  "forwards": [{"ports": [9090], "target": {
                      "port": layout.port("prometheus"), "address": layout.host}}]}},
        {"apiVersion": api, "kind": "ClusterPortForward", "metadata": {"name": "alertmanager"},
         "spec": {"selector": {"matchNamespaces": ["monitoring"], "matchNames": ["alertmanager-0"]},
                  "forwards": [{"ports": [9093], "target": {
                      "port": layout.port("alertmanager"), "address": layout.host}}]}},
        {"apiVersion": api, "kind": "ClusterLogs", "metadata": {"name": "all-pods"},
         "spec": {"logs": [{"logsFile": str(pod_logs / "current.log"),
                            "previousLogsFile": str(pod_logs / "previous.log"),
                            "follow": False}]}},
    ]


def write_pod_logs(layout: LabLayout) -> None:
    """The log lines kwok serves for `kubectl logs` of lab pods (CRI log format, as kubelet's)."""
    d = layout.run_dir / "pod-logs"
    d.mkdir(parents=True, exist_ok=True)

    def cri(lines: list[tuple[str, str]]) -> str:
        return "".join(f"2026-01-01T00:00:{i:02d}.000000000Z {stream} F {text}\n"
                       for i, (stream, text) in enumerate(lines))

    (d / "current.log").write_text(cri([
        ("stdout", 'level=info msg="starting" component=app'),
        ("stdout", 'level=info msg="listening" addr=:8080')]))
    (d / "previous.log").write_text(cri([
        ("stdout", 'level=info msg="starting" component=app'),
        ("stderr", 'level=error msg="cannot connect to database" '
                   'err="dial tcp 10.43.12.7:5432: connect: connection refused"'),
        ("stderr", "panic: dial tcp: connection refused")]))


def shape(layout: LabLayout, binaries: Mapping[str, Path], servers: int, agents: int,
          progress: Callable[[str], None]) -> None:
    """Create the platform's objects and wait until nodes are Ready and workloads available."""
    progress("installing CRDs")
    apply(layout, binaries, crd_documents())
    kubectl(layout, binaries, "wait", "--for=condition=Established", "crd", "--all",
            "--timeout=60s")
    progress(f"creating {servers} servers, {agents} agents and platform workloads")
    # The default ServiceAccount must exist before pods are admitted in a new namespace.
    apply(layout, binaries, platform_objects(servers, agents))
    apply(layout, binaries, custom_objects())
    progress("waiting for nodes to be Ready")
    # A lab restarted with scenarios still applied keeps its injected faults: wait only for
    # what the scenarios did not break.
    kubectl(layout, binaries, "wait", "--for=condition=Ready", "node", "-l",
            "!node-not-ready.stage.kwok.x-k8s.io", "--timeout=120s")
    progress("waiting for workloads to be available")
    kubectl(layout, binaries, "wait", "--for=condition=Available", "deployment", "-A",
            "-l", "!k3sops.io/scenario", "--timeout=180s", timeout=240)
    for ns, sts in (("monitoring", "prometheus-server"), ("monitoring", "alertmanager"),
                    ("production", "postgres")):
        kubectl(layout, binaries, "-n", ns, "rollout", "status", f"statefulset/{sts}",
                "--timeout=120s", timeout=180)


def _backup_section(layout: LabLayout, binaries: Mapping[str, Path]) -> dict[str, Any]:
    """The lab's backup settings.

    A local restic repository and its password file, the lab's etcd (plain HTTP on
    loopback) and binaries, and the PostgreSQL pod as a target.
    """
    pw = layout.run_dir / "restic-password"
    if not pw.is_file():
        import secrets  # only the lab needs a generated password

        pw.write_text(secrets.token_urlsafe(24) + "\n")
        pw.chmod(0o600)
    bins: dict[str, str] = {k: str(binaries[k]) for k in ("etcdctl", "etcdutl", "etcd",
                                                          "kubectl") if k in binaries}
    if "postgres" in binaries:
        bins["pg_bin_dir"] = str(binaries["postgres"].parent)
    return {
        "repository": str(layout.data_dir / "restic"),
        "password_file": str(pw),
        "binaries": bins,
        "etcd": {"endpoints": [layout.url("etcd")]},
        "metrics_file": str(layout.run_dir / "textfile" / "k3sops_backup.prom"),
        "targets": [{"name": "shop-db", "kind": "postgres", "environment": "production",
                     "namespace": "production", "pod": "postgres-0", "database": "postgres"}],
    }


def write_platform_file(layout: LabLayout, binaries: Mapping[str, Path] | None = None) -> None:
    """platform.yaml describing the lab, for `k3sops --config <run>/platform.yaml ...`."""
    doc: dict[str, Any] = {
        "name": "k3sops-lab",
        "kubeconfig": str(layout.kubeconfig),
        "environments": {
            env: {"context": LAB_CONTEXT, "namespaces": [env],
                  "promotion": ({"policy": "auto"} if env == "development" else
                                {"policy": "manual"} if env == "staging" else
                                {"policy": "approval", "approvers": ["ops-lead"]})}
            for env in ENVIRONMENTS
        },
        "monitoring": {
            "namespace": "monitoring",
            # The lab's Prometheus runs on loopback: the API server refuses to proxy to loopback
            # addresses, so the lab names URLs (a real cluster would name the Service).
            "prometheus": {"url": layout.url("prometheus")},
            "alertmanager": {"url": layout.url("alertmanager")},
            "rule_files_dir": str(layout.run_dir / "rules"),
        },
    }
    text = "# Written by `k3sops lab up`: the local lab as a platform.\n" + yaml.safe_dump(
        doc, sort_keys=False)
    layout.platform_file.write_text(text)
    if binaries is not None:
        # A second file: a platform with a backup section that has never been backed up is,
        # rightly, reported by `check` (backup-missing, restore drills due); the healthy
        # lab's platform.yaml stays without one.
        doc["backup"] = _backup_section(layout, binaries)
        backup_file(layout).write_text(
            "# Written by `k3sops lab up`: the lab as a platform, with backups "
            "(k3sops -c THIS_FILE backup ...).\n" + yaml.safe_dump(doc, sort_keys=False))


def backup_file(layout: LabLayout) -> Path:
    """The lab's platform file with a backup section (next to platform.yaml)."""
    return layout.platform_file.with_name("platform-backup.yaml")


def ensure(condition: bool, message: str) -> None:
    """Raise LabError unless condition holds."""
    if not condition:
        raise LabError(message)
