"""Apply the fault matrix to the running lab, wait until every fault is visible, reset it.

Everything goes through the lab's kubectl with the admin kubeconfig, as shape.py does: one
server-side apply for all namespaces, one for all objects, then each fault's ``after`` steps
and ``visible`` conditions are driven together in one polling loop that reads the cluster
with one ``kubectl get KINDS -A`` per round (never one call per fault).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from k3sops.errors import LabError
from k3sops.lab.build import installed_binaries
from k3sops.lab.faults.model import (
    BLOCK_FINALIZER,
    CLUSTER_KINDS,
    NAMESPACE_PREFIX,
    Condition,
    Fault,
    Step,
)
from k3sops.lab.layout import LabLayout
from k3sops.lab.shape import apply as ssa
from k3sops.lab.shape import kubectl, node
from k3sops.lab.stages import FAULT_LABEL
from k3sops.timeparse import parse_rfc3339

Progress = Callable[[str], None]
POLL_SECONDS = 2.0
NODE_IP_BASE = 100
"""Fault nodes get 192.0.2.(10 + 100 + n): clear of the lab's own nodes (10 + 1..200)."""
FORCE_AFTER_SECONDS = 20
"""A fault pod still terminating after this long during reset is force-deleted."""
DELETE_LAST = ("Node", "PersistentVolume", "StorageClass")
"""Removed after the namespaces are gone: their pods and claims must go first."""


@dataclass
class ApplyResult:
    """What `lab fault apply` did."""

    applied: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Faults not applied, with why (already applied, namespace still terminating)."""
    visible: dict[str, float] = field(default_factory=dict)
    """Seconds from the start of apply until each fault was seen in effect (with --wait)."""
    seconds: float = 0.0
    platform_file: Path | None = None


def faults_platform_file(layout: LabLayout) -> Path:
    """The platform file for matrix runs: the lab's, with the faults' environments."""
    return layout.run_dir / "platform-faults.yaml"


def write_platform_file(layout: LabLayout, faults: Sequence[Fault]) -> Path:
    """Write the lab's platform.yaml with each fault's namespace in its environment."""
    if not layout.platform_file.is_file():
        raise LabError(f"the lab has no platform file at {layout.platform_file}",
                       hint="run `k3sops lab up` first")
    doc = yaml.safe_load(layout.platform_file.read_text()) or {}
    envs = doc.setdefault("environments", {})
    for f in faults:
        if f.environment is None:
            continue
        env = envs.setdefault(f.environment, {})
        names = env.setdefault("namespaces", [])
        if f.namespace not in names:
            names.append(f.namespace)
    path = faults_platform_file(layout)
    path.write_text("# Written by `k3sops lab fault apply`: the lab with the fault matrix's "
                    "namespaces in their environments.\n" + yaml.safe_dump(doc, sort_keys=False))
    return path


# --- generated objects -----------------------------------------------------------------------

def _tls_secret(name: str, namespace: str, days: int, hosts: Sequence[str]) -> dict[str, Any]:
    """A kubernetes.io/tls Secret with a self-signed certificate valid for ``days`` from now.

    Negative days give a certificate that has already expired. The key is made here and
    never leaves the cluster object.
    """
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days)
    not_before = min(now, not_after) - dt.timedelta(days=1)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    crt = cert.public_bytes(serialization.Encoding.PEM)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"tls.crt": base64.b64encode(crt).decode(),
                     "tls.key": base64.b64encode(pem).decode()}}


def _node(spec: Mapping[str, Any], fault: Fault, index: int) -> dict[str, Any]:
    """A kwok-managed agent node shaped like the lab's own (same versions, labels, capacity).

    It carries a NoSchedule taint (the fault's own unless the entry gives taints) so that the
    lab's DaemonSets never put pods on it: whatever happens to it stays with the fault.
    """
    name = str(spec["name"])
    n = node(name, server=False, ip_index=NODE_IP_BASE + index)
    n["metadata"]["labels"].update(spec.get("labels") or {})
    n["metadata"]["labels"][FAULT_LABEL] = fault.id
    n["metadata"]["annotations"].update(spec.get("annotations") or {})
    n["spec"]["taints"] = list(spec.get("taints") or [
        {"key": FAULT_LABEL, "value": fault.id, "effect": "NoSchedule"}])
    if spec.get("unschedulable"):
        n["spec"]["unschedulable"] = True
    return n


def materialize(faults: Sequence[Fault]) -> list[dict[str, Any]]:
    """The manifests to apply: namespaces filled in, cluster objects labelled, generated made."""
    docs: list[dict[str, Any]] = []
    node_index = 0
    for f in faults:
        for raw in f.objects:
            gen = raw.get("generate")
            if gen == "node":
                node_index += 1
                docs.append(_node(raw, f, node_index))
                continue
            if gen == "tls-secret":
                docs.append(_tls_secret(str(raw["name"]), f.namespace, int(raw.get("days", 30)),
                                        [str(h) for h in raw.get("hosts") or []]))
                continue
            obj = copy.deepcopy(raw)
            md = obj["metadata"]
            if obj["kind"] in CLUSTER_KINDS:
                md.setdefault("labels", {})[FAULT_LABEL] = f.id
            else:
                md["namespace"] = f.namespace
            docs.append(obj)
    return docs


# --- reading the cluster ---------------------------------------------------------------------

class Cluster:
    """The lab's kubectl, and the objects of some kinds read in one call."""

    def __init__(self, layout: LabLayout, env: Mapping[str, str]) -> None:
        if not (layout.run_dir / "admin.kubeconfig").is_file():
            raise LabError("the lab is not up", hint="run `k3sops lab up` first")
        self.layout = layout
        self.binaries = installed_binaries(layout, env)

    def run(self, *args: str, stdin: str | None = None, timeout: float = 180) -> str:
        """Run the lab's kubectl with its admin credentials."""
        return kubectl(self.layout, self.binaries, *args, stdin=stdin, timeout=timeout)

    def apply(self, docs: list[dict[str, Any]]) -> None:
        """Server-side apply (shape.apply: one call, field manager k3sops-lab)."""
        if docs:
            ssa(self.layout, self.binaries, docs)

    def objects(self, kinds: Sequence[str], selector: str | None = None
                ) -> dict[str, list[dict[str, Any]]]:
        """Every object of these kinds in every namespace, by kind."""
        out: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        if not kinds:
            return out
        args = ["get", ",".join(sorted(set(kinds))), "-A", "-o", "json"]
        if selector:
            args[3:3] = ["-l", selector]
        for item in json.loads(self.run(*args)).get("items", []):
            out.setdefault(str(item.get("kind")), []).append(item)
        return out


def _holds(c: Condition, state: Mapping[str, list[dict[str, Any]]]) -> bool:
    return c.holds(state.get(c.kind, []))


def _run_step(cl: Cluster, step: Step) -> None:
    where = ["-n", step.namespace] if step.namespace else []
    target = [step.kind, step.name, *where]
    if step.action == "delete":
        cl.run("delete", *target, "--ignore-not-found", "--wait=false")
    elif step.action == "remove_finalizers":
        cl.run("patch", *target, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    elif step.action == "patch":
        sub = [f"--subresource={step.subresource}"] if step.subresource else []
        cl.run("patch", *target, f"--type={step.patch_type}", "-p", json.dumps(step.patch),
               *sub)
    else:  # pragma: no cover - parse() admits no other action
        raise LabError(f"unknown step {step.action}")


def _wait_service_accounts(cl: Cluster, namespaces: set[str], deadline: float) -> None:
    """Pods are refused in a namespace until its default ServiceAccount exists."""
    while namespaces:
        have = {sa["metadata"]["namespace"] for sa in cl.objects(["ServiceAccount"])
                ["ServiceAccount"] if sa["metadata"]["name"] == "default"}
        namespaces = namespaces - have
        if not namespaces:
            return
        if time.monotonic() > deadline:
            raise LabError("no default ServiceAccount yet in " + ", ".join(sorted(namespaces)),
                           hint="is the lab's controller-manager running? `k3sops lab status`")
        time.sleep(0.5)


def apply_faults(layout: LabLayout, env: Mapping[str, str], faults: Sequence[Fault],  # noqa: PLR0912, PLR0915
                 wait: bool = True, timeout: float = 300.0,
                 progress: Progress | None = None) -> ApplyResult:
    """Create each fault's namespace and objects, run its steps, and (wait) see it in effect.

    A fault whose namespace already exists is not applied again (reset first); one whose
    namespace is still terminating is skipped with the reason. With ``wait`` the call returns
    when every fault's ``visible`` conditions hold; LabError names the faults that did not
    become visible within ``timeout`` seconds, with the conditions still failing.
    """
    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    deadline = t0 + timeout
    cl = Cluster(layout, env)
    result = ApplyResult()
    existing = {n["metadata"]["name"]: n for n in cl.objects(["Namespace"])["Namespace"]}
    todo: list[Fault] = []
    for f in faults:
        ns = existing.get(f.namespace)
        if ns is None:
            todo.append(f)
        elif ns.get("metadata", {}).get("deletionTimestamp") and not _deletes_namespace(f):
            result.skipped[f.id] = (f"namespace {f.namespace} is still terminating "
                                    "(`k3sops lab fault reset` waits for it)")
        else:
            result.skipped[f.id] = "already applied (reset first to apply it again)"
    say(f"creating {len(todo)} fault namespaces")
    cl.apply([{"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": f.namespace,
                            "labels": {**f.namespace_labels, FAULT_LABEL: f.id}}}
              for f in todo])
    _wait_service_accounts(cl, {f.namespace for f in todo}, deadline)
    docs = materialize(todo)
    say(f"applying {len(docs)} objects")
    cl.apply(docs)
    result.applied = [f.id for f in todo]
    result.platform_file = write_platform_file(layout, faults)
    steps = {f.id: deque(f.after) for f in todo}
    watching = {f.id: f for f in faults if f.id not in result.skipped
                or result.skipped[f.id].startswith("already")} if wait else {}
    last = ""
    while True:
        kinds = {c.kind for q in steps.values() if q for c in q[0].conditions}
        kinds |= {c.kind for fid, f in watching.items()
                  if fid not in result.visible and not steps.get(fid) for c in f.visible}
        state = cl.objects(sorted(kinds)) if kinds else {}
        for q in steps.values():
            while q and all(_holds(c, state) for c in q[0].conditions):
                step = q.popleft()
                if step.action != "wait":
                    _run_step(cl, step)
        now = time.monotonic()
        for fid, f in watching.items():
            if fid not in result.visible and not steps.get(fid) and all(
                    _holds(c, state) for c in f.visible):
                result.visible[fid] = round(now - t0, 1)
        stepping = sorted(fid for fid, q in steps.items() if q)
        waiting = sorted(fid for fid in watching if fid not in result.visible)
        if not stepping and not waiting:
            break
        msg = (f"{len(result.visible)}/{len(watching)} visible" if wait else "running steps")
        msg += f" after {now - t0:.0f}s"
        msg += f"; waiting for {', '.join((stepping + waiting)[:8])}"
        msg += f" (+{len(set(stepping + waiting)) - 8})" if len(set(stepping + waiting)) > 8 \
            else ""
        if msg.split(" after ")[0] != last:
            say(msg)
            last = msg.split(" after ")[0]
        if now > deadline:
            raise LabError(_not_visible(steps, watching, result, state, timeout),
                           hint="`k3sops lab fault list` shows what each fault does; look at "
                                "the namespace's events (kubectl get events -n fault-ID)")
        time.sleep(POLL_SECONDS)
    result.seconds = round(time.monotonic() - t0, 1)
    return result


def _deletes_namespace(f: Fault) -> bool:
    return any(s.action == "delete" and s.kind == "Namespace" for s in f.after)


def _not_visible(steps: Mapping[str, deque[Step]], watching: Mapping[str, Fault],
                 result: ApplyResult, state: Mapping[str, list[dict[str, Any]]],
                 timeout: float) -> str:
    parts = []
    for fid, q in sorted(steps.items()):
        if q:
            failing = [c.describe() for c in q[0].conditions if not _holds(c, state)]
            parts.append(f"{fid} (step {q[0].action} waits for: {'; '.join(failing)})")
    for fid, f in sorted(watching.items()):
        if fid not in result.visible and not steps.get(fid):
            failing = [c.describe() for c in f.visible if not _holds(c, state)]
            parts.append(f"{fid} (not yet: {'; '.join(failing) or 'conditions changed'})")
    return f"faults not visible after {timeout:g}s: " + ", ".join(parts)


# --- reset -----------------------------------------------------------------------------------

def _unless_gone(cl: Cluster, *args: str) -> None:
    """Run kubectl on objects that may be deleted meanwhile: gone is what reset wants."""
    try:
        cl.run(*args)
    except LabError as e:
        if "NotFound" not in e.message:
            raise


def _release(cl: Cluster, namespaces: set[str], kinds: Sequence[str]) -> None:
    """Take the block finalizer off every object in the fault namespaces that has it."""
    if not namespaces or not kinds:
        return
    for items in cl.objects(kinds).values():
        for o in items:
            md = o.get("metadata", {})
            fins = md.get("finalizers") or []
            if md.get("namespace") in namespaces and BLOCK_FINALIZER in fins:
                rest = [x for x in fins if x != BLOCK_FINALIZER]
                _unless_gone(cl, "patch", str(o["kind"]), md["name"], "-n", md["namespace"],
                             "--type=merge", "-p",
                             json.dumps({"metadata": {"finalizers": rest or None}}))


def _force_pods(cl: Cluster, namespaces: set[str]) -> None:
    """Remove pods that are being deleted but that no kubelet finishes.

    A pod on a NotReady node is never confirmed gone by its (fake) kubelet; a person resets
    such a pod with ``kubectl delete --force``, and so does the reset, once it has waited.
    """
    now = dt.datetime.now(dt.UTC)
    stale: dict[str, list[str]] = {}
    for p in cl.objects(["Pod"])["Pod"]:
        md = p.get("metadata", {})
        since = md.get("deletionTimestamp")
        if md.get("namespace") not in namespaces or not since or md.get("finalizers"):
            continue
        started = parse_rfc3339(str(since))
        if (now - started).total_seconds() > FORCE_AFTER_SECONDS:
            stale.setdefault(md["namespace"], []).append(md["name"])
    for ns, names in sorted(stale.items()):
        cl.run("delete", "pod", *sorted(names), "-n", ns, "--force", "--grace-period=0",
               "--ignore-not-found", "--wait=false")


def reset_faults(layout: LabLayout, env: Mapping[str, str], faults: Sequence[Fault],
                 timeout: float = 300.0, progress: Progress | None = None) -> list[str]:
    """Remove every fault: namespaces labelled k3sops.io/fault and labelled cluster objects.

    APIServices go first (while one is unavailable no namespace can finish deleting), then
    the block finalizers, the namespaces, and once they are gone the nodes, volumes and
    classes their pods and claims used. Returns what was removed; LabError names what is
    left after ``timeout`` seconds.
    """
    say = progress or (lambda _m: None)
    cl = Cluster(layout, env)
    deadline = time.monotonic() + timeout
    label = FAULT_LABEL
    ns_names = {n["metadata"]["name"] for n in
                cl.objects(["Namespace"], selector=label)["Namespace"]
                if n["metadata"]["name"].startswith(NAMESPACE_PREFIX)}
    cluster_kinds = sorted(CLUSTER_KINDS - {"Cluster", "Namespace", "CustomResourceDefinition"})
    found = cl.objects(cluster_kinds, selector=label)
    removed = sorted(ns_names) + sorted(f"{k}/{o['metadata']['name']}"
                                        for k, items in found.items() for o in items)
    blocking = sorted({str(o["kind"]) for f in faults for o in f.objects
                       if BLOCK_FINALIZER in ((o.get("metadata") or {}).get("finalizers") or [])})
    say(f"removing {len(ns_names)} fault namespaces and "
        f"{sum(map(len, found.values()))} cluster objects")
    first = [k for k in ("APIService", "ValidatingWebhookConfiguration",
                         "MutatingWebhookConfiguration") if found.get(k)]
    if first:
        cl.run("delete", ",".join(first), "-l", label, "--ignore-not-found", "--wait=false")
    _release(cl, ns_names, blocking)
    if ns_names:
        cl.run("delete", "namespace", *sorted(ns_names), "--ignore-not-found", "--wait=false")
    middle = [k for k in cluster_kinds if found.get(k) and k not in first
              and k not in DELETE_LAST]
    if middle:
        cl.run("delete", ",".join(middle), "-l", label, "--ignore-not-found", "--wait=false")
    last_kinds = [k for k in DELETE_LAST if found.get(k)]
    nudged = 0.0
    while True:
        left = {n["metadata"]["name"]: n for n in
                cl.objects(["Namespace"], selector=label)["Namespace"]
                if n["metadata"]["name"].startswith(NAMESPACE_PREFIX)}
        if not left and last_kinds:
            cl.run("delete", ",".join(last_kinds), "-l", label, "--ignore-not-found",
                   "--wait=false")
            last_kinds = []
        rest = cl.objects(cluster_kinds, selector=label)
        leftovers = sorted(left) + sorted(f"{k}/{o['metadata']['name']}"
                                          for k, items in rest.items() for o in items)
        if not leftovers:
            return removed
        if time.monotonic() > deadline:
            raise LabError(f"still present after {timeout:g}s: {', '.join(leftovers)}",
                           hint="look at the namespaces' status.conditions (kubectl get ns "
                                "NAME -o yaml): they name what holds them")
        say(f"waiting for {len(leftovers)} to go: {', '.join(leftovers[:6])}")
        if time.monotonic() - nudged > 10 and left:
            # The namespace controller retries a failed deletion with an exponential
            # back-off; an update to the namespace queues it again within seconds.
            _release(cl, set(left), blocking)
            _force_pods(cl, set(left))
            stamp = str(int(time.time()))
            _unless_gone(cl, "annotate", "namespace", "-l", label, f"k3sops.io/reset={stamp}",
                         "--overwrite")
            nudged = time.monotonic()
        time.sleep(POLL_SECONDS)
