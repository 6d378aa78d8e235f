"""Emergency runbooks from the operations guide: the cluster is down or about to be."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

_ETCDCTL = ("ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 "
            "--cacert /var/lib/rancher/k3s/server/tls/etcd/server-ca.crt "
            "--cert /var/lib/rancher/k3s/server/tls/etcd/server-client.crt "
            "--key /var/lib/rancher/k3s/server/tls/etcd/server-client.key")

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="emergency-cluster-down", title="EMERGENCY: control plane unreachable",
        summary="kubectl cannot reach the API server on any server. Running pods keep "
                "running, but nothing can be changed and failures are not healed.",
        severity_hint="critical",
        steps=[
            step("Confirm from more than one place", "Rules out your network, VPN or "
                 "kubeconfig.", "kubectl get --raw /readyz?verbose; "
                 "curl -sk https://<server-ip>:6443/ping",
                 "Refused or timing out against every server address.", "k3sops status"),
            step("Check the k3s service on every server", "The API server lives in the k3s "
                 "process.", "systemctl status k3s; journalctl -u k3s -n 200 --no-pager",
                 "A stopped or crash-looping service and its last error (etcd, certificates, "
                 "disk full, out of memory)."),
            step("Check etcd quorum", "Without quorum the API server cannot serve.",
                 f"{_ETCDCTL} endpoint health --cluster",
                 "How many members are healthy: fewer than half plus one means no quorum."),
            step("Fix the host problem and start k3s", "Disk full, memory and expired "
                 "certificates have their own emergency runbooks.",
                 "sudo systemctl start k3s",
                 "`kubectl get nodes` answers again."),
            step("If etcd cannot recover, restore from a snapshot", "Last resort: the cluster "
                 "goes back to the snapshot's time.",
                 "sudo k3s server --cluster-reset "
                 "--cluster-reset-restore-path=<snapshot-path>",
                 "Follow emergency-etcd-restore step by step."),
        ],
        related=["emergency-etcd-restore", "emergency-disk-full",
                 "emergency-certificate-expired", "etcd-no-leader"]),
    Runbook(
        id="emergency-etcd-restore", title="EMERGENCY: restore etcd from a snapshot",
        summary="The K3s restore procedure for embedded etcd: everything written after the "
                "snapshot is lost. Restoring onto new hosts needs the original server token.",
        severity_hint="critical",
        steps=[
            step("Pick the snapshot", "The newest good one; snapshots are in "
                 "/var/lib/rancher/k3s/server/db/snapshots unless --dir or S3 was used.",
                 "sudo k3s etcd-snapshot ls",
                 "Its name, node and time: everything after that time is lost.",
                 "k3sops check"),
            step("Stop k3s on ALL servers", "No server may keep writing to the old cluster.",
                 "sudo systemctl stop k3s  # on every server",
                 "`systemctl is-active k3s` says inactive on every server."),
            step("Reset the cluster from the snapshot on ONE server", "It moves the old db "
                 "aside, verifies the snapshot's hash and writes a reset flag. For S3 pass "
                 "the file name and the --etcd-s3* flags.",
                 "sudo k3s server --cluster-reset "
                 "--cluster-reset-restore-path=<snapshot-path>",
                 "A message asking to restart without --cluster-reset; a hash error means "
                 "the snapshot is corrupt: pick another."),
            step("Start k3s on that server", "Now without --cluster-reset.",
                 "sudo systemctl start k3s", "`kubectl get nodes` answers."),
            step("Rejoin the other servers", "Their old etcd data would conflict.",
                 "sudo rm -rf /var/lib/rancher/k3s/server/db; sudo systemctl start k3s",
                 "Every server Ready and an etcd member again.", "k3sops status"),
        ],
        related=["emergency-cluster-down", "backup-stale", "restore-drill"]),
    Runbook(
        id="emergency-node-lost", title="EMERGENCY: a node is lost for good",
        summary="A host is dead (hardware, deleted VM). Its pods must move; if it was a "
                "server, its etcd member must go or quorum stays at risk.",
        severity_hint="critical",
        steps=[
            step("Confirm the node is gone", "A reboot in progress needs no action.",
                 "kubectl get node <node> -o wide",
                 "NotReady for long and the host unreachable.", "k3sops status"),
            step("Cordon and drain it", "Moves its pods; stateful ones need their volumes "
                 "elsewhere.", "kubectl cordon <node>; kubectl drain <node> "
                 "--ignore-daemonsets --delete-emptydir-data --force",
                 "Pods recreated on other nodes; pods stuck Terminating on the dead node."),
            step("Delete the Node object", "Releases its pods and volume attachments.",
                 "kubectl delete node <node>", "The node no longer in `kubectl get nodes`."),
            step("For a server: remove its etcd member", "A dead member counts against "
                 "quorum.", f"{_ETCDCTL} member list; {_ETCDCTL} member remove <member-id>",
                 "The member list contains only live servers (an odd number)."),
            step("Replace the capacity", "Provision a new node with the platform's Ansible "
                 "inventory.", None, "The new node Ready; workloads balanced."),
        ],
        related=["node-not-ready", "etcd-insufficient-members"]),
    Runbook(
        id="emergency-certificate-expired", title="EMERGENCY: certificates expired",
        summary="K3s certificates (365 days) expired: API calls fail with x509 errors, nodes "
                "go NotReady. K3s renews them on start when they are within 120 days.",
        severity_hint="critical",
        steps=[
            step("Confirm the expiry", "x509 'certificate has expired' in logs.",
                 "sudo k3s certificate check",
                 "Certificates past their end date.", "k3sops check --monthly"),
            step("Rotate on each server", "Stop first, rotate, start.",
                 "sudo systemctl stop k3s; sudo k3s certificate rotate; "
                 "sudo systemctl start k3s",
                 "`k3s certificate check` shows new dates; kubectl works."),
            step("Restart the agents", "Agents get new client certificates on start.",
                 "ssh <node> 'sudo systemctl restart k3s-agent'",
                 "All nodes Ready.", "k3sops status"),
            step("Update kubeconfigs", "The admin kubeconfig embeds a client certificate.",
                 "sudo cat /etc/rancher/k3s/k3s.yaml",
                 "Distribute the new kubeconfig to whoever needs it."),
        ],
        related=["apiserver-client-cert-expiry", "kubelet-cert-expiry"]),
    Runbook(
        id="emergency-disk-full", title="EMERGENCY: a node's disk is full",
        summary="A filesystem is at 100%: etcd, containerd and the kubelet fail; on a server "
                "the control plane may stop.",
        severity_hint="critical",
        steps=[
            step("Find the full filesystem", "Which mountpoint.", "ssh <node> 'df -h'",
                 "Use% 100.", "k3sops metrics nodes"),
            step("Prune unused images", "containerd images are the biggest safe win.",
                 "ssh <node> 'sudo k3s crictl rmi --prune'", "Space freed in the output."),
            step("Trim logs", "Container and system logs grow without bound when "
                 "rotation is off.", "ssh <node> 'sudo journalctl --vacuum-size=500M; "
                 "sudo du -sh /var/log/pods/* | sort -h | tail'",
                 "A pod writing gigabytes of logs: fix its log level."),
            step("Find large emptyDir volumes and old snapshots", "Scratch space and "
                 "snapshots beyond retention.", "ssh <node> 'sudo du -sh /var/lib/kubelet/"
                 "pods/*/volumes/kubernetes.io~empty-dir/* "
                 "/var/lib/rancher/k3s/server/db/snapshots | sort -h | tail'",
                 "The biggest items: delete the pod (its emptyDir goes) or prune snapshots "
                 "with `k3s etcd-snapshot prune`."),
        ],
        related=["node-disk-space-low", "node-disk-pressure", "images-unused"]),
    Runbook(
        id="emergency-high-memory-oom", title="EMERGENCY: nodes out of memory",
        summary="Nodes run out of memory: the kernel OOM-kills processes (possibly k3s "
                "itself), the kubelet evicts pods, services go down.",
        severity_hint="critical",
        steps=[
            step("See which nodes and pods", "Where the memory went.",
                 "kubectl top nodes; kubectl top pods -A --sort-by=memory | head -20",
                 "Pods far above their requests or without limits.", "k3sops metrics nodes"),
            step("Check the kernel's OOM kills", "Whether k3s or containerd was killed.",
                 "ssh <node> 'sudo dmesg -T | grep -i -e oom -e killed | tail -20'",
                 "Killed processes; k3s killed means restart it."),
            step("Stop the biggest offender", "Scale it down or restart it to free memory "
                 "now.", "kubectl -n <namespace> scale deployment/<name> --replicas=0",
                 "Node memory falls; MemoryPressure clears."),
            step("Set limits before scaling back up", "Prevents a repeat.",
                 "kubectl -n <namespace> set resources deployment/<name> "
                 "--limits=memory=<size>", "No new OOMKilled containers.", "k3sops check"),
        ],
        related=["node-memory-pressure", "node-high-memory", "pod-oomkilled"]),
    Runbook(
        id="emergency-app-down", title="EMERGENCY: an application is down",
        summary="An application's users get errors or nothing: its workload has no available "
                "replica, its pods crash, or the path to it (Service, endpoints, Ingress) is "
                "broken. `k3sops emergency app-down APP` walks these steps.",
        severity_hint="critical",
        steps=[
            step("Check the rollout", "Scaled to zero, a stuck rollout or no available "
                 "replica each have their own fix.",
                 "kubectl -n <namespace> rollout status deployment/<app>; "
                 "kubectl -n <namespace> get deploy,sts <app>",
                 "READY 0/N, ProgressDeadlineExceeded, or replicas 0.",
                 "k3sops emergency app-down <app> -n <namespace>"),
            step("Follow the pods' causal chain", "Pending, image pull, crash loop, OOM or "
                 "readiness each name the broken link.",
                 "kubectl -n <namespace> describe pod <pod>",
                 "The first failing link and its runbook.",
                 "k3sops diagnose deployment <app> -n <namespace>"),
            step("Check Service → EndpointSlices → Ingress", "Pods may be fine while nothing "
                 "routes to them.", "kubectl -n <namespace> get svc,endpointslices,ingress",
                 "A Service without ready endpoints or an Ingress naming a missing Service.",
                 "k3sops diagnose network -n <namespace>"),
            step("Read the logs and the firing alerts", "The application usually says why.",
                 "kubectl -n <namespace> logs <pod> --previous --tail=50",
                 "Connection refused to a dependency, bad configuration, panics.",
                 "k3sops logs <pod> -n <namespace> --previous"),
            step("Restore service", "Restart a wedged rollout, scale a workload back up, or "
                 "roll back a bad release.",
                 "kubectl -n <namespace> rollout restart deployment/<app>; "
                 "kubectl -n <namespace> rollout undo deployment/<app>",
                 "Available replicas back to the desired count; endpoints ready.",
                 "k3sops emergency app-down <app> -n <namespace> --yes"),
        ],
        related=["deployment-unavailable", "deployment-rollout-stuck", "pod-crashloop",
                 "service-no-endpoints", "ingress-backend-missing"]),
    Runbook(
        id="emergency-network-lost", title="EMERGENCY: the cluster network is lost",
        summary="Nodes go NotReady together, DNS stops resolving, or nothing reaches the "
                "ingress. The pattern (one node, all agents, everything) says where to look. "
                "`k3sops emergency network-lost` walks these steps.",
        severity_hint="critical",
        steps=[
            step("Read the NotReady pattern", "One node: that host. All agents: the path to "
                 "the servers. Everything: the servers themselves.",
                 "kubectl get nodes -o wide", "Which nodes are NotReady and since when.",
                 "k3sops emergency network-lost"),
            step("Check DNS", "CoreDNS down breaks every Service name.",
                 "kubectl -n kube-system get deploy coredns; kubectl run dnstest --rm -it "
                 "--image=busybox:1.36 --restart=Never -- nslookup kubernetes.default",
                 "An answer with the kubernetes Service's ClusterIP.",
                 "k3sops diagnose network --probe-dns"),
            step("Check the ingress controller and MetalLB", "Traffic from outside enters "
                 "there.", "kubectl -n kube-system get deploy traefik; "
                 "kubectl -n metallb-system get pods,ipaddresspools,l2advertisements",
                 "The controller available and its LoadBalancer Service with an external IP.",
                 "k3sops diagnose network"),
            step("Check flannel and kube-proxy on an affected node", "K3s runs both inside "
                 "its own process.", "ssh <node> 'ip route; ip -d link show flannel.1; "
                 "sudo journalctl -u k3s -u k3s-agent -n 200 --no-pager | grep -i flannel'",
                 "Routes to the other nodes' pod CIDRs and the VXLAN interface up; firewall "
                 "rules allowing UDP 8472 between nodes."),
            step("Restart what is stuck", "After the network is back, CoreDNS or the ingress "
                 "controller may stay wedged.",
                 "kubectl -n kube-system rollout restart deployment/coredns",
                 "DNS answers again.", "k3sops emergency network-lost --yes"),
        ],
        related=["node-not-ready", "dns-coredns-unavailable", "loadbalancer-no-ip",
                 "metallb-pool-exhausted"]),
]
