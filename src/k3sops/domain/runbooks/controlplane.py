"""Runbooks for the control plane: API server, scheduler, controller-manager, etcd, certificates."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

_ETCDCTL = ("ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 "
            "--cacert /var/lib/rancher/k3s/server/tls/etcd/server-ca.crt "
            "--cert /var/lib/rancher/k3s/server/tls/etcd/server-client.crt "
            "--key /var/lib/rancher/k3s/server/tls/etcd/server-client.key")
"""etcdctl against K3s' embedded etcd, run on a server (the certificates are K3s's own)."""

_K3S_SERVER = step(
    "Check the k3s service on each server", "K3s runs the API server, scheduler and "
    "controller-manager inside the k3s process: one service to check.",
    "systemctl status k3s; journalctl -u k3s --since '-30 min'",
    "The service not active, restart loops, or errors about etcd, certificates or the "
    "datastore.")

_EMBEDDED = step(
    "Rule out a false alarm on K3s", "K3s embeds scheduler and controller-manager in the "
    "server: there is no separate scrape target unless they are exposed, and alerts written "
    "for kubeadm fire falsely.",
    "kubectl get --raw /readyz?verbose",
    "All checks ok and workloads scheduling normally: the component works; set "
    "monitoring.embedded_control_plane in platform.yaml.", "k3sops config validate")

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="apiserver-down", title="API server down",
        summary="Prometheus cannot reach the API server: kubectl, controllers and the kubelets "
                "cannot talk to the cluster. Running pods keep running.",
        severity_hint="critical",
        steps=[
            step("Try the API from outside", "Tells a monitoring problem from an outage.",
                 "kubectl get --raw /readyz?verbose",
                 "Connection refused or timeouts: the API is down (see "
                 "emergency-cluster-down); ok: the scrape is broken.", "k3sops status"),
            _K3S_SERVER,
        ],
        related=["emergency-cluster-down", "etcd-no-leader"]),
    Runbook(
        id="apiserver-errors", title="API server error rate high",
        summary="A share of API requests fail with 5xx: controllers retry, deploys fail.",
        severity_hint="warning",
        steps=[
            step("See which requests fail", "Verb and resource point at the cause.",
                 "kubectl get --raw /metrics | grep apiserver_request_total | grep 'code=\"5'",
                 "A resource or verb with most errors (often etcd timeouts).",
                 "k3sops metrics cluster"),
            step("Check etcd health", "Most API 5xx come from a slow or leaderless datastore.",
                 f"{_ETCDCTL} endpoint health --cluster",
                 "Unhealthy endpoints or took > 100ms.", "k3sops check"),
            _K3S_SERVER,
        ],
        related=["etcd-slow-disk", "apiserver-latency"]),
    Runbook(
        id="apiserver-latency", title="API server latency high",
        summary="The API server's p99 request latency is high: kubectl and controllers are "
                "slow; watch-heavy clients may time out.",
        severity_hint="warning",
        steps=[
            step("See which requests are slow", "LIST calls over many objects are usual "
                 "suspects.", "kubectl get --raw /metrics | grep "
                 "apiserver_request_duration_seconds_count",
                 "Resources with high latency; clients that list everything often.",
                 "k3sops metrics cluster"),
            step("Check etcd latency and server load", "A slow disk under etcd slows every "
                 "request.", f"{_ETCDCTL} endpoint status --cluster -w table",
                 "High raft latency, a large DB size; CPU saturation on servers."),
        ],
        related=["etcd-slow-disk", "apiserver-errors"]),
    Runbook(
        id="scheduler-down", title="Scheduler down",
        summary="The scheduler cannot be scraped: new pods may stay Pending. On K3s the "
                "scheduler runs inside the server process.",
        severity_hint="critical",
        steps=[
            _EMBEDDED,
            step("Check that pods still get scheduled", "The real symptom of a dead "
                 "scheduler.", "kubectl get pods -A --field-selector=status.phase=Pending",
                 "New pods Pending without FailedScheduling events: the scheduler is down.",
                 "k3sops check"),
            _K3S_SERVER,
        ],
        related=["controller-manager-down", "apiserver-down"]),
    Runbook(
        id="controller-manager-down", title="Controller manager down",
        summary="The controller-manager cannot be scraped: deployments stop scaling, nodes "
                "are not watched. On K3s it runs inside the server process.",
        severity_hint="critical",
        steps=[
            _EMBEDDED,
            step("Check that controllers act", "A scaled deployment must create pods.",
                 "kubectl get deployments -A",
                 "Deployments whose desired and current counts stay apart with no events.",
                 "k3sops status"),
            _K3S_SERVER,
        ],
        related=["scheduler-down", "apiserver-down"]),
    Runbook(
        id="etcd-no-leader", title="etcd member has no leader",
        summary="An etcd member has no leader: the datastore refuses writes; the API server "
                "fails most requests.",
        severity_hint="critical",
        steps=[
            step("List members and their status", "Which members are up and who leads.",
                 f"{_ETCDCTL} endpoint status --cluster -w table",
                 "IS LEADER false everywhere, unreachable members, a lost quorum "
                 "(fewer than half plus one).", "k3sops check"),
            step("Check the k3s service on each server", "A server down or partitioned "
                 "takes its member with it.", "systemctl status k3s; journalctl -u k3s "
                 "--since '-30 min' | grep -i etcd",
                 "'lost leader', 'request timed out', peer connection errors on 2380."),
            step("Restore quorum", "Bring members back; if quorum cannot come back, restore "
                 "from a snapshot.", "sudo systemctl start k3s",
                 "A leader elected: `endpoint status` shows IS LEADER true on one member."),
        ],
        related=["etcd-insufficient-members", "emergency-etcd-restore",
                 "emergency-cluster-down"]),
    Runbook(
        id="etcd-insufficient-members", title="etcd below quorum",
        summary="Fewer etcd members are up than quorum needs: one more failure stops the "
                "cluster (or it already has).",
        severity_hint="critical",
        steps=[
            step("List members", "Which servers are missing.",
                 f"{_ETCDCTL} member list -w table",
                 "Members whose servers are down or that were never removed after a node "
                 "was lost.", "k3sops status"),
            step("Bring the missing servers back", "Starting k3s rejoins its member.",
                 "ssh <server> 'sudo systemctl start k3s'",
                 "All members started and healthy."),
            step("Remove members of servers that are gone for good", "A dead member counts "
                 "against quorum.", f"{_ETCDCTL} member remove <member-id>",
                 "The member list matches the servers that exist."),
        ],
        related=["etcd-no-leader", "emergency-node-lost", "emergency-etcd-restore"]),
    Runbook(
        id="etcd-slow-disk", title="etcd disk too slow",
        summary="etcd's WAL fsync or backend commit p99 is too high: leader elections, API "
                "timeouts and lost writes follow.",
        severity_hint="warning",
        steps=[
            step("Confirm the latency", "Which member and how slow.",
                 "kubectl get --raw /metrics | grep etcd_request_duration",
                 "p99 WAL fsync above 0.5s or backend commit above 0.25s on a member.",
                 "k3sops metrics --query 'histogram_quantile(0.99, "
                 "rate(etcd_disk_wal_fsync_duration_seconds_bucket[5m]))'"),
            step("Check the disk under /var/lib/rancher/k3s/server/db", "etcd needs a low-"
                 "latency disk (SSD) it does not share with busy workloads.",
                 "ssh <server> 'iostat -x 5 3'",
                 "High await or utilisation on the etcd disk; noisy neighbours."),
        ],
        related=["etcd-no-leader", "apiserver-latency"]),
    Runbook(
        id="etcd-db-quota", title="etcd database near its quota",
        summary="The etcd database approaches its space quota: when reached, etcd raises a "
                "NOSPACE alarm and refuses writes.",
        severity_hint="warning",
        steps=[
            step("See the size and alarms", "How close and whether the alarm is raised.",
                 f"{_ETCDCTL} endpoint status --cluster -w table; {_ETCDCTL} alarm list",
                 "DB SIZE near the quota; 'alarm:NOSPACE'.", "k3sops check"),
            step("Compact and defragment, one member at a time", "Compaction drops old "
                 "revisions; defragment gives the space back to the filesystem.",
                 f"{_ETCDCTL} defrag --endpoints https://<member-ip>:2379",
                 "DB SIZE drops; then `alarm disarm` if a NOSPACE alarm was raised."),
            step("Find what fills it", "Many Events or large objects (ConfigMaps, CRDs).",
                 "kubectl get --raw /metrics | grep apiserver_storage_objects | sort -k2 -n "
                 "| tail", "Resources with very many objects."),
        ],
        related=["etcd-slow-disk"]),
    Runbook(
        id="apiserver-client-cert-expiry", title="Client certificate near expiry",
        summary="A client certificate presented to the API server expires soon; when it "
                "does, that client (a kubelet, a controller, a user) is locked out.",
        severity_hint="warning",
        steps=[
            step("Check K3s certificates on each server", "K3s certificates last 365 days "
                 "and are renewed on start within 120 days of expiry.",
                 "sudo k3s certificate check",
                 "Certificates expiring soon.", "k3sops check --monthly"),
            step("Rotate and restart", "Renews the certificates K3s manages.",
                 "sudo systemctl stop k3s; sudo k3s certificate rotate; "
                 "sudo systemctl start k3s",
                 "`k3s certificate check` shows new dates; nodes stay Ready."),
            step("Renew user kubeconfigs", "Certificates in users' kubeconfig files are not "
                 "rotated by K3s.", None,
                 "Users or tools with a client certificate near its end."),
        ],
        related=["kubelet-cert-expiry", "emergency-certificate-expired"]),
    Runbook(
        id="kubelet-cert-expiry", title="Kubelet certificate near expiry",
        summary="A kubelet client or serving certificate expires soon: the node will stop "
                "reporting, or metrics and logs from it will fail.",
        severity_hint="warning",
        steps=[
            step("Check the node's certificates", "K3s renews them when the service starts "
                 "within 120 days of expiry.", "ssh <node> 'sudo k3s certificate check'",
                 "The kubelet certificates and their dates.", "k3sops check --monthly"),
            step("Restart K3s on the node", "A restart renews certificates near expiry.",
                 "ssh <node> 'sudo systemctl restart k3s-agent'  # k3s on servers",
                 "New dates in `k3s certificate check`; the node stays Ready."),
        ],
        related=["apiserver-client-cert-expiry", "emergency-certificate-expired"]),
    Runbook(
        id="cert-manager-cert-expiry", title="cert-manager certificate near expiry",
        summary="A cert-manager Certificate expires soon: it should have renewed 30 days "
                "before, so renewal is failing.",
        severity_hint="warning",
        steps=[
            step("Check the Certificate and its requests", "cert-manager reports why "
                 "renewal fails.", "kubectl -n <namespace> describe certificate <name>",
                 "Ready False and the reason; failed CertificateRequests or Orders.",
                 "k3sops check"),
            step("Check the issuer", "ACME challenges and issuer credentials fail most.",
                 "kubectl -n <namespace> get challenges,orders; kubectl describe "
                 "clusterissuer <issuer>",
                 "Pending challenges (DNS or HTTP-01 unreachable) or issuer errors."),
        ],
        related=["apiserver-client-cert-expiry"]),
]
