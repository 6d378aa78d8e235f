"""The one mapping from API server answers and transport failures to k3sops errors.

A refusal by an admission plugin — a validating webhook, PodSecurity, a ResourceQuota,
PersistentVolumeClaimResize's "only dynamically provisioned pvc can be resized", a
ValidatingAdmissionPolicy — is the server's verdict on the request, not a credentials problem:
it is raised as :class:`~k3sops.errors.PlanRejected` with the server's own message, whatever
the HTTP code the plugin chose (400, 403 or 422). An RBAC denial ("... is forbidden: User "u"
cannot list resource ...") and 401 are :class:`~k3sops.errors.Unauthorized`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx2

from k3sops.errors import (
    AdapterError,
    Conflict,
    Gone,
    Invalid,
    K3sopsError,
    NotFound,
    PlanRejected,
    Timeout,
    Unauthorized,
    Unreachable,
)

# The authorizer's wording (k8s.io/apiserver's forbidden message): who, "cannot", the verb.
_RBAC_DENIAL = re.compile(r" is forbidden: User \".*\" cannot ")
_ADMISSION_MARKS = ("admission webhook", "denied the request", "denied request",
                    "violates PodSecurity", "exceeded quota", "ValidatingAdmissionPolicy")


@dataclass(frozen=True)
class Call:
    """What was asked of which server, for messages.

    Attributes:
        verb: the Kubernetes verb (get, list, watch, create, update, patch, apply, delete).
        resource: the resource as a person reads it (``pods``, ``nodes/n1``, ``pods/p/log``).
        namespace: where, or None (cluster-scoped or all namespaces).
        server: the API server's URL.
        context: the kubeconfig context, for the hint of a credentials problem.
        origin: where the kubeconfig came from, for the hint of an unreachable server.
        timeout: seconds a request may take, for the message of a timeout.
    """

    verb: str
    resource: str
    namespace: str | None
    server: str
    context: str
    origin: str
    timeout: float

    @property
    def what(self) -> str:
        """``verb resource[ in namespace ns]``."""
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.resource}{where}"


def status_of(body: bytes | str) -> dict[str, Any]:
    """The Status object of an error answer ({} when the body is not one)."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def status_message(body: bytes | str) -> str:
    """The server's message of an error answer: the Status' ``message``, else the text."""
    message = status_of(body).get("message")
    if message:
        return str(message)
    return (body.decode("utf-8", "replace") if isinstance(body, bytes) else body)[:300]


def is_admission_refusal(code: int, status: dict[str, Any]) -> bool:
    """Whether a 400/403/422 answer is an admission plugin's verdict, not RBAC or validation."""
    if code not in (400, 403, 422):
        return False
    message = str(status.get("message") or "")
    if code == 403:
        # Every 403 the server writes is "... is forbidden: <why>"; the authorizer's "why"
        # names a user who cannot do a verb, an admission plugin's names its rule.
        return " is forbidden: " in message and not _RBAC_DENIAL.search(message)
    return any(m in message for m in _ADMISSION_MARKS)


# code -> (error, message, hint); {what}, {server}, {code}, {reason} are filled in.
_BY_CODE: dict[int, tuple[type[AdapterError], str, str | None]] = {
    404: (NotFound, "{what}: not found on {server}: {reason}", None),
    409: (Conflict, "{what}: conflict on {server}: {reason}", "re-read the object and retry"),
    410: (Gone, "{what}: the resourceVersion is too old on {server} (HTTP 410): {reason}",
          "list again and watch from the list's resourceVersion"),
    400: (Invalid, "the API server {server} refused to {what} as invalid (HTTP {code}): "
                   "{reason}", "the message names what is wrong with the request"),
    422: (Invalid, "the API server {server} refused to {what} as invalid (HTTP {code}): "
                   "{reason}", "the message names the field at fault"),
}


def status_error(code: int, body: bytes | str, call: Call) -> K3sopsError:
    """The k3sops error for an HTTP error answer of the API server."""
    reason = status_message(body)
    if is_admission_refusal(code, status_of(body)):
        return PlanRejected(f"the API server {call.server} refused to {call.what} "
                            f"(HTTP {code}): {reason}",
                            hint="nothing was changed; the message names the policy or limit")
    if code in (401, 403):
        return Unauthorized(f"API server {call.server} refused to {call.what} (HTTP {code}): "
                            f"{reason}", hint=f"check the credentials of context "
                                              f"{call.context!r} and their RBAC permissions")
    cls, text, hint = _BY_CODE.get(code, (AdapterError, "{what} failed on {server} "
                                                        "(HTTP {code}): {reason}", None))
    return cls(text.format(what=call.what, server=call.server, code=code, reason=reason),
               hint=hint)


def transport_error(e: httpx2.TransportError, call: Call) -> AdapterError:
    """The k3sops error for a request that got no answer (timeout, refused, reset)."""
    if isinstance(e, httpx2.TimeoutException):
        return Timeout(f"API server {call.server} did not answer within {call.timeout:g}s "
                       f"to {call.what}", hint="is the API server overloaded or unreachable?")
    return Unreachable(
        f"cannot reach the API server at {call.server} to {call.what}: "
        f"{type(e).__name__}: {e}",
        hint=f"is the cluster up? kubeconfig {call.origin}, context {call.context!r}; for the "
             "local lab run `k3sops lab up`")
