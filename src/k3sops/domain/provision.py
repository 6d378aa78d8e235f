"""Node provisioning, pure: the inventory's shape, validation of adds and removals, plans.

The inventory follows k3s-ansible (and the operations guide's ``inventory/production/hosts.yaml``)::

    k3s_cluster:
      children:
        server: {hosts: {node1: {ansible_host: 10.0.0.11}, ...}}
        agent:  {hosts: {node4: {ansible_host: 10.0.0.14}}}
      vars: {k3s_version: ..., api_endpoint: ...}

Hosts listed elsewhere in the file (``all.hosts``, other groups) are known hosts that are not
(yet) cluster members: ``scale nodes add`` takes their address from there.

Rules enforced here, before anything changes:

- a new node name is a DNS-1123 subdomain, given once, not already a Node of the cluster and
  not in the inventory under the other role (duplicate node name); one already in the inventory
  under the asked role but not yet a Node is an add that stopped part-way: it is resumed;
- a new node has an address: ``--address NAME=IP``, its entry elsewhere in the inventory, or its
  name resolving (unknown host otherwise);
- embedded etcd needs an odd number of servers (1, 3, 5, ...): an add that leaves an even count
  is refused (add servers in pairs);
- a removal must keep etcd quorum: the servers left must be a majority of the current members,
  counting only Ready ones, and at least one server must remain.

Nothing here does I/O: callers pass the inventory as plain data, the cluster's Nodes, and the
result of name resolution.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from k3sops.errors import PlanRejected, UsageError

Role = Literal["server", "agent"]
StepAction = Literal["check-reachable", "inventory-add", "playbook", "wait-ready", "check-nodes",
                     "drain", "etcd-remove", "delete-node", "inventory-remove"]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ETCD_REMOVE_ANNOTATION = "etcd.k3s.cattle.io/remove"
"""Annotating a server Node with this (``true``) makes K3s remove its etcd member."""
ETCD_NODE_ANNOTATION = "etcd.k3s.cattle.io/node-name"
"""Set by K3s on servers with an embedded etcd member (the member's name)."""


class InventoryHost(BaseModel):
    """A host of the inventory and the address Ansible reaches it at."""

    name: str
    group: Role | None = Field(default=None, description="None: listed outside k3s_cluster")
    address: str | None = Field(default=None, description="ansible_host, when set")


class Inventory(BaseModel):
    """What the planners need from an inventory file."""

    servers: list[InventoryHost] = Field(default_factory=list)
    agents: list[InventoryHost] = Field(default_factory=list)
    others: list[InventoryHost] = Field(default_factory=list,
                                        description="hosts outside k3s_cluster")

    @property
    def members(self) -> list[InventoryHost]:
        """Servers and agents."""
        return self.servers + self.agents

    def member(self, name: str) -> InventoryHost | None:
        """The cluster member called ``name``."""
        return next((h for h in self.members if h.name == name), None)

    def other(self, name: str) -> InventoryHost | None:
        """A known host outside the cluster group."""
        return next((h for h in self.others if h.name == name), None)


class NewNode(BaseModel):
    """A node to add: its name, role and address."""

    name: str
    role: Role
    address: str
    pending: bool = Field(default=False, description="already in the inventory, not yet a "
                                                     "Node: an earlier add stopped part-way")


class ProvisionStep(BaseModel):
    """One step of an add or remove plan."""

    action: StepAction
    target: str
    detail: str = ""


class ProvisionPlan(BaseModel):
    """What ``scale nodes add|remove`` or ``provision`` will do, in order."""

    title: str
    steps: list[ProvisionStep] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    nodes: list[NewNode] = Field(default_factory=list, description="nodes added")


def _hosts_of(group: Any) -> dict[str, Any]:
    if not isinstance(group, Mapping):
        return {}
    hosts = group.get("hosts")
    return dict(hosts) if isinstance(hosts, Mapping) else {}


def _address(hostvars: Any) -> str | None:
    if isinstance(hostvars, Mapping) and hostvars.get("ansible_host"):
        return str(hostvars["ansible_host"])
    return None


def _walk_others(node: Any, out: dict[str, str | None], skip: str) -> None:
    """Collect hosts of every group except the cluster group (``skip``)."""
    if not isinstance(node, Mapping):
        return
    for name, vars_ in _hosts_of(node).items():
        out.setdefault(str(name), _address(vars_))
    children = node.get("children")
    if isinstance(children, Mapping):
        for child, sub in children.items():
            if child != skip:
                _walk_others(sub, out, skip)


def parse_inventory(doc: Any, where: str) -> Inventory:
    """Read the k3s-ansible layout out of an inventory loaded as plain data.

    Raises:
        UsageError: the file has no ``k3s_cluster`` group with ``server`` and ``agent`` children.
    """
    if not isinstance(doc, Mapping):
        raise UsageError(f"{where}: the inventory is not a YAML mapping of groups",
                         hint="use the k3s-ansible layout: k3s_cluster: {children: {server: "
                              "{hosts: ...}, agent: {hosts: ...}}}")
    cluster = doc.get("k3s_cluster")
    if cluster is None and isinstance(doc.get("all"), Mapping):
        cluster = (doc["all"].get("children") or {}).get("k3s_cluster")
    children = cluster.get("children") if isinstance(cluster, Mapping) else None
    if not isinstance(children, Mapping) or "server" not in children:
        raise UsageError(f"{where}: no k3s_cluster group with a server child group",
                         hint="use the k3s-ansible layout: k3s_cluster: {children: {server: "
                              "{hosts: ...}, agent: {hosts: ...}}}")
    inv = Inventory(
        servers=[InventoryHost(name=str(n), group="server", address=_address(v))
                 for n, v in _hosts_of(children.get("server")).items()],
        agents=[InventoryHost(name=str(n), group="agent", address=_address(v))
                for n, v in _hosts_of(children.get("agent")).items()])
    dup = {h.name for h in inv.servers} & {h.name for h in inv.agents}
    if dup:
        raise UsageError(f"{where}: {', '.join(sorted(dup))} listed as both server and agent",
                         hint="a node is either a server or an agent")
    others: dict[str, str | None] = {}
    _walk_others({"children": doc}, others, "k3s_cluster")  # the file is the groups
    member_names = {h.name for h in inv.members}
    inv.others = [InventoryHost(name=n, address=a) for n, a in others.items()
                  if n not in member_names]
    return inv


def odd_servers_problem(count: int) -> str | None:
    """Why ``count`` servers cannot run embedded etcd safely, or None when they can."""
    if count == 0:
        return "no server left: the cluster would have no control plane"
    if count % 2 == 0:
        return (f"{count} servers: embedded etcd needs an odd number (1, 3, 5, …); with "
                f"{count} a single failure {'loses quorum' if count == 2 else 'gains nothing'}")
    return None


def _check_names(names: Sequence[str]) -> set[str]:
    if not names:
        raise UsageError("no node named", hint="scale nodes add NODE... [--server|--agent]")
    seen: set[str] = set()
    for name in names:
        if len(name) > 253 or not _NAME.match(name):
            raise UsageError(f"{name!r} is not a valid node name",
                             hint="lower-case letters, digits, '-' and '.' (DNS-1123)")
        if name in seen:
            raise UsageError(f"node {name} is named twice")
        seen.add(name)
    return seen


def validate_add(inventory: Inventory, names: Sequence[str], role: Role,
                 addresses: Mapping[str, str], cluster_nodes: Iterable[str],
                 resolved: Mapping[str, str | None]) -> list[NewNode]:
    """Check the nodes to add and find their addresses.

    Args:
        inventory: the current inventory.
        names: node names asked for, in order.
        role: server or agent.
        addresses: ``--address NAME=IP`` given on the command line.
        cluster_nodes: names of the cluster's Node objects.
        resolved: the caller's name resolution of names without another address (None: the
            name does not resolve).

    Raises:
        UsageError: empty, invalid, repeated or duplicate names; unknown hosts; addresses for
            names not being added.
        PlanRejected: the add would leave an even number of servers.
    """
    seen = _check_names(names)
    extra = sorted(set(addresses) - seen)
    if extra:
        raise UsageError(f"--address given for {', '.join(extra)}, which is not being added")
    nodes = set(cluster_nodes)
    out = []
    for name in names:
        if name in nodes:
            raise UsageError(f"duplicate node name {name}: a Node of that name already exists "
                             "in the cluster", hint="choose another name, or remove it first")
        member = inventory.member(name)
        if member is not None and member.group != role:
            raise UsageError(f"duplicate node name {name}: already a {member.group} in the "
                             "inventory", hint="choose another name, or remove it first")
        if member is not None:
            # In the inventory as asked but not in the cluster: an earlier add stopped after
            # editing the inventory. Running the same command again finishes the join.
            if name in addresses and addresses[name] != (member.address or name):
                raise UsageError(f"{name} is in the inventory with address "
                                 f"{member.address or name}, not {addresses[name]}",
                                 hint="fix ansible_host in the inventory, or drop --address")
            out.append(NewNode(name=name, role=role, address=member.address or name,
                               pending=True))
            continue
        out.append(NewNode(name=name, role=role, address=_address_of(
            name, inventory, addresses, resolved)))
    if role == "server":
        added = sum(1 for n in out if not n.pending)
        problem = odd_servers_problem(len(inventory.servers) + added)
        if problem:
            raise PlanRejected(
                f"adding {added} server(s) to {len(inventory.servers)} would leave {problem}",
                hint="add servers in pairs (e.g. 3 → 5), or add agents instead")
    return out


def _address_of(name: str, inventory: Inventory, addresses: Mapping[str, str],
                resolved: Mapping[str, str | None]) -> str:
    other = inventory.other(name)
    address = addresses.get(name) or (other.address if other else None)
    if address is None and other is None:
        address = resolved.get(name)
    if address is None and other is not None:
        address = name  # listed in the inventory without ansible_host: Ansible uses the name
    if address is None:
        raise UsageError(
            f"unknown host {name}: not in the inventory, no --address given, and the name "
            "does not resolve",
            hint=f"pass --address {name}=IP, or list it in the inventory with ansible_host")
    return address


def plan_add(new: Sequence[NewNode], inventory_path: str, wait_seconds: float) -> ProvisionPlan:
    """The steps of ``scale nodes add``: check, edit inventory, join, wait, check."""
    names = ", ".join(n.name for n in new)
    steps = [ProvisionStep(action="check-reachable", target=names,
                           detail="SSH to each new host through Ansible (ping module)")]
    steps += [ProvisionStep(action="inventory-add", target=n.name,
                            detail=f"add to group {n.role} in {inventory_path} "
                                   f"(ansible_host {n.address})") for n in new if not n.pending]
    steps.append(ProvisionStep(action="playbook", target="scale-cluster",
                               detail=f"join {names} (new servers one at a time, then agents)"))
    steps += [ProvisionStep(action="wait-ready", target=f"nodes/{n.name}",
                            detail=f"until Ready through the API (up to {wait_seconds:g}s)")
              for n in new]
    steps.append(ProvisionStep(action="check-nodes", target=names,
                               detail="node checks: Ready, pressure, cordoned"))
    notes = [f"{n.name} is already in the inventory but not in the cluster: an earlier add "
             "stopped part-way; this run finishes its join" for n in new if n.pending]
    return ProvisionPlan(title=f"scale nodes add {names}", steps=steps, nodes=list(new),
                         notes=notes)


def server_ready(node: Mapping[str, Any]) -> bool:
    """Whether a Node's Ready condition is True."""
    for c in ((node.get("status") or {}).get("conditions") or []):
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def validate_remove(inventory: Inventory, name: str, node: Mapping[str, Any] | None,
                    server_nodes: Mapping[str, bool]) -> Role:
    """Check a node may be removed; return its role.

    Args:
        inventory: the current inventory.
        name: the node to remove.
        node: its Node object (None when the cluster has no such Node).
        server_nodes: Ready state of every server Node (by name) of the cluster.

    Raises:
        UsageError: the node is in neither the inventory nor the cluster.
        PlanRejected: removing it would lose etcd quorum or the last server.
    """
    member = inventory.member(name)
    if member is None and node is None:
        raise UsageError(f"unknown node {name}: not in the inventory and no such Node",
                         hint="`k3sops status` lists the nodes")
    labels = ((node or {}).get("metadata") or {}).get("labels") or {}
    is_server = (member.group == "server" if member is not None
                 else "node-role.kubernetes.io/control-plane" in labels)
    if not is_server:
        return "agent"
    members = set(server_nodes) | {h.name for h in inventory.servers}
    left = members - {name}
    if not left:
        raise PlanRejected(f"{name} is the last server: removing it destroys the cluster",
                           hint="use the reset playbook to tear a cluster down")
    ready_left = [s for s in left if server_nodes.get(s, False)]
    quorum = len(members) // 2 + 1
    ready_now = [s for s in members if server_nodes.get(s, False)]
    if len(ready_now) < quorum:
        raise PlanRejected(
            f"etcd has no quorum now ({len(ready_now)} of {len(members)} servers Ready, "
            f"{quorum} needed): removing a member cannot be done safely",
            hint="bring the NotReady servers back first (`k3sops diagnose node NAME`)")
    if len(ready_left) < len(left) // 2 + 1:
        raise PlanRejected(
            f"removing {name} would break etcd quorum: {len(ready_left)} Ready of the "
            f"{len(left)} servers left, {len(left) // 2 + 1} needed",
            hint="bring the NotReady servers back first, or remove a NotReady server instead")
    return "server"


def plan_remove(name: str, role: Role, in_inventory: bool, node_exists: bool,
                host_cleanup: bool, servers_left: int) -> ProvisionPlan:
    """The steps of ``scale nodes remove``; only those still needed (idempotent)."""
    steps: list[ProvisionStep] = []
    notes: list[str] = []
    if host_cleanup and in_inventory:
        steps.append(ProvisionStep(action="check-reachable", target=name,
                                   detail="SSH to the host through Ansible (ping module)"))
    if node_exists:
        steps.append(ProvisionStep(action="drain", target=f"nodes/{name}",
                                   detail="cordon, evict its pods (Eviction API, PDBs respected)"))
        if role == "server":
            steps.append(ProvisionStep(
                action="etcd-remove", target=f"nodes/{name}",
                detail=f"annotate {ETCD_REMOVE_ANNOTATION}=true: K3s removes the etcd member "
                       "before the node goes"))
        steps.append(ProvisionStep(action="delete-node", target=f"nodes/{name}",
                                   detail="delete the Node object"))
    if host_cleanup and in_inventory:
        steps.append(ProvisionStep(action="playbook", target="remove-node",
                                   detail=f"stop and uninstall k3s on {name}"))
    elif in_inventory:
        notes.append(f"host {name} is left as it is (--skip-host): k3s still installed there")
    if in_inventory:
        steps.append(ProvisionStep(action="inventory-remove", target=name,
                                   detail="remove from the inventory"))
    if role == "server" and servers_left % 2 == 0:
        notes.append(f"{servers_left} servers remain: an even count tolerates no more failures "
                     "than one fewer; add or remove another server soon")
    return ProvisionPlan(title=f"scale nodes remove {name}", steps=steps, notes=notes)
