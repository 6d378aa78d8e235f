"""The console's sessions, kept in the shared history store, and their CSRF tokens.

The browser holds only a random session id (``k3sops_session``: HttpOnly, Secure,
SameSite=Strict). The Kubernetes token typed at login is reviewed once (TokenReview) and then
forgotten: a session keeps the :class:`~k3sops.serve.auth.User` the API server named, and
every page asks the API server again whether that user may (SubjectAccessReview, cached as
for ``/api/v1``). So no token is kept in memory, in a cookie, in the store or in a log.

Logged-in sessions live in the history store (``state:``), so with two replicas on one
PostgreSQL store either replica answers any browser: the Service needs no client affinity and
a failover does not log anyone out. The store keeps a SHA-256 of each id, never the id: a copy
of the database gives no cookie that works.

The login form needs a CSRF token before anyone is logged in. It is not stored: the form's
GET sets a random ``k3sops_login`` cookie (HttpOnly, Secure, SameSite=Strict) and the form
carries a token derived from it; the POST must bring both (a double-submit token bound to the
cookie). So an anonymous visitor writes nothing to the store, and the form may be posted to
any replica. A login replaces it with a new session id (no session fixation).

The CSRF token of a session's forms is an HMAC of its id: any replica can check it without
storing it, and it does not give the id away.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from k3sops.serve.auth import User

if TYPE_CHECKING:
    from k3sops.adapters.store import HistoryStore

COOKIE = "k3sops_session"
LOGIN_COOKIE = "k3sops_login"
"""The login form's cookie: what its CSRF token is derived from (no session yet)."""
IDLE = timedelta(hours=1)
"""A session unused this long is gone (log in again)."""
MAX_AGE = timedelta(hours=8)
"""A session is never older than a working day, used or not."""
TOUCH = timedelta(minutes=1)
"""A session's last use is written at most this often (a page view is then a read only)."""
PRUNE_EVERY = timedelta(minutes=10)
"""How often a replica deletes expired sessions from the store (on a login)."""


@dataclass
class Session:
    """One browser's session: the CSRF token of its forms and, once logged in, its user."""

    id: str = field(repr=False)
    csrf: str = field(repr=False)
    user: User | None = None


def csrf_token(session_id: str) -> str:
    """The CSRF token of the forms of ``session_id`` (an HMAC keyed by the id)."""
    mac = hmac.new(session_id.encode(), b"k3sops console csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def store_key(session_id: str) -> str:
    """What the store keys a session by: a SHA-256 of its id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _user_json(user: User) -> str:
    return json.dumps({"name": user.name, "uid": user.uid, "groups": list(user.groups),
                       "extra": user.extra}, sort_keys=True)


def _user(text: str) -> User:
    raw = json.loads(text)
    return User(name=str(raw["name"]), uid=str(raw.get("uid", "")),
                groups=tuple(str(g) for g in raw.get("groups", ())),
                extra={str(k): [str(x) for x in v] for k, v in raw.get("extra", {}).items()})


class Sessions:
    """The console's sessions, in the history store every replica shares.

    Args:
        store: the service's history store.
        clock: the current time (UTC); the replicas' clocks are assumed roughly in step, as
            for the schedule's claims.
    """

    def __init__(self, store: HistoryStore,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._pruned: datetime | None = None

    @staticmethod
    def login_form() -> Session:
        """A new anonymous session for the login form: its id goes in :data:`LOGIN_COOKIE`."""
        login_id = secrets.token_urlsafe(32)
        return Session(id=login_id, csrf=csrf_token(login_id))

    @staticmethod
    def anonymous(login_id: str | None) -> Session | None:
        """The login form's session of the :data:`LOGIN_COOKIE` ``login_id`` (None: no cookie)."""
        if not login_id:
            return None
        return Session(id=login_id, csrf=csrf_token(login_id))

    def new(self, user: User) -> Session:
        """A new logged-in session of ``user``, stored (random id; its CSRF token)."""
        now = self._clock()
        session_id = secrets.token_urlsafe(32)
        self._store.session_put(store_key(session_id), _user_json(user), now)
        self._prune(now)
        return Session(id=session_id, csrf=csrf_token(session_id), user=user)

    def get(self, session_id: str | None) -> Session | None:
        """The live session of ``session_id`` (None: absent, unknown or expired)."""
        if not session_id:
            return None
        key = store_key(session_id)
        stored = self._store.session_get(key)
        if stored is None:
            return None
        now = self._clock()
        if now - stored.seen_at > IDLE or now - stored.created_at > MAX_AGE:
            self._store.session_drop(key)
            return None
        if now - stored.seen_at > TOUCH:
            self._store.session_touch(key, now)
        return Session(id=session_id, csrf=csrf_token(session_id), user=_user(stored.user))

    def drop(self, session_id: str | None) -> None:
        """Forget ``session_id`` (logout)."""
        if session_id:
            self._store.session_drop(store_key(session_id))

    def _prune(self, now: datetime) -> None:
        with self._lock:
            if self._pruned is not None and now - self._pruned < PRUNE_EVERY:
                return
            self._pruned = now
        self._store.session_prune(now - IDLE, now - MAX_AGE)


def csrf_ok(session: Session | None, sent: str | None) -> bool:
    """Whether ``sent`` is ``session``'s CSRF token (constant-time comparison)."""
    if session is None or not sent:
        return False
    return hmac.compare_digest(session.csrf.encode(), sent.encode())
