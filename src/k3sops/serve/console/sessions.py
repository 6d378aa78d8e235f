"""The console's server-side sessions and their CSRF tokens.

The browser holds only a random session id (``k3sops_session``: HttpOnly, Secure,
SameSite=Strict). The Kubernetes token typed at login is reviewed once (TokenReview) and then
forgotten: a session keeps the :class:`~k3sops.serve.auth.User` the API server named, and
every page asks the API server again whether that user may (SubjectAccessReview, cached as
for ``/api/v1``). So no token is kept in memory, in a cookie or in a log.

A session before login (the login form's) is anonymous: it carries the CSRF token of the
login form only. Logging in replaces it with a new id (no session fixation). Sessions live in
the process: with several replicas, the Service needs client-IP affinity.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from k3sops.serve.auth import User

COOKIE = "k3sops_session"
IDLE_SECONDS = 3600.0
"""A session unused this long is gone (log in again)."""
MAX_SECONDS = 8 * 3600.0
"""A session is never older than a working day, used or not."""
MAX_SESSIONS = 10_000
"""Beyond this many, the least recently used are dropped (anonymous login forms are cheap)."""


@dataclass
class Session:
    """One browser's session: the CSRF token of its forms and, once logged in, its user."""

    id: str = field(repr=False)
    csrf: str = field(repr=False)
    created: float
    seen: float
    user: User | None = None


class Sessions:
    """The sessions of this process, by id.

    Args:
        clock: monotonic seconds.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def new(self, user: User | None = None) -> Session:
        """A fresh session (random id and CSRF token)."""
        now = self._clock()
        s = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32),
                    created=now, seen=now, user=user)
        with self._lock:
            self._by_id[s.id] = s
            while len(self._by_id) > MAX_SESSIONS:
                self._by_id.popitem(last=False)
        return s

    def get(self, session_id: str | None) -> Session | None:
        """The live session of ``session_id`` (None: absent, unknown or expired)."""
        if not session_id:
            return None
        now = self._clock()
        with self._lock:
            s = self._by_id.get(session_id)
            if s is None:
                return None
            if now - s.seen > IDLE_SECONDS or now - s.created > MAX_SECONDS:
                del self._by_id[session_id]
                return None
            s.seen = now
            self._by_id.move_to_end(session_id)
            return s

    def drop(self, session_id: str | None) -> None:
        """Forget ``session_id`` (logout; a login replacing the anonymous session)."""
        if session_id:
            with self._lock:
                self._by_id.pop(session_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_id)


def csrf_ok(session: Session | None, sent: str | None) -> bool:
    """Whether ``sent`` is ``session``'s CSRF token (constant-time comparison)."""
    if session is None or not sent:
        return False
    return hmac.compare_digest(session.csrf.encode(), sent.encode())
