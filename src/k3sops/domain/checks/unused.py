"""Weekly hygiene: objects nothing uses — ConfigMaps, Secrets, claims, NetworkPolicies.

"Used" means referenced by a pod or by the template of a workload that makes pods (a
Deployment scaled to 0 still uses its ConfigMap), and for Secrets also by an Ingress (TLS), a
ServiceAccount (image pull secrets), a PersistentVolume or a StorageClass (CSI secrets). What
controllers read through the API is invisible here, so objects a controller owns or manages by
convention (owner references, Helm releases, ServiceAccount tokens, cert-manager certificates,
Grafana dashboards, the platform's Argo CD/Longhorn/MetalLB/cert-manager settings) and the
system namespaces are left out. Everything is
info: worth a look, never urgent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.checks.network import younger_than
from k3sops.domain.findings import Finding
from k3sops.domain.snapshot import ClusterSnapshot, Obj, get, meta

UNUSED_GRACE_SECONDS = 300
"""Objects are often created just before what uses them (a ConfigMap, then its Deployment);
GitOps and Helm apply a release within seconds, five minutes covers a slow one."""
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
WORKLOADS = ("deployments", "statefulsets", "daemonsets", "cronjobs", "jobs", "replicasets")
TEMPLATED_OWNERS = frozenset({"ReplicaSet", "StatefulSet", "DaemonSet", "Job"})
"""Pods whose template is read from their owner (walked once per template, not per pod)."""
SKIPPED_SECRET_TYPES = frozenset({"kubernetes.io/service-account-token", "helm.sh/release.v1",
                                  "bootstrap.kubernetes.io/token"})
MANAGED_ANNOTATIONS = ("cert-manager.io/certificate-name",
                       "control-plane.alpha.kubernetes.io/leader")
MANAGED_LABELS = ("argocd.argoproj.io/secret-type", "grafana_dashboard", "grafana_datasource",
                  "grafana_alert")
PLATFORM_COMPONENTS = frozenset({"argocd", "longhorn", "metallb", "cert-manager"})
"""Platform components that read their own ConfigMaps and Secrets through the API (Argo CD's
argocd-cm, Longhorn's default settings...), recognised by ``app.kubernetes.io/part-of`` or
``app.kubernetes.io/name``."""
ROOT_CA = "kube-root-ca.crt"
CSI_SECRET_PARAMETERS = ("provisioner-secret-name", "controller-publish-secret-name",
                         "node-stage-secret-name", "node-publish-secret-name",
                         "controller-expand-secret-name", "node-expand-secret-name")


def _walk(node: Any, cms: set[str], secrets: set[str]) -> None:
    """Every ConfigMap and Secret name a pod spec refers to, whatever the field.

    Volumes (configMap, secret, projected, CSI ``nodePublishSecretRef``, in-tree
    ``secretRef``), env ``configMapKeyRef``/``secretKeyRef``, ``envFrom``,
    ``imagePullSecrets``: the keys say what they hold, so unknown volume types are covered.
    """
    if isinstance(node, Mapping):
        for key, value in node.items():
            k = str(key).lower()
            if k == "secretname" and isinstance(value, str):
                secrets.add(value)
            elif k == "imagepullsecrets" and isinstance(value, list):
                secrets.update(str(v.get("name")) for v in value if isinstance(v, Mapping))
            elif isinstance(value, Mapping) and "configmap" in k and value.get("name"):
                cms.add(str(value["name"]))
            elif isinstance(value, Mapping) and "secret" in k and (
                    value.get("name") or value.get("secretName")):
                secrets.add(str(value.get("name") or value.get("secretName")))
            _walk(value, cms, secrets)
    elif isinstance(node, list):
        for item in node:
            _walk(item, cms, secrets)


def _pod_specs(snap: ClusterSnapshot) -> Iterable[tuple[str | None, Mapping[str, Any]]]:
    """(namespace, pod spec) of every template and of every pod not made from one."""
    for _, obj, spec in ix.templates(snap, WORKLOADS):
        yield meta(obj)[0], spec
    for pod in snap.get("pods"):
        owner = ix.controller_of(pod)
        if owner is None or owner[0] not in TEMPLATED_OWNERS:
            yield meta(pod)[0], get(pod, "spec", default={}) or {}


def _references(snap: ClusterSnapshot) -> tuple[set[tuple[str | None, str]],
                                                set[tuple[str | None, str]]]:
    """(ConfigMaps, Secrets) referenced by pods and templates, by (namespace, name)."""
    def build() -> tuple[set[tuple[str | None, str]], set[tuple[str | None, str]]]:
        cm_refs: set[tuple[str | None, str]] = set()
        secret_refs: set[tuple[str | None, str]] = set()
        seen: set[int] = set()
        for ns, spec in _pod_specs(snap):
            if id(spec) in seen:
                continue
            seen.add(id(spec))
            cms: set[str] = set()
            secrets: set[str] = set()
            _walk(spec, cms, secrets)
            cm_refs |= {(ns, n) for n in cms}
            secret_refs |= {(ns, n) for n in secrets}
        return cm_refs, secret_refs
    for kind in ("pods", *WORKLOADS):
        snap.get(kind)  # declared-read check before the shared cache is consulted
    return snap.cached("unused:references", build)  # type: ignore[no-any-return]


def _skipped(ctx: CheckContext, obj: Obj) -> bool:
    ns = meta(obj)[0]
    labels = get(obj, "metadata", "labels") or {}
    return (ns in SYSTEM_NAMESPACES or not ctx.in_scope(ns) or not ix.live(obj)
            or bool(get(obj, "metadata", "ownerReferences"))
            or any(get(obj, "metadata", "annotations", a) for a in MANAGED_ANNOTATIONS)
            or any(label in labels for label in MANAGED_LABELS) or labels.get("owner") == "helm"
            or labels.get("app.kubernetes.io/part-of") in PLATFORM_COMPONENTS
            or labels.get("app.kubernetes.io/name") in PLATFORM_COMPONENTS
            or younger_than(ctx, obj, UNUSED_GRACE_SECONDS))


@check("configmap-unused", "ConfigMaps are used", periods=("weekly",),
       reads=("configmaps", "pods", *WORKLOADS))
def configmap_unused(ctx: CheckContext) -> list[Finding]:
    """ConfigMaps no pod or pod template refers to."""
    cm_refs, _ = _references(ctx.snapshot)
    out = []
    for cm in ctx.snapshot.get("configmaps"):
        ns, name = meta(cm)
        if name == ROOT_CA or _skipped(ctx, cm) or (ns, name) in cm_refs:
            continue
        out.append(ctx.finding(
            "configmap-unused", "info", "ConfigMap", ns, name,
            f"ConfigMap {ns}/{name} is used by no pod or workload template",
            "configmap-unused",
            {"keys": sorted((cm.get("data") or {}).keys() | (cm.get("binaryData") or {}).keys()),
             "created": get(cm, "metadata", "creationTimestamp")}))
    return out


def _secret_users(ctx: CheckContext) -> set[tuple[str | None, str]]:
    """Secrets referenced by Ingresses, ServiceAccounts, PersistentVolumes, StorageClasses."""
    out: set[tuple[str | None, str]] = set()
    for ing in ctx.snapshot.get("ingresses"):
        ns = meta(ing)[0]
        out |= {(ns, str(t["secretName"])) for t in get(ing, "spec", "tls", default=[]) or []
                if t.get("secretName")}
    for sa in ctx.snapshot.get("serviceaccounts"):
        ns = meta(sa)[0]
        for ref in [*(sa.get("imagePullSecrets") or []), *(sa.get("secrets") or [])]:
            if isinstance(ref, Mapping) and ref.get("name"):
                out.add((ref.get("namespace") or ns, str(ref["name"])))
    for pv in ctx.snapshot.get("persistentvolumes"):
        for key, value in (get(pv, "spec", "csi", default={}) or {}).items():
            if key.endswith("SecretRef") and isinstance(value, Mapping) and value.get("name"):
                out.add((value.get("namespace"), str(value["name"])))
    for sc in ctx.snapshot.get("storageclasses"):
        params = sc.get("parameters") or {}
        for p in CSI_SECRET_PARAMETERS:
            name = params.get(f"csi.storage.k8s.io/{p}")
            ns = params.get(f"csi.storage.k8s.io/{p.replace('-name', '-namespace')}")
            if name and "${" not in str(name):
                out.add((ns, str(name)))
    return out


@check("secret-unused", "Secrets are used", periods=("weekly",),
       reads=("secrets", "pods", *WORKLOADS, "ingresses", "serviceaccounts",
              "persistentvolumes", "storageclasses"))
def secret_unused(ctx: CheckContext) -> list[Finding]:
    """Secrets nothing refers to (pods, templates, Ingress TLS, ServiceAccounts, volumes).

    Credentials nobody uses are still credentials: rotate or delete them.
    """
    _, secret_refs = _references(ctx.snapshot)
    used = secret_refs | _secret_users(ctx)
    out = []
    for secret in ctx.snapshot.get("secrets"):
        ns, name = meta(secret)
        if (secret.get("type") in SKIPPED_SECRET_TYPES or _skipped(ctx, secret)
                or (ns, name) in used):
            continue
        out.append(ctx.finding(
            "secret-unused", "info", "Secret", ns, name,
            f"Secret {ns}/{name} ({secret.get('type')}) is used by no pod, workload template, "
            "Ingress, ServiceAccount or volume", "secret-unused",
            {"type": secret.get("type"), "keys": secret.get("keys"),
             "created": get(secret, "metadata", "creationTimestamp")}))
    return out


def _sts_claim(ctx: CheckContext, ns: str | None, claim: str) -> str | None:
    """The StatefulSet whose volumeClaimTemplates made this claim (``<tpl>-<sts>-<n>``)."""
    for sts in ix.in_namespace(ctx.snapshot, "statefulsets", ns):
        sts_name = meta(sts)[1]
        for tpl in get(sts, "spec", "volumeClaimTemplates", default=[]) or []:
            prefix = f"{get(tpl, 'metadata', 'name')}-{sts_name}-"
            if claim.startswith(prefix) and claim[len(prefix):].isdigit():
                return sts_name
    return None


def _template_claims(snap: ClusterSnapshot) -> set[tuple[str | None, str]]:
    def build() -> set[tuple[str | None, str]]:
        return {(meta(obj)[0], str(c)) for _, obj, spec in ix.templates(snap, WORKLOADS)
                for v in spec.get("volumes") or []
                if (c := get(v, "persistentVolumeClaim", "claimName"))}
    for kind in WORKLOADS:
        snap.get(kind)
    return snap.cached("unused:template_claims", build)  # type: ignore[no-any-return]


@check("pvc-unused", "Bound claims are used", periods=("weekly",),
       reads=("persistentvolumeclaims", "pods", *WORKLOADS))
def pvc_unused(ctx: CheckContext) -> list[Finding]:
    """Bound PVCs no pod mounts and no workload template or StatefulSet claim template names.

    A StatefulSet scaled down keeps its claims on purpose, and a Deployment scaled to 0 still
    names its claim: neither is reported. The volume keeps costing its size.
    """
    users = ix.claim_users(ctx.snapshot)
    templated = _template_claims(ctx.snapshot)
    out = []
    for pvc in ctx.snapshot.get("persistentvolumeclaims"):
        ns, name = meta(pvc)
        if (get(pvc, "status", "phase") != "Bound" or _skipped(ctx, pvc)
                or users.get((ns, name)) or (ns, name) in templated
                or _sts_claim(ctx, ns, name)):
            continue
        out.append(ctx.finding(
            "pvc-unused", "info", "PersistentVolumeClaim", ns, name,
            f"PVC {ns}/{name} ({get(pvc, 'status', 'capacity', 'storage')}) is bound but no "
            "pod or workload uses it", "pvc-unused",
            {"capacity": get(pvc, "status", "capacity", "storage"),
             "storage_class": get(pvc, "spec", "storageClassName"),
             "volume_name": get(pvc, "spec", "volumeName")}))
    return out


@check("networkpolicy-no-pods", "NetworkPolicies select pods", periods=("weekly",),
       reads=("networkpolicies", "pods"))
def networkpolicy_no_pods(ctx: CheckContext) -> list[Finding]:
    """NetworkPolicies whose (non-empty) podSelector matches no pod of their namespace.

    Usually a label typo or a policy left behind: either way it protects nothing.
    """
    out = []
    for np in ctx.snapshot.get("networkpolicies"):
        ns, name = meta(np)
        selector = get(np, "spec", "podSelector") or {}
        if not (selector.get("matchLabels") or selector.get("matchExpressions")):
            continue  # {} selects every pod of the namespace, on purpose
        if (not ctx.in_scope(ns) or not ix.live(np)
                or younger_than(ctx, np, UNUSED_GRACE_SECONDS)
                or ix.pods_selected(ctx.snapshot, ns, selector)):
            continue
        out.append(ctx.finding(
            "networkpolicy-no-pods", "info", "NetworkPolicy", ns, name,
            f"NetworkPolicy {ns}/{name} selects no pod ({_selector_text(selector)}): it "
            "protects nothing", "networkpolicy-no-pods",
            {"pod_selector": dict(selector), "policy_types": get(np, "spec", "policyTypes")}))
    return out


def _selector_text(selector: Mapping[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    parts += [f"{e.get('key')} {e.get('operator')} {e.get('values') or ''}".strip()
              for e in selector.get("matchExpressions") or []]
    return ", ".join(parts)
