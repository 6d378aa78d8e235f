"""The DNS probe pod of the operations guide: busybox running ``nslookup kubernetes.default``.

Pure: the pod manifest, and the reading of what came back (phase, logs, the node it ran on).
The service creates the pod, waits, reads the log and always deletes it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from k3sops.domain.diagnose import Diagnosis

PROBE_LABEL = "k3sops.io/probe"
"""Label on every probe pod (value ``dns``): finds strays left by a killed k3sops."""
PROBE_IMAGE = "busybox:1.36"
LOOKUP = "kubernetes.default"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
"""Set on kwok's fake nodes: containers scheduled there never run."""

Outcome = Literal["success", "failure", "inconclusive"]


class DnsProbeResult(BaseModel):
    """What the probe found, and what happened to its pod."""

    model_config = ConfigDict(extra="forbid")

    outcome: Outcome
    detail: str
    namespace: str
    pod: str
    node: str | None = None
    phase: str | None = None
    log: list[str] = []
    addresses: list[str] = []
    deleted: bool = False


def probe_pod(namespace: str, name: str, deadline_seconds: int) -> dict[str, Any]:
    """The probe pod: one busybox container, never restarted, killed after the deadline."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {PROBE_LABEL: "dns", "app.kubernetes.io/managed-by": "k3sops"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "activeDeadlineSeconds": deadline_seconds,
            "automountServiceAccountToken": False,
            "containers": [{
                "name": "nslookup", "image": PROBE_IMAGE,
                "command": ["nslookup", LOOKUP],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                              "limits": {"memory": "32Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "runAsNonRoot": True, "runAsUser": 65534},
            }],
        },
    }


def parse_nslookup(lines: list[str]) -> tuple[Outcome, list[str], str]:
    """Read busybox nslookup output: the addresses found, or why the lookup failed.

    busybox prints the server (``Server:``/``Address:``) first, then for an answer
    ``Name: kubernetes.default.svc.cluster.local`` followed by ``Address: 10.43.0.1``; a
    failure reads ``can't find``, ``NXDOMAIN`` or ``no servers could be reached``.
    """
    text = "\n".join(lines)
    low = text.lower()
    for marker in ("can't find", "nxdomain", "no servers could be reached", "timed out",
                   "servfail", "can't resolve"):
        if marker in low:
            return "failure", [], f"lookup of {LOOKUP} failed: {marker}"
    addresses: list[str] = []
    seen_name = False
    for ln in lines:
        s = ln.strip()
        if s.lower().startswith("name:"):
            seen_name = True
        elif seen_name and s.lower().startswith("address"):
            addresses.append(s.split(":", 1)[1].strip().split(" ")[0])
    if addresses:
        return "success", addresses, f"{LOOKUP} resolves to {', '.join(addresses)}"
    return "inconclusive", [], "the log holds no answer and no error: " + (
        text[:200] if text else "empty log")


def record(d: Diagnosis, result: DnsProbeResult) -> None:
    """Add the probe to a network diagnosis: a chain step, and a finding unless it resolved.

    An inconclusive probe is never a success: it is reported (info) with its reason.
    """
    where = f"pod {result.namespace}/{result.pod}" + (
        "" if result.deleted else " (NOT deleted: delete it by hand)")
    d.step(f"DNS probe (nslookup {LOOKUP})", result.outcome == "success",
           f"{result.outcome}: {result.detail}; {where}")
    evidence = result.model_dump(mode="json")
    if result.outcome == "failure":
        d.add("dns-lookup-failed", "critical", "Service", "kube-system", "kube-dns",
              f"a pod cannot resolve {LOOKUP}: {result.detail}", "dns-coredns-unavailable",
              evidence)
    elif result.outcome == "inconclusive":
        d.add("dns-probe-inconclusive", "info", "Pod", result.namespace, result.pod,
              f"the DNS probe was inconclusive: {result.detail}", "dns-coredns-unavailable",
              evidence)
