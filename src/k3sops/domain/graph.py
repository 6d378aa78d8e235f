"""What an object depends on: the links a diagnosis follows (pure, over a ClusterSnapshot).

``links(snapshot, kind, obj)`` names the objects one object needs in order to work: a Pod its
Node, claims, ConfigMaps and Secrets; a PVC its StorageClass and volume; an Ingress its
Services, TLS Secrets and class; a Service the pods it selects; a workload the objects it
owns; an HPA its target and the metrics API; a webhook its Service. Each link says whether a
problem at its end explains a problem at its start ("always" for what the start is made of or
cannot work without; "by-severity" where the dependency's trouble explains the start's only
when at least as severe, e.g. a node under pressure does not explain a crash loop; "never" for
context). The graph is read through an unscoped snapshot: a diagnosis looks at everything that
could be read and names what could not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from k3sops.domain import index as ix
from k3sops.domain.checks.scheduling import default_class
from k3sops.domain.snapshot import KIND_NAMES, PLURALS, ClusterSnapshot, Obj, get, meta

Explains = Literal["always", "by-severity", "never"]
MAX_CHILDREN = 200
"""Owned pods or selected pods followed per object (a diagnosis stays readable and cheap)."""


@dataclass(frozen=True)
class Link:
    """One dependency of an object."""

    relation: str
    kind: str
    """Plural kind name (``pods``)."""
    namespace: str | None
    name: str
    explains: Explains = "always"
    required: bool = True
    """False for optional references (a missing optional ConfigMap is not a problem)."""

    @property
    def kind_name(self) -> str:
        """The Kind (``Pod``)."""
        return KIND_NAMES.get(self.kind, self.kind)


def _pod_links(snap: ClusterSnapshot, pod: Obj) -> list[Link]:  # noqa: PLR0912 - one per ref kind
    ns = meta(pod)[0]
    out: list[Link] = []
    node = get(pod, "spec", "nodeName")
    if node:
        out.append(Link("runs on", "nodes", None, str(node), "by-severity"))
    out += [Link("mounts", "persistentvolumeclaims", ns, c) for c in ix.pod_claims(pod)]
    cms: dict[str, bool] = {}
    secrets: dict[str, bool] = {}
    spec = get(pod, "spec", default={}) or {}
    for v in spec.get("volumes") or []:
        if isinstance(v.get("configMap"), Mapping):
            cms[str(v["configMap"].get("name"))] = not v["configMap"].get("optional")
        if isinstance(v.get("secret"), Mapping):
            secrets[str(v["secret"].get("secretName"))] = not v["secret"].get("optional")
        for src in get(v, "projected", "sources", default=[]) or []:
            if isinstance(src.get("configMap"), Mapping):
                cms[str(src["configMap"].get("name"))] = not src["configMap"].get("optional")
            if isinstance(src.get("secret"), Mapping):
                secrets[str(src["secret"].get("name"))] = not src["secret"].get("optional")
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for env in c.get("env") or []:
            ref = get(env, "valueFrom", "configMapKeyRef")
            if isinstance(ref, Mapping):
                cms[str(ref.get("name"))] = cms.get(str(ref.get("name")), False) or \
                    not ref.get("optional")
            ref = get(env, "valueFrom", "secretKeyRef")
            if isinstance(ref, Mapping):
                secrets[str(ref.get("name"))] = secrets.get(str(ref.get("name")), False) or \
                    not ref.get("optional")
        for env_from in c.get("envFrom") or []:
            if isinstance(env_from.get("configMapRef"), Mapping):
                cms[str(env_from["configMapRef"].get("name"))] = \
                    not env_from["configMapRef"].get("optional")
            if isinstance(env_from.get("secretRef"), Mapping):
                secrets[str(env_from["secretRef"].get("name"))] = \
                    not env_from["secretRef"].get("optional")
    out += [Link("uses config", "configmaps", ns, n, required=r) for n, r in cms.items()]
    out += [Link("uses secret", "secrets", ns, n, required=r) for n, r in secrets.items()]
    return out


def _pvc_links(snap: ClusterSnapshot, pvc: Obj) -> list[Link]:
    out: list[Link] = []
    cls = get(pvc, "spec", "storageClassName")
    if cls is None:
        cls = get(pvc, "metadata", "annotations", "volume.beta.kubernetes.io/storage-class")
    if cls is None and "storageclasses" in snap.objects:
        cls = default_class({meta(c)[1]: c for c in snap.objects["storageclasses"]})
    if cls:
        out.append(Link("class", "storageclasses", None, str(cls)))
    volume = get(pvc, "spec", "volumeName")
    if volume:
        out.append(Link("bound to", "persistentvolumes", None, str(volume)))
    return out


def _pv_links(snap: ClusterSnapshot, pv: Obj) -> list[Link]:
    out: list[Link] = []
    for term in get(pv, "spec", "nodeAffinity", "required", "nodeSelectorTerms",
                    default=[]) or []:
        for expr in term.get("matchExpressions") or []:
            if expr.get("key") == "kubernetes.io/hostname" and expr.get("operator") == "In":
                out += [Link("pinned to", "nodes", None, str(h)) for h in expr.get("values") or []]
    csi = get(pv, "spec", "csi", default={}) or {}
    if csi.get("driver") == "driver.longhorn.io" and csi.get("volumeHandle"):
        vol = next((v for v in snap.objects.get("volumes.longhorn.io", ())
                    if meta(v)[1] == csi["volumeHandle"]), None)
        if vol is not None:
            out.append(Link("stored in", "volumes.longhorn.io", meta(vol)[0], meta(vol)[1]))
    name = meta(pv)[1]
    out += [Link("attached by", "volumeattachments", None, meta(va)[1])
            for va in snap.objects.get("volumeattachments", ())
            if get(va, "spec", "source", "persistentVolumeName") == name]
    return out


def _owned(snap: ClusterSnapshot, kind: str, owner_kind: str, obj: Obj,
           relation: str = "owns") -> list[Link]:
    if kind not in snap.objects:
        return []
    ns, name = meta(obj)
    children = ix.owned_by(snap, kind, owner_kind, ns, name)
    # unhealthy children first, so that a large workload still shows the broken ones
    children = sorted(children, key=lambda c: ix.pod_healthy(c) if kind == "pods" else False)
    return [Link(relation, kind, meta(c)[0], meta(c)[1]) for c in children[:MAX_CHILDREN]]


def _deployment_links(snap: ClusterSnapshot, dep: Obj) -> list[Link]:
    out = []
    for rs in ix.owned_by(snap, "replicasets", "Deployment", *meta(dep)) \
            if "replicasets" in snap.objects else []:
        if int(get(rs, "spec", "replicas", default=0) or 0) > 0 or \
                get(rs, "metadata", "annotations", "deployment.kubernetes.io/revision") == \
                get(dep, "metadata", "annotations", "deployment.kubernetes.io/revision"):
            out.append(Link("owns", "replicasets", meta(rs)[0], meta(rs)[1]))
    return out


def _statefulset_links(snap: ClusterSnapshot, sts: Obj) -> list[Link]:
    ns, name = meta(sts)
    out = _owned(snap, "pods", "StatefulSet", sts)
    replicas = int(get(sts, "spec", "replicas", default=1) or 0)
    for tpl in get(sts, "spec", "volumeClaimTemplates", default=[]) or []:
        tname = get(tpl, "metadata", "name")
        out += [Link("claims", "persistentvolumeclaims", ns, f"{tname}-{name}-{i}")
                for i in range(min(replicas, MAX_CHILDREN))]
    return out


def _service_links(snap: ClusterSnapshot, svc: Obj) -> list[Link]:
    ns, _ = meta(svc)
    out: list[Link] = []
    selector = get(svc, "spec", "selector")
    if selector and get(svc, "spec", "type") != "ExternalName" and "pods" in snap.objects:
        pods = sorted(ix.pods_selected(snap, ns, selector), key=ix.pod_ready)
        out += [Link("selects", "pods", ns, meta(p)[1]) for p in pods[:MAX_CHILDREN]]
    if get(svc, "spec", "type") == "LoadBalancer" and not get(svc, "status", "loadBalancer",
                                                              "ingress"):
        for dep in snap.objects.get("deployments", ()):
            dns, dname = meta(dep)
            if dns == "metallb-system" and (dname == "controller" or
                                            dname.endswith("-controller")):
                out.append(Link("IP assigned by", "deployments", dns, dname, "by-severity"))
        out += [Link("IP from pool", "ipaddresspools.metallb.io", meta(p)[0], meta(p)[1],
                     "by-severity") for p in snap.objects.get("ipaddresspools.metallb.io", ())]
    return out


def _ingress_links(snap: ClusterSnapshot, ing: Obj) -> list[Link]:
    ns = meta(ing)[0]
    out: list[Link] = []
    seen: set[str] = set()
    backends = [get(ing, "spec", "defaultBackend", "service")]
    for rule in get(ing, "spec", "rules", default=[]) or []:
        backends += [get(p, "backend", "service") for p in
                     get(rule, "http", "paths", default=[]) or []]
    for b in backends:
        if isinstance(b, Mapping) and b.get("name") and b["name"] not in seen:
            seen.add(str(b["name"]))
            out.append(Link("routes to", "services", ns, str(b["name"])))
    for tls in get(ing, "spec", "tls", default=[]) or []:
        if tls.get("secretName"):
            out.append(Link("serves TLS from", "secrets", ns, str(tls["secretName"])))
    cls = get(ing, "spec", "ingressClassName") or get(
        ing, "metadata", "annotations", "kubernetes.io/ingress.class")
    if cls:
        out.append(Link("class", "ingressclasses", None, str(cls)))
    return out


def _hpa_links(snap: ClusterSnapshot, hpa: Obj) -> list[Link]:
    ns = meta(hpa)[0]
    ref = get(hpa, "spec", "scaleTargetRef", default={}) or {}
    out: list[Link] = []
    plural = PLURALS.get(str(ref.get("kind")))
    if plural and ref.get("name"):
        out.append(Link("scales", plural, ns, str(ref["name"])))
    types = {m.get("type") for m in get(hpa, "spec", "metrics", default=[]) or []}
    if not types or types & {"Resource", "ContainerResource"}:
        out.append(Link("metrics from", "apiservices", None, "v1beta1.metrics.k8s.io",
                        required=False))
    return out


def _webhook_links(snap: ClusterSnapshot, cfg: Obj) -> list[Link]:
    out = []
    for hook in cfg.get("webhooks") or []:
        svc = get(hook, "clientConfig", "service")
        if isinstance(svc, Mapping) and svc.get("name"):
            out.append(Link("calls", "services", svc.get("namespace"), str(svc["name"])))
    return out


def _apiservice_links(snap: ClusterSnapshot, api: Obj) -> list[Link]:
    svc = get(api, "spec", "service")
    if isinstance(svc, Mapping) and svc.get("name"):
        return [Link("served by", "services", svc.get("namespace"), str(svc["name"]))]
    return []


def _pdb_links(snap: ClusterSnapshot, pdb: Obj) -> list[Link]:
    sel = get(pdb, "spec", "selector")
    if not isinstance(sel, Mapping) or "pods" not in snap.objects:
        return []
    ns = meta(pdb)[0]
    return [Link("protects", "pods", ns, meta(p)[1], "never")
            for p in ix.pods_selected(snap, ns, sel)[:MAX_CHILDREN]]


def links(snap: ClusterSnapshot, kind: str, obj: Obj) -> list[Link]:
    """The objects ``obj`` (of plural ``kind``) depends on."""
    handlers: dict[str, Any] = {
        "pods": _pod_links, "persistentvolumeclaims": _pvc_links,
        "persistentvolumes": _pv_links, "deployments": _deployment_links,
        "statefulsets": _statefulset_links, "services": _service_links,
        "ingresses": _ingress_links, "horizontalpodautoscalers": _hpa_links,
        "validatingwebhookconfigurations": _webhook_links,
        "mutatingwebhookconfigurations": _webhook_links, "apiservices": _apiservice_links,
        "poddisruptionbudgets": _pdb_links,
        "replicasets": lambda s, o: _owned(s, "pods", "ReplicaSet", o),
        "daemonsets": lambda s, o: _owned(s, "pods", "DaemonSet", o),
        "jobs": lambda s, o: _owned(s, "pods", "Job", o),
        "cronjobs": lambda s, o: _owned(s, "jobs", "CronJob", o)[-5:],
    }
    handler = handlers.get(kind)
    return list(handler(snap, obj)) if handler is not None else []


def cause_links(evidence: Mapping[str, Any]) -> list[Link]:
    """Links named by a finding's evidence (``cause_ref``: the object that explains it)."""
    refs = evidence.get("cause_ref")
    out = []
    for ref in refs if isinstance(refs, list) else [refs]:
        if isinstance(ref, Mapping) and ref.get("kind") and ref.get("name"):
            plural = PLURALS.get(str(ref["kind"]))
            if plural:
                out.append(Link("caused by", plural, ref.get("namespace") or None,
                                str(ref["name"])))
    return out
