"""The k3sops chart (deploy/helm/k3sops) with real Helm, and installed into the lab's API server.

`helm lint --strict` and `helm template` with the default values and with `rbac.mode=operator`,
one and two replicas, PostgreSQL, TLS, the ServiceMonitor, the PrometheusRule and the backup
CronJobs on; the rendered objects are checked for restricted Pod Security on every container,
the NetworkPolicy's exact ports, no Secret value anywhere, and a platform.yaml that k3sops
itself loads, whose secret files are the ones the pods mount. Then `helm install` into the
lab's API server (pods do not run there, but every object is created and validated, the
ServiceMonitor and PrometheusRule against the lab's monitoring.coreos.com CRDs) in a namespace
that enforces the restricted Pod Security Standard, so the API server's PodSecurity admission
judges the pods the Deployment and the CronJobs create; `helm uninstall` leaves nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kit.chart import CHART, by_kind, helm, pod_specs, set_args, template
from kit.serve import PORT_OFFSET, Rbac, get, kill, start

from conftest import Lab, wait_for
from k3sops.config import load_platform

pytestmark = pytest.mark.lab
NS = f"t-chart-{uuid.uuid4().hex[:6]}"
RELEASE = "k3sops"
DB_URL = "postgresql://k3sops@db.example:5432/k3sops?sslmode=require"
# Names of Secrets the values refer to (the chart mounts them; it never holds a value).
SECRETS = {"db-password", "restic-password", "serve-tls", "am-token", "prom-token",
           "ops-webhook"}
FULL: dict[str, Any] = {
    "database.url": DB_URL, "database.passwordSecret.name": "db-password",
    "serve.tls.enabled": True, "serve.tls.secretName": "serve-tls",
    "serve.alertmanagerTokenSecret.name": "am-token",
    "serve.receivers": [{"name": "ops", "type": "webhook",
                         "urlSecret": {"name": "ops-webhook", "key": "url"}}],
    "serviceMonitor.enabled": True, "serviceMonitor.bearerTokenSecret.name": "prom-token",
    "serviceMonitor.tlsConfig": {"ca": {"secret": {"name": "serve-tls", "key": "ca.crt"}},
                                 "serverName": "k3sops"},
    "prometheusRule.enabled": True,
    "backup.enabled": True, "backup.passwordSecret.name": "restic-password",
    "config.backup": {"repository": "/var/lib/k3sops/restic", "password_env": "RESTIC_PW"},
    "networkPolicy.receivers.ports": [443],
}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "operator": {"rbac.mode": "operator"},
    "one-replica": {"replicaCount": 1},
    "two-replicas-postgres": {"replicaCount": 2, "database.url": DB_URL,
                              "database.passwordSecret.name": "db-password"},
    "service-monitor": {"serviceMonitor.enabled": True},
    "everything": FULL,
}


def _keys(node: Any) -> set[str]:
    """Every key at any depth of a parsed YAML document."""
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    return {k for v in node for k in _keys(v)} if isinstance(node, list) else set()


def _notes(values: dict[str, Any]) -> str:
    out = helm("install", RELEASE, str(CHART), "-n", NS, "--dry-run=client", *set_args(values))
    return out.stdout.partition("NOTES:")[2]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_lint_is_clean_in_strict_mode(variant: str) -> None:
    out = helm("lint", "--strict", str(CHART), *set_args(VARIANTS[variant]))
    assert "0 chart(s) failed" in out.stdout
    assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout, out.stdout


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_container_is_restricted_and_has_resources(variant: str) -> None:
    objects = template(VARIANTS[variant])
    pods = pod_specs(objects)
    assert "Deployment/k3sops" in pods
    if variant == "everything":
        assert sorted(pods) == ["CronJob/k3sops-backup-etcd", "CronJob/k3sops-verify-weekly",
                                "Deployment/k3sops"]
    for where, spec in pods.items():
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] == 65532, where
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec), where
        emptydirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        assert not [v for v in spec["volumes"] if "hostPath" in v], where
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert "privileged" not in sc
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
            assert c["resources"]["limits"]["memory"], where
            # the root filesystem is read-only: what is written goes to the emptyDirs
            writable = {m["name"]: m["mountPath"] for m in c["volumeMounts"]
                        if not m.get("readOnly")}
            assert writable == {"state": "/var/lib/k3sops", "tmp": "/tmp"}, where
            assert set(writable) <= emptydirs
            assert c["image"] == "k3sops:0.1.0"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_secret_value_is_rendered(variant: str) -> None:
    objects = template(VARIANTS[variant])
    assert by_kind(objects, "Secret") == []
    text = yaml.safe_dump_all(objects)
    for pod in pod_specs(objects).values():
        for c in pod["containers"]:
            # plain env values are paths and switches only; secrets come as mounted files
            assert {e["name"] for e in c["env"]} == {
                "K3SOPS_CONFIG", "K3SOPS_STATE_DIR", "HOME", "PYTHONDONTWRITEBYTECODE"} | (
                {"K3SOPS_OUTPUT"} if "args" in c and c["args"][0] == "backup" else set())
            assert all("valueFrom" not in e for e in c["env"])
        secret_volumes = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert secret_volumes <= SECRETS
        if variant == "everything":
            assert secret_volumes == SECRETS - {"prom-token"}
    platform = yaml.safe_load(by_kind(objects, "ConfigMap")[0]["data"]["platform.yaml"])
    inline = _keys(platform) & {"password", "token", "url", "alertmanager_token", "credentials"}
    assert not inline, f"platform.yaml holds {inline}"
    assert "BEGIN" not in text  # no key or certificate material


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_platform_yaml_loads_and_names_the_mounted_files(variant: str, tmp_path: Path) -> None:
    values = VARIANTS[variant]
    objects = template(values, namespace=NS)
    config = [o for o in by_kind(objects, "ConfigMap") if "platform.yaml" in o["data"]]
    assert len(config) == 1
    path = tmp_path / "platform.yaml"
    path.write_text(config[0]["data"]["platform.yaml"])
    platform = load_platform(path)  # k3sops' own loader: schema, secrets rule, durations
    assert platform.serve.listen == "0.0.0.0:8443"
    assert (platform.serve.lease.namespace, platform.serve.lease.name) == (NS, "k3sops")
    assert platform.state.database_url == (DB_URL if "database.url" in values else None)
    deploy = by_kind(objects, "Deployment")[0]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["K3SOPS_CONFIG"] == f"{mounts['config']}/platform.yaml"
    assert env["K3SOPS_STATE_DIR"] == mounts["state"]
    # every file platform.yaml names is a key of a mounted Secret, at that path
    files = {f"{mounts[v['name']]}/{item['path']}"
             for v in deploy["spec"]["template"]["spec"]["volumes"] if "secret" in v
             for item in v["secret"]["items"]}
    named = {str(p) for p in (
        platform.state.password_file, platform.serve.alertmanager_token_file,
        platform.serve.tls.cert_file if platform.serve.tls else None,
        platform.serve.tls.key_file if platform.serve.tls else None,
        platform.backup.password_file if platform.backup else None,
        *[r.url_file for r in platform.serve.receivers]) if p is not None}
    assert named == files
    if variant == "everything":
        assert len(named) == 6 and platform.backup is not None
        assert platform.backup.password_env is None  # the mounted file replaces it
    probes = {p: container[p]["httpGet"] for p in
              ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {p["path"] for p in probes.values()} == {"/healthz", "/readyz"}
    assert {p["scheme"] for p in probes.values()} == {
        "HTTPS" if platform.serve.tls else "HTTP"}


@pytest.mark.parametrize("variant", ["default", "everything"])
def test_network_policy_opens_only_the_service_port_and_named_egress(variant: str) -> None:
    objects = template(VARIANTS[variant])
    (policy,) = by_kind(objects, "NetworkPolicy")
    spec = policy["spec"]
    deploy_labels = by_kind(objects, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= deploy_labels.items()
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for p in ingress["from"]] == ["monitoring", "kube-system"]
    egress = sorted((p["protocol"], p["port"]) for rule in spec["egress"]
                    for p in rule["ports"])
    expected = [("TCP", 53), ("TCP", 443), ("TCP", 6443), ("TCP", 9090), ("TCP", 9093),
                ("UDP", 53)]
    if variant == "everything":
        expected = sorted([*expected, ("TCP", 443), ("TCP", 5432)])  # receivers, database
    assert egress == expected
    dns, monitoring = spec["egress"][0], spec["egress"][2]
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert monitoring["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"}


def test_replicas_pdb_and_the_sqlite_warning() -> None:
    one = template(VARIANTS["one-replica"])
    two = template(VARIANTS["default"])
    assert by_kind(one, "Deployment")[0]["spec"]["replicas"] == 1
    assert by_kind(one, "PodDisruptionBudget") == []  # minAvailable 1 would block drains
    (pdb,) = by_kind(two, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == by_kind(two, "Deployment")[0]["spec"]["selector"]
    assert "WARNING: 2 replicas without a database" in _notes({})
    assert "WARNING" not in _notes(VARIANTS["two-replicas-postgres"])
    assert "WARNING" not in _notes(VARIANTS["one-replica"])
    notes = _notes(FULL)
    assert f"url: https://k3sops.{NS}.svc:8443/api/v1/alerts" in notes
    assert "send_resolved: true" in notes and "type: Bearer" in notes


def test_service_monitor_rules_and_dashboards_are_the_generated_ones() -> None:
    objects = template(FULL)
    (service,) = by_kind(objects, "Service")
    (monitor,) = by_kind(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert (endpoint["path"], endpoint["scheme"]) == ("/metrics", "https")
    assert endpoint["authorization"]["credentials"] == {"name": "prom-token", "key": "token"}
    assert endpoint["tlsConfig"]["ca"]["secret"]["name"] == "serve-tls"
    generated = [d for d in yaml.safe_load_all((CHART / "files/prometheusrule.yaml").read_text())
                 if d]
    rules = by_kind(objects, "PrometheusRule")
    assert [r["spec"] for r in rules] == [g["spec"] for g in generated]
    assert [r["metadata"]["labels"]["k3sops.io/environment"] for r in rules] == [
        g["metadata"]["labels"]["k3sops.io/environment"] for g in generated]
    dashboards = [o for o in by_kind(objects, "ConfigMap")
                  if o["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert {name: json.loads(body) for d in dashboards for name, body in d["data"].items()} == {
        p.name: json.loads(p.read_text()) for p in (CHART / "files/dashboards").iterdir()}
    assert by_kind(template({"dashboards.enabled": False}), "ConfigMap")[0]["data"].keys() == {
        "platform.yaml"}


@pytest.fixture(scope="module")
def restricted_namespace(lab: Lab) -> Iterator[str]:
    """A namespace that enforces the restricted Pod Security Standard (PodSecurity admission)."""
    lab.kubectl("create", "namespace", NS)
    lab.kubectl("label", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted",
                "pod-security.kubernetes.io/enforce-version=latest")
    yield NS
    lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def _pod_from(spec: dict[str, Any], name: str) -> str:
    # the chart's ServiceAccount does not exist before the install: the namespace's default
    spec = {k: v for k, v in spec.items() if k != "serviceAccountName"}
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": NS}, "spec": spec})


def test_pod_security_admission_admits_the_pods_and_refuses_a_weakened_one(
        lab: Lab, restricted_namespace: str) -> None:
    for where, spec in pod_specs(template(FULL, namespace=NS)).items():
        ok = lab.kubectl("create", "--dry-run=server", "-f", "-", check=False,
                         input=_pod_from(spec, "probe"))
        assert ok.returncode == 0, (where, ok.stderr)
    # the control: the same pod with privilege escalation allowed is refused
    spec = pod_specs(template({}, namespace=NS))["Deployment/k3sops"]
    spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    refused = lab.kubectl("create", "--dry-run=server", "-f", "-", check=False,
                          input=_pod_from(spec, "weakened"))
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr and "allowPrivilegeEscalation" in \
        refused.stderr


def _exists(lab: Lab, obj: dict[str, Any]) -> bool:
    kind = obj["kind"].lower()
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    resource = f"{kind}.{group}" if group and group not in {"apps", "batch", "policy"} else kind
    ns = obj["metadata"].get("namespace", NS)
    return lab.kubectl("get", resource, obj["metadata"]["name"], "-n", ns,
                       check=False).returncode == 0


def test_helm_install_creates_every_object_and_uninstall_removes_them(
        lab: Lab, restricted_namespace: str) -> None:
    kubeconfig = lab.layout.kubeconfig
    values = {**FULL, "replicaCount": 2, "rbac.mode": "operator"}
    helm("install", RELEASE, str(CHART), "-n", NS, *set_args(values), kubeconfig=kubeconfig)
    try:
        manifest = helm("get", "manifest", RELEASE, "-n", NS, kubeconfig=kubeconfig).stdout
        objects = [d for d in yaml.safe_load_all(manifest) if d]
        kinds = sorted({o["kind"] for o in objects})
        assert {"ConfigMap", "CronJob", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
                "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor"} <= set(kinds)
        missing = [f"{o['kind']}/{o['metadata']['name']}" for o in objects
                   if not _exists(lab, o)]
        assert not missing, f"not created: {missing}"
        # the ReplicaSet controller creates both pods past the restricted PodSecurity admission
        selector = ",".join(f"{k}={v}" for k, v in by_kind(objects, "Deployment")[0]["spec"]
                            ["selector"]["matchLabels"].items())

        def pods() -> list[str]:
            out = lab.kubectl("get", "pods", "-n", NS, "-l", selector, "-o", "name",
                              check=False).stdout.split()
            return out if len(out) == 2 else []

        assert len(wait_for(pods, timeout=60)) == 2
        status = lab.kubectl("get", "deployment", "-n", NS, RELEASE, "-o", "json").stdout
        conditions = json.loads(status)["status"].get("conditions", [])
        assert not [c for c in conditions if c["type"] == "ReplicaFailure"], conditions
    finally:
        helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "60s",
             kubeconfig=kubeconfig)
    left = [f"{o['kind']}/{o['metadata']['name']}" for o in objects if _exists(lab, o)]
    assert not left, f"left behind after uninstall: {left}"
    assert helm("list", "-n", NS, "-q", kubeconfig=kubeconfig).stdout.strip() == ""


def test_the_rendered_platform_yaml_runs_serve_its_probes_answer_and_it_takes_the_lease(
        lab: Lab, restricted_namespace: str, tmp_path: Path) -> None:
    """`k3sops serve` as a host process with the chart's platform.yaml (the lab's admin
    kubeconfig stands in for the pod's ServiceAccount; --listen for the pod's address)."""
    objects = template({"serve.lease.duration": "10s"}, namespace=NS)
    platform = tmp_path / "platform.yaml"
    platform.write_text(by_kind(objects, "ConfigMap")[0]["data"]["platform.yaml"])
    container = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    running = start(lab, Rbac(tokens={}, kubeconfig=lab.layout.kubeconfig, platform=platform,
                              tmp=tmp_path), PORT_OFFSET + 60)
    try:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert get(running, container[probe]["httpGet"]["path"]).status_code == 200, probe

        def holder() -> str:
            out = lab.kubectl("get", "lease", "-n", NS, "k3sops", "-o", "json", check=False)
            return json.loads(out.stdout)["spec"].get("holderIdentity", "") if \
                out.returncode == 0 else ""

        assert wait_for(holder, timeout=30), "the chart's Lease was not taken"
        lease = json.loads(lab.kubectl("get", "lease", "-n", NS, "k3sops", "-o", "json").stdout)
        assert lease["spec"]["leaseDurationSeconds"] == 10
    finally:
        kill(running)


def test_config_given_as_a_platform_file_is_kept_under_the_charts_settings(
        tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("name: shop\nenvironments:\n  staging: {namespaces: [shop]}\n"
                    "serve:\n  listen: 127.0.0.1:1\n  schedule: {daily: '0 6 * * *'}\n")
    objects = template({}, namespace=NS, extra=["--set-file", f"config={mine}"])
    path = tmp_path / "platform.yaml"
    path.write_text(by_kind(objects, "ConfigMap")[0]["data"]["platform.yaml"])
    platform = load_platform(path)
    assert (platform.name, list(platform.environments)) == ("shop", ["staging"])
    assert platform.serve.schedule.daily == "0 6 * * *"
    assert platform.serve.listen == "0.0.0.0:8443"  # the Service's port wins over the file's
    mine.write_text("name: [\n")
    bad = helm("template", "k3sops", str(CHART), "--set-file", f"config={mine}", check=False)
    assert bad.returncode != 0 and "config (platform.yaml) is not valid YAML" in bad.stderr


def test_a_password_in_the_database_url_is_refused_without_echoing_it() -> None:
    bad = helm("template", "k3sops", str(CHART), "--set",
               "database.url=postgresql://k3sops:hunter2@db.example:5432/k3sops", check=False)
    assert bad.returncode != 0
    assert "database.url must not hold the password" in bad.stderr
    assert "hunter2" not in bad.stderr + bad.stdout
    assert "/metrics answers 401 to Prometheus" in _notes({"serviceMonitor.enabled": True})
    assert "/metrics answers 401" not in _notes(FULL)
