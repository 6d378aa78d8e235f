"""Provisioning rules (pure) and the round-trip inventory editor.

Node objects are the lab's, captured in tests/data/lab-nodes.json (3 servers Ready, an agent
NotReady through kwok's node-not-ready stage). For the quorum cases a server is given that
agent's real NotReady conditions.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from k3sops.adapters.inventory import InventoryFile, resolve_host
from k3sops.domain import provision as prov
from k3sops.errors import ConfigError, NotFound, PlanRejected, UsageError
from k3sops.services.nodeops import command_for

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data"

INVENTORY = """\
# the guide's inventory/production/hosts.yaml
all:
  hosts:
    node6:              # spare, racked
      ansible_host: 10.0.0.16
    node7: {}
k3s_cluster:
  children:
    server:
      hosts:
        node1: {ansible_host: 10.0.0.11}   # first server
        node2: {ansible_host: 10.0.0.12}
        node3: {ansible_host: 10.0.0.13}
    agent:
      hosts:
        node4:
          ansible_host: 10.0.0.14
  vars:
    k3s_version: v1.31.4+k3s1   # pinned
    api_endpoint: 10.0.0.10
"""


def _nodes() -> list[dict[str, Any]]:
    return list(json.loads((DATA / "lab-nodes.json").read_text())["items"])


def _inv() -> prov.Inventory:
    return prov.parse_inventory(yaml.safe_load(INVENTORY), "hosts.yaml")


def _names() -> list[str]:
    return [n["metadata"]["name"] for n in _nodes()]


def test_parse_inventory_layout() -> None:
    inv = _inv()
    assert [h.name for h in inv.servers] == ["node1", "node2", "node3"]
    assert [(h.name, h.address) for h in inv.agents] == [("node4", "10.0.0.14")]
    assert {(h.name, h.address) for h in inv.others} == {("node6", "10.0.0.16"),
                                                         ("node7", None)}
    assert inv.member("node2") is not None and inv.member("node6") is None


@pytest.mark.parametrize("doc", [None, [], {"all": {"hosts": {"a": None}}},
                                 {"k3s_cluster": {"children": {"agent": {}}}}])
def test_parse_inventory_refuses_other_layouts(doc: object) -> None:
    with pytest.raises(UsageError, match=r"hosts\.yaml: "):
        prov.parse_inventory(doc, "hosts.yaml")


def test_node_in_both_groups_is_refused() -> None:
    doc = yaml.safe_load(INVENTORY)
    doc["k3s_cluster"]["children"]["agent"]["hosts"]["node1"] = None
    with pytest.raises(UsageError, match="node1 listed as both server and agent"):
        prov.parse_inventory(doc, "hosts.yaml")


def test_add_finds_addresses_in_order_of_precedence() -> None:
    new = prov.validate_add(_inv(), ["node6", "node7", "node8", "node9"], "agent",
                            {"node9": "10.0.0.19"}, _names(),
                            {"node8": "10.0.0.18", "node9": None})
    assert [(n.name, n.address) for n in new] == [
        ("node6", "10.0.0.16"), ("node7", "node7"), ("node8", "10.0.0.18"),
        ("node9", "10.0.0.19")]


@pytest.mark.parametrize(("names", "role", "addresses", "error", "text"), [
    (["node2"], "agent", {}, UsageError, "duplicate node name node2: already a server"),
    (["k3s-agent-1"], "agent", {}, UsageError, "a Node of that name already exists"),
    (["node8"], "agent", {}, UsageError, "unknown host node8"),
    (["node6", "node6"], "agent", {}, UsageError, "named twice"),
    (["Node_6"], "agent", {}, UsageError, "not a valid node name"),
    ([], "agent", {}, UsageError, "no node named"),
    (["node6"], "agent", {"node5": "10.0.0.15"}, UsageError, "not being added"),
    (["node6"], "server", {}, PlanRejected, "4 servers: embedded etcd needs an odd number"),
])
def test_add_bad_input(names: list[str], role: prov.Role, addresses: dict[str, str],
                       error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        prov.validate_add(_inv(), names, role, addresses, _names(), {"node8": None})


def test_an_add_that_stopped_part_way_is_resumed() -> None:
    # node4 is in the inventory as an agent but is no Node of the cluster (the lab's Nodes)
    new = prov.validate_add(_inv(), ["node4", "node6"], "agent", {}, _names(), {})
    assert [(n.name, n.address, n.pending) for n in new] == [
        ("node4", "10.0.0.14", True), ("node6", "10.0.0.16", False)]
    plan = prov.plan_add(new, "hosts.yaml", 300)
    assert [s.target for s in plan.steps if s.action == "inventory-add"] == ["node6"]
    assert any("node4 is already in the inventory" in n for n in plan.notes)
    with pytest.raises(UsageError, match=r"node4 is in the inventory with address 10\.0\.0\.14"):
        prov.validate_add(_inv(), ["node4"], "agent", {"node4": "10.0.0.99"}, _names(), {})
    # re-running an add of servers counts only the servers not yet in the inventory
    assert prov.validate_add(_inv(), ["node2"], "server", {}, _names(), {})[0].pending


def test_servers_are_added_in_pairs() -> None:
    new = prov.validate_add(_inv(), ["node6", "node7"], "server", {}, _names(), {})
    assert [n.role for n in new] == ["server", "server"]
    plan = prov.plan_add(new, "hosts.yaml", 300)
    assert [s.action for s in plan.steps] == [
        "check-reachable", "inventory-add", "inventory-add", "playbook", "wait-ready",
        "wait-ready", "check-nodes"]


def _servers(ready: dict[str, bool]) -> tuple[dict[str, bool], dict[str, dict[str, Any]]]:
    """Ready state of the lab's servers, with some given the lab's real NotReady conditions."""
    nodes = {n["metadata"]["name"]: n for n in _nodes()}
    not_ready = nodes["k3s-agent-3"]["status"]["conditions"]
    out = {}
    for name, ok in ready.items():
        node = copy.deepcopy(nodes[name])
        if not ok:
            node["status"]["conditions"] = copy.deepcopy(not_ready)
        nodes[name] = node
        out[name] = prov.server_ready(node)
    return out, nodes


def test_remove_keeps_quorum() -> None:
    inv = prov.parse_inventory({"k3s_cluster": {"children": {"server": {"hosts": {
        "k3s-server-1": None, "k3s-server-2": None, "k3s-server-3": None}}}}}, "h.yaml")
    healthy, nodes = _servers({"k3s-server-1": True, "k3s-server-2": True,
                               "k3s-server-3": True})
    assert prov.validate_remove(inv, "k3s-server-3", nodes["k3s-server-3"], healthy) == "server"
    one_down, nodes = _servers({"k3s-server-1": True, "k3s-server-2": True,
                                "k3s-server-3": False})
    assert one_down == {"k3s-server-1": True, "k3s-server-2": True, "k3s-server-3": False}
    with pytest.raises(PlanRejected, match="would break etcd quorum: 1 Ready of the 2"):
        prov.validate_remove(inv, "k3s-server-1", nodes["k3s-server-1"], one_down)
    # removing the broken member is what restores safety
    assert prov.validate_remove(inv, "k3s-server-3", nodes["k3s-server-3"], one_down) == "server"
    two_down, nodes = _servers({"k3s-server-1": True, "k3s-server-2": False,
                                "k3s-server-3": False})
    with pytest.raises(PlanRejected, match="etcd has no quorum now"):
        prov.validate_remove(inv, "k3s-server-3", nodes["k3s-server-3"], two_down)


def test_remove_last_server_and_unknown_node() -> None:
    inv = prov.parse_inventory({"k3s_cluster": {"children": {"server": {"hosts": {
        "solo": None}}}}}, "h.yaml")
    with pytest.raises(PlanRejected, match="solo is the last server"):
        prov.validate_remove(inv, "solo", None, {})
    with pytest.raises(UsageError, match="unknown node ghost"):
        prov.validate_remove(inv, "ghost", None, {})
    agent = next(n for n in _nodes() if n["metadata"]["name"] == "k3s-agent-1")
    assert prov.validate_remove(inv, "k3s-agent-1", agent, {}) == "agent"


def test_remove_plans_only_what_is_left() -> None:
    full = prov.plan_remove("node2", "server", True, True, True, 2)
    assert [s.action for s in full.steps] == [
        "check-reachable", "drain", "etcd-remove", "delete-node", "playbook",
        "inventory-remove"]
    assert any("2 servers remain" in n for n in full.notes)
    gone = prov.plan_remove("node4", "agent", True, False, False, 3)
    assert [s.action for s in gone.steps] == ["inventory-remove"]
    assert any("--skip-host" in n for n in gone.notes)


def test_odd_servers() -> None:
    assert prov.odd_servers_problem(1) is None and prov.odd_servers_problem(5) is None
    assert "loses quorum" in (prov.odd_servers_problem(2) or "")
    assert "no server left" in (prov.odd_servers_problem(0) or "")


def test_inventory_round_trip_keeps_comments(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(INVENTORY)
    path.chmod(0o640)
    inv = InventoryFile(path)
    inv.add_host("agent", "node6", "10.0.0.16")
    inv.add_host("server", "node8", "node8")
    inv.save()
    text = path.read_text()
    for comment in ("# the guide's inventory", "# spare, racked", "# first server", "# pinned"):
        assert comment in text
    data = yaml.safe_load(text)
    assert data["k3s_cluster"]["children"]["agent"]["hosts"]["node6"] == {
        "ansible_host": "10.0.0.16"}
    assert data["k3s_cluster"]["children"]["server"]["hosts"]["node8"] is None
    assert path.stat().st_mode & 0o777 == 0o640
    again = InventoryFile(tmp_path)               # a directory holding hosts.yaml
    assert again.remove_host("node6") and not again.remove_host("node6")
    again.save()
    assert "node6:" not in path.read_text().split("k3s_cluster:")[1]
    assert "# spare, racked" in path.read_text()  # the all.hosts entry stays


def test_inventory_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        InventoryFile(tmp_path / "missing.yaml")
    ini = tmp_path / "hosts.ini"
    ini.write_text("[server]\nnode1\n")
    with pytest.raises(ConfigError, match="only YAML inventories"):
        InventoryFile(ini)
    bad = tmp_path / "bad.yaml"
    bad.write_text("k3s_cluster: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        InventoryFile(bad)
    assert resolve_host("localhost") in ("127.0.0.1", "::1")
    assert resolve_host("no-such-host.invalid") is None


def test_node_step_commands_are_built_from_validated_values() -> None:
    assert command_for("logs", "k3s", lines=50) == "journalctl -u k3s --no-pager -n 50"
    assert command_for("logs", "k3s-agent", since="-1h").endswith("--since=-1h")
    assert command_for("restart-k3s", "k3s-agent") == "systemctl restart k3s-agent"
    assert command_for("prune-images", "k3s") == "k3s crictl rmi --prune"
    assert command_for("vacuum-journal", "k3s") == "journalctl --vacuum-time=7d"
    assert 'grep -i "killed process"' in command_for("oom-kills", "k3s")
    for kw in ({"since": "1h; reboot"}, {"lines": 0}):
        with pytest.raises(UsageError):
            command_for("logs", "k3s", **kw)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="not a journalctl time span"):
        command_for("vacuum-journal", "k3s", keep="7d && reboot")
