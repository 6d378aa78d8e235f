"""`k3sops diagnose`: gather the snapshot once, follow the causal chains, report.

Collection goes through :func:`k3sops.services.check.collect` (one LIST per kind, every
rule's Prometheus queries), and the findings come from the same engine as `k3sops check`
(:func:`k3sops.domain.diagnose.analyse`). For pods whose container restarted, the tail of the
previous instance's log is read through :mod:`k3sops.services.logs` and attached to the
crash-loop evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from k3sops.adapters.prometheus import HttpApi, PrometheusAdapter
from k3sops.domain import checks as registry
from k3sops.domain import diagnose as dg
from k3sops.domain import dnsprobe as dnsprobe_domain
from k3sops.domain import etcdmember
from k3sops.domain.findings import Source
from k3sops.domain.metrics import InstantResult
from k3sops.domain.snapshot import CLUSTER_SCOPED, KIND_NAMES, ClusterSnapshot, Obj, meta, plural_of
from k3sops.errors import K3sopsError, NotFound, UsageError
from k3sops.services import check as check_service
from k3sops.services import dnsprobe, performance
from k3sops.services import logs as logs_service
from k3sops.services.context import Settings, kube, monitoring

Target = Literal["cluster", "node", "pod", "deployment", "network", "storage", "performance",
                 "object"]
LOG_TAIL = 20
MAX_LOG_PODS = 10
"""Previous logs are read for at most this many pods (one API call each) per diagnosis."""


def _snapshot(settings: Settings, env: Mapping[str, str],
              home: Path) -> tuple[ClusterSnapshot, list[Source]]:
    k = kube(settings, env, home)
    try:
        snapshot, sources = check_service.collect(k, settings, registry.selected("monthly"),
                                                  datetime.now(UTC))
    finally:
        k.close()
    # the one engine, with the platform's thresholds and knowing which sources were down
    dg.analyse(snapshot, settings.platform, {s.name for s in sources if not s.ok})
    return snapshot, sources


def previous_logs(settings: Settings, env: Mapping[str, str], home: Path,
                  pods: list[Obj]) -> dict[str, dict[str, list[str]]]:
    """The tail of each crash-looping container's previous log: ``{pod: {container: lines}}``.

    At most :data:`MAX_LOG_PODS` pods; a log that cannot be read is one line saying why.
    `k3sops serve` attaches them to an alert's diagnosis the same way.
    """
    out: dict[str, dict[str, list[str]]] = {}
    for pod in pods[:MAX_LOG_PODS]:
        ns, name = meta(pod)
        for container in dg.crashlooping(pod):
            try:
                res = logs_service.pod_logs(settings, env, home, pod=name, namespace=ns,
                                            container=container, previous=True, tail=LOG_TAIL)
                lines = [ln.line for ln in res.lines]
            except K3sopsError as e:
                # The logs are evidence, not the diagnosis: say why they are missing.
                lines = [f"(previous logs unavailable: {e.message})"]
            out.setdefault(name, {})[container] = lines
    return out


def _etcd_metrics(settings: Settings, env: Mapping[str, str], home: Path,
                  ) -> tuple[dict[str, InstantResult] | None, str | None]:
    """Etcd's own view (its metrics, through Prometheus); None when etcd is not scraped."""
    mon = monitoring(settings)
    if not mon.etcd_metrics:
        return None, None
    k = kube(settings, env, home)
    api = None
    try:
        api = HttpApi.from_endpoint("Prometheus", mon.prometheus, k)
        answers = PrometheusAdapter(api).query_many(etcdmember.ETCD_QUERIES)
    except K3sopsError as e:
        return None, e.message
    finally:
        if api is not None:
            api.close()
        k.close()
    results = {n: a for n, a in answers.items() if isinstance(a, InstantResult)}
    errors = [a.message for a in answers.values() if isinstance(a, K3sopsError)]
    return results, (errors[0] if errors and not results else None)


def _not_found(snapshot: ClusterSnapshot, what: str, kind: str, name: str,
               namespace: str | None) -> NotFound:
    close = dg.similar(snapshot, kind, name, namespace)
    where = f" in namespace {namespace}" if namespace else ""
    return NotFound(f"{what} {name} not found{where}",
                    hint=("similar: " + ", ".join(close)) if close
                    else f"list them with `kubectl get {kind}" + (f" -n {namespace}`"
                                                                  if namespace else "`"))


def diagnose(settings: Settings, env: Mapping[str, str], home: Path, target: Target,
             name: str | None = None, namespace: str | None = None, *,
             probe_dns: bool = False, probe_timeout: float = 60.0) -> dg.DiagnosisReport:
    """Diagnose a target: the cluster or a namespace, a node, pod, deployment, network, storage.

    Or any object: ``target="object"`` with ``name="KIND/NAME"`` (e.g. ``ingress/shop``).

    ``probe_dns`` (network only) runs the busybox nslookup probe pod (:mod:`.dnsprobe`).

    Raises:
        UsageError: a pod or deployment without a namespace, a missing NAME, an unknown kind,
            or a name found in several namespaces.
        NotFound: no such object (the hint lists similar names).
    """
    if target == "object":
        return _object(settings, env, home, name or "", namespace)
    if target in ("node", "pod", "deployment") and not name:
        raise UsageError(f"diagnose {target} needs a NAME")
    if target in ("pod", "deployment") and not namespace:
        raise UsageError(f"diagnose {target} needs a namespace",
                         hint=f"k3sops diagnose {target} {name} -n NAMESPACE")
    if target == "performance":
        return performance.diagnose_performance(settings, env, home)
    snapshot, sources = _snapshot(settings, env, home)
    if target in ("node", "pod", "deployment"):
        return _one(settings, env, home, snapshot, sources, target, name or "",
                    namespace or "")
    platform = settings.platform
    if target == "network":
        net = dg.diagnose_network(snapshot, namespace, platform)
        if probe_dns:
            dnsprobe_domain.record(net, dnsprobe.run_or_explain(settings, env, home,
                                                            timeout=probe_timeout))
        return net.report("network" + (f" in {namespace}" if namespace else ""), sources)
    if target == "storage":
        return dg.diagnose_storage(snapshot, namespace, platform).report(
            "storage" + (f" in {namespace}" if namespace else ""), sources)
    pods = dg.unhealthy_pods(snapshot, namespace)
    all_logs = previous_logs(settings, env, home, [p for p in pods if dg.crashlooping(p)])
    return dg.diagnose_cluster(snapshot, namespace, all_logs, platform).report(
        f"namespace/{namespace}" if namespace else "cluster", sources)


def _one(settings: Settings, env: Mapping[str, str], home: Path, snapshot: ClusterSnapshot,
         sources: list[Source], target: Target, name: str,
         namespace: str) -> dg.DiagnosisReport:
    if target == "node":
        node = dg.find(snapshot, "nodes", name, None)
        if node is None:
            raise _not_found(snapshot, "node", "nodes", name, None)
        d = dg.diagnose_node(snapshot, name, platform=settings.platform)
        if dg.node_role(node) == "server":
            results, error = _etcd_metrics(settings, env, home)
            etcdmember.record(d, node, results, error)
        return d.report(f"node/{name}", sources)
    if target == "pod":
        pod = dg.find(snapshot, "pods", name, namespace)
        if pod is None:
            raise _not_found(snapshot, "pod", "pods", name, namespace)
        logs = previous_logs(settings, env, home, [pod]).get(name)
        return dg.diagnose_pod(snapshot, namespace, name, logs,
                               platform=settings.platform).report(
            f"pod/{namespace}/{name}", sources)
    if dg.find(snapshot, "deployments", name, namespace) is None:
        raise _not_found(snapshot, "deployment", "deployments", name, namespace)
    pods = dg.pods_of_deployment(snapshot, namespace, name)
    return dg.diagnose_deployment(
        snapshot, namespace, name, previous_logs(settings, env, home, pods),
        settings.platform).report(
        f"deployment/{namespace}/{name}", sources)


def _object(settings: Settings, env: Mapping[str, str], home: Path, target: str,
            namespace: str | None) -> dg.DiagnosisReport:
    kind_word, sep, name = target.partition("/")
    if not sep or not kind_word or not name:
        raise UsageError(f"{target!r} is not KIND/NAME",
                         hint="e.g. k3sops diagnose ingress/shop -n NAMESPACE")
    kind = plural_of(kind_word)
    if kind is None:
        raise UsageError(f"unknown kind {kind_word!r}",
                         hint="kinds: " + ", ".join(sorted(KIND_NAMES.values())))
    snapshot, sources = _snapshot(settings, env, home)
    if snapshot.unread(kind):
        return dg.diagnose_object(snapshot, kind, namespace, name,
                                  platform=settings.platform).report(target, sources)
    if kind in CLUSTER_SCOPED:
        namespace = None
    elif namespace is None:
        where = sorted({str(meta(o)[0]) for o in snapshot.get(kind) if meta(o)[1] == name})
        if len(where) > 1:
            raise UsageError(f"{KIND_NAMES[kind]} {name} exists in several namespaces: "
                             + ", ".join(where), hint=f"pass -n NAMESPACE ({where[0]}, ...)")
        namespace = where[0] if where else None
    if dg.find(snapshot, kind, name, namespace) is None:
        raise _not_found(snapshot, KIND_NAMES[kind].lower(), kind, name, namespace)
    if kind == "pods":
        logs = previous_logs(settings, env, home, [dg.find(snapshot, kind, name, namespace)
                                                    or {}]).get(name)
        d = dg.diagnose_pod(snapshot, str(namespace), name, logs, platform=settings.platform)
    else:
        d = dg.diagnose_object(snapshot, kind, namespace, name, platform=settings.platform)
    prefix = f"{namespace}/" if namespace else ""
    return d.report(f"{KIND_NAMES[kind].lower()}/{prefix}{name}", sources)
