"""Runbooks for pods: crash loops, restarts, OOM kills, image pulls, scheduling, failures."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

_DESCRIBE = step(
    "Describe the pod", "State, last termination reason, exit code and events in one view.",
    "kubectl -n <namespace> describe pod <pod>",
    "Last State (reason, exit code), Events at the bottom (BackOff, Failed, FailedScheduling).",
    "k3sops status")

_PREVIOUS_LOGS = step(
    "Read the logs of the crashed container", "The current container has only just started; "
    "the previous one shows why it died.",
    "kubectl -n <namespace> logs <pod> -c <container> --previous",
    "The last lines before exit: a stack trace, a missing config or secret, a refused "
    "connection to a dependency.", "k3sops logs <pod> -n <namespace> --previous")

_CRASH_STEPS = [
    _DESCRIBE,
    _PREVIOUS_LOGS,
    step("Check what changed", "Most crash loops follow a deploy or a config change.",
         "kubectl -n <namespace> rollout history deployment/<name>",
         "A new revision near the time the restarts began; roll back with "
         "`kubectl -n <namespace> rollout undo deployment/<name>` if it is the cause."),
    step("Check dependencies and configuration", "A missing ConfigMap/Secret key or an "
         "unreachable database makes the app exit.",
         "kubectl -n <namespace> get configmap,secret; kubectl -n <namespace> get endpoints",
         "Missing objects named in the pod spec, or services the app needs without endpoints.",
         "k3sops check"),
]

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="pod-not-ready", title="Container running but not ready",
        summary="The container runs but its readiness probe fails, so the pod receives no "
                "traffic from its Services.",
        severity_hint="warning",
        steps=[
            _DESCRIBE,
            step("Read the readiness probe and its failures", "The probe's path, port and "
                 "timeout decide readiness; its failures are events on the pod.",
                 "kubectl -n <namespace> get pod <pod> -o jsonpath='{.spec.containers[*]"
                 ".readinessProbe}'",
                 "Unhealthy events naming the probe, a wrong port or path, a timeout shorter "
                 "than the app's start-up."),
            step("Read the current logs", "A starting or degraded app usually says why.",
                 "kubectl -n <namespace> logs <pod> -c <container> --tail=100",
                 "Errors connecting to dependencies, slow start-up, warm-up still running.",
                 "k3sops logs <pod> -n <namespace> --tail 100"),
        ],
        related=["service-no-endpoints", "pod-crashloop"]),
    Runbook(
        id="pod-crashloop", title="Container in CrashLoopBackOff",
        summary="A container keeps exiting and the kubelet waits longer before each restart; "
                "the pod serves no traffic.",
        severity_hint="critical", steps=_CRASH_STEPS,
        related=["pod-crash-looping", "pod-oomkilled", "pod-restarting"]),
    Runbook(
        id="pod-crash-looping", title="KubePodCrashLooping alert",
        summary="The alert fires when a container stays in CrashLoopBackOff; it is the same "
                "situation as the pod-crashloop finding.",
        severity_hint="warning", steps=_CRASH_STEPS,
        related=["pod-crashloop", "pod-restarting"]),
    Runbook(
        id="pod-restarting", title="Pod restarts frequently",
        summary="A container restarts more often than the platform allows per hour: it "
                "recovers each time, but requests in flight fail.",
        severity_hint="warning",
        steps=[
            _DESCRIBE,
            _PREVIOUS_LOGS,
            step("Check the probes", "A liveness probe that is too strict restarts a healthy "
                 "but slow container.",
                 "kubectl -n <namespace> get pod <pod> -o yaml | grep -A8 livenessProbe",
                 "Events 'Liveness probe failed' and a short timeoutSeconds/failureThreshold."),
        ],
        related=["pod-crashloop", "pod-oomkilled"]),
    Runbook(
        id="pod-oomkilled", title="Container OOMKilled",
        summary="The kernel killed the container for exceeding its memory limit (or the node "
                "ran out of memory).",
        severity_hint="critical",
        steps=[
            _DESCRIBE,
            step("Compare use with the limit", "Tells a limit set too low from a leak.",
                 "kubectl -n <namespace> top pod <pod> --containers",
                 "Use close to the limit shortly after start (limit too low) or growing "
                 "steadily (leak).", "k3sops metrics apps"),
            step("Raise the limit or fix the leak", "Set the request near normal use and the "
                 "limit with headroom.",
                 "kubectl -n <namespace> set resources deployment/<name> -c <container> "
                 "--requests=memory=<size> --limits=memory=<size>",
                 "No new OOMKilled in `kubectl describe pod` after the rollout."),
        ],
        related=["emergency-high-memory-oom", "node-memory-pressure"]),
    Runbook(
        id="pod-image-pull", title="Image cannot be pulled",
        summary="ErrImagePull/ImagePullBackOff: the image name or tag is wrong, the registry "
                "refuses the credentials, or the node cannot reach the registry.",
        severity_hint="critical",
        steps=[
            _DESCRIBE,
            step("Check the image reference", "A typo or a tag that was never pushed is the "
                 "most common cause.",
                 "kubectl -n <namespace> get pod <pod> -o jsonpath='{..image}'",
                 "'not found' or 'manifest unknown' in the events: fix the tag."),
            step("Check pull credentials", "Private registries need an imagePullSecret.",
                 "kubectl -n <namespace> get pod <pod> -o jsonpath='{.spec.imagePullSecrets}'",
                 "'unauthorized' or 'denied' in the events: create or fix the secret."),
            step("Pull by hand on the node", "Separates registry reachability from Kubernetes.",
                 "ssh <node> 'sudo k3s crictl pull <image>'",
                 "DNS, TLS or timeout errors point at the node's network or a registry mirror "
                 "(/etc/rancher/k3s/registries.yaml)."),
        ],
        related=["deployment-rollout-stuck"]),
    Runbook(
        id="pod-pending", title="Pod cannot be scheduled",
        summary="The scheduler finds no node for the pod: not enough resources, a taint, a "
                "node selector or affinity nothing matches, or an unbound volume.",
        severity_hint="warning",
        steps=[
            step("Read the scheduler's message", "It names every reason nodes were rejected.",
                 "kubectl -n <namespace> describe pod <pod> | grep -A5 FailedScheduling",
                 "'Insufficient cpu/memory', 'untolerated taint', 'didn't match node "
                 "affinity/selector', 'unbound PersistentVolumeClaims'.", "k3sops check"),
            step("Check node capacity", "Insufficient resources: free or add capacity.",
                 "kubectl describe nodes | grep -A8 'Allocated resources'",
                 "Requests near allocatable on every node.", "k3sops metrics nodes"),
            step("Check its volumes", "A Pending PVC keeps the pod Pending.",
                 "kubectl -n <namespace> get pvc",
                 "A claim not Bound: follow pvc-pending."),
        ],
        related=["capacity-requests", "pvc-pending", "node-cordoned"]),
    Runbook(
        id="pod-failed", title="Pod failed",
        summary="The pod's phase is Failed: all its containers exited and will not be "
                "restarted (restartPolicy Never/OnFailure, or the node rejected it).",
        severity_hint="warning",
        steps=[
            _DESCRIBE,
            step("Read its logs", "The exit reason of the last run.",
                 "kubectl -n <namespace> logs <pod> --all-containers",
                 "The error before exit.", "k3sops logs <pod> -n <namespace>"),
            step("Delete it when understood", "Failed pods stay until deleted and clutter "
                 "the namespace.", "kubectl -n <namespace> delete pod <pod>",
                 "The owner (Job, ReplicaSet) creates a replacement if it needs one."),
        ],
        related=["job-failed", "pod-evicted"]),
    Runbook(
        id="pod-evicted", title="Pod evicted",
        summary="The kubelet evicted the pod under node pressure (memory, disk or PIDs); its "
                "controller created a replacement elsewhere.",
        severity_hint="warning",
        steps=[
            step("See why it was evicted", "The message names the resource.",
                 "kubectl -n <namespace> get pod <pod> -o jsonpath='{.status.message}'",
                 "'The node was low on resource: memory/ephemeral-storage'.", "k3sops check"),
            step("Check the node's pressure", "Evictions repeat until the node is healthy.",
                 "kubectl describe node <node>",
                 "MemoryPressure or DiskPressure True: follow that runbook.",
                 "k3sops metrics nodes"),
            step("Clean up evicted pods", "They stay as Failed objects.",
                 "kubectl -n <namespace> delete pod <pod>", "No Evicted pods left."),
        ],
        related=["node-memory-pressure", "node-disk-pressure"]),
]
