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
    Runbook(
        id="pod-configmap-missing", title="Pod references a ConfigMap that does not exist",
        summary="A pod names a ConfigMap (or a key of one) that is not there and not optional: "
                "the kubelet will not start the container (CreateContainerConfigError, or "
                "ContainerCreating with FailedMount). A pod already running keeps running "
                "until its next restart.",
        severity_hint="critical",
        steps=[
            step("See what the pod names", "Volumes, env and envFrom each name ConfigMaps.",
                 "kubectl -n <namespace> get pod <pod> -o yaml | grep -B2 -A4 -i configmap",
                 "The name and key the finding lists, and who renders them (a Helm chart, a "
                 "kustomization, Argo CD).", "k3sops diagnose pod <pod> -n <namespace>"),
            step("Compare with what exists", "A typo, a key renamed, or an object not yet "
                 "applied (ordering in a release).",
                 "kubectl -n <namespace> get configmap; "
                 "kubectl -n <namespace> get configmap <name> -o jsonpath='{.data}'",
                 "The ConfigMap or the key is missing; create it (in Git for GitOps) or fix "
                 "the reference; mark it optional only if the app copes without it."),
            step("Restart the pod once fixed", "A pod stuck in ContainerCreating retries by "
                 "itself; one with CreateContainerConfigError too, after its back-off.",
                 "kubectl -n <namespace> rollout restart <kind>/<name>",
                 "The pod Running and Ready."),
        ],
        related=["pod-secret-missing", "pod-container-error"]),
    Runbook(
        id="pod-secret-missing", title="Pod references a Secret that does not exist",
        summary="A pod names a Secret (or a key of one) that is not there and not optional: "
                "the kubelet will not start the container. A missing imagePullSecret only "
                "matters for images that must be pulled from a private registry.",
        severity_hint="critical",
        steps=[
            step("See what the pod names", "Volumes, env, envFrom, CSI volumes and "
                 "imagePullSecrets each name Secrets.",
                 "kubectl -n <namespace> get pod <pod> -o yaml | grep -B2 -A4 -i secret",
                 "The name and key the finding lists.",
                 "k3sops diagnose pod <pod> -n <namespace>"),
            step("Find who should make it", "Secrets often come from a controller "
                 "(cert-manager, an external-secrets operator, a sealed-secrets controller) "
                 "or a release.",
                 "kubectl -n <namespace> get secrets; kubectl -n <namespace> get events "
                 "--sort-by=.lastTimestamp | tail -20",
                 "The controller's own errors (a Certificate not Ready, an ExternalSecret "
                 "failing), or a release that was never applied."),
            step("Restart the pod once fixed", "The kubelet retries, but a rollout is quicker.",
                 "kubectl -n <namespace> rollout restart <kind>/<name>",
                 "The pod Running and Ready."),
        ],
        related=["pod-configmap-missing", "pod-image-pull"]),
    Runbook(
        id="pod-pvc-missing", title="Pod mounts a claim that does not exist",
        summary="A pod mounts a PersistentVolumeClaim that is not there: the scheduler "
                "leaves it Pending ('persistentvolumeclaim not found').",
        severity_hint="critical",
        steps=[
            step("See which claim", "The pod's volumes name it.",
                 "kubectl -n <namespace> get pod <pod> -o jsonpath='{.spec.volumes}'",
                 "The claimName the finding lists.",
                 "k3sops diagnose pod <pod> -n <namespace>"),
            step("Find the claim or its data", "A claim deleted by mistake may have left its "
                 "volume Released (reclaim policy Retain).",
                 "kubectl -n <namespace> get pvc; kubectl get pv | grep <namespace>/<claim>",
                 "A Released volume to bind a new claim to (clear its claimRef), or create "
                 "the claim anew."),
        ],
        related=["pvc-pending", "pod-pending"]),
    Runbook(
        id="pod-container-error", title="Container cannot be created or started",
        summary="The kubelet cannot create or start a container: a bad securityContext "
                "(runAsNonRoot with a root image), a command that does not exist, a failing "
                "lifecycle hook, an image that must not be pulled but is absent, a runtime "
                "error.",
        severity_hint="critical",
        steps=[
            _DESCRIBE,
            step("Read the reason and message", "The waiting state names what failed.",
                 "kubectl -n <namespace> get pod <pod> -o jsonpath="
                 "'{.status.containerStatuses[*].state.waiting}'",
                 "CreateContainerConfigError (security context, env), RunContainerError "
                 "(exec: no such file, permission denied), PostStartHookError, "
                 "ErrImageNeverPull (imagePullPolicy Never and the image is not on the node)."),
            step("Fix the template and roll out", "The pod will not recover by itself.",
                 "kubectl -n <namespace> rollout restart <kind>/<name>",
                 "The new pod Running and Ready."),
        ],
        related=["pod-crashloop", "pod-configmap-missing", "pod-secret-missing"]),
    Runbook(
        id="pod-stuck-starting", title="Pod scheduled but its containers never start",
        summary="The pod has a node but stays in ContainerCreating or PodInitializing: a volume "
                "that does not mount or attach, a sandbox or network the node cannot set up, "
                "or an init container that never finishes.",
        severity_hint="warning",
        steps=[
            _DESCRIBE,
            step("Read the kubelet's events", "They say what it is waiting for.",
                 "kubectl -n <namespace> get events --field-selector involvedObject.name=<pod>",
                 "FailedMount / FailedAttachVolume (a volume still attached elsewhere: "
                 "Multi-Attach), FailedCreatePodSandBox (the node's CNI: on K3s flannel's "
                 "/run/flannel/subnet.env), an init container's logs."),
            step("Look at the node", "A node whose CNI or storage driver is broken holds every "
                 "new pod.", "kubectl describe node <node>; "
                 "kubectl -n <namespace> logs <pod> -c <init-container>",
                 "Other pods stuck on the same node; the init container waiting for a "
                 "dependency.", "k3sops diagnose node <node>"),
        ],
        related=["node-not-ready", "volumeattachment-error", "pvc-pending"]),
    Runbook(
        id="pod-stuck-terminating", title="Pod stuck Terminating",
        summary="A pod was deleted and its grace period is long over, but it is still there: "
                "a finalizer nobody removes, or a node that is down so nobody confirms its "
                "containers stopped. A StatefulSet will not replace it until it is gone.",
        severity_hint="warning",
        steps=[
            step("See what holds it", "Finalizers and the node.",
                 "kubectl -n <namespace> get pod <pod> -o jsonpath="
                 "'{.metadata.finalizers} {.spec.nodeName}'; kubectl get node <node>",
                 "A finalizer of a controller that is gone, or a node NotReady."),
            step("Node down: make sure it is really down, then force-delete",
                 "Force deletion skips the kubelet: two copies could run if the node is only "
                 "partitioned (dangerous for StatefulSets).",
                 "kubectl -n <namespace> delete pod <pod> --grace-period=0 --force",
                 "The pod gone; its controller makes a replacement."),
            step("Finalizer: fix or remove its controller's work", "Remove a finalizer only "
                 "when what it guards is handled.",
                 "kubectl -n <namespace> patch pod <pod> --type=json "
                 "-p='[{\"op\": \"remove\", \"path\": \"/metadata/finalizers\"}]'",
                 "The pod gone."),
        ],
        related=["node-not-ready", "emergency-node-lost"]),
]
