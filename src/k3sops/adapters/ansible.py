"""Ansible through ansible-runner: packaged playbooks and ad-hoc commands on inventory hosts.

Public surface (kept stable; other features build on it):

- :func:`run_playbook` runs a playbook shipped in ``k3sops/ansible/`` by name (``site``,
  ``scale-cluster``, ...) against an inventory file, with extra vars, secret vars, ``--limit``
  and check mode;
- :func:`run_command` runs one ad-hoc module (``command``/``shell``/...) on a host pattern,
  optionally with ``become``;
- both return a :class:`RunResult` (per-host ok/changed/failed/unreachable counts and every
  task result) and, unless ``raise_on_failure=False``, raise :class:`HostUnreachable` (an
  :class:`~k3sops.errors.Unreachable` naming the hosts) or :class:`AnsibleFailed` (an
  :class:`~k3sops.errors.AdapterError` naming host, task and message). Both errors carry the
  ``result``;
- progress: ``on_event`` receives an :class:`AnsibleEvent` per play, task start and host
  result (names and status only, never a module's return values).

Secrets: values in ``secrets`` are written to a 0600 vars file inside a private 0700 run
directory and passed as ``-e @FILE``; they never appear on a command line, and the run directory
(ansible-runner's artifacts included) is deleted afterwards. Tasks that use them must set
``no_log: true`` so that Ansible censors their results; :class:`TaskResult` keeps only short
``msg``/``rc``/``stdout``/``stderr`` fields, and the whole result is scrubbed of the secret values
before it is returned, as a second line of defence.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

# AnsibleFailed and HostUnreachable live in the one error tree; __all__ re-exports them here,
# where callers have always found them.
from k3sops.errors import (
    AdapterError,
    AnsibleFailed,
    ConfigError,
    HostUnreachable,
    NotFound,
    Timeout,
)

__all__ = [
    "ANSIBLE_DIR",
    "AnsibleEvent",
    "AnsibleFailed",
    "HostStats",
    "HostUnreachable",
    "RunResult",
    "TaskResult",
    "playbook_names",
    "run_command",
    "run_playbook",
]

#: Where the packaged playbooks (``NAME.yml``) and roles (``roles/``) live.
ANSIBLE_DIR = Path(__file__).resolve().parent.parent / "ansible"

TaskStatus = Literal["ok", "changed", "failed", "skipped", "unreachable"]
EventKind = Literal["play", "task", "ok", "changed", "failed", "skipped", "unreachable"]

_MAX_TEXT = 2000  # characters kept of a task's stdout/stderr/msg: enough to diagnose


@dataclass(frozen=True)
class AnsibleEvent:
    """One progress event: a play or task starting, or a task's result on a host."""

    kind: EventKind
    play: str = ""
    task: str = ""
    host: str = ""
    ignored: bool = False
    """A failure the playbook tolerates (``ignore_errors``)."""


@dataclass(frozen=True)
class TaskResult:
    """What one task did on one host (module return values reduced to the diagnostic fields)."""

    host: str
    task: str
    status: TaskStatus
    play: str = ""
    action: str = ""
    """The module that ran (``copy``, ``command``, ...)."""
    msg: str = ""
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    ignored: bool = False
    """The task failed but the playbook carries on (``ignore_errors``)."""
    item: str | None = None
    """The loop item (its label), for one result of a looped task."""


@dataclass
class HostStats:
    """Per-host counters of a run, as ``PLAY RECAP`` shows them."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass
class RunResult:
    """The outcome of a playbook or ad-hoc run."""

    what: str
    """``playbook site`` or ``command 'uptime' on node1``: used in messages."""
    status: str
    """ansible-runner's status: ``successful``, ``failed``, ``timeout``, ``canceled``."""
    rc: int
    hosts: dict[str, HostStats] = field(default_factory=dict)
    tasks: list[TaskResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no host failed or was unreachable."""
        return self.rc == 0 and not self.failed_hosts and not self.unreachable_hosts

    @property
    def changed(self) -> int:
        """Total changed tasks over all hosts (0 on an idempotent second run)."""
        return sum(h.changed for h in self.hosts.values())

    @property
    def failed_hosts(self) -> list[str]:
        """Hosts with a failed task (ignored failures do not count)."""
        return sorted(h for h, s in self.hosts.items() if s.failed)

    @property
    def unreachable_hosts(self) -> list[str]:
        """Hosts Ansible could not connect to."""
        return sorted(h for h, s in self.hosts.items() if s.unreachable)

    def for_host(self, host: str) -> list[TaskResult]:
        """The task results of one host, in order."""
        return [t for t in self.tasks if t.host == host]

    def task(self, host: str, name: str) -> TaskResult | None:
        """The last result of the task called ``name`` on ``host``."""
        found = [t for t in self.tasks if t.host == host and t.task == name]
        return found[-1] if found else None

    def first_failure(self) -> TaskResult | None:
        """The first failed (not ignored) or unreachable task result."""
        return next((t for t in self.tasks
                     if t.status in ("failed", "unreachable") and not t.ignored), None)


def playbook_names() -> list[str]:
    """The packaged playbooks, by name."""
    return sorted(p.stem for p in ANSIBLE_DIR.glob("*.yml"))


def _text(value: object) -> str:
    if value is None:
        return ""
    s = value if isinstance(value, str) else json.dumps(value, default=str)
    return s if len(s) <= _MAX_TEXT else s[:_MAX_TEXT] + "…"


def _status_of(event: str, data: Mapping[str, Any]) -> TaskStatus | None:
    res = data.get("res") or {}
    if event in ("runner_on_ok", "runner_item_on_ok"):
        return "changed" if res.get("changed") else "ok"
    if event in ("runner_on_failed", "runner_item_on_failed"):
        return "failed"
    if event in ("runner_on_skipped", "runner_item_on_skipped"):
        return "skipped"
    if event == "runner_on_unreachable":
        return "unreachable"
    return None


class _Collector:
    """Turns ansible-runner events into TaskResults and progress callbacks."""

    def __init__(self, on_event: Callable[[AnsibleEvent], None] | None) -> None:
        self.on_event = on_event
        self.tasks: list[TaskResult] = []

    def __call__(self, event: Mapping[str, Any]) -> bool:
        name = str(event.get("event", ""))
        data: Mapping[str, Any] = event.get("event_data") or {}
        play = str(data.get("play", ""))
        task = str(data.get("task", ""))
        if name == "playbook_on_play_start":
            self._emit(AnsibleEvent("play", play=play))
        elif name == "playbook_on_task_start":
            self._emit(AnsibleEvent("task", play=play, task=task))
        status = _status_of(name, data)
        if status is None:
            return True
        res: Mapping[str, Any] = data.get("res") or {}
        if not isinstance(res, Mapping):
            res = {}
        host = str(data.get("host", ""))
        ignored = bool(data.get("ignore_errors")) and status == "failed"
        rc = res.get("rc")
        item = None
        if name.startswith("runner_item_"):
            item = _text(res.get("_ansible_item_label", res.get("item")))
        elif res.get("results"):
            # A looped task's summary event repeats every item: the item events carry them.
            return True
        self.tasks.append(TaskResult(
            host=host, task=task, status=status, play=play,
            action=str(data.get("task_action", "")), msg=_text(res.get("msg")),
            rc=rc if isinstance(rc, int) else None, stdout=_text(res.get("stdout")),
            stderr=_text(res.get("stderr")), ignored=ignored, item=item))
        if item is None:
            self._emit(AnsibleEvent(status, play=play, task=task, host=host, ignored=ignored))
        return True

    def _emit(self, event: AnsibleEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)


def _scrub(result: RunResult, secrets: Iterable[str]) -> RunResult:
    """Replace any secret value that slipped into task output (a task without no_log)."""
    # Very short values would scrub ordinary words; real tokens and passwords are long.
    values = [s for s in secrets if len(s) >= 6]
    if not values:
        return result

    def clean(s: str) -> str:
        for v in values:
            s = s.replace(v, "********")
        return s

    result.tasks = [TaskResult(host=t.host, task=t.task, status=t.status, play=t.play,
                               action=t.action, msg=clean(t.msg), rc=t.rc,
                               stdout=clean(t.stdout), stderr=clean(t.stderr),
                               ignored=t.ignored, item=clean(t.item) if t.item else t.item)
                    for t in result.tasks]
    return result


def _env(extra: Mapping[str, str] | None, private: Path) -> dict[str, str]:
    """Environment of the ansible process: the venv's ansible first on PATH, sane settings."""
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env = {
        "PATH": f"{bindir}:{path}",
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
        "ANSIBLE_ROLES_PATH": str(ANSIBLE_DIR / "roles"),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_FORCE_COLOR": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(private / "cp"),
        "ANSIBLE_INTERPRETER_PYTHON": "auto_silent",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_COMMAND_WARNINGS": "False",
        "ANSIBLE_TIMEOUT": "15",
    }
    env.update(extra or {})
    return env


def _summarise(status: str, rc: int, stats: Mapping[str, Any] | None,
               tasks: list[TaskResult], what: str) -> RunResult:
    result = RunResult(what=what, status=status, rc=rc, tasks=tasks)
    mapping = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable",
               "skipped": "skipped"}
    for key, attr in mapping.items():
        for host, n in ((stats or {}).get(key) or {}).items():
            hs = result.hosts.setdefault(host, HostStats())
            setattr(hs, attr, int(n))
    # Ad-hoc runs have no PLAY RECAP: derive the counters from the results.
    if not stats:
        for t in tasks:
            hs = result.hosts.setdefault(t.host, HostStats())
            if t.status == "failed" and t.ignored:
                continue
            setattr(hs, t.status, getattr(hs, t.status) + 1)
            if t.status == "changed":
                hs.ok += 1
    return result


def _raise_for(result: RunResult) -> None:
    unreachable = result.unreachable_hosts
    if unreachable:
        why = next((t.msg for t in result.tasks if t.status == "unreachable" and t.msg), "")
        raise HostUnreachable(
            f"{result.what}: cannot reach host(s) {', '.join(unreachable)} over SSH"
            + (f": {why.strip()}" if why else ""),
            unreachable, result,
            hint="check that the host is up, its ansible_host/port in the inventory, the SSH "
                 "user and key (ansible.private_key_file in platform.yaml)")
    if result.status == "timeout":
        raise Timeout(f"{result.what}: did not finish within the timeout")
    if not result.ok:
        first = result.first_failure()
        if first is not None:
            detail = first.msg or first.stderr or first.stdout or f"rc={first.rc}"
            raise AnsibleFailed(
                f"{result.what}: task {first.task!r} failed on {first.host}: {detail.strip()}",
                result, hint="fix the cause on that host, then run the same command again "
                             "(the playbooks are idempotent)")
        raise AnsibleFailed(f"{result.what}: ansible exited with {result.rc} ({result.status})",
                            result, hint="check the inventory and playbook syntax")


def _execute(what: str, *, inventory: Path, secrets: Mapping[str, SecretStr] | None,
             extravars: Mapping[str, Any] | None, cmdline: list[str],
             on_event: Callable[[AnsibleEvent], None] | None, timeout: float | None,
             envvars: Mapping[str, str] | None, raise_on_failure: bool,
             run_kwargs: Mapping[str, Any]) -> RunResult:
    if not inventory.exists():
        raise NotFound(f"{what}: inventory {inventory} does not exist",
                       hint="set ansible.inventory in platform.yaml to your hosts.yaml")
    import ansible_runner  # type: ignore[import-untyped]  # heavy: imported only when used

    private = Path(tempfile.mkdtemp(prefix="k3sops-ansible-"))
    try:
        os.chmod(private, 0o700)
        (private / "tmp").mkdir()
        (private / "cp").mkdir()
        args = list(cmdline)
        secret_values: list[str] = []
        if extravars:
            vars_file = private / "extravars.json"
            vars_file.write_text(json.dumps(dict(extravars)))
            args += ["-e", f"@{vars_file}"]
        if secrets:
            secret_file = private / "secret-vars.json"
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({k: v.get_secret_value() for k, v in secrets.items()}, f)
            secret_values = [v.get_secret_value() for v in secrets.values()]
            args += ["-e", f"@{secret_file}"]
        collector = _Collector(on_event)
        try:
            runner = ansible_runner.run(
                private_data_dir=str(private), inventory=str(inventory.resolve()),
                envvars=_env(envvars, private), cmdline=" ".join(_quote(a) for a in args),
                event_handler=collector, quiet=True, timeout=int(timeout) if timeout else None,
                suppress_env_files=True, **run_kwargs)
        except (OSError, RuntimeError, ValueError) as e:
            raise AdapterError(f"{what}: ansible-runner could not start: {e}",
                               hint="check that ansible-core is installed in k3sops' "
                                    "environment") from e
        stats = runner.stats if runner.stats else None
        result = _summarise(str(runner.status), int(runner.rc or 0), stats, collector.tasks,
                            what)
        _scrub(result, secret_values)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    if raise_on_failure:
        _raise_for(result)
    return result


def _quote(arg: str) -> str:
    import shlex
    return shlex.quote(arg)


def run_playbook(name: str, inventory: Path, *, extravars: Mapping[str, Any] | None = None,
                 secrets: Mapping[str, SecretStr] | None = None, limit: str | None = None,
                 check: bool = False, private_key_file: Path | None = None,
                 user: str | None = None, on_event: Callable[[AnsibleEvent], None] | None = None,
                 timeout: float | None = None, envvars: Mapping[str, str] | None = None,
                 raise_on_failure: bool = True) -> RunResult:
    """Run the packaged playbook ``name`` (``site``, ``scale-cluster``, ...) on ``inventory``.

    Args:
        name: a name from :func:`playbook_names`.
        inventory: the inventory file (YAML or INI).
        extravars: variables for the play (``-e @file``); no secrets here.
        secrets: secret variables (token, passwords): passed through a 0600 file, scrubbed
            from results; the playbook must mark tasks using them ``no_log``.
        limit: ``--limit`` host pattern.
        check: ``--check`` (report what would change, change nothing).
        private_key_file: SSH key (``--private-key``); None: the inventory's or the default.
        user: remote user (``--user``).
        on_event: progress callback.
        timeout: seconds before the run is stopped (Timeout is raised).
        envvars: extra environment for ansible (``ANSIBLE_*`` settings).
        raise_on_failure: raise on a failed or unreachable host (default) or return the result.

    Raises:
        ConfigError: unknown playbook name.
        NotFound: the inventory does not exist.
        HostUnreachable: a host could not be reached (names it).
        AnsibleFailed: a task failed (names host, task and message).
        Timeout: the run exceeded ``timeout``.
    """
    if name not in playbook_names():
        raise ConfigError(f"no packaged playbook {name!r}",
                          hint=f"known playbooks: {', '.join(playbook_names())}")
    cmdline: list[str] = []
    if limit:
        cmdline += ["--limit", limit]
    if check:
        cmdline.append("--check")
    if private_key_file is not None:
        cmdline += ["--private-key", str(private_key_file)]
    if user:
        cmdline += ["--user", user]
    return _execute(f"playbook {name}" + (" (check mode)" if check else ""),
                    inventory=inventory, secrets=secrets, extravars=extravars, cmdline=cmdline,
                    on_event=on_event, timeout=timeout, envvars=envvars,
                    raise_on_failure=raise_on_failure,
                    run_kwargs={"project_dir": str(ANSIBLE_DIR),
                                "playbook": str(ANSIBLE_DIR / f"{name}.yml")})


def run_command(inventory: Path, hosts: str, args: str, *, module: str = "command",
                become: bool = False, private_key_file: Path | None = None,
                user: str | None = None, on_event: Callable[[AnsibleEvent], None] | None = None,
                timeout: float | None = None, envvars: Mapping[str, str] | None = None,
                raise_on_failure: bool = True) -> RunResult:
    """Run one ad-hoc module on the hosts matching ``hosts`` (``ansible HOSTS -m MODULE -a ARGS``).

    ``args`` is on the ansible command line: never put a secret there. Per-host output is in
    ``result.tasks`` (one TaskResult per host: ``rc``, ``stdout``, ``stderr``, ``msg``).

    Raises:
        NotFound: the inventory does not exist.
        HostUnreachable: a host could not be reached (names it).
        AnsibleFailed: the command failed on a host (names host and message).
        Timeout: the run exceeded ``timeout``.
    """
    cmdline: list[str] = []
    if become:
        cmdline.append("--become")
    if private_key_file is not None:
        cmdline += ["--private-key", str(private_key_file)]
    if user:
        cmdline += ["--user", user]
    what = f"{module} {args!r} on {hosts}"
    return _execute(what, inventory=inventory, secrets=None, extravars=None, cmdline=cmdline,
                    on_event=on_event, timeout=timeout, envvars=envvars,
                    raise_on_failure=raise_on_failure,
                    run_kwargs={"host_pattern": hosts, "module": module, "module_args": args})

