"""Runbooks for networking: services, ingresses, load balancers (MetalLB) and cluster DNS."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="service-no-endpoints", title="Service has no ready endpoints",
        summary="No ready pod matches the service's selector: every request to it fails "
                "(critical when an Ingress or an admission webhook routes to it).",
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
            step("Without a selector, check who maintains the endpoints", "Hand-made or "
                 "mirrored EndpointSlices are not updated by Kubernetes.",
                 "kubectl -n <namespace> get endpointslices -l kubernetes.io/service-name=<name> "
                 "-o yaml",
                 "endpointslice.kubernetes.io/managed-by and the addresses' ready condition: "
                 "fix the backend or the tool that writes them."),
        ],
        related=["deployment-unavailable", "ingress-backend-missing", "service-port-mismatch",
                 "webhook-unavailable"]),
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
    Runbook(
        id="service-port-mismatch", title="Service targets a port its pods do not declare",
        summary="A Service's named targetPort is not a container port (name and protocol) of "
                "its pods: the EndpointSlice controller leaves those pods out of that port, so "
                "its traffic goes nowhere (or only to the pods that have it).",
        severity_hint="warning",
        steps=[
            step("Compare the Service's target ports with the pods' ports", "A port renamed "
                 "in the Deployment but not in the Service (or the reverse), or a protocol "
                 "mismatch (UDP vs TCP).",
                 "kubectl -n <namespace> get svc <name> -o jsonpath='{.spec.ports}'; "
                 "kubectl -n <namespace> get pods -l <selector> "
                 "-o jsonpath='{.items[0].spec.containers[*].ports}'",
                 "The targetPort name is missing from the containers' ports."),
            step("See which endpoints carry the port", "Slices without the port hold the "
                 "pods left out.",
                 "kubectl -n <namespace> get endpointslices -l kubernetes.io/service-name=<name>",
                 "PORTS <unset> next to the pods' addresses."),
            step("Fix the name on one side and roll out", "Either rename the container port "
                 "or point the Service at the right name or number.",
                 "kubectl -n <namespace> edit svc <name>",
                 "The slices list the port; the finding is gone.", "k3sops check"),
        ],
        related=["service-no-endpoints", "ingress-backend-missing"]),
    Runbook(
        id="servicelb-metallb-conflict", title="K3s servicelb and MetalLB both run",
        summary="K3s' built-in LoadBalancer (servicelb/klipper-lb, svclb-* DaemonSets) runs "
                "next to MetalLB: both handle every LoadBalancer Service, bind the same ports "
                "and write different addresses.",
        severity_hint="warning",
        steps=[
            step("List servicelb's DaemonSets", "One per LoadBalancer Service.",
                 "kubectl get daemonsets -A | grep svclb-",
                 "svclb-<service>-<hash> DaemonSets, in kube-system on K3s >= 1.26."),
            step("Disable servicelb on every server", "Add `disable: [servicelb]` to "
                 "/etc/rancher/k3s/config.yaml (or --disable servicelb) and restart K3s "
                 "server by server.",
                 "sudo systemctl restart k3s",
                 "The svclb-* DaemonSets are removed by K3s; MetalLB assigns the addresses."),
            step("Check the Services' addresses", "They must be MetalLB pool addresses now.",
                 "kubectl get svc -A --field-selector spec.type=LoadBalancer",
                 "EXTERNAL-IP from an IPAddressPool, not node IPs.", "k3sops check"),
        ],
        related=["loadbalancer-no-ip"]),
    Runbook(
        id="ingress-class-missing", title="Ingress names an IngressClass that does not exist",
        summary="No ingress controller picks the Ingress up: its hosts are not served.",
        severity_hint="warning",
        steps=[
            step("List the classes", "K3s ships Traefik with the default class traefik.",
                 "kubectl get ingressclass",
                 "The class names and which one is (default)."),
            step("Point the Ingress at an existing class", "Use spec.ingressClassName, not the "
                 "deprecated kubernetes.io/ingress.class annotation.",
                 "kubectl -n <namespace> patch ingress <name> --type=merge "
                 "-p '{\"spec\":{\"ingressClassName\":\"traefik\"}}'",
                 "The controller's events show the Ingress synced.", "k3sops check"),
        ],
        related=["ingress-backend-missing"]),
    Runbook(
        id="ingress-tls-secret-missing", title="Ingress TLS secret missing or not a certificate",
        summary="The controller cannot load the certificate and serves its default one: "
                "browsers and API clients reject the connection.",
        severity_hint="warning",
        steps=[
            step("Check the secret", "It must be in the Ingress' namespace and hold tls.crt "
                 "and tls.key.",
                 "kubectl -n <namespace> get secret <secret> -o jsonpath='{.type} {.data}' "
                 "| cut -c1-200",
                 "NotFound, or keys other than tls.crt/tls.key."),
            step("With cert-manager, check the Certificate", "The secret appears once the "
                 "certificate is issued.",
                 "kubectl -n <namespace> get certificate,certificaterequest,order",
                 "READY False and the reason (challenge failing, issuer missing)."),
            step("Create the secret from the certificate files", "When certificates are "
                 "managed by hand.",
                 "kubectl -n <namespace> create secret tls <secret> --cert=tls.crt "
                 "--key=tls.key",
                 "The controller serves the new certificate.", "k3sops check"),
        ],
        related=["ingress-tls-expiring"]),
    Runbook(
        id="ingress-tls-expiring", title="Ingress certificate expiring or expired",
        summary="The certificate an Ingress serves expires soon (or has): clients will refuse "
                "the connection from that moment.",
        severity_hint="warning",
        steps=[
            step("Read the certificate's dates", "Confirm what the secret really holds.",
                 "kubectl -n <namespace> get secret <name> -o jsonpath='{.data.tls\\.crt}' "
                 "| base64 -d | openssl x509 -noout -dates -subject",
                 "notAfter, and the subject/SANs you expect."),
            step("Renew it", "cert-manager renews by itself unless something blocks it; "
                 "otherwise replace the secret.",
                 "kubectl -n <namespace> get certificate -o wide",
                 "A Certificate not Ready, or none: renew by hand and replace the secret."),
            step("Verify what clients get", "The controller reloads the secret.",
                 "openssl s_client -connect <host>:443 -servername <host> </dev/null "
                 "| openssl x509 -noout -dates",
                 "The new notAfter.", "k3sops check"),
        ],
        related=["ingress-tls-secret-missing", "cert-manager-cert-expiry"]),
    Runbook(
        id="ingress-host-conflict", title="Two Ingresses claim the same host and path",
        summary="The controller merges Ingresses of one class: when two claim the same "
                "host+path, one silently wins and the other application gets no traffic.",
        severity_hint="warning",
        steps=[
            step("Find every Ingress for the host", "Across namespaces: the controller is "
                 "cluster-wide.",
                 "kubectl get ingress -A -o custom-columns=NS:.metadata.namespace,"
                 "NAME:.metadata.name,CLASS:.spec.ingressClassName,HOSTS:.spec.rules[*].host",
                 "The same host in two Ingresses of the same class."),
            step("Keep one owner per host+path", "Delete the stale copy, or move one to "
                 "another path or host.",
                 "kubectl -n <namespace> delete ingress <name>",
                 "One Ingress left for that route.", "k3sops check"),
        ],
        related=["ingress-backend-missing"]),
    Runbook(
        id="networkpolicy-no-pods", title="NetworkPolicy selects no pod",
        summary="The policy's podSelector matches nothing in its namespace: it protects "
                "nothing (a label typo, or a policy left behind).",
        severity_hint="info",
        steps=[
            step("Compare the selector with the pods' labels", "Which app it was meant for.",
                 "kubectl -n <namespace> get networkpolicy <name> -o jsonpath="
                 "'{.spec.podSelector}'; kubectl -n <namespace> get pods --show-labels",
                 "No pod with those labels."),
            step("Fix the selector or delete the policy", "A policy for an app that is gone "
                 "only confuses the next reader.",
                 "kubectl -n <namespace> delete networkpolicy <name>",
                 "The policy selects the intended pods, or is gone.", "k3sops check --weekly"),
        ],
        related=[]),
    Runbook(
        id="ingress-tls-host-mismatch", title="Ingress certificate does not cover a host",
        summary="An Ingress serves a host with a certificate that does not name it: clients "
                "refuse the connection (name mismatch) although the certificate is valid.",
        severity_hint="warning",
        steps=[
            step("Compare the hosts with the certificate's names", "A wildcard covers one "
                 "label only (*.example.com does not cover a.b.example.com).",
                 "kubectl -n <namespace> get secret <secret> -o jsonpath='{.data.tls\\.crt}' "
                 "| base64 -d | openssl x509 -noout -ext subjectAltName",
                 "The DNS names, against the Ingress' spec.tls[].hosts."),
            step("Reissue the certificate with every host, or split the TLS section",
                 "With cert-manager, the hosts of spec.tls become the Certificate's dnsNames.",
                 "kubectl -n <namespace> get certificate -o wide",
                 "A certificate naming every host.", "k3sops check"),
        ],
        related=["ingress-tls-secret-missing", "ingress-tls-expiring"]),
]
