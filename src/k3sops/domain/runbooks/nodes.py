"""Runbooks for nodes: readiness, pressure, resource use, disks, images and version drift."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

_DESCRIBE_NODE = step(
    "Describe the node", "Conditions, taints, allocated resources and recent events in one view.",
    "kubectl describe node <node>",
    "Conditions that are not False (Ready aside), taints such as "
    "node.kubernetes.io/unreachable, and events near the time the problem started.",
    "k3sops status")

_K3S_SERVICE = step(
    "Check the K3s service on the host", "The kubelet runs inside the k3s (server) or k3s-agent "
    "(agent) service: if it stopped, the node stops reporting.",
    "systemctl status k3s k3s-agent; journalctl -u k3s -u k3s-agent --since '-30 min'",
    "A service that is not active (running), restart loops, 'failed to ... certificate', "
    "'connection refused' to the server URL, or out-of-memory kills of the k3s process.")

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="node-not-ready", title="Node NotReady",
        summary="The node's Ready condition is False or Unknown: the kubelet is not reporting. "
                "After the eviction timeout its pods are rescheduled elsewhere; workloads with "
                "local storage or a single replica are down.",
        severity_hint="critical",
        steps=[
            _DESCRIBE_NODE,
            step("Check whether the host is reachable", "Tells a dead or partitioned host "
                 "from a kubelet problem.", "ping -c 3 <node-ip>; ssh <node> uptime",
                 "No answer: the host or its network is down (see emergency-node-lost). "
                 "An answer: continue on the host."),
            _K3S_SERVICE,
            step("Check disk, memory and PIDs on the host", "Pressure makes the kubelet "
                 "report NotReady or evict pods.", "ssh <node> 'df -h /var/lib/rancher; free -m'",
                 "A filesystem near 100% or almost no free memory.", "k3sops metrics nodes"),
            step("Restart K3s on the node if it is hung", "Restarting the service does not "
                 "restart running containers.",
                 "sudo systemctl restart k3s-agent  # k3s on servers",
                 "The node returns to Ready within a minute: `kubectl get node <node> -w`."),
        ],
        related=["node-unreachable", "node-down", "emergency-node-lost"]),
    Runbook(
        id="node-unreachable", title="Node unreachable (taint node.kubernetes.io/unreachable)",
        summary="The node controller lost contact with the node and tainted it unreachable; "
                "pods without a matching toleration are evicted after the toleration period.",
        severity_hint="warning",
        steps=[
            _DESCRIBE_NODE,
            step("Check the network path from a server to the node", "Unreachable usually "
                 "means the node's kubelet cannot reach the API server (or the reverse).",
                 "ssh <node> 'curl -sk https://<server-ip>:6443/ping'",
                 "A timeout or 'connection refused': firewall, routing or the server's "
                 "load balancer."),
            _K3S_SERVICE,
        ],
        related=["node-not-ready", "emergency-node-lost"]),
    Runbook(
        id="node-down", title="Node exporter target down",
        summary="Prometheus cannot scrape node-exporter on a host: either the host is down or "
                "the exporter is. Until fixed, disk, CPU and memory alerts for it are blind.",
        severity_hint="critical",
        steps=[
            step("See which targets are down and why", "The scrape error names the cause.",
                 "kubectl -n monitoring get pods -l app.kubernetes.io/name=node-exporter -o wide",
                 "The target's last error: 'connection refused' (exporter not running), "
                 "'context deadline exceeded' (host or network).", "k3sops status"),
            step("Check the node itself", "A down host also shows as NotReady.",
                 "kubectl get node <node>", "NotReady: follow node-not-ready."),
            step("Check the node-exporter pod on that node", "A crash-looping exporter keeps "
                 "the target down while the node is fine.",
                 "kubectl -n monitoring describe pod <node-exporter-pod>",
                 "Restarts, OOMKilled, or a pod Pending on that node.",
                 "k3sops logs <node-exporter-pod> -n monitoring --previous"),
        ],
        related=["node-not-ready", "target-down"]),
    Runbook(
        id="node-memory-pressure", title="Node MemoryPressure",
        summary="The kubelet reports MemoryPressure: it evicts pods (BestEffort first) to "
                "protect the node and refuses new BestEffort pods.",
        severity_hint="warning",
        steps=[
            step("Find the biggest memory users on the node", "Tells a leak in one pod from "
                 "a node that is simply too full.",
                 "kubectl top pods -A --sort-by=memory | head -20",
                 "One pod far above its request, or many pods without memory limits.",
                 "k3sops metrics nodes"),
            step("Check evictions", "Evicted pods show what the kubelet already removed.",
                 "kubectl get pods -A --field-selector=status.phase=Failed",
                 "Pods with reason Evicted on this node.", "k3sops check"),
            step("Set requests and limits, or add capacity", "Requests make the scheduler "
                 "place pods where memory is; limits stop one pod taking the node.",
                 "kubectl -n <namespace> set resources deployment/<name> "
                 "--requests=memory=<size> --limits=memory=<size>",
                 "MemoryPressure returns to False: `kubectl describe node <node>`."),
        ],
        related=["node-high-memory", "pod-evicted", "emergency-high-memory-oom"]),
    Runbook(
        id="node-disk-pressure", title="Node DiskPressure",
        summary="The kubelet reports DiskPressure on its root or image filesystem: it garbage-"
                "collects images, evicts pods and blocks new ones.",
        severity_hint="warning",
        steps=[
            step("See which filesystem is full", "The image filesystem and the root "
                 "filesystem need different fixes.",
                 "ssh <node> 'df -h / /var/lib/rancher'",
                 "Use above the kubelet's eviction threshold (by default less than 10% free).",
                 "k3sops metrics nodes"),
            step("Remove unused images", "containerd images are often the biggest item.",
                 "ssh <node> 'sudo k3s crictl rmi --prune'",
                 "Freed space in the output; df shows more available."),
            step("Find large logs and emptyDir volumes", "A chatty pod can fill the disk with "
                 "its logs or scratch space.",
                 "ssh <node> 'sudo du -xsh /var/log/pods/* /var/lib/kubelet/pods/*/volumes/"
                 "kubernetes.io~empty-dir/* | sort -h | tail'",
                 "A pod directory of many GiB: fix its logging or set an emptyDir sizeLimit."),
        ],
        related=["node-disk-space-low", "emergency-disk-full", "images-unused"]),
    Runbook(
        id="node-pid-pressure", title="Node PIDPressure",
        summary="The node is running out of process ids; a fork bomb or a leaking process "
                "can make the whole node unusable.",
        severity_hint="warning",
        steps=[
            step("Find the processes", "Which container spawns them.",
                 "ssh <node> 'ps -eo pid,ppid,comm --sort=ppid | awk \"{print $3}\" | "
                 "sort | uniq -c | sort -n | tail'",
                 "One command with thousands of instances (often zombie processes)."),
            step("Map the process to a pod and restart it", "Restarting the pod frees its "
                 "processes; then fix the application (reaping children, thread pools).",
                 "ssh <node> 'sudo k3s crictl ps'; kubectl -n <namespace> delete pod <pod>",
                 "PIDPressure returns to False: `kubectl describe node <node>`."),
        ],
        related=["node-memory-pressure"]),
    Runbook(
        id="node-cordoned", title="Node cordoned",
        summary="The node is unschedulable: fine during maintenance, a capacity loss if "
                "somebody forgot to uncordon it.",
        severity_hint="info",
        steps=[
            step("Find out why it was cordoned", "Maintenance may still be running.",
                 "kubectl describe node <node> | grep -iA3 -e taints -e unschedulable",
                 "Taints or annotations left by a drain or an upgrade; ask who is working on it."),
            step("Uncordon it when the work is done", "Gives its capacity back to the "
                 "scheduler.", "kubectl uncordon <node>",
                 "SchedulingDisabled is gone from `kubectl get nodes`.", "k3sops status"),
        ],
        related=["capacity-requests"]),
    Runbook(
        id="node-high-cpu", title="Node CPU usage high",
        summary="CPU use on the node stays above the platform threshold (80% by default): "
                "latency grows and new pods may not fit.",
        severity_hint="warning",
        steps=[
            step("Confirm and see the trend", "A short spike and a steady climb call for "
                 "different actions.", "kubectl top nodes",
                 "Which nodes are high, and whether all nodes are (add capacity) or one "
                 "(rebalance).", "k3sops metrics nodes"),
            step("Find the pods using it", "One runaway pod is fixed by a limit or a restart.",
                 "kubectl top pods -A --sort-by=cpu | head -20",
                 "Pods far above their CPU request, or without requests."),
            step("Rebalance or scale", "Spread replicas, add a node, or scale the workload.",
                 "kubectl -n <namespace> scale deployment/<name> --replicas=<n>",
                 "CPU back under the threshold for the alert's `for` window."),
        ],
        related=["capacity-requests", "node-high-memory"]),
    Runbook(
        id="node-high-memory", title="Node memory usage high",
        summary="Memory use on the node stays above the platform threshold (80% by default), "
                "or is forecast to run out: next come MemoryPressure, evictions and OOM kills.",
        severity_hint="warning",
        steps=[
            step("Confirm and see the trend", "Tells a leak (steady climb) from load.",
                 "kubectl top nodes", "Memory per node and how fast it grows.",
                 "k3sops metrics nodes"),
            step("Find the pods using it", "A leaking pod is fixed by a limit and a restart.",
                 "kubectl top pods -A --sort-by=memory | head -20",
                 "Pods far above their memory request, or without limits."),
            step("Set limits, restart the leaking pod, or add capacity", "Limits keep one pod "
                 "from starving the node.",
                 "kubectl -n <namespace> rollout restart deployment/<name>",
                 "Memory use drops and stays below the threshold."),
        ],
        related=["node-memory-pressure", "emergency-high-memory-oom", "pod-oomkilled"]),
    Runbook(
        id="node-disk-space-low", title="Node filesystem almost out of space",
        summary="A node filesystem has under 5% (warning) or 3% (critical) free: writes will "
                "fail, etcd and containerd stop working when it fills.",
        severity_hint="critical",
        steps=[
            step("Confirm which filesystem and how full", "The mountpoint says what fills it.",
                 "ssh <node> 'df -h'", "The mountpoint from the alert and its Use%.",
                 "k3sops metrics nodes"),
            step("Free space now", "Unused images and old logs are safe to remove.",
                 "ssh <node> 'sudo k3s crictl rmi --prune; sudo journalctl --vacuum-size=500M'",
                 "Available space goes up in `df -h`."),
            step("Find what grows", "Otherwise it fills again.",
                 "ssh <node> 'sudo du -xh --max-depth=3 <mountpoint> | sort -h | tail -20'",
                 "Large directories under /var/lib/rancher, /var/log or a volume path."),
        ],
        related=["emergency-disk-full", "node-disk-filling-up", "node-disk-pressure"]),
    Runbook(
        id="node-disk-filling-up", title="Node filesystem filling up",
        summary="At the current rate (linear trend) a node filesystem fills within the "
                "forecast horizon: act before it is full.",
        severity_hint="warning",
        steps=[
            step("Check the trend", "A one-off copy and a steady leak look alike for a while.",
                 "kubectl top nodes", "Free space per node and its rate of change.",
                 "k3sops metrics --query 'predict_linear(node_filesystem_avail_bytes[6h], "
                 "86400)'"),
            step("Find what grows", "Logs, images, etcd snapshots and volumes are the usual "
                 "causes.", "ssh <node> 'sudo du -xh --max-depth=3 <mountpoint> | sort -h | "
                 "tail -20'",
                 "A directory that grew since yesterday (compare with a second run)."),
            step("Fix the source or grow the disk", "Log rotation, snapshot retention "
                 "(--etcd-snapshot-retention) or a larger volume.", None,
                 "The forecast no longer reaches zero within the horizon.", "k3sops check"),
        ],
        related=["node-disk-space-low", "emergency-disk-full"]),
    Runbook(
        id="images-unused", title="Unused images on a node",
        summary="Images no pod on the node uses take several GiB; the kubelet only collects "
                "them under disk pressure.",
        severity_hint="info",
        steps=[
            step("List images on the node", "See what would be removed.",
                 "ssh <node> 'sudo k3s crictl images'",
                 "Old tags of your applications and images of removed workloads."),
            step("Prune unused images", "crictl only removes images no container uses.",
                 "ssh <node> 'sudo k3s crictl rmi --prune'", "The freed images in the output.",
                 "k3sops check --weekly"),
        ],
        related=["node-disk-pressure"]),
    Runbook(
        id="version-drift", title="Nodes run different K3s versions",
        summary="Nodes run different K3s/kubelet versions: normal mid-upgrade, a risk if an "
                "upgrade stopped halfway (the kubelet must not be newer than the API server).",
        severity_hint="warning",
        steps=[
            step("List the versions", "Which nodes lag.", "kubectl get nodes -o wide",
                 "The VERSION column; servers must be upgraded before agents.", "k3sops status"),
            step("Plan the upgrade to the newest version", "Servers first, one node at a "
                 "time; the preflight checks skew, readiness, etcd quorum, a fresh verified "
                 "backup, disruption budgets and headroom.",
                 "k3sops upgrade plan --to <newest version>",
                 "Every preflight check passes (exit 0); a failure names its fix."),
            step("Finish the upgrade one node at a time", "Drain, upgrade, uncordon: the order "
                 "k3s-ansible's upgrade playbook follows.",
                 "kubectl drain <node> --ignore-daemonsets --delete-emptydir-data",
                 "Every node on the same version: `kubectl get nodes`."),
        ],
        related=["kernel-drift"]),
    Runbook(
        id="node-upgrade-interrupted", title="Node left cordoned by an interrupted upgrade",
        summary="`k3sops upgrade apply` cordons a node and marks it "
                "k3sops.io/upgrade-in-progress until its upgrade is done; a cordoned node "
                "still marked means the upgrade stopped there (a failure, Ctrl-C, a lost SSH "
                "session): its capacity is lost and the cluster runs mixed versions.",
        severity_hint="warning",
        steps=[
            step("See where it stopped", "The node's version and readiness tell whether K3s "
                 "was upgraded before the stop.",
                 "kubectl get node <node> -o wide; kubectl get node <node> -o "
                 "jsonpath='{.metadata.annotations}'",
                 "The VERSION column against the annotation's target version.",
                 "k3sops upgrade plan --to <version>"),
            step("Resume the upgrade", "Continues from the recorded progress: nodes already "
                 "upgraded are not upgraded again; the node is uncordoned when Ready on the new "
                 "version.", "k3sops upgrade apply --to <version> --resume",
                 "The node Ready, schedulable, on the target version; the annotation gone."),
        ],
        related=["node-cordoned", "version-drift"]),
    Runbook(
        id="kernel-drift", title="Nodes run different kernels",
        summary="Nodes run different kernel versions: usually a host patched and rebooted "
                "while others were not.",
        severity_hint="info",
        steps=[
            step("List the kernels", "Which nodes lag.", "kubectl get nodes -o wide",
                 "The KERNEL-VERSION column."),
            step("Patch and reboot the lagging nodes one at a time", "Drain first so that "
                 "workloads move.", "kubectl drain <node> --ignore-daemonsets "
                 "--delete-emptydir-data; ssh <node> 'sudo reboot'; kubectl uncordon <node>",
                 "The node back Ready with the new kernel."),
        ],
        related=["version-drift"]),
    Runbook(
        id="capacity-requests", title="Node requests near allocatable",
        summary="Pods on a node request most of its allocatable CPU or memory (or use grew "
                "steadily): new pods may stay Pending.",
        severity_hint="warning",
        steps=[
            step("See allocated resources", "Requests, not use, decide scheduling.",
                 "kubectl describe node <node> | grep -A8 'Allocated resources'",
                 "Requests above 80-90% of allocatable.", "k3sops metrics nodes"),
            step("Compare requests with real use", "Oversized requests waste capacity.",
                 "kubectl top pods -A --sort-by=<cpu|memory>",
                 "Pods whose use is far below their request: lower the request."),
            step("Add a node if the cluster is full", "Provision an agent with the platform's "
                 "Ansible inventory.", None, "Pending pods scheduled after the node joins."),
        ],
        related=["pod-pending", "node-high-cpu", "node-high-memory"]),
    Runbook(
        id="node-network-unavailable", title="Node network unavailable",
        summary="The node reports NetworkUnavailable: its pod network (routes, CNI) is not "
                "set up, so pods there cannot reach others. On K3s, flannel sets the routes.",
        severity_hint="critical",
        steps=[
            step("Read the condition", "Its reason and message say who set it.",
                 "kubectl describe node <node> | grep -A2 NetworkUnavailable",
                 "NoRouteCreated (routes missing), or the CNI's own reason.",
                 "k3sops diagnose node <node>"),
            step("Check the CNI on the node", "K3s runs flannel in the k3s process.",
                 "ssh <node> 'sudo journalctl -u k3s -u k3s-agent --since -30min | grep -i "
                 "flannel; ls /run/flannel/'",
                 "subnet.env missing, flannel errors, an interface that did not come up."),
            step("Restart the agent once fixed", "The condition clears when the network is "
                 "set up again.", "ssh <node> 'sudo systemctl restart k3s-agent'",
                 "NetworkUnavailable False."),
        ],
        related=["node-not-ready", "pod-stuck-starting"]),
]
