"""Checks of `emergency network-lost`: NotReady pattern, CoreDNS, ingress, MetalLB, DNS."""

from __future__ import annotations

from typing import Any

from k3sops.domain import diagnose as dg
from k3sops.domain.emergency.facts import Facts, unknown_kube, verdict
from k3sops.domain.emergency.models import CheckResult, Proposal
from k3sops.domain.snapshot import ClusterSnapshot, Obj, conditions, get, meta

INGRESS_CONTROLLERS = ("traefik", "ingress-nginx-controller", "nginx-ingress-controller")
"""Deployment (or DaemonSet) names of the ingress controllers looked for, K3s' traefik first."""


def not_ready_pattern(snapshot: ClusterSnapshot) -> dict[str, Any]:
    """Which nodes are NotReady: none, one, all agents, all nodes, or some."""
    rows = []
    for n in snapshot.get("nodes"):
        c = conditions(n)
        rows.append({"node": meta(n)[1], "role": dg.node_role(n),
                     "ready": (c.get("Ready") or {}).get("status") == "True",
                     "network_unavailable": (c.get("NetworkUnavailable") or {}).get("status")
                     == "True", "pod_cidr": get(n, "spec", "podCIDR")})
    down = [r for r in rows if not r["ready"]]
    agents = [r for r in rows if r["role"] == "agent"]
    if not down:
        pattern = "none"
    elif len(down) == len(rows):
        pattern = "all-nodes"
    elif agents and all(not r["ready"] for r in agents) and len(down) == len(agents):
        pattern = "all-agents"
    elif len(down) == 1:
        pattern = "one-node"
    else:
        pattern = "some-nodes"
    return {"pattern": pattern, "not_ready": [r["node"] for r in down], "nodes": rows,
            "network_unavailable": [r["node"] for r in rows if r["network_unavailable"]]}


_PATTERN_HINT = {
    "all-nodes": "every node is NotReady: the servers' side (API server, etcd) or the whole "
                 "network is down; start with `k3sops emergency cluster-unresponsive`",
    "all-agents": "every agent lost the servers: the network between agents and servers "
                  "(firewall, the API address or load balancer the agents use)",
    "one-node": "one node lost its network or its k3s service: check that host",
    "some-nodes": "several nodes lost their network: a switch, subnet or zone",
}


def check_nodes_pattern(facts: Facts) -> CheckResult:
    """The NotReady pattern: one node, every agent, or everything."""
    sid, title = "nodes", "NotReady pattern"
    if not facts.kube_ok() or facts.snapshot is None:
        return unknown_kube(sid, title, facts)
    p = not_ready_pattern(facts.snapshot)
    if p["pattern"] == "none" and not p["network_unavailable"]:
        return verdict(sid, title, "ok", f"all {len(p['nodes'])} nodes Ready", evidence=p)
    hint = _PATTERN_HINT.get(p["pattern"], "")
    detail = (f"{p['pattern']}: NotReady {', '.join(p['not_ready'])}" if p["not_ready"]
              else "all Ready") + (f"; NetworkUnavailable on {', '.join(p['network_unavailable'])}"
                                   if p["network_unavailable"] else "")
    return verdict(sid, title, "fail" if p["not_ready"] else "warn", detail, evidence=p,
                   runbook="emergency-network-lost", next_step=hint,
                   proposals=[Proposal(action="manual", target=n, reason=f"{n} is NotReady",
                                       command=f"k3sops diagnose node {n}; on the host: ip route; "
                                               "sudo journalctl -u k3s -u k3s-agent -n 100 "
                                               "--no-pager | grep -i -e flannel -e network",
                                       runbook="node-not-ready")
                              for n in p["not_ready"][:3]])


def check_coredns(facts: Facts) -> CheckResult:
    """CoreDNS available and kube-dns with ready endpoints."""
    sid, title = "coredns", "CoreDNS"
    if not facts.kube_ok() or facts.snapshot is None:
        return unknown_kube(sid, title, facts)
    d = dg.diagnose_network(facts.snapshot, "kube-system")
    steps = {c.step: c for c in d.chain}
    core, eps = steps.get("CoreDNS"), steps.get("kube-dns endpoints")
    ok = bool(core and core.ok and eps and eps.ok)
    detail = f"deployment {core.detail if core else 'missing'}; endpoints " \
             f"{eps.detail if eps else 'missing'}"
    if ok:
        return verdict(sid, title, "ok", detail)
    dep = dg.find(facts.snapshot, "deployments", "coredns", "kube-system")
    return verdict(sid, title, "fail", detail, runbook="dns-coredns-unavailable",
                   next_step="restart CoreDNS; then check its pods' logs",
                   proposals=[Proposal(action="restart", target="deployment/coredns",
                                       namespace="kube-system", reason="CoreDNS unavailable",
                                       runbook="dns-coredns-unavailable")] if dep else [])


def _controller(snapshot: ClusterSnapshot) -> tuple[str, Obj] | None:
    for name in INGRESS_CONTROLLERS:
        for kind, plural in (("deployment", "deployments"), ("daemonset", "daemonsets")):
            for o in snapshot.get(plural):
                if meta(o)[1] == name:
                    return kind, o
    return None


def check_ingress_controller(facts: Facts) -> CheckResult:
    """The ingress controller (K3s: traefik in kube-system) available, its Service addressed."""
    sid, title = "ingress-controller", "ingress controller"
    if not facts.kube_ok() or facts.snapshot is None:
        return unknown_kube(sid, title, facts)
    found = _controller(facts.snapshot)
    if found is None:
        return verdict(sid, title, "warn", "no ingress controller found (looked for "
                       + ", ".join(INGRESS_CONTROLLERS) + ")", runbook="ingress-backend-missing")
    kind, obj = found
    ns, name = meta(obj)
    if kind == "deployment":
        r = dg.rollout_state(obj)
        avail, desired = int(r["available"] or 0), int(r["desired"])
    else:
        st = get(obj, "status", default={}) or {}
        avail, desired = int(st.get("numberAvailable") or 0), int(
            st.get("desiredNumberScheduled") or 0)
    svc = dg.find(facts.snapshot, "services", name, ns)
    ips = [i.get("ip") or i.get("hostname") for i in get(
        svc, "status", "loadBalancer", "ingress", default=[]) or []]
    stype = get(svc, "spec", "type")
    ev = {"kind": kind, "namespace": ns, "name": name, "available": avail, "desired": desired,
          "service_type": stype, "external": ips}
    svc_txt = (f"Service {stype}" + (f" {', '.join(map(str, ips))}" if ips else "")) \
        if svc else "no Service"
    if desired and avail == 0:
        return verdict(sid, title, "fail", f"{kind}/{name}: 0/{desired} available; {svc_txt}",
                       evidence=ev, runbook="deployment-unavailable",
                       next_step="restart the ingress controller",
                       proposals=[Proposal(action="restart", target=f"{kind}/{name}",
                                           namespace=ns, reason="ingress controller down",
                                           runbook="deployment-unavailable")]
                       if kind == "deployment" else [])
    if stype == "LoadBalancer" and not ips:
        return verdict(sid, title, "fail", f"{kind}/{name} up but its LoadBalancer Service "
                       "has no external IP", evidence=ev, runbook="loadbalancer-no-ip",
                       next_step="check MetalLB (below)")
    return verdict(sid, title, "ok" if avail >= desired else "warn",
                   f"{kind}/{name}: {avail}/{desired} available; {svc_txt}", evidence=ev)


def check_metallb(facts: Facts) -> CheckResult:
    """MetalLB controller and speakers, pools and advertisements; LoadBalancers without IP."""
    sid, title = "metallb", "MetalLB"
    if not facts.kube_ok() or facts.snapshot is None:
        return unknown_kube(sid, title, facts)
    snap = facts.snapshot
    if not snap.has("ipaddresspools.metallb.io"):
        return verdict(sid, title, "skipped", "MetalLB is not installed (no metallb.io CRDs)")
    d = dg.diagnose_network(snap)
    lb = [c for c in d.chain if c.step.startswith("LoadBalancer ")]
    pools = next((c for c in d.chain if c.step == "MetalLB pools"), None)
    bad_lb = [c.step.split(" ", 1)[1] for c in lb if not c.ok]
    unavailable = []
    for o in [*snap.get("deployments"), *snap.get("daemonsets")]:
        if meta(o)[0] != "metallb-system":
            continue
        st = get(o, "status", default={}) or {}
        avail = st.get("availableReplicas", st.get("numberAvailable")) or 0
        want = get(o, "spec", "replicas", default=st.get("desiredNumberScheduled")) or 0
        if int(want) and int(avail) < int(want):
            unavailable.append(meta(o)[1])
    ev = {"pools": pools.detail if pools else None, "lb_without_ip": bad_lb,
          "unavailable": unavailable}
    problems = ([f"unavailable: {', '.join(unavailable)}"] if unavailable else []) + \
        ([f"LoadBalancers without IP: {', '.join(bad_lb)}"] if bad_lb else []) + \
        ([] if pools is None or pools.ok else ["no IPAddressPool"])
    if problems:
        props = [Proposal(action="restart", target="deployment/controller",
                          namespace="metallb-system", reason="MetalLB controller unavailable",
                          runbook="loadbalancer-no-ip")] if "controller" in unavailable else []
        return verdict(sid, title, "fail", "; ".join(problems), evidence=ev,
                       runbook="loadbalancer-no-ip", proposals=props,
                       next_step="check the pool has free addresses and the speakers run")
    return verdict(sid, title, "ok", f"pools {pools.detail if pools else '?'}; "
                   f"{len(lb)} LoadBalancer(s) addressed", evidence=ev)


def check_kube_proxy_flannel(facts: Facts) -> CheckResult:
    """K3s runs kube-proxy and flannel inside its own process: only hints are visible here."""
    sid, title = "kube-proxy-flannel", "kube-proxy / flannel hints"
    if not facts.kube_ok() or facts.snapshot is None:
        return unknown_kube(sid, title, facts)
    nodes = facts.snapshot.get("nodes")
    no_cidr = [meta(n)[1] for n in nodes if not get(n, "spec", "podCIDR")]
    unavailable = [meta(n)[1] for n in nodes
                   if (conditions(n).get("NetworkUnavailable") or {}).get("status") == "True"]
    flannel = [meta(n)[1] for n in nodes if any(str(k).startswith("flannel.alpha.coreos.com")
                                                for k in (get(n, "metadata", "annotations",
                                                              default={}) or {}))]
    ev = {"no_pod_cidr": no_cidr, "network_unavailable": unavailable,
          "flannel_annotated": flannel}
    hint = ("K3s embeds kube-proxy and flannel in the k3s process; on an affected node check "
            "`ip route`, the flannel.1 interface and `journalctl -u k3s | grep -i flannel`")
    if unavailable:
        return verdict(sid, title, "fail", f"NetworkUnavailable on {', '.join(unavailable)}",
                       evidence=ev, runbook="emergency-network-lost", next_step=hint)
    detail = (f"{len(flannel)}/{len(nodes)} nodes carry flannel annotations"
              + (f"; no podCIDR: {', '.join(no_cidr[:5])}" if no_cidr else ""))
    return verdict(sid, title, "ok", detail, evidence=ev, next_step=None)


def check_dns_probe(facts: Facts) -> CheckResult:
    """The guide's busybox `nslookup kubernetes.default` from a probe pod (--probe-dns)."""
    sid, title = "dns-probe", "DNS lookup from a pod"
    if not facts.dns_requested:
        return verdict(sid, title, "skipped", "not asked (pass --probe-dns to run a probe pod)")
    p = facts.dns
    if p is None:
        return verdict(sid, title, "unknown", "the probe did not run")
    ev = {"probe": p.model_dump(mode="json")}
    if p.outcome == "success":
        return verdict(sid, title, "ok", p.detail, evidence=ev)
    if p.outcome == "failure":
        return verdict(sid, title, "fail", p.detail, evidence=ev,
                       runbook="dns-coredns-unavailable",
                       next_step="CoreDNS does not answer from pods: check CoreDNS and the "
                                 "node network (flannel)")
    return verdict(sid, title, "unknown", f"inconclusive: {p.detail}", evidence=ev,
                   next_step="DNS from pods is unproven: run the lookup from a pod on a real "
                             "node (kubectl run dnstest --rm -it --image=busybox:1.36 "
                             "--restart=Never -- nslookup kubernetes.default)")

