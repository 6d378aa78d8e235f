"""Pods that name ConfigMaps, Secrets (or keys of them) and claims that do not exist.

A kubelet refuses to start a container whose non-optional references do not resolve
(CreateContainerConfigError, or ContainerCreating with FailedMount), and the scheduler leaves a
pod whose claim is missing Pending. A pod already running is not stopped when a ConfigMap it
read is deleted, but it will not start again: that is a warning before the next restart, and
critical once the pod is not ready. When the referenced kind could not be read, what the
kubelet and the scheduler said (``configmap "x" not found``) is still a fact and is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding, Severity
from k3sops.domain.snapshot import Obj, conditions, get, meta, parse_time, raw_events

ROOT_CA = "kube-root-ca.crt"
PUBLISHED_GRACE_SECONDS = 60
"""kube-root-ca.crt is published into a namespace by a controller just after it is made."""
EPHEMERAL_GRACE_SECONDS = 60
"""A generic ephemeral volume's claim is made by a controller just after its pod."""


@dataclass(frozen=True)
class Ref:
    """One reference of a pod to a ConfigMap or Secret (``kind``: configmaps or secrets)."""

    kind: str
    name: str
    key: str | None
    optional: bool
    where: str


def _volume_refs(v: Mapping[str, Any]) -> Iterator[Ref]:
    vname = v.get("name")
    for kind, field, name_key in (("configmaps", "configMap", "name"),
                                  ("secrets", "secret", "secretName")):
        src = v.get(field)
        if isinstance(src, Mapping):
            yield from _source_refs(kind, src, src.get(name_key), f"volume {vname}")
    for src in get(v, "projected", "sources", default=[]) or []:
        for kind, field in (("configmaps", "configMap"), ("secrets", "secret")):
            s = src.get(field)
            if isinstance(s, Mapping):
                yield from _source_refs(kind, s, s.get("name"), f"projected volume {vname}")
    secret = get(v, "csi", "nodePublishSecretRef", "name")
    if secret:
        yield Ref("secrets", str(secret), None, False, f"CSI volume {vname}")


def _source_refs(kind: str, src: Mapping[str, Any], name: Any, where: str) -> Iterator[Ref]:
    if not name:
        return
    optional = bool(src.get("optional"))
    yield Ref(kind, str(name), None, optional, where)
    for item in src.get("items") or []:
        if item.get("key"):
            yield Ref(kind, str(name), str(item["key"]), optional, where)


def pod_refs(pod: Obj) -> list[Ref]:
    """Every ConfigMap and Secret (and key) the pod names, ``where`` saying how.

    Volumes, projections, env, envFrom, CSI secrets and imagePullSecrets.
    """
    spec = get(pod, "spec", default={}) or {}
    out = [r for v in spec.get("volumes") or [] for r in _volume_refs(v)]
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        cname = c.get("name")
        for env in c.get("env") or []:
            for kind, field in (("configmaps", "configMapKeyRef"), ("secrets", "secretKeyRef")):
                ref = get(env, "valueFrom", field)
                if isinstance(ref, Mapping) and ref.get("name"):
                    out.append(Ref(kind, str(ref["name"]), str(ref.get("key") or "") or None,
                                   bool(ref.get("optional")),
                                   f"env {env.get('name')} of container {cname}"))
        for env_from in c.get("envFrom") or []:
            for kind, field in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
                ref = env_from.get(field)
                if isinstance(ref, Mapping) and ref.get("name"):
                    out.append(Ref(kind, str(ref["name"]), None, bool(ref.get("optional")),
                                   f"envFrom of container {cname}"))
    out += [Ref("secrets", str(s["name"]), None, True, "imagePullSecrets")
            for s in spec.get("imagePullSecrets") or [] if s.get("name")]
    return out


def _keys(kind: str, obj: Obj) -> set[str]:
    if kind == "secrets":
        return set(obj.get("keys") or [])  # projected at collection: names only
    return {*(obj.get("data") or {}), *(obj.get("binaryData") or {})}


def _judged(pod: Obj) -> bool:
    """Pods whose references still matter: live and not finished."""
    return ix.live(pod) and get(pod, "status", "phase") not in ("Succeeded", "Failed")


def _age(ctx: CheckContext, pod: Obj) -> float:
    at = parse_time(get(pod, "metadata", "creationTimestamp"))
    return float("inf") if at is None else (ctx.snapshot.now - at).total_seconds()


# What the kubelet says when a reference does not resolve (container waiting messages and
# FailedMount events): ``configmap "x" not found``, ``couldn't find key k in Secret ns/x``.
_NOT_FOUND = {"configmaps": re.compile(r'configmaps? "(?P<name>[^"]+)" not found'),
              "secrets": re.compile(r'secrets? "(?P<name>[^"]+)" not found')}
_NO_KEY = {"configmaps": re.compile(r"couldn't find key (?P<key>\S+) in ConfigMap "
                                    r"(?P<ns>[^/\s]+)/(?P<name>\S+)"),
           "secrets": re.compile(r"couldn't find key (?P<key>\S+) in Secret "
                                 r"(?P<ns>[^/\s]+)/(?P<name>\S+)")}


def kubelet_says_missing(kind: str, text: str) -> list[tuple[str, str | None]]:
    """(name, key) pairs a kubelet message reports missing for ``kind``."""
    out: list[tuple[str, str | None]] = [(m["name"], None)
                                         for m in _NOT_FOUND[kind].finditer(text)]
    out += [(m["name"], m["key"]) for m in _NO_KEY[kind].finditer(text)]
    return out


def _kubelet_texts(ctx: CheckContext, pod: Obj) -> list[str]:
    texts = [str(get(cs, "state", "waiting", "message") or "")
             for cs in ix.container_statuses(pod)]
    if not ctx.unread("events"):
        ns, name = meta(pod)
        texts += [str(e.get("message") or "") for e in raw_events(ctx.snapshot, "Pod", ns, name)
                  if e.get("reason") in ("FailedMount", "Failed")]
    return [t for t in texts if t]


def _template_key(pod: Obj) -> tuple[Any, ...] | None:
    """Pods made from one template revision share their references (None: judge the pod).

    ReplicaSet pods carry pod-template-hash, StatefulSet and DaemonSet pods
    controller-revision-hash; a Job's template cannot change.
    """
    owner = ix.controller_of(pod)
    if owner is None:
        return None
    labels = get(pod, "metadata", "labels", default={}) or {}
    revision = labels.get("pod-template-hash") or labels.get("controller-revision-hash")
    if revision is None and owner[0] != "Job":
        return None
    return (meta(pod)[0], owner, revision)


def _unresolved(ctx: CheckContext, kind: str, pod: Obj) -> list[dict[str, Any]]:
    """The pod's references to existing-``kind`` objects that do not resolve (kind read).

    Memoised per template revision: on a large cluster most pods share a handful of them.
    """
    key = _template_key(pod)
    memo: dict[tuple[Any, ...], list[dict[str, Any]]] = ctx.snapshot.cached(
        f"r1:unresolved:{kind}", dict)
    if key is not None and key in memo:
        return memo[key]
    ns, _ = meta(pod)
    objs = ix.by_name(ctx.snapshot, kind)
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str | None]] = set()
    for r in pod_refs(pod):
        if r.kind != kind:
            continue
        obj = objs.get((ns, r.name))
        if r.where == "imagePullSecrets":
            if obj is None and (r.name, None) not in seen:
                seen.add((r.name, None))
                out.append({"name": r.name, "key": None, "used_by": r.where})
            continue
        if r.optional:
            continue
        if obj is None:
            missing_key: str | None = None
        elif r.key is not None and r.key not in _keys(kind, obj):
            missing_key = r.key
        else:
            continue
        if (r.name, missing_key) in seen or (obj is None and (r.name, None) in seen):
            continue
        seen.add((r.name, missing_key))
        out.append({"name": r.name, "key": missing_key, "used_by": r.where})
    if key is not None:
        memo[key] = out
    return out


def _missing(ctx: CheckContext, kind: str, pod: Obj) -> tuple[list[dict[str, Any]], bool]:
    """The pod's unresolved references to ``kind``, and whether the kubelet's word was used.

    When ``kind`` could not be read, the kubelet's messages are judged instead of the objects.
    """
    if ctx.unread(kind):
        if not any(r.kind == kind for r in pod_refs(pod)):
            return [], False
        said = {pair for t in _kubelet_texts(ctx, pod) for pair in kubelet_says_missing(kind, t)}
        return [{"name": n, "key": k, "used_by": "reported by the kubelet"}
                for n, k in sorted(said, key=str)], True
    out = _unresolved(ctx, kind, pod)
    if any(m["name"] == ROOT_CA and m["key"] is None for m in out) \
            and _age(ctx, pod) < PUBLISHED_GRACE_SECONDS:
        out = [m for m in out if not (m["name"] == ROOT_CA and m["key"] is None)]
    return out, False


def _owner(pod: Obj) -> dict[str, str] | None:
    owner = ix.controller_of(pod)
    return {"kind": owner[0], "name": owner[1]} if owner else None


def _describe(kind_word: str, m: Mapping[str, Any]) -> str:
    if m.get("key"):
        return f"key {m['key']} of {kind_word} {m['name']}"
    if m.get("used_by") == "imagePullSecrets":
        return f"pull secret {m['name']}"
    return f"{kind_word} {m['name']}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _reference_findings(ctx: CheckContext, kind: str, check_id: str) -> list[Finding]:
    kind_name = {"configmaps": "ConfigMap", "secrets": "Secret"}[kind]
    word = kind_name.lower() if kind == "secrets" else "configmap"
    out = []
    for pod in ctx.snapshot.get("pods"):
        ns, name = meta(pod)
        if not ctx.in_scope(ns) or not _judged(pod):
            continue
        missing, from_kubelet = _missing(ctx, kind, pod)
        if not missing:
            continue
        pull_only = all(m["used_by"] == "imagePullSecrets" for m in missing)
        ready = ix.pod_ready(pod)
        severity: Severity = "info" if pull_only else ("warning" if ready else "critical")
        parts = [_describe(word, m) for m in missing[:3]]
        if len(missing) > 3:
            parts.append(f"{len(missing) - 3} more")
        shown = _and(parts)
        if pull_only:
            consequence = ": pulls of private images fail"
        elif ready:
            consequence = ": it will not start again after a restart"
        else:
            consequence = ""
        evidence: dict[str, Any] = {
            "missing": missing, "ready": ready, "phase": get(pod, "status", "phase"),
            "owner": _owner(pod),
            "cause_ref": [{"kind": kind_name, "namespace": ns, "name": n}
                          for n in dict.fromkeys(m["name"] for m in missing)]}
        if from_kubelet:
            evidence["judged_from"] = (f"the kubelet's messages ({kind}: could not read: "
                                       f"{ctx.unread(kind)})")
        out.append(ctx.finding(
            check_id, severity, "Pod", ns, name,
            f"pod {ns}/{name} references {shown}, which "
            + ("does" if len(missing) == 1 else "do") + f" not exist{consequence}",
            "pod-configmap-missing" if kind == "configmaps" else "pod-secret-missing",
            evidence))
    return out


@check("pod-configmap-missing", "Pods' ConfigMaps exist", reads=("pods",),
       uses=("configmaps", "events"))
def pod_configmap_missing(ctx: CheckContext) -> list[Finding]:
    """Pods naming a ConfigMap (or a key of one) that does not exist, not optional.

    Volumes, projected volumes, env ``configMapKeyRef`` and ``envFrom``; volume ``items``
    keys. Without configmaps, the kubelet's own messages are judged instead.
    """
    return _reference_findings(ctx, "configmaps", "pod-configmap-missing")


@check("pod-secret-missing", "Pods' Secrets exist", reads=("pods",),
       uses=("secrets", "events"))
def pod_secret_missing(ctx: CheckContext) -> list[Finding]:
    """Pods naming a Secret (or a key of one) that does not exist, not optional.

    Volumes, projected volumes, env ``secretKeyRef``, ``envFrom``, CSI
    ``nodePublishSecretRef``; a missing imagePullSecret alone is info (public or cached
    images still start). Without secrets, the kubelet's own messages are judged instead.
    """
    return _reference_findings(ctx, "secrets", "pod-secret-missing")


_CLAIM_NOT_FOUND = re.compile(r'persistentvolumeclaim "(?P<name>[^"]+)" not found')


@check("pod-pvc-missing", "Pods' claims exist", reads=("pods",),
       uses=("persistentvolumeclaims",))
def pod_pvc_missing(ctx: CheckContext) -> list[Finding]:
    """Pods mounting a PersistentVolumeClaim that does not exist (the scheduler holds them).

    A generic ephemeral volume's claim is the ephemeral controller's to make: judged after a
    minute. Without claims, the scheduler's ``persistentvolumeclaim "x" not found`` is judged.
    """
    out = []
    unread = ctx.unread("persistentvolumeclaims")
    claims = {} if unread else ix.by_name(ctx.snapshot, "persistentvolumeclaims")
    for pod in ctx.snapshot.get("pods"):
        ns, name = meta(pod)
        if not ctx.in_scope(ns) or not _judged(pod):
            continue
        if unread:
            sched = conditions(pod).get("PodScheduled") or {}
            missing = sorted(set(_CLAIM_NOT_FOUND.findall(str(sched.get("message") or ""))))
        else:
            ephemeral = {f"{name}-{v.get('name')}" for v in ix.pod_volumes(pod)
                         if isinstance(v.get("ephemeral"), Mapping)}
            young = _age(ctx, pod) < EPHEMERAL_GRACE_SECONDS
            missing = [c for c in dict.fromkeys(ix.pod_claims(pod))
                       if (ns, c) not in claims and not (c in ephemeral and young)]
        if not missing:
            continue
        evidence: dict[str, Any] = {
            "claims": missing, "phase": get(pod, "status", "phase"),
            "cause_ref": [{"kind": "PersistentVolumeClaim", "namespace": ns, "name": c}
                          for c in missing]}
        if unread:
            evidence["judged_from"] = ("the scheduler's message (persistentvolumeclaims: could "
                                       f"not read: {unread})")
        out.append(ctx.finding(
            "pod-pvc-missing", "critical", "Pod", ns, name,
            f"pod {ns}/{name} mounts PersistentVolumeClaim {', '.join(missing)}, which "
            + ("does" if len(missing) == 1 else "do") + " not exist", "pod-pvc-missing",
            evidence))
    return out
