"""Right-sizing: recommend container requests and limits from their usage history (pure).

Strategies are pure functions of ``(history, current)`` — the container's usage samples and its
current resources — returning a :class:`Recommendation`, as krr's are. They are registered by
name in :data:`STRATEGIES` (``k3sops scale resources --strategy NAME``); add one with
:func:`strategy`.

The default, ``percentile``:

- CPU request: the ``cpu_percentile`` (95th) of the CPU usage samples (cores, each a 5-minute
  rate), because CPU is compressible: a container briefly above its request is throttled only
  when the node is busy, and a request at the peak would reserve mostly idle cores.
- CPU limit: none (``None`` = remove), the usual advice (throttling hurts latency long before
  it protects neighbours; the requests already share the node fairly). ``percentile-limit``
  keeps a CPU limit at ``cpu_limit_factor`` times the recommended request instead.
- Memory request = memory limit: the peak working set plus ``memory_headroom`` (15 %), because
  memory is not compressible: a container above its limit is OOM-killed, and one above its
  request is the first evicted under node pressure.
- After an OOM kill the peak seen is not the real need (the container died on the way up):
  memory is raised to at least the current limit plus ``oom_bump`` (25 %).
- Fewer than ``min_samples`` samples: no recommendation (``insufficient data``), rather than
  a guess from a few minutes of a fresh pod.
- Values are rounded up (CPU to the millicore, memory to the MiB) and never below the floors
  ``min_cpu`` / ``min_memory``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from k3sops.errors import UsageError

MIB = 2**20


class SizingSettings(BaseModel):
    """The knobs of the built-in strategies (defaults as documented in the module)."""

    cpu_percentile: float = Field(95.0, gt=0, le=100)
    """Percentile of CPU usage samples used as the CPU request."""
    memory_headroom: float = Field(0.15, ge=0)
    """Fraction added to the peak memory working set."""
    oom_bump: float = Field(0.25, ge=0)
    """After an OOM kill: memory at least the current limit times (1 + this)."""
    cpu_limit_factor: float = Field(2.0, ge=1)
    """``percentile-limit`` only: CPU limit = this times the CPU request."""
    min_samples: int = Field(10, ge=1)
    """Fewer usage samples than this: no recommendation."""
    min_cpu: float = Field(0.01, ge=0)
    """Floor of a recommended CPU request, in cores (10m)."""
    min_memory: float = Field(16 * MIB, ge=0)
    """Floor of a recommended memory request, in bytes (16Mi)."""


class Resources(BaseModel):
    """Requests and limits of one container: CPU in cores, memory in bytes; None = unset."""

    cpu_request: float | None = None
    cpu_limit: float | None = None
    memory_request: float | None = None
    memory_limit: float | None = None


class ContainerRef(BaseModel):
    """Which container: workload kind (plural), namespace, workload and container names."""

    kind: str
    namespace: str
    workload: str
    container: str


class History(BaseModel):
    """What Prometheus remembers about a container over the window asked."""

    cpu: list[float] = Field(default_factory=list, description="CPU usage samples, cores")
    memory: list[float] = Field(default_factory=list, description="working set samples, bytes")
    oom_kills: int = Field(0, description="OOM kills seen in the window")
    window: str = "7d"


Status = Literal["ok", "insufficient-data"]


class Recommendation(BaseModel):
    """Current and recommended resources of one container, and why."""

    ref: ContainerRef
    current: Resources
    recommended: Resources | None
    status: Status
    strategy: str
    samples: int = 0
    cpu_p: float | None = Field(None, description="the CPU percentile value, cores")
    memory_peak: float | None = Field(None, description="peak working set, bytes")
    oom_kills: int = 0
    reasons: list[str] = Field(default_factory=list)

    @property
    def changes(self) -> bool:
        """Whether applying this recommendation would change the container."""
        return self.recommended is not None and self.recommended != self.current


Strategy = Callable[[History, Resources, SizingSettings], tuple[Resources | None, list[str]]]
STRATEGIES: dict[str, Strategy] = {}
DEFAULT_STRATEGY = "percentile"


def strategy(name: str) -> Callable[[Strategy], Strategy]:
    """Register a strategy under ``name``."""
    def register(fn: Strategy) -> Strategy:
        STRATEGIES[name] = fn
        return fn
    return register


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) with linear interpolation, as numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def round_cpu(cores: float) -> float:
    """Round CPU up to the millicore."""
    return math.ceil(round(cores * 1000, 6)) / 1000


def round_memory(size: float) -> float:
    """Round memory up to the MiB."""
    return float(math.ceil(round(size / MIB, 6)) * MIB)


def _memory(history: History, current: Resources, s: SizingSettings,
            reasons: list[str]) -> float:
    peak = max(history.memory)
    mem = peak * (1 + s.memory_headroom)
    reasons.append(f"memory: peak {format_memory(peak)} + {s.memory_headroom:.0%} headroom")
    if history.oom_kills:
        floor = max(peak, current.memory_limit or 0.0) * (1 + s.oom_bump)
        mem = max(mem, floor)
        reasons.append(f"memory: {history.oom_kills} OOM kill(s): at least the limit "
                       f"+ {s.oom_bump:.0%}")
    return max(round_memory(mem), round_memory(s.min_memory))


@strategy("percentile")
def percentile_strategy(history: History, current: Resources, s: SizingSettings,
                        ) -> tuple[Resources | None, list[str]]:
    """CPU request at a high percentile, no CPU limit, memory = peak + headroom (module doc)."""
    if min(len(history.cpu), len(history.memory)) < s.min_samples:
        return None, [f"fewer than {s.min_samples} samples in {history.window}"]
    reasons = [f"cpu: p{s.cpu_percentile:g} of {len(history.cpu)} samples"]
    cpu = max(round_cpu(percentile(history.cpu, s.cpu_percentile)), round_cpu(s.min_cpu))
    mem = _memory(history, current, s, reasons)
    reasons.append("cpu limit: none (throttling costs latency; requests share the node)")
    return Resources(cpu_request=cpu, cpu_limit=None, memory_request=mem,
                     memory_limit=mem), reasons


@strategy("percentile-limit")
def percentile_limit_strategy(history: History, current: Resources, s: SizingSettings,
                              ) -> tuple[Resources | None, list[str]]:
    """As ``percentile``, but keep a CPU limit at ``cpu_limit_factor`` times the request."""
    rec, reasons = percentile_strategy(history, current, s)
    if rec is None:
        return None, reasons
    reasons[-1] = f"cpu limit: {s.cpu_limit_factor:g} x the request"
    rec.cpu_limit = round_cpu((rec.cpu_request or 0.0) * s.cpu_limit_factor)
    return rec, reasons


def recommend(ref: ContainerRef, history: History, current: Resources,
              strategy_name: str = DEFAULT_STRATEGY,
              settings: SizingSettings | None = None) -> Recommendation:
    """Run a strategy on one container.

    Raises:
        UsageError: no strategy of that name.
    """
    fn = STRATEGIES.get(strategy_name)
    if fn is None:
        raise UsageError(f"unknown sizing strategy {strategy_name!r}",
                         hint="strategies: " + ", ".join(sorted(STRATEGIES)))
    s = settings or SizingSettings()
    rec, reasons = fn(history, current, s)
    return Recommendation(
        ref=ref, current=current, recommended=rec,
        status="ok" if rec is not None else "insufficient-data", strategy=strategy_name,
        samples=min(len(history.cpu), len(history.memory)),
        cpu_p=percentile(history.cpu, s.cpu_percentile) if history.cpu else None,
        memory_peak=max(history.memory) if history.memory else None,
        oom_kills=history.oom_kills, reasons=reasons)


def format_cpu(cores: float | None) -> str:
    """Cores as a Kubernetes quantity: ``250m``, ``2``; ``-`` when unset."""
    if cores is None:
        return "-"
    milli = round(cores * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def format_memory(size: float | None) -> str:
    """Bytes as a Kubernetes quantity in Mi/Gi (``256Mi``, ``2Gi``); ``-`` when unset."""
    if size is None:
        return "-"
    if size % MIB:
        return str(round(size))
    mib = round(size / MIB)
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def show_memory(size: float | None) -> str:
    """Bytes for people: ``512Mi``, ``61.2Gi`` (rounded; not for patches); ``-`` when unset."""
    if size is None:
        return "-"
    if size >= 2**30:
        gib = size / 2**30
        return f"{gib:.0f}Gi" if abs(gib - round(gib)) < 0.05 else f"{gib:.1f}Gi"
    return f"{size / MIB:.0f}Mi"


def resources_patch(rec: Resources) -> dict[str, dict[str, str | None]]:
    """A container's ``resources`` as a strategic-merge patch (None removes a key)."""
    return {
        "requests": {"cpu": _q(format_cpu, rec.cpu_request),
                     "memory": _q(format_memory, rec.memory_request)},
        "limits": {"cpu": _q(format_cpu, rec.cpu_limit),
                   "memory": _q(format_memory, rec.memory_limit)},
    }


def _q(fmt: Callable[[float | None], str], value: float | None) -> str | None:
    return None if value is None else fmt(value)


# --------------------------------------------------------------------------------------------
# Horizontal: HorizontalPodAutoscaler (autoscaling/v2) spec and status

HPA_KINDS = {"deployments": "Deployment", "statefulsets": "StatefulSet"}
NEVER_SCALED_SECONDS = 86400
"""An HPA older than this that has never scaled is reported as never scaling."""


def hpa_spec(kind: str, name: str, cpu_percent: int, min_replicas: int,
             max_replicas: int) -> dict[str, object]:
    """The ``spec`` of an autoscaling/v2 HPA on average CPU utilisation.

    Raises:
        UsageError: bounds that the API server would refuse, caught before anything changes.
    """
    if min_replicas < 1:
        raise UsageError(f"--min {min_replicas} is below 1", hint="pass --min 1 or more")
    if max_replicas < min_replicas:
        raise UsageError(f"--max {max_replicas} is below --min {min_replicas}",
                         hint="pass --max at least --min")
    if not 1 <= cpu_percent <= 1000:
        raise UsageError(f"--cpu-percent {cpu_percent} is out of range",
                         hint="a share of the CPU request, 1 to 1000 (e.g. 80)")
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": HPA_KINDS.get(kind, kind),
                           "name": name},
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "metrics": [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}],
    }


def hpa_spec_differs(current: dict[str, object], wanted: dict[str, object]) -> list[str]:
    """The fields of ``wanted`` that ``current`` (an HPA's spec) does not have as asked."""
    return [k for k, v in wanted.items() if current.get(k) != v]


def hpa_targets(hpas: Sequence[dict[str, object]], kind: str, name: str) -> list[str]:
    """Names of the HPAs whose scaleTargetRef is the workload ``kind``/``name``."""
    want = HPA_KINDS.get(kind, kind)
    out = []
    for h in hpas:
        spec = h.get("spec") if isinstance(h.get("spec"), dict) else {}
        ref = spec.get("scaleTargetRef") if isinstance(spec, dict) else None
        if isinstance(ref, dict) and ref.get("kind") == want and ref.get("name") == name:
            meta = h.get("metadata")
            out.append(str(meta.get("name", "")) if isinstance(meta, dict) else "")
    return out


class HpaStatus(BaseModel):
    """One HPA as `scale status` shows it."""

    namespace: str
    name: str
    target: str
    min_replicas: int
    max_replicas: int
    current_replicas: int
    desired_replicas: int
    cpu_target_percent: int | None = None
    cpu_current_percent: int | None = None
    last_scale_time: str | None = None
    warnings: list[str] = Field(default_factory=list)


def hpa_status(raw: dict[str, object], now: float, created: float | None) -> HpaStatus:
    """Summarise an HPA and warn when it is at its maximum or is not (or never) scaling.

    Args:
        raw: the HPA as the API returns it (autoscaling/v2).
        now: unix time now (passed in: the domain reads no clock).
        created: the HPA's creationTimestamp as unix time, if known.
    """
    def d(x: object) -> dict[str, object]:
        return x if isinstance(x, dict) else {}

    meta, spec, status = d(raw.get("metadata")), d(raw.get("spec")), d(raw.get("status"))
    ref = d(spec.get("scaleTargetRef"))
    target_pct = current_pct = None
    for m in spec.get("metrics") or []:  # type: ignore[attr-defined]
        res = d(d(m).get("resource"))
        if res.get("name") == "cpu":
            v = d(res.get("target")).get("averageUtilization")
            target_pct = int(v) if isinstance(v, int) else None
    for m in status.get("currentMetrics") or []:  # type: ignore[attr-defined]
        res = d(d(m).get("resource"))
        if res.get("name") == "cpu":
            v = d(res.get("current")).get("averageUtilization")
            current_pct = int(v) if isinstance(v, int) else None

    def num(x: object, default: int = 0) -> int:
        return int(x) if isinstance(x, int) else default

    h = HpaStatus(
        namespace=str(meta.get("namespace", "")), name=str(meta.get("name", "")),
        target=f"{ref.get('kind', '?')}/{ref.get('name', '?')}",
        min_replicas=num(spec.get("minReplicas"), 1), max_replicas=num(spec.get("maxReplicas")),
        current_replicas=num(status.get("currentReplicas")),
        desired_replicas=num(status.get("desiredReplicas")),
        cpu_target_percent=target_pct, cpu_current_percent=current_pct,
        last_scale_time=str(status["lastScaleTime"]) if status.get("lastScaleTime") else None)
    conds = {str(d(c).get("type")): d(c) for c in status.get("conditions") or []}  # type: ignore[attr-defined]
    if h.max_replicas and (h.current_replicas >= h.max_replicas
                           or h.desired_replicas >= h.max_replicas):
        h.warnings.append(f"at max: {h.current_replicas}/{h.max_replicas} replicas; it cannot "
                          "scale further (raise --max or add capacity)")
    for ctype in ("AbleToScale", "ScalingActive"):
        c = conds.get(ctype)
        if c is not None and c.get("status") == "False":
            h.warnings.append(f"not scaling: {ctype}=False ({c.get('reason', '?')}): "
                              f"{c.get('message', '')}".rstrip(": "))
    if (h.last_scale_time is None and created is not None
            and now - created > NEVER_SCALED_SECONDS):
        h.warnings.append(f"never scaled in {(now - created) / 86400:.0f} days")
    return h
