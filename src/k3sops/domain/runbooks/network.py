"""Runbooks for networking: services, ingresses, load balancers (MetalLB) and cluster DNS."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="service-no-endpoints", title="Service has no ready endpoints",
        summary="No ready pod matches the service's selector: every request to it fails.",
        severity_hint="warning",
        steps=[
            step("Compare selector and pod labels", "A typo in a label matches nothing.",
                 "kubectl -n <namespace> get svc <name> -o jsonpath='{.spec.selector}'; "
                 "kubectl -n <namespace> get pods --show-labels",
                 "No pod with all the selector's labels: fix the selector or the labels."),
            step("Check readiness of the matching pods", "Pods that are not Ready are "
                 "removed from endpoints.", "kubectl -n <namespace> get endpointslices "
                 "-l kubernetes.io/service-name=<name>",
                 "Endpoints with ready=false: follow the pod runbooks.", "k3sops check"),
        ],
        related=["deployment-unavailable", "ingress-backend-missing"]),
    Runbook(
        id="ingress-backend-missing", title="Ingress routes to a missing service or port",
        summary="An ingress rule points at a service or port that does not exist: those "
                "requests get 404 or 503 from the ingress controller.",
        severity_hint="critical",
        steps=[
            step("See the rule and its backend", "Which host/path is broken.",
                 "kubectl -n <namespace> describe ingress <name>",
                 "Backends shown with '<error: endpoints ... not found>'."),
            step("Check the service and its ports", "The port may be named differently.",
                 "kubectl -n <namespace> get svc <service> -o yaml",
                 "The service exists and exposes the port (number or name) the rule uses."),
        ],
        related=["service-no-endpoints"]),
    Runbook(
        id="loadbalancer-no-ip", title="LoadBalancer service has no external IP",
        summary="A LoadBalancer service stays <pending>: MetalLB has no free address, no "
                "pool matches, or K3s's servicelb competes with MetalLB.",
        severity_hint="warning",
        steps=[
            step("Read the service's events", "MetalLB says why it allocated nothing.",
                 "kubectl -n <namespace> describe svc <name>",
                 "'AllocationFailed' and its reason (no available IPs, no matching pool)."),
            step("Check the pools", "An exhausted or mis-selected pool.",
                 "kubectl -n metallb-system get ipaddresspools,l2advertisements",
                 "A pool with free addresses whose serviceAllocation matches the service."),
            step("Check that servicelb is disabled", "K3s ships servicelb, which conflicts "
                 "with MetalLB unless disabled (--disable servicelb).",
                 "kubectl -n kube-system get pods | grep svclb",
                 "svclb-* pods: disable servicelb in the K3s server configuration."),
        ],
        related=["metallb-pool-exhausted"]),
    Runbook(
        id="metallb-pool-exhausted", title="MetalLB address pool exhausted",
        summary="Every address of a MetalLB pool is assigned: new LoadBalancer services get "
                "no IP.",
        severity_hint="warning",
        steps=[
            step("List who holds the addresses", "Forgotten services hold addresses too.",
                 "kubectl get svc -A --field-selector spec.type=LoadBalancer",
                 "Services that are no longer needed."),
            step("Free addresses or extend the pool", "Add a range the network team "
                 "reserved.", "kubectl -n metallb-system edit ipaddresspool <pool>",
                 "Pending services get an EXTERNAL-IP."),
        ],
        related=["loadbalancer-no-ip"]),
    Runbook(
        id="dns-coredns-unavailable", title="Cluster DNS down",
        summary="CoreDNS has no available replica or its service no endpoint: name "
                "resolution inside the cluster fails, and with it almost every application.",
        severity_hint="critical",
        steps=[
            step("Check CoreDNS pods", "Why the replicas are not available.",
                 "kubectl -n kube-system get pods -l k8s-app=kube-dns -o wide",
                 "Pods CrashLoopBackOff, Pending or missing.", "k3sops status"),
            step("Read CoreDNS logs", "Corefile errors or loop detection.",
                 "kubectl -n kube-system logs deployment/coredns",
                 "'plugin/loop: Loop detected' (the node's resolv.conf points at itself) or "
                 "Corefile parse errors.", "k3sops logs <coredns-pod> -n kube-system"),
            step("Restart CoreDNS after fixing", "Picks up a fixed configuration.",
                 "kubectl -n kube-system rollout restart deployment/coredns",
                 "Resolution works: `kubectl run -it --rm dnstest --image=busybox "
                 "--restart=Never -- nslookup kubernetes.default`."),
        ],
        related=["service-no-endpoints"]),
]
