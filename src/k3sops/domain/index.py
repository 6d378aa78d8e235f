"""Indexes over a ClusterSnapshot, built once per run and shared by every rule.

Rules must stay linear in the size of the cluster: no rule scans all pods for each Service or
each PVC. Everything that relates objects (owner references, label selectors, claims, events,
endpoint slices, requests per node) is indexed here once, on first use, in the snapshot's
cache. Each accessor first asks the (possibly rule-scoped) snapshot for the kinds it reads, so
an index is no back door around a rule's declared ``reads``/``uses``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from k3sops.domain.snapshot import ClusterSnapshot, Obj, get, meta

Key = tuple[str | None, str]


def by_name(snap: ClusterSnapshot, kind: str) -> dict[Key, Obj]:
    """Objects of ``kind`` by (namespace, name)."""
    objs = snap.get(kind)
    return snap.cached(f"by_name:{kind}", lambda: {meta(o): o for o in objs})  # type: ignore[no-any-return]


def find(snap: ClusterSnapshot, kind: str, namespace: str | None, name: str) -> Obj | None:
    """One object by kind, namespace (None for cluster-scoped) and name."""
    return by_name(snap, kind).get((namespace, name))


def live(obj: Obj) -> bool:
    """Not being deleted."""
    return not get(obj, "metadata", "deletionTimestamp")


def in_namespace(snap: ClusterSnapshot, kind: str, namespace: str | None) -> list[Obj]:
    """Objects of ``kind`` in one namespace."""
    objs = snap.get(kind)

    def build() -> dict[str | None, list[Obj]]:
        out: dict[str | None, list[Obj]] = defaultdict(list)
        for o in objs:
            out[meta(o)[0]].append(o)
        return out
    index: dict[str | None, list[Obj]] = snap.cached(f"by_ns:{kind}", build)
    return index.get(namespace, [])


def owned_by(snap: ClusterSnapshot, kind: str, owner_kind: str, namespace: str | None,
             owner_name: str) -> list[Obj]:
    """Objects of ``kind`` whose ownerReferences name ``owner_kind``/``owner_name``."""
    objs = snap.get(kind)

    def build() -> dict[tuple[str | None, str, str], list[Obj]]:
        out: dict[tuple[str | None, str, str], list[Obj]] = defaultdict(list)
        for o in objs:
            ns = meta(o)[0]
            for ref in get(o, "metadata", "ownerReferences", default=[]) or []:
                out[(ns, str(ref.get("kind")), str(ref.get("name")))].append(o)
        return out
    index: dict[tuple[str | None, str, str], list[Obj]] = snap.cached(f"owned:{kind}", build)
    return index.get((namespace, owner_kind, owner_name), [])


def controller_of(obj: Obj) -> tuple[str, str] | None:
    """The (kind, name) of the object's controlling owner (or first owner)."""
    refs = get(obj, "metadata", "ownerReferences", default=[]) or []
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    return (str(ref.get("kind")), str(ref.get("name"))) if ref else None


def top_owner(snap: ClusterSnapshot, obj: Obj) -> tuple[str, str] | None:
    """The workload at the top of a pod's owner chain, as (kind, name).

    ReplicaSet -> Deployment, Job -> CronJob; reads replicasets/jobs only when the rule may.
    """
    owner = controller_of(obj)
    ns = meta(obj)[0]
    for _ in range(3):
        if owner is None:
            return None
        kind, name = owner
        plural = {"ReplicaSet": "replicasets", "Job": "jobs"}.get(kind)
        if plural is None or (snap.allowed is not None and plural not in snap.allowed):
            return owner
        parent = find(snap, plural, ns, name)
        up = controller_of(parent) if parent is not None else None
        if up is None:
            return owner
        owner = up
    return owner


def _expression_holds(expr: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    key, op = str(expr.get("key")), expr.get("operator")
    values = expr.get("values") or []
    present = key in labels
    return {"In": present and labels.get(key) in values,
            "NotIn": not (present and labels.get(key) in values),
            "Exists": present, "DoesNotExist": not present}.get(str(op), False)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, Any] | None,
                     ) -> bool:
    """Whether ``labels`` satisfy a plain map selector (Service) or a LabelSelector.

    A LabelSelector has matchLabels and matchExpressions; an empty one matches everything.
    """
    labels = labels or {}
    if selector is None:
        return False
    if "matchLabels" in selector or "matchExpressions" in selector:
        return (all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
                and all(_expression_holds(e, labels)
                        for e in selector.get("matchExpressions") or []))
    return all(labels.get(k) == v for k, v in selector.items())


def _selector_key(selector: Mapping[str, Any]) -> str:
    import json
    return json.dumps(selector, sort_keys=True)


def pods_selected(snap: ClusterSnapshot, namespace: str | None,
                  selector: Mapping[str, Any] | None) -> list[Obj]:
    """Live pods of a namespace matching a selector (memoised per namespace and selector)."""
    if not selector:
        return []
    pods = in_namespace(snap, "pods", namespace)
    memo: dict[tuple[str | None, str], list[Obj]] = snap.cached("pods_selected", dict)
    key = (namespace, _selector_key(selector))
    if key not in memo:
        memo[key] = [p for p in pods if live(p)
                     and selector_matches(selector, get(p, "metadata", "labels"))]
    return memo[key]


def pod_ready(pod: Obj) -> bool:
    """The pod's Ready condition is True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in get(pod, "status", "conditions", default=[]) or [])


def container_statuses(pod: Obj) -> list[Mapping[str, Any]]:
    """Init and app container statuses of a pod."""
    return [*(get(pod, "status", "initContainerStatuses", default=[]) or []),
            *(get(pod, "status", "containerStatuses", default=[]) or [])]


def pod_healthy(pod: Obj) -> bool:
    """Succeeded, or Running with the Ready condition and no waiting container."""
    phase = get(pod, "status", "phase")
    if phase == "Succeeded":
        return True
    return phase == "Running" and pod_ready(pod) and live(pod)


def unhealthy_pods(snap: ClusterSnapshot) -> list[Obj]:
    """Pods that are not healthy (computed once: most rules only look at these)."""
    pods = snap.get("pods")
    return snap.cached("unhealthy_pods",  # type: ignore[no-any-return]
                       lambda: [p for p in pods if not pod_healthy(p)])


def _troubled(pod: Obj) -> bool:
    if not pod_healthy(pod):
        return True
    return any(cs.get("restartCount") or cs.get("lastState") for cs in container_statuses(pod))


def troubled_pods(snap: ClusterSnapshot) -> list[Obj]:
    """Pods that are not healthy or whose containers ever restarted or terminated.

    Pod fault rules look only at these: on a healthy cluster of 30,000 pods a handful.
    """
    pods = snap.get("pods")
    return snap.cached("troubled_pods",  # type: ignore[no-any-return]
                       lambda: [p for p in pods if _troubled(p)])


def slices_by_service(snap: ClusterSnapshot) -> dict[Key, list[Obj]]:
    """EndpointSlices by the (namespace, Service) they belong to."""
    slices = snap.get("endpointslices")

    def build() -> dict[Key, list[Obj]]:
        out: dict[Key, list[Obj]] = defaultdict(list)
        for es in slices:
            svc = get(es, "metadata", "labels", "kubernetes.io/service-name")
            if svc:
                out[(meta(es)[0], str(svc))].append(es)
        return out
    return snap.cached("slices", build)  # type: ignore[no-any-return]


def ready_endpoints(slices: Iterable[Obj]) -> list[str]:
    """Names (targetRef, else address) of ready endpoints (absent ``ready`` means ready)."""
    return [str(get(e, "targetRef", "name") or (e.get("addresses") or ["?"])[0])
            for s in slices for e in s.get("endpoints") or []
            if get(e, "conditions", "ready") is not False]


def pod_volumes(pod: Obj) -> list[Mapping[str, Any]]:
    """The pod's volumes."""
    return list(get(pod, "spec", "volumes", default=[]) or [])


def pod_claims(pod: Obj) -> list[str]:
    """Names of the PVCs a pod mounts (ephemeral volumes: ``<pod>-<volume>``)."""
    out = []
    for v in pod_volumes(pod):
        claim = get(v, "persistentVolumeClaim", "claimName")
        if claim:
            out.append(str(claim))
        elif isinstance(v.get("ephemeral"), Mapping):
            out.append(f"{meta(pod)[1]}-{v.get('name')}")
    return out


def claim_users(snap: ClusterSnapshot) -> dict[Key, list[str]]:
    """Pods (names) by the (namespace, claim) they mount."""
    pods = snap.get("pods")

    def build() -> dict[Key, list[str]]:
        out: dict[Key, list[str]] = defaultdict(list)
        for p in pods:
            ns, name = meta(p)
            for c in pod_claims(p):
                out[(ns, c)].append(name)
        return out
    return snap.cached("claim_users", build)  # type: ignore[no-any-return]


def pods_on_node(snap: ClusterSnapshot) -> dict[str, list[Obj]]:
    """Pods by node name (spec.nodeName)."""
    pods = snap.get("pods")

    def build() -> dict[str, list[Obj]]:
        out: dict[str, list[Obj]] = defaultdict(list)
        for p in pods:
            node = get(p, "spec", "nodeName")
            if node:
                out[str(node)].append(p)
        return out
    return snap.cached("pods_on_node", build)  # type: ignore[no-any-return]


def templates(snap: ClusterSnapshot, kinds: Sequence[str] = (
        "deployments", "statefulsets", "daemonsets", "cronjobs", "jobs", "replicasets",
        "pods")) -> list[tuple[str, Obj, Mapping[str, Any]]]:
    """(kind, object, pod spec) of every pod template a person wrote.

    Workloads, CronJobs, Jobs and ReplicaSets without an owner, naked pods. Objects owned by
    another workload are skipped (their owner's template is the one to fix).
    """
    out: list[tuple[str, Obj, Mapping[str, Any]]] = []
    for kind in kinds:
        for o in snap.get(kind):
            if kind in ("jobs", "replicasets", "pods") and get(o, "metadata", "ownerReferences"):
                continue
            if kind == "pods":
                spec = get(o, "spec", default={})
            elif kind == "cronjobs":
                spec = get(o, "spec", "jobTemplate", "spec", "template", "spec", default={})
            else:
                spec = get(o, "spec", "template", "spec", default={})
            out.append((kind, o, spec or {}))
    return out
