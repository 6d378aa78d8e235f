"""kwok Stage objects: the ready-made ones from the installed kwok module, plus k3sops' own.

kwok v0.8 ships no built-in stages; its module carries ready-made ones under kustomize/stage.
They are read from the module cache at run time (nothing of kwok's is copied into this repo).
The fault stages kwok lacks (CrashLoopBackOff with rising restarts, OOMKilled) are written here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

from k3sops.errors import LabError

KWOK_STAGE_FILES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "node/chaos/node-not-ready.yaml",
    "pod/general/pod-create.yaml",
    "pod/general/pod-init-container-running.yaml",
    "pod/general/pod-init-container-completed.yaml",
    "pod/general/pod-ready.yaml",
    "pod/general/pod-complete.yaml",
    "pod/general/pod-delete.yaml",
    "pod/chaos/pod-container-running-failed.yaml",
)

KWOK_METRICS_FILES = (
    # kubelet's /metrics/resource per node (container_cpu_usage_seconds_total,
    # container_memory_working_set_bytes, ...), computed from the usage below.
    "metrics/resource/metrics-resource.yaml",
    # Usage from the pod annotations kwok.x-k8s.io/usage-cpu and kwok.x-k8s.io/usage-memory
    # (a Quantity, e.g. "250m", "300Mi"); without them a constant 1m CPU and 1Mi memory.
    "metrics/usage/usage-from-annotation.yaml",
)

FAULT_LABEL = "k3sops.io/fault"


def kwok_module_dir(kwok_tools_dir: Path, env: Mapping[str, str]) -> Path:
    """The kwok module's source directory in the Go module cache (downloading it if needed)."""
    try:
        out = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok"],
                             cwd=kwok_tools_dir, env=dict(env), capture_output=True, text=True,
                             check=True, timeout=300)
        d = Path(out.stdout.strip())
        if not d.is_dir():
            subprocess.run(["go", "mod", "download", "sigs.k8s.io/kwok"], cwd=kwok_tools_dir,
                           env=dict(env), capture_output=True, check=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as e:
        raise LabError("cannot locate the kwok module's stage files (go list -m sigs.k8s.io/kwok)",
                       hint="run `k3sops lab build` first; it needs Go and the module proxy") from e
    if not (d / "kustomize" / "stage").is_dir():
        raise LabError(f"kwok module at {d} has no kustomize/stage directory")
    return d


def _restart_loop(name: str, reason: str, exit_code: int, message: str) -> list[dict[str, object]]:
    """Two stages that alternate: terminated -> waiting CrashLoopBackOff -> running -> ...

    Each pass adds one to restartCount and records the termination in lastState, which is what a
    kubelet reports for a container that keeps dying.
    """
    base = [
        {"key": f'.metadata.labels["{FAULT_LABEL}"]', "operator": "In", "values": [name]},
        {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
        {"key": ".status.phase", "operator": "In", "values": ["Running"]},
    ]
    waiting = '.status.containerStatuses.[] | select( .state.waiting != null ) | .state.waiting.reason'
    crash = f"""{{{{ $now := Now }}}}
{{{{ $root := . }}}}
conditions:
- lastTransitionTime: {{{{ $now | Quote }}}}
  status: "False"
  reason: ContainersNotReady
  type: Ready
- lastTransitionTime: {{{{ $now | Quote }}}}
  status: "False"
  reason: ContainersNotReady
  type: ContainersReady
containerStatuses:
{{{{ range $index, $item := .spec.containers }}}}
{{{{ $rc := 0 }}}}
{{{{ with $root.status.containerStatuses }}}}{{{{ if gt (len .) $index }}}}{{{{ $rc = (index . $index).restartCount }}}}{{{{ end }}}}{{{{ end }}}}
- image: {{{{ $item.image | Quote }}}}
  name: {{{{ $item.name | Quote }}}}
  ready: false
  started: false
  restartCount: {{{{ add $rc 1 }}}}
  lastState:
    terminated:
      exitCode: {exit_code}
      reason: {reason}
      message: {message!r}
      startedAt: {{{{ $now | Quote }}}}
      finishedAt: {{{{ $now | Quote }}}}
  state:
    waiting:
      reason: CrashLoopBackOff
      message: {{{{ printf "back-off 10s restarting failed container=%s pod=%s" $item.name $root.metadata.name | Quote }}}}
{{{{ end }}}}
phase: Running
"""
    rerun = """{{ $now := Now }}
{{ $root := . }}
containerStatuses:
{{ range $index, $item := .status.containerStatuses }}
- image: {{ $item.image | Quote }}
  name: {{ $item.name | Quote }}
  ready: false
  started: true
  restartCount: {{ $item.restartCount }}
  lastState:
{{ YAML $item.lastState 2 }}
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
"""
    return [
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage",
         "metadata": {"name": f"k3sops-{name}-crash"},
         "spec": {"resourceRef": {"apiGroup": "v1", "kind": "Pod"},
                  "selector": {"matchExpressions": [
                      *base, {"key": waiting, "operator": "DoesNotExist"}]},
                  "weight": 20000,
                  # Runs for a moment, then dies: as a crashing container does.
                  "delay": {"durationMilliseconds": 1500, "jitterDurationMilliseconds": 3000},
                  "next": {"statusTemplate": crash,
                           "event": {"type": "Warning", "reason": "BackOff",
                                     "message": "Back-off restarting failed container"}}}},
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage",
         "metadata": {"name": f"k3sops-{name}-restart"},
         "spec": {"resourceRef": {"apiGroup": "v1", "kind": "Pod"},
                  "selector": {"matchExpressions": [
                      *base, {"key": waiting, "operator": "In", "values": ["CrashLoopBackOff"]}]},
                  "weight": 20000,
                  # The kubelet's back-off (10s doubling to 5m); kept short enough to watch
                  # restarts rise, long enough that CrashLoopBackOff is what a client sees.
                  "delay": {"durationMilliseconds": 20000, "jitterDurationMilliseconds": 25000},
                  "next": {"statusTemplate": rerun}}},
    ]


def _never_ready(name: str) -> dict[str, object]:
    """A pod whose containers run but whose readiness probe never passes.

    kwok's own pod-ready stage marks every pod Ready (and its pod-create stage satisfies every
    readinessGate): this stage takes its place, with a higher weight, for pods labelled
    ``FAULT_LABEL=name`` and reports what a kubelet reports for a failing readiness probe.
    """
    status = """{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotReady
  message: {{ printf "containers with unready status: [%s]" (index .spec.containers 0).name | Quote }}
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotReady
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
"""
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage",
            "metadata": {"name": f"k3sops-{name}"},
            "spec": {"resourceRef": {"apiGroup": "v1", "kind": "Pod"},
                     "selector": {"matchExpressions": [
                         {"key": f'.metadata.labels["{FAULT_LABEL}"]', "operator": "In",
                          "values": [name]},
                         {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                         {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
                         {"key": '.status.conditions.[] | select( .type == "Initialized" ) '
                                 "| .status", "operator": "In", "values": ["True"]},
                         {"key": ".status.containerStatuses.[].state.running.startedAt",
                          "operator": "DoesNotExist"}]},
                     "weight": 20000,
                     "delay": {"durationMilliseconds": 1000, "jitterDurationMilliseconds": 3000},
                     "next": {"statusTemplate": status,
                              "event": {"type": "Warning", "reason": "Unhealthy",
                                        "message": "Readiness probe failed: HTTP probe failed "
                                                   "with statuscode: 503"}}}}


def own_stages() -> list[dict[str, object]]:
    """The fault stages k3sops adds to kwok's."""
    return [
        *_restart_loop("crashloop", "Error", 1, "panic: dial tcp: connection refused"),
        *_restart_loop("oomkilled", "OOMKilled", 137, "container exceeded its memory limit"),
        _never_ready("notready"),
    ]


def kwok_config(kwok_dir: Path, extra_docs: list[dict[str, object]]) -> str:
    """The multi-document YAML passed to kwok --config (stages, metrics, usage, exec/logs rules)."""
    docs: list[str] = []
    for rel in KWOK_STAGE_FILES:
        path = kwok_dir / "kustomize" / "stage" / rel
        if not path.is_file():
            raise LabError(f"kwok stage file missing: {path}",
                           hint="the installed kwok version does not match lab/go/kwok")
        docs.append(path.read_text().strip())
    for rel in KWOK_METRICS_FILES:
        path = kwok_dir / "kustomize" / rel
        if not path.is_file():
            raise LabError(f"kwok metrics file missing: {path}",
                           hint="the installed kwok version does not match lab/go/kwok")
        docs.append(path.read_text().strip())
    docs += [yaml.safe_dump(d, sort_keys=False).strip() for d in [*own_stages(), *extra_docs]]
    return "\n---\n".join(docs) + "\n"
