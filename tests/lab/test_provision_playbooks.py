"""The packaged playbooks run for real (ansible-core over SSH) against test hosts.

Test hosts (tests/hosts.py) are network namespaces with their own address, a debootstrapped
Debian bookworm root of their own and sshd. What they cannot provide: the K3s binary itself and
systemd. So the airgap directory holds a stub ``k3s`` (a shell script) and the inventory sets
``k3s_start_service: false``: units are written but not started. Everything else is checked on
the hosts: binary and images installed from the airgap directory, config.yaml per node
(cluster-init on the first server only, the others joining the API endpoint, extra config
merged), the systemd units, the token file (0600, content right, never in any output), the
order (first server, then the other servers, then agents), idempotence (a second run changes
nothing), the reset playbook removing it all, and the adapter's errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from hosts import HostPool, TestHost
from k3sops.adapters import ansible
from k3sops.errors import ConfigError, Timeout

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def cluster(test_hosts: HostPool, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[tuple[list[TestHost], Path, Path]]:
    hosts = test_hosts.hosts(4)
    work = tmp_path_factory.mktemp("playbooks")
    airgap = work / "airgap"
    airgap.mkdir()
    (airgap / "k3s").write_text("#!/bin/sh\necho 'k3s version v1.31.4+k3s1 (test stub)'\n")
    (airgap / "k3s").chmod(0o755)
    (airgap / "k3s-airgap-images-amd64.tar.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"0" * 4096)
    inv = test_hosts.inventory(
        work / "hosts.yaml", servers=hosts[:3], agents=hosts[3:],
        cluster_vars={"airgap_dir": str(airgap), "k3s_start_service": False,
                      "k3s_version": "v1.31.4+k3s1", "extra_server_args": "--disable=traefik",
                      "server_config_yaml": "disable:\n  - servicelb\n"})
    yield hosts, inv, airgap


def _processes_showing(secret: str) -> list[str]:
    """Processes whose command line or environment contains ``secret`` (read from /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        for what in ("cmdline", "environ"):
            try:
                if secret.encode() in (proc / what).read_bytes():
                    found.append(f"{proc.name}/{what}")
            except OSError:
                continue
    return found


def _token() -> SecretStr:
    return SecretStr(f"K10{uuid.uuid4().hex}::server:{uuid.uuid4().hex}")


def test_site_installs_servers_then_agents_idempotently(
        cluster: tuple[list[TestHost], Path, Path]) -> None:
    hosts, inv, _ = cluster
    token = _token()
    events: list[ansible.AnsibleEvent] = []
    exposed: list[str] = []

    def on_event(e: ansible.AnsibleEvent) -> None:
        events.append(e)
        if e.kind == "task" and len(events) < 200:
            exposed.extend(_processes_showing(token.get_secret_value()))

    first = ansible.run_playbook("site", inv, secrets={"token": token}, on_event=on_event)
    # While Ansible ran, no process had the token on its command line or in its environment.
    assert exposed == []
    assert first.ok and first.changed > 0
    assert set(first.hosts) >= {h.name for h in hosts}

    # Order: everything on the first server, then the joining servers, then the agent.
    seq = [e.host for e in events if e.host and e.host != "localhost"]
    last = {h: max(i for i, x in enumerate(seq) if x == h) for h in set(seq)}
    start = {h: min(i for i, x in enumerate(seq) if x == h) for h in set(seq)}
    assert last["host1"] < start["host2"] < start["host3"]
    assert max(last["host1"], last["host2"], last["host3"]) < start["host4"]

    s1 = yaml.safe_load(hosts[0].read("/etc/rancher/k3s/config.yaml") or "")
    s2 = yaml.safe_load(hosts[1].read("/etc/rancher/k3s/config.yaml") or "")
    a1 = yaml.safe_load(hosts[3].read("/etc/rancher/k3s/config.yaml") or "")
    endpoint = f"https://{hosts[0].address}:6443"
    assert s1["cluster-init"] is True and "server" not in s1
    assert s2["server"] == endpoint and "cluster-init" not in s2
    assert s1["disable"] == s2["disable"] == ["servicelb"]        # server_config_yaml merged
    assert s1["node-name"] == "host1" and s1["tls-san"] == [hosts[0].address]
    assert a1 == {"node-name": "host4", "server": endpoint,
                  "token-file": "/etc/rancher/k3s/token"}
    for h in hosts:
        assert h.stat("/etc/rancher/k3s/config.yaml") == ("600", "root:root")
        assert h.stat("/etc/rancher/k3s/token") == ("600", "root:root")
        assert (h.read("/etc/rancher/k3s/token") or "").strip() == token.get_secret_value()
        assert h.stat("/usr/local/bin/k3s") == ("755", "root:root")
        assert "test stub" in h.run("/usr/local/bin/k3s --version").stdout
        assert h.stat("/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst")
    server_unit = hosts[1].read("/etc/systemd/system/k3s.service") or ""
    agent_unit = hosts[3].read("/etc/systemd/system/k3s-agent.service") or ""
    assert ("ExecStart=/usr/local/bin/k3s server --config /etc/rancher/k3s/config.yaml "
            "--disable=traefik") in server_unit
    assert "Type=notify" in server_unit
    assert ("ExecStart=/usr/local/bin/k3s agent --config /etc/rancher/k3s/config.yaml\n"
            in agent_unit)
    assert hosts[3].stat("/etc/systemd/system/k3s.service") is None   # agents: no server unit

    # The token never shows up in what Ansible reported.
    secret = token.get_secret_value()
    assert secret not in repr(first) and secret not in repr(events)

    second = ansible.run_playbook("site", inv, secrets={"token": token})
    assert second.ok
    assert second.changed == 0, [(t.host, t.task) for t in second.tasks if t.status == "changed"]


def test_check_mode_and_a_changed_token_are_reported(
        cluster: tuple[list[TestHost], Path, Path]) -> None:
    hosts, inv, _ = cluster
    before = hosts[0].read("/etc/rancher/k3s/token")
    other = _token()
    checked = ansible.run_playbook("site", inv, secrets={"token": other}, check=True,
                                   limit="host1")
    # The token file only (its no_log result is censored; the report task says it changed).
    assert checked.ok
    assert [t.task for t in checked.tasks if t.status == "changed"] == [
        "Report whether the token file changed"]
    assert hosts[0].read("/etc/rancher/k3s/token") == before   # --check changed nothing
    assert other.get_secret_value() not in repr(checked)


def test_site_refuses_an_even_number_of_servers(test_hosts: HostPool, tmp_path: Path,
                                                cluster: tuple[list[TestHost], Path, Path],
                                                ) -> None:
    hosts, _, airgap = cluster
    inv = test_hosts.inventory(tmp_path / "even.yaml", servers=hosts[:2],
                               cluster_vars={"airgap_dir": str(airgap),
                                             "k3s_start_service": False})
    with pytest.raises(ansible.AnsibleFailed) as e:
        ansible.run_playbook("site", inv, secrets={"token": _token()})
    assert "odd" in e.value.message and "2 server(s)" in e.value.message
    assert e.value.result.first_failure() is not None
    assert set(e.value.result.hosts) == {"localhost"}    # nothing ran on the hosts


def test_remove_node_playbook_refuses_to_break_quorum(
        cluster: tuple[list[TestHost], Path, Path]) -> None:
    _, inv, _ = cluster
    with pytest.raises(ansible.AnsibleFailed) as e:
        ansible.run_playbook("remove-node", inv,
                             extravars={"remove_nodes": ["host1", "host2"]})
    assert "would leave 1 of 3 etcd members: quorum would be lost" in e.value.message
    assert set(e.value.result.hosts) == {"localhost"}    # nothing ran on the hosts


def test_unreachable_host_is_named(test_hosts: HostPool, tmp_path: Path,
                                   cluster: tuple[list[TestHost], Path, Path]) -> None:
    hosts, _, _ = cluster
    inv = test_hosts.inventory(tmp_path / "one.yaml", servers=[hosts[3]])
    test_hosts.stop(hosts[3])
    try:
        with pytest.raises(ansible.HostUnreachable) as e:
            ansible.run_command(inv, "all", "", module="ping")
        assert e.value.hosts == ["host4"]
        assert "host4" in e.value.message and e.value.exit_code == 1
    finally:
        test_hosts.start(hosts[3])
    ok = ansible.run_command(inv, "all", "", module="ping")
    assert ok.ok and ok.hosts["host4"].ok == 1


def test_become_runs_as_root_for_a_sudo_user(test_hosts: HostPool, tmp_path: Path,
                                             cluster: tuple[list[TestHost], Path, Path]) -> None:
    hosts, _, _ = cluster
    inv = test_hosts.inventory(tmp_path / "ops.yaml", agents=[hosts[3]], user="ops")
    plain = ansible.run_command(inv, "host4", "id -un")
    root = ansible.run_command(inv, "host4", "id -un", become=True)
    assert plain.tasks[0].stdout == "ops" and root.tasks[0].stdout == "root"
    failed = ansible.run_command(inv, "host4", "ls /nonexistent", raise_on_failure=False)
    assert failed.failed_hosts == ["host4"] and failed.tasks[0].rc == 2


def test_a_hung_command_times_out(test_hosts: HostPool, tmp_path: Path,
                                  cluster: tuple[list[TestHost], Path, Path]) -> None:
    hosts, _, _ = cluster
    inv = test_hosts.inventory(tmp_path / "slow.yaml", agents=[hosts[3]])
    with pytest.raises(Timeout, match="did not finish within the timeout"):
        ansible.run_command(inv, "host4", "sleep 120", timeout=15)


def test_unknown_playbook_is_a_config_error(cluster: tuple[list[TestHost], Path, Path]) -> None:
    _, inv, _ = cluster
    with pytest.raises(ConfigError, match="no packaged playbook 'nope'"):
        ansible.run_playbook("nope", inv)
    assert set(ansible.playbook_names()) >= {"site", "scale-cluster", "remove-node", "upgrade",
                                             "reset"}


def test_upgrade_then_reset(cluster: tuple[list[TestHost], Path, Path]) -> None:
    hosts, inv, airgap = cluster
    (airgap / "k3s").write_text("#!/bin/sh\necho 'k3s version v1.32.1+k3s1 (test stub)'\n")
    events: list[ansible.AnsibleEvent] = []
    up = ansible.run_playbook("upgrade", inv, secrets={"token": _token()},
                              extravars={"kube_steps": False, "k3s_version": "v1.32.1+k3s1"},
                              on_event=events.append)
    assert up.ok
    # One node at a time, servers first: the binary changed on each host in inventory order.
    order = [e.host for e in events if e.kind == "changed"
             and e.task == "Install the k3s binary from the airgap directory"]
    assert order == ["host1", "host2", "host3", "host4"]
    assert all("v1.32.1" in h.run("/usr/local/bin/k3s --version").stdout for h in hosts)
    reset = ansible.run_playbook("reset", inv)
    assert reset.ok and reset.changed > 0
    for h in hosts:
        assert h.stat("/etc/rancher/k3s") is None and h.stat("/usr/local/bin/k3s") is None
        assert h.stat("/etc/systemd/system/k3s.service") is None
        assert h.stat("/var/lib/rancher/k3s") is None
    assert ansible.run_playbook("reset", inv).changed == 0
