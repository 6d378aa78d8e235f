"""`scale pvc`: checks first, then the patch, then the resize conditions."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.adapters.kube import KubeAdapter, KubeClient
from k3sops.domain.checks.capacity import quantity
from k3sops.errors import K3sopsError, PlanRejected, UsageError
from k3sops.services.scale.common import Audited

LONGHORN_GV = "longhorn.io/v1beta2"
LONGHORN_NAMESPACE = "longhorn-system"
LONGHORN_PROVISIONER = "driver.longhorn.io"


class PvcCheck(BaseModel):
    """One precondition of an expansion."""

    name: str
    ok: bool
    detail: str


class PvcReport(BaseModel):
    """`scale pvc`: the checks, the change, and the resize state followed after it."""

    namespace: str
    name: str
    storage_class: str | None
    current: str | None
    capacity: str | None
    requested: str
    checks: list[PvcCheck]
    applied: bool = False
    forced: bool = False
    result: Literal["planned", "ok", "failed", "refused", "skipped"] = "planned"
    state: str | None = None
    conditions: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None
    audit_log: str | None = None


def _longhorn_check(api: KubeClient, pvc: Mapping[str, Any]) -> PvcCheck:
    """Longhorn can grow the volume: it exists, is healthy, is not restoring or being cloned.

    Longhorn (v1.4+) expands attached volumes online; it cannot while the volume is faulted,
    still restoring from a backup, or while it has no replica to grow.
    """
    vol_name = (pvc.get("spec") or {}).get("volumeName")
    if not vol_name:
        return PvcCheck(name="longhorn-online-expansion", ok=False,
                        detail="the claim is not bound to a volume yet")
    vol = api.find(LONGHORN_GV, "volumes", vol_name, LONGHORN_NAMESPACE)
    if vol is None:
        return PvcCheck(name="longhorn-online-expansion", ok=False,
                        detail=f"Longhorn volume {LONGHORN_NAMESPACE}/{vol_name} not found "
                               "(volumes.longhorn.io)")
    st = vol.get("status") or {}
    problems = []
    if st.get("robustness") == "faulted":
        problems.append("robustness faulted")
    if st.get("restoreRequired") or (st.get("restoreInitiated") and not st.get("isStandby")
                                     and st.get("state") != "attached"):
        problems.append("restore in progress")
    if (vol.get("spec") or {}).get("dataEngine") == "v2":
        problems.append("data engine v2 (no online expansion)")
    state = st.get("state", "unknown")
    if problems:
        return PvcCheck(name="longhorn-online-expansion", ok=False,
                        detail=f"volume {vol_name} ({state}): " + ", ".join(problems))
    mode = "online (attached)" if state == "attached" else f"offline ({state})"
    return PvcCheck(name="longhorn-online-expansion", ok=True,
                    detail=f"volume {vol_name}: {mode}, robustness {st.get('robustness', '?')}")


def pvc_checks(api: KubeClient, pvc: Mapping[str, Any], new_bytes: float,
               ) -> tuple[list[PvcCheck], str | None]:
    """The checks of an expansion, and the StorageClass name."""
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    checks: list[PvcCheck] = []
    sc_name = spec.get("storageClassName")
    sc = api.find("storage.k8s.io/v1", "storageclasses", sc_name) if sc_name else None
    if sc is None:
        checks.append(PvcCheck(name="storageclass-allows-expansion", ok=False,
                               detail=f"StorageClass {sc_name!r} not found" if sc_name
                               else "the claim has no StorageClass"))
    else:
        allowed = bool(sc.get("allowVolumeExpansion"))
        checks.append(PvcCheck(
            name="storageclass-allows-expansion", ok=allowed,
            detail=f"StorageClass {sc_name} has allowVolumeExpansion: "
                   f"{str(allowed).lower()}"
                   + ("" if allowed else " (the API server refuses to resize its claims)")))
    cur = quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage"))
    cap = quantity((status.get("capacity") or {}).get("storage"))
    base = max(cur or 0.0, cap or 0.0)
    checks.append(PvcCheck(name="larger", ok=new_bytes > base,
                           detail=f"new size {new_bytes:.0f} bytes vs current {base:.0f} bytes"
                           + ("" if new_bytes > base else
                              " (volumes can only grow; shrinking is not supported)")))
    bound = status.get("phase") == "Bound"
    checks.append(PvcCheck(name="bound", ok=bound,
                           detail=f"phase {status.get('phase', 'unknown')}"
                           + ("" if bound else " (only bound claims can be resized)")))
    if sc is not None and sc.get("provisioner") == LONGHORN_PROVISIONER:
        checks.append(_longhorn_check(api, pvc))
    return checks, sc_name


def _resize_state(pvc: Mapping[str, Any], new_bytes: float) -> tuple[str, list[dict[str, Any]]]:
    status = pvc.get("status") or {}
    conds = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    cap = quantity((status.get("capacity") or {}).get("storage")) or 0.0
    types = {c.get("type") for c in conds if c.get("status") == "True"}
    alloc = status.get("allocatedResourceStatuses") or {}
    if cap >= new_bytes:
        return "done: the capacity reached the new size", conds
    for t in ("ControllerResizeError", "NodeResizeError"):
        if t in types:
            msg = next((c.get("message", "") for c in conds if c.get("type") == t), "")
            return f"failed: {t}: {msg}", conds
    if "FileSystemResizePending" in types:
        return ("FileSystemResizePending: the volume grew; the filesystem grows when a node "
                "(re)mounts it (online for Longhorn)"), conds
    if "Resizing" in types or alloc:
        return f"Resizing: in progress ({alloc or 'controller working'})", conds
    return ("pending: spec updated, no resize controller has acted yet (no condition; a CSI "
            "resizer must run for the volume to grow)"), conds


def expand_pvc(kube: KubeAdapter, audited: Audited, name: str, namespace: str, size: str, *,
               apply: bool, force: bool = False, follow: float = 30.0) -> PvcReport:
    """Check, then (with ``apply``) patch the claim's size and follow the resize conditions.

    Raises:
        UsageError: ``size`` is not a Kubernetes quantity.
        PlanRejected: a check failed (without ``force``), or the API server refused the change
            (its own message); nothing was changed in either case.
    """
    new_bytes = quantity(size)
    if new_bytes is None or new_bytes <= 0:
        raise UsageError(f"--to {size!r} is not a size", hint="e.g. --to 20Gi")
    pvc = kube.get("v1", "persistentvolumeclaims", name, namespace)
    checks, sc_name = pvc_checks(kube, pvc, new_bytes)
    spec = pvc.get("spec") or {}
    rep = PvcReport(namespace=namespace, name=name, storage_class=sc_name,
                    current=((spec.get("resources") or {}).get("requests") or {}).get(
                        "storage"),
                    capacity=((pvc.get("status") or {}).get("capacity") or {}).get(
                        "storage"),
                    requested=size, checks=checks, applied=apply, forced=force)
    failed = [c for c in checks if not c.ok]
    target = f"{namespace}/persistentvolumeclaims/{name}"
    if failed and not force:
        rep.result = "refused"
        raise PlanRejected(
            f"will not expand PVC {namespace}/{name} to {size}: "
            + "; ".join(f"{c.name}: {c.detail}" for c in failed),
            hint="nothing was changed; fix the cause, or pass --force to let the API "
                 "server decide")
    if not apply:
        return rep
    rep.audit_log = str(audited.audit.path)
    try:
        kube.patch("v1", "persistentvolumeclaims", name, namespace,
                  {"spec": {"resources": {"requests": {"storage": size}}}})
    except K3sopsError as e:
        audited.record("expand", target, f"storage -> {size}", "failed", e.message)
        raise
    audited.record("expand", target, f"storage -> {size}" + (" (forced)" if force else ""),
                   "ok")
    rep.result = "ok"
    deadline = time.monotonic() + follow
    while True:
        rep.state, rep.conditions = _resize_state(
            kube.get("v1", "persistentvolumeclaims", name, namespace), new_bytes)
        if rep.state.startswith(("done", "failed")) or time.monotonic() >= deadline:
            return rep
        time.sleep(1.0)

