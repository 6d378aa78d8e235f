"""Node-level steps run on the host over SSH through Ansible, using the platform's inventory.

=================  ===================================================  =========
step               command on the node (as root, through ``become``)    changes?
=================  ===================================================  =========
``logs``           ``journalctl -u k3s|k3s-agent --no-pager -n N``       no
``oom-kills``      ``dmesg | grep -i "killed process"``                  no
``restart-k3s``    ``systemctl restart k3s|k3s-agent``                   yes
``prune-images``   ``k3s crictl rmi --prune``                            yes
``vacuum-journal`` ``journalctl --vacuum-time=7d``                       yes
=================  ===================================================  =========

Read-only steps run straight away. Steps that change the node return their plan (the exact
command and host) unless ``apply``; applied, they are written to the audit log with the result.
The unit is ``k3s`` on servers and ``k3s-agent`` on agents (from the inventory group).
Commands are built only from validated values (a line count, a journalctl time), never from
free text, so nothing can be injected into the remote shell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from k3sops.adapters import ansible
from k3sops.adapters.audit import AuditLog, current_user, state_dir
from k3sops.adapters.inventory import InventoryFile
from k3sops.domain import provision as prov
from k3sops.errors import AdapterError, ConfigError, UsageError
from k3sops.services import context

Step = Literal["logs", "oom-kills", "restart-k3s", "prune-images", "vacuum-journal"]
CHANGING: frozenset[str] = frozenset({"restart-k3s", "prune-images", "vacuum-journal"})

_SINCE = re.compile(r"^-?[0-9]+(s|min|m|h|d|w)$|^(today|yesterday)$")
_KEEP = re.compile(r"^[0-9]+(s|min|h|d|w|months|years)$")


class NodeStepReport(BaseModel):
    """A node-level step: what runs where, and (when it ran) its output."""

    step: str
    node: str
    role: str
    command: str
    applied: bool
    ran: bool
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    audit_log: str | None = None


def command_for(step: Step, unit: str, *, lines: int = 200, since: str | None = None,
                keep: str = "7d") -> str:
    """The shell command a step runs on the node (validated pieces only).

    Raises:
        UsageError: a bad ``lines``, ``since`` or ``keep`` value.
    """
    if step == "logs":
        if not 1 <= lines <= 100000:
            raise UsageError(f"--lines {lines} is out of range", hint="1-100000")
        if since is not None and not _SINCE.match(since):
            raise UsageError(f"--since {since!r} is not a journalctl time",
                             hint="e.g. -1h, -30min, -2d, today, yesterday")
        extra = f" --since={since}" if since else ""
        return f"journalctl -u {unit} --no-pager -n {lines}{extra}"
    if step == "oom-kills":
        # dmesg's own failure must not read as "no OOM kills": keep its exit status.
        return ('out=$(dmesg) || exit $?; printf "%s\\n" "$out" | grep -i "killed process" '
                "|| true")
    if step == "restart-k3s":
        return f"systemctl restart {unit}"
    if step == "prune-images":
        return "k3s crictl rmi --prune"
    if not _KEEP.match(keep):
        raise UsageError(f"--keep {keep!r} is not a journalctl time span", hint="e.g. 7d, 2w")
    return f"journalctl --vacuum-time={keep}"


def run_step(settings: context.Settings, env: Mapping[str, str], home: Path, step: Step,
             node: str, *, apply: bool, state: Path | None = None, lines: int = 200,
             since: str | None = None, keep: str = "7d") -> NodeStepReport:
    """Run (or, for a changing step without ``apply``, plan) a node-level step.

    Raises:
        ConfigError: no ansible section in platform.yaml.
        UsageError: the node is not in the inventory; bad option values.
        HostUnreachable: the node cannot be reached over SSH.
        AdapterError: the command failed on the node (names the command and its output).
    """
    if settings.platform is None or settings.platform.ansible is None:
        raise ConfigError("platform.yaml has no ansible section: node steps run over SSH "
                          "through Ansible with its inventory",
                          hint="add ansible: {inventory: inventory/production/hosts.yaml}")
    cfg = settings.platform.ansible
    inv_file = InventoryFile(cfg.inventory)
    inv = prov.parse_inventory(inv_file.data(), str(inv_file.path))
    member = inv.member(node)
    if member is None:
        known = ", ".join(h.name for h in inv.members) or "none"
        raise UsageError(f"node {node} is not in the inventory {inv_file.path}",
                         hint=f"inventory nodes: {known}")
    unit = "k3s" if member.group == "server" else "k3s-agent"
    cmd = command_for(step, unit, lines=lines, since=since, keep=keep)
    changing = step in CHANGING
    audit = AuditLog(state_dir(state, env, home) / "audit.jsonl")
    report = NodeStepReport(step=step, node=node, role=member.group or "", command=cmd,
                            applied=apply, ran=False,
                            audit_log=str(audit.path) if changing and apply else None)
    if changing and not apply:
        return report

    def record(result: str, error: str | None) -> None:
        if changing:
            audit.append({"who": current_user(), "inventory": str(inv_file.path),
                          "what": {"action": f"node {step}", "target": f"nodes/{node}",
                                   "detail": cmd},
                          "result": result, "error": error})

    try:
        result = ansible.run_command(inv_file.path, node, cmd, module="shell", become=True,
                                     private_key_file=cfg.private_key_file, user=cfg.user,
                                     timeout=300, raise_on_failure=False)
    except AdapterError as e:
        record("failed", e.message)
        raise
    task = next((t for t in result.tasks if t.host == node), None)
    if node in result.unreachable_hosts or task is None or task.status == "unreachable":
        why = task.msg.strip() if task is not None else "no result"
        record("failed", f"unreachable: {why}")
        raise ansible.HostUnreachable(
            f"node {node}: cannot reach the host over SSH to run `{cmd}`: {why}", [node], result,
            hint="check the host is up and the inventory's address, user and key")
    report.ran = True
    report.rc, report.stdout, report.stderr = task.rc, task.stdout, task.stderr
    if task.status == "failed":
        detail = (task.stderr or task.msg or task.stdout).strip()
        missing = task.rc == 127 or "not found" in detail
        record("failed", f"rc={task.rc}: {detail[:300]}")
        raise AdapterError(
            f"node {node}: `{cmd}` failed (rc={task.rc}): {detail[:500]}",
            hint=("the command is not installed on the node (is it a K3s host with systemd?)"
                  if missing else "run it by hand on the node to see more"))
    record("ok", None)
    return report
