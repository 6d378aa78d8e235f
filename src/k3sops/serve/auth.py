"""Who is asking and may they: TokenReview, then SubjectAccessReview (kube-rbac-proxy style).

Every endpoint but ``/healthz`` carries a Kubernetes bearer token. The API server says whose it
is (``authentication.k8s.io/v1`` TokenReview) and whether that user may use a verb on a
*virtual* resource of the group ``k3sops.io`` (``authorization.k8s.io/v1``
SubjectAccessReview): ``get`` on ``reports``, ``findings``, ``diagnoses``, ``alerts``…,
``create`` on ``acks``, ``approvals``, ``remediations``. So cluster RBAC decides, with a
ClusterRole such as::

    rules: [{apiGroups: [k3sops.io], resources: [reports], verbs: [get]}]

Answers are kept a few seconds (a dashboard polling every second costs two reviews per
ttl, not per request), keyed by a SHA-256 of the token: the token itself is never stored,
logged or put in an error. Alertmanager's webhook uses its own shared bearer token instead,
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request
from pydantic import SecretStr

from k3sops.adapters.kube import KubeClient
from k3sops.errors import AdapterError

GROUP = "k3sops.io"
"""The virtual API group the SubjectAccessReviews name (no CRD: nothing is served there)."""
TTL_SECONDS = 10.0


class AuthFailure(Exception):
    """A request refused: ``status`` is the HTTP answer (401, 403, 503); the message is safe."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class User:
    """Whom the API server says a token belongs to."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)


def token_key(token: str) -> str:
    """What the caches key on: a digest of the token, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (None: absent or another scheme)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class Authorizer:
    """TokenReview + SubjectAccessReview against the service's API server, cached briefly.

    Args:
        client: the service's Kubernetes client (its ServiceAccount needs ``create`` on
            ``tokenreviews`` and ``subjectaccessreviews``).
        ttl: seconds an answer (yes or no) is reused.
        clock: monotonic seconds.
    """

    def __init__(self, client: KubeClient, *, ttl: float = TTL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._users: dict[str, tuple[float, User | None]] = {}
        self._decisions: dict[tuple[str, str, str], tuple[float, bool]] = {}
        self.reviews = 0
        """TokenReviews and SubjectAccessReviews sent (the cache's effect is visible)."""

    def _cached(self, table: dict[Any, tuple[float, Any]], key: Any) -> tuple[bool, Any]:
        now = self._clock()
        with self._lock:
            hit = table.get(key)
            if hit is not None and now - hit[0] < self._ttl:
                return True, hit[1]
            if len(table) > 4096:  # many distinct tokens: forget the expired answers
                for k in [k for k, (at, _) in table.items() if now - at >= self._ttl]:
                    del table[k]
        return False, None

    def _store(self, table: dict[Any, tuple[float, Any]], key: Any, value: Any) -> None:
        with self._lock:
            table[key] = (self._clock(), value)

    def _review(self, group_version: str, kind: str, spec: dict[str, Any], what: str,
                token: str = "") -> dict[str, Any]:
        """POST a review; its status. AuthFailure 503 when the API server cannot answer."""
        try:
            self.reviews += 1
            answer = self._client.create(group_version, kind.lower() + "s", None,
                                         {"apiVersion": group_version, "kind": kind,
                                          "spec": spec})
        except AdapterError as e:
            raise AuthFailure(503, f"the API server could not review {what}: "
                                   + _safe(e.message, token)) from None
        status: dict[str, Any] = answer.get("status") or {}
        return status

    def authenticate(self, token: str | None) -> User:
        """The user of ``token``.

        Raises:
            AuthFailure: 401 (no token, or the API server does not know it), 503 (the API
                server could not be asked).
        """
        if not token:
            raise AuthFailure(401, "a bearer token is needed (Authorization: Bearer TOKEN)")
        key = token_key(token)
        hit, cached = self._cached(self._users, key)
        user: User | None = cached
        if not hit:
            status = self._review("authentication.k8s.io/v1", "TokenReview",
                                  {"token": token}, "the token", token)
            if status.get("authenticated"):
                u = status.get("user") or {}
                user = User(name=str(u.get("username") or ""), uid=str(u.get("uid") or ""),
                            groups=tuple(u.get("groups") or ()),
                            extra={k: list(v) for k, v in (u.get("extra") or {}).items()})
            self._store(self._users, key, user)
        if user is None:
            raise AuthFailure(401, "the bearer token was not accepted by the API server")
        return user

    def allowed(self, user: User, verb: str, resource: str) -> bool:
        """Whether ``user`` may ``verb`` the virtual resource ``k3sops.io/<resource>``.

        Raises:
            AuthFailure: 503 when the API server could not be asked.
        """
        key = (f"{user.name}\0{user.uid}\0{','.join(user.groups)}", verb, resource)
        hit, decision = self._cached(self._decisions, key)
        if hit:
            return bool(decision)
        spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups),
                                "resourceAttributes": {"group": GROUP, "resource": resource,
                                                       "verb": verb}}
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = user.extra
        decision = bool(self._review("authorization.k8s.io/v1", "SubjectAccessReview", spec,
                                     "the access").get("allowed"))
        self._store(self._decisions, key, decision)
        return decision

    def check(self, token: str | None, verb: str, resource: str) -> User:
        """Authenticate ``token`` and authorize ``verb`` on ``resource``; the user.

        Raises:
            AuthFailure: 401, 403 (names user, verb and resource: what RBAC must grant) or 503.
        """
        user = self.authenticate(token)
        if not self.allowed(user, verb, resource):
            raise AuthFailure(403, f"{user.name or 'this user'} may not {verb} "
                                   f"{resource}.{GROUP} (grant it with a (Cluster)Role: "
                                   f"apiGroups [{GROUP}], resources [{resource}], "
                                   f"verbs [{verb}])")
        return user


def _safe(message: str, token: str) -> str:
    # The review body holds the token; no API server echoes it, but a message built from a
    # response must never carry it even if one did.
    return message.replace(token, "[token]") if token else message


class SharedToken:
    """Alertmanager's bearer token (``serve.alertmanager_token_env|_file``).

    Compared in constant time; with none configured the webhook endpoint refuses everything
    (401).
    """

    def __init__(self, token: SecretStr | None) -> None:
        self._digest = (hashlib.sha256(token.get_secret_value().encode()).digest()
                        if token is not None and token.get_secret_value() else None)

    @property
    def configured(self) -> bool:
        """Whether a token was configured (the endpoint is open to Alertmanager at all)."""
        return self._digest is not None

    def check(self, token: str | None) -> None:
        """Raises AuthFailure 401 unless ``token`` is the configured one."""
        if self._digest is None:
            raise AuthFailure(401, "no Alertmanager token is configured "
                                   "(serve.alertmanager_token_env or _file)")
        if not token:
            raise AuthFailure(401, "a bearer token is needed (Authorization: Bearer TOKEN)")
        # digests of equal length: compare_digest's time does not depend on where they differ
        if not hmac.compare_digest(hashlib.sha256(token.encode()).digest(), self._digest):
            raise AuthFailure(401, "the bearer token is not Alertmanager's")


def require(authorizer: Authorizer, verb: str, resource: str) -> Callable[..., Any]:
    """A FastAPI dependency: may the request's bearer token ``verb`` ``k3sops.io/resource``?

    401 (with ``WWW-Authenticate``), 403 or 503 otherwise. Every ``/api/v1`` route takes its
    check from here, so none can word or skip it apart.
    """
    def dependency(request: Request) -> User:
        try:
            return authorizer.check(bearer(request.headers.get("authorization")), verb,
                                    resource)
        except AuthFailure as e:
            raise HTTPException(e.status, e.message,
                                headers={"WWW-Authenticate": "Bearer"}
                                if e.status == 401 else None) from None
    return dependency
