"""The DNS probe: a busybox pod runs ``nslookup kubernetes.default``; its log is the answer.

The pod gets a unique name and the ``k3sops.io/probe=dns`` label, runs in ``kube-system`` (it
needs no namespace of its own, and nothing is left to clean up but the pod), is waited for, its
log read, and it is deleted in every case, also when waiting fails or is interrupted. A pod that
cannot run its container (scheduled on a kwok fake node, or not finished in time) makes the
probe *inconclusive* with the reason: it is never reported as a success.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from pathlib import Path

from k3sops.adapters.kube import KubeClient
from k3sops.domain import dnsprobe as dp
from k3sops.domain.snapshot import get
from k3sops.errors import K3sopsError
from k3sops.services.context import Settings, kube

log = logging.getLogger(__name__)

PROBE_NAMESPACE = "kube-system"


def run(settings: Settings, env: Mapping[str, str], home: Path, *,
        namespace: str = PROBE_NAMESPACE, timeout: float = 60.0,
        every: float = 1.0) -> dp.DnsProbeResult:
    """Create the probe pod, wait for it to finish, read its log, delete it.

    Raises:
        AdapterError: the pod could not be created (nothing is left behind then).
    """
    k = kube(settings, env, home)
    name = f"k3sops-dns-probe-{secrets.token_hex(4)}"
    created = False
    try:
        k.create("v1", "pods", namespace, dp.probe_pod(namespace, name, int(timeout) + 30))
        created = True
        result = _wait(k, namespace, name, timeout, every)
    finally:
        deleted = False
        if created:
            try:
                deleted = k.delete("v1", "pods", name, namespace, {
                    "kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
            except K3sopsError as e:
                log.warning("could not delete DNS probe pod %s/%s: %s (delete it with "
                            "kubectl -n %s delete pod %s)", namespace, name, e.message,
                            namespace, name)
        k.close()
    return result.model_copy(update={"deleted": deleted})


def _wait(k: KubeClient, namespace: str, name: str, timeout: float,
          every: float) -> dp.DnsProbeResult:
    deadline = time.monotonic() + timeout
    node_checked: str | None = None
    phase = None
    node = None
    while True:
        pod = k.find("v1", "pods", name, namespace)
        if pod is None:
            return dp.DnsProbeResult(outcome="inconclusive", namespace=namespace, pod=name,
                                     detail="the probe pod disappeared before it finished")
        phase = get(pod, "status", "phase")
        node = get(pod, "spec", "nodeName")
        if node and node_checked != node:
            node_checked = node
            node_obj = k.find("v1", "nodes", node) or {}
            if dp.KWOK_NODE_ANNOTATION in (get(node_obj, "metadata", "annotations",
                                               default={}) or {}):
                return dp.DnsProbeResult(
                    outcome="inconclusive", namespace=namespace, pod=name, node=node,
                    phase=phase, detail=f"the probe pod was scheduled on {node}, a kwok fake "
                                        "node: its container never runs, so no lookup "
                                        "happened")
        if phase in ("Succeeded", "Failed"):
            try:
                lines = k.pod_log(namespace, name, {"tailLines": "50"}).splitlines()
            except K3sopsError as e:
                # Killed at its deadline or never started: there is no lookup to read.
                return dp.DnsProbeResult(
                    outcome="inconclusive", namespace=namespace, pod=name, node=node,
                    phase=phase, detail=f"the probe pod ended {phase} "
                                        f"({get(pod, 'status', 'reason') or 'no reason'}) and "
                                        f"its log cannot be read: {e.message}")
            outcome, addresses, detail = dp.parse_nslookup(lines)
            return dp.DnsProbeResult(outcome=outcome, namespace=namespace, pod=name,
                                     node=node, phase=phase, log=lines, addresses=addresses,
                                     detail=detail)
        if time.monotonic() >= deadline:
            return dp.DnsProbeResult(
                outcome="inconclusive", namespace=namespace, pod=name, node=node, phase=phase,
                detail=f"the probe pod did not finish within {timeout:g}s (phase {phase}"
                       + (f", node {node}" if node else ", not scheduled") + ")")
        time.sleep(every)


def run_or_explain(settings: Settings, env: Mapping[str, str], home: Path, *,
                   timeout: float = 60.0) -> dp.DnsProbeResult:
    """:func:`run`, with a pod that cannot even be created reported as inconclusive."""
    try:
        return run(settings, env, home, timeout=timeout)
    except K3sopsError as e:
        return dp.DnsProbeResult(outcome="inconclusive", namespace=PROBE_NAMESPACE,
                                 pod="(not created)",
                                 detail=f"the probe pod could not be created: {e.message}")
