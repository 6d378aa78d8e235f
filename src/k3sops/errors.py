"""The one error hierarchy of k3sops; every error carries the process exit code it maps to.

    K3sopsError (1)
     ├── UsageError (2)
     │    ├── QueryError              PromQL/LogQL the server refused to parse
     │    └── PayloadInvalid          a webhook body `serve` refuses: not JSON, wrong version,
     │         │                      a field missing or mistyped (HTTP 400); nothing stored
     │         └── PayloadTooLarge    a webhook body over the size limit (HTTP 413)
     ├── ConfigError (2)
     │    └── PlatformConfigError     platform.yaml failed validation; lists each ConfigIssue
     ├── AdapterError (1)            something outside k3sops failed
     │    ├── NotFound
     │    ├── Unauthorized            401/403: names the verb and the resource refused
     │    ├── Unreachable             names the address and a hint
     │    │    └── HostUnreachable    Ansible could not reach hosts over SSH; names them
     │    ├── Timeout
     │    ├── Conflict
     │    ├── Invalid                 400/422: the API server refused the request as malformed
     │    ├── Gone                    410: a watch's resourceVersion is too old; list again
     │    ├── AnsibleFailed           a playbook or command failed on a host (host, task, message)
     │    └── HistoryError            the check history (SQLite) could not be opened, read, written
     ├── LabError (1)                the local lab could not be built, started or shaped, or is
     │                               not fully up (``lab status``)
     ├── PlanRejected (1)            also: an admission refusal (webhook, PodSecurity, quota)
     │    ├── PromotionRefused (3)    policy or a gate refused a promotion, approval, rollback
     │    │                           (k3sops.domain.env: it carries the domain's Refusals)
     │    ├── UpgradeRefused (3)      a preflight rule refused an upgrade (skipped minor, stale
     │    │                           backup, quorum, a blocking PDB …); nothing changed
     │    └── GuardRefused            a remediation policy's guard refused its plan before
     │                                anything changed (`serve` records it ``refused``)
     ├── UpgradeStopped (1)          `upgrade apply` stopped at a failed step; carries its report
     │                               (node, step, cordoned or not, resume and rollback commands)
     ├── FindingsAtThreshold (3)     a check the command ran failed: findings at --fail-on,
     │                               a failed backup verify, dashboard panels without data,
     │                               undocumented env differences (--strict), emergency checks
     │                               still failing
     ├── PartialResult (4)           a source could not be read; names which
     └── Interrupted (130)

Every class but PromotionRefused is defined here (it lives with the refusals it carries); the
old homes re-export theirs (``k3sops.adapters.ansible``, ``k3sops.adapters.history``,
``k3sops.config``). README's exit-code table documents every code above, and a unit test holds
the two together.

Adapters raise these, never their libraries' exceptions (``raise ... from e``). Messages say
what happened, where, and what to do next, and never contain secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any


class ExitCode(IntEnum):
    """Documented process exit codes (README, "Exit codes")."""

    OK = 0
    RUNTIME = 1
    USAGE = 2
    FINDINGS = 3
    PARTIAL = 4
    INTERRUPTED = 130


class K3sopsError(Exception):
    """Root of every error k3sops raises on purpose."""

    exit_code: ExitCode = ExitCode.RUNTIME

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(K3sopsError):
    """A command was called wrongly (bad flag combination, bad argument)."""

    exit_code = ExitCode.USAGE


class ConfigError(K3sopsError):
    """platform.yaml (or another input file) is malformed or invalid."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in a platform file, as shown to the user."""

    source: str
    line: int | None
    path: str
    problem: str
    allowed: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        text = f"{where}: {self.path}: {self.problem}"
        return f"{text} (allowed: {self.allowed})" if self.allowed else text


class PlatformConfigError(ConfigError):
    """A platform file failed validation; ``issues`` lists each problem with its line."""

    def __init__(self, message: str, issues: tuple[ConfigIssue, ...], *,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.issues = issues


class AdapterError(K3sopsError):
    """A component outside k3sops (API server, Prometheus, a tool) failed."""


class NotFound(AdapterError):
    """The object or endpoint asked for does not exist."""


class Unauthorized(AdapterError):
    """The credentials were refused (401) or lack permission (403)."""


class Unreachable(AdapterError):
    """The endpoint could not be connected to."""


class Timeout(AdapterError):
    """The endpoint did not answer in time."""


def short_reason(e: AdapterError) -> str:
    """Why a read failed, in a few words (``forbidden``, ``timed out``…).

    How a report names a kind it could not list: the CLI's LIST and the service's watch
    cache alike.
    """
    if isinstance(e, Unauthorized):
        return "forbidden" if "403" in e.message else "unauthorized"
    if isinstance(e, Timeout):
        return "timed out"
    if isinstance(e, Unreachable):
        return "unreachable"
    return e.message


class Conflict(AdapterError):
    """The object changed underneath us or already exists."""


class Invalid(AdapterError):
    """The API server refused a request as malformed or invalid (HTTP 400/422, not admission).

    The message carries the server's own text, which names the field at fault.
    """


class HostUnreachable(Unreachable):
    """Ansible could not reach ``hosts`` over SSH; ``result`` has the details.

    Attributes:
        hosts: the inventory hosts that could not be reached.
        result: the run's :class:`k3sops.adapters.ansible.RunResult` (typed ``Any`` here:
            this module imports nothing of k3sops, so that every layer can import it).
    """

    def __init__(self, message: str, hosts: list[str], result: Any, *,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.hosts = hosts
        self.result = result


class AnsibleFailed(AdapterError):
    """A playbook or command failed on at least one host; ``result`` has the details.

    Attributes:
        result: the run's :class:`k3sops.adapters.ansible.RunResult` (every task result).
    """

    def __init__(self, message: str, result: Any, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.result = result


class HistoryError(AdapterError):
    """The history store could not be opened, read or written.

    Attributes:
        location: the database, as it may be shown (a file path, or a URL without password).
        path: the SQLite file concerned (None for a server database).
    """

    def __init__(self, message: str, *, location: str, path: Path | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.location = location
        self.path = path


class Gone(AdapterError):
    """A watch's (or a list's) resourceVersion is too old (HTTP 410, or an ERROR event 410).

    The caller lists again and watches from the new list's resourceVersion.
    """


class LabError(K3sopsError):
    """The local lab could not be built, started, shaped or stopped."""


class PlanRejected(K3sopsError):
    """A plan was refused (policy, approval, or a precondition no longer holds)."""


class UpgradeRefused(PlanRejected):
    """A preflight rule refused an upgrade plan (exit 3).

    The message names the failed rules' reasons, the hint the command that fixes the first.
    """

    exit_code = ExitCode.FINDINGS


class UpgradeStopped(K3sopsError):
    """A step of ``upgrade apply`` failed; the run stopped in the state ``report`` describes.

    ``report`` is the ApplyReport (k3sops.domain.upgrade_apply): the steps run and ``stopped``
    (node, step, reason, cordoned, resume and rollback commands), printed before the error.
    """

    def __init__(self, message: str, report: Any, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.report = report


class GuardRefused(PlanRejected):
    """A remediation policy's guard refused its plan; nothing was changed."""


class FindingsAtThreshold(K3sopsError):
    """Findings reached the ``--fail-on`` severity."""

    exit_code = ExitCode.FINDINGS


class PartialResult(K3sopsError):
    """Some sources could not be read; the result shown is incomplete."""

    exit_code = ExitCode.PARTIAL


class QueryError(UsageError):
    """Prometheus refused a query as malformed (HTTP 400, errorType bad_data): fix the PromQL."""


class PayloadInvalid(UsageError):
    """A webhook body the service refuses (HTTP 400): the message names the field and where.

    Attributes:
        http_status: the HTTP status the service answers with.
    """

    http_status = 400


class PayloadTooLarge(PayloadInvalid):
    """A webhook body larger than the service accepts (HTTP 413); it was not parsed."""

    http_status = 413


class Interrupted(K3sopsError):
    """The user stopped a long-running command (Ctrl-C); exit 130 like a shell."""

    exit_code = ExitCode.INTERRUPTED
