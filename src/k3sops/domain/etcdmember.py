"""A K3s server's etcd membership: K3s' own view on the Node, and etcd's view from its metrics.

K3s (pkg/etcd) keeps a ``EtcdIsVoter`` condition on every server node: True with reason
``MemberNotLearner`` for a voting member; False with ``MemberIsLearner`` (joined, not yet
promoted), ``NotAMember`` or ``Unhealthy``. It also annotates the node with its etcd member
name (``etcd.k3s.cattle.io/node-name``) and peer address (``etcd.k3s.cattle.io/node-address``).
etcd's own view comes from its metrics endpoint as Prometheus scrapes it: whether the member
has a leader, whether it is a learner, its database size against the quota.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from k3sops.domain.diagnose import Diagnosis
from k3sops.domain.metrics import InstantResult
from k3sops.domain.snapshot import Obj, conditions, get, meta

VOTER_CONDITION = "EtcdIsVoter"
NAME_ANNOTATION = "etcd.k3s.cattle.io/node-name"
ADDRESS_ANNOTATION = "etcd.k3s.cattle.io/node-address"

ETCD_QUERIES: dict[str, str] = {
    "has_leader": "etcd_server_has_leader",
    "is_learner": "etcd_server_is_learner",
    "db_size": "etcd_mvcc_db_total_size_in_bytes",
    "quota": "etcd_server_quota_backend_bytes",
    "leader_changes": "increase(etcd_server_leader_changes_seen_total[1h])",
}
"""etcd's own view, per member (``instance``), as Prometheus scrapes its metrics endpoint."""


def member_view(node: Obj) -> dict[str, Any]:
    """K3s' view: the EtcdIsVoter condition and the etcd annotations of a node."""
    ann = get(node, "metadata", "annotations", default={}) or {}
    cond = conditions(node).get(VOTER_CONDITION)
    return {"member_name": ann.get(NAME_ANNOTATION),
            "member_address": ann.get(ADDRESS_ANNOTATION),
            "voter": None if cond is None else cond.get("status") == "True",
            "reason": cond.get("reason") if cond else None,
            "message": cond.get("message") if cond else None,
            "since": cond.get("lastTransitionTime") if cond else None}


def node_addresses(node: Obj) -> set[str]:
    """Every address a node is known by (status addresses, K3s and etcd annotations)."""
    ann = get(node, "metadata", "annotations", default={}) or {}
    out = {str(a.get("address")) for a in get(node, "status", "addresses", default=[]) or []
           if a.get("address")}
    for key in ("k3s.io/internal-ip", "k3s.io/external-ip", ADDRESS_ANNOTATION):
        out.update(x.strip() for x in str(ann.get(key) or "").split(",") if x.strip())
    return out


def _host(instance: str) -> str:
    return urlsplit(f"//{instance}").hostname or instance


def members(results: Mapping[str, InstantResult]) -> list[dict[str, Any]]:
    """Etcd's view, one row per scraped member."""
    rows: dict[str, dict[str, Any]] = {}
    for key, res in results.items():
        for s in res.samples:
            inst = s.labels.get("instance", "?")
            rows.setdefault(inst, {"instance": inst, "host": _host(inst)})[key] = s.number
    return [rows[k] for k in sorted(rows)]


def record(d: Diagnosis, node: Obj, results: Mapping[str, InstantResult] | None,
           error: str | None = None) -> None:
    """Add a server's etcd membership (K3s' and etcd's view) to a node diagnosis."""
    name = meta(node)[1]
    view = member_view(node)
    if view["voter"] is None and not view["member_name"]:
        d.step("etcd member (K3s)", True, "no EtcdIsVoter condition and no etcd annotation: "
               "not an embedded-etcd server (kine/sqlite or an external datastore)")
    else:
        state = {True: "voter", False: "NOT a voter", None: "condition not set"}[view["voter"]]
        d.step("etcd member (K3s)", view["voter"] is not False,
               f"{state}" + (f" ({view['reason']}: {view['message']})" if view["reason"]
                             else "") + f"; member {view['member_name'] or '?'}"
               + (f" at {view['member_address']}" if view["member_address"] else "")
               + (f"; since {view['since']}" if view["since"] else ""))
        if view["voter"] is False:
            d.add("etcd-member-not-voter", "warning", "Node", None, name,
                  f"server {name} is not a voting etcd member: {view['reason']} "
                  f"({view['message']})", "etcd-insufficient-members", {"etcd": view})
    if error is not None:
        d.step("etcd member (etcd metrics)", True, f"not read: {error}")
        return
    if results is None:
        return
    rows = members(results)
    if not rows:
        d.step("etcd member (etcd metrics)", True, "no etcd series in Prometheus (etcd not "
               "scraped: K3s needs --etcd-expose-metrics)")
        return
    addrs = node_addresses(node)
    mine = [r for r in rows if r["host"] in addrs]
    if not mine:
        d.step("etcd member (etcd metrics)", True,
               f"{len(rows)} member(s) scraped ({', '.join(r['instance'] for r in rows)}); "
               f"none at this node's addresses ({', '.join(sorted(addrs)) or 'none'})")
        return
    for r in mine:
        leader, learner = r.get("has_leader"), r.get("is_learner")
        size, quota = r.get("db_size"), r.get("quota")
        d.step("etcd member (etcd metrics)", leader == 1 and learner != 1,
               f"{r['instance']}: leader {'yes' if leader == 1 else 'NO'}, "
               f"learner {'yes' if learner == 1 else 'no'}"
               + (f", db {size / 2**20:.1f} MiB" if size else "")
               + (f" of {quota / 2**20:.0f} MiB" if quota else ""))
        if leader is not None and leader != 1:
            d.add("etcd-health", "critical", "EtcdMember", None, r["instance"],
                  f"etcd member {r['instance']} on {name} has no leader", "etcd-no-leader",
                  {"member": r, "node": name})
