"""Who is logged in to the console: sessions, their cookie and their CSRF token.

A person logs in with a bearer token (``ridgeline token create``, or the one ``ridgeline
up`` writes to ``<state dir>/console.token``), verified with the cluster CA's certificate
like every server verifies one (:mod:`ridgeline.trust.tokens`). The console then keeps a
session in memory, named by a random id in a cookie that is HttpOnly (no script reads
it), Secure (sent over HTTPS only) and SameSite=Strict (no other site's page sends it).
Every form carries the session's CSRF token, compared in constant time: a form posted
from elsewhere has neither. Sessions end after :data:`SESSION_TTL_SECONDS`, at logout, or
when the console restarts (they live in memory: nothing to leak on disk).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from ridgeline.trust import tokens
from ridgeline.trust.identity import Identity, Role

__all__ = ["COOKIE", "LOGIN_COOKIE", "Session", "SessionStore", "LoginRefused", "ROLES", "new_login_csrf", "login_csrf_matches"]

COOKIE = "ridgeline_console"
#: The login form's own CSRF token rides in this cookie (double submit): there is no session yet.
LOGIN_COOKIE = "ridgeline_console_login"
SESSION_TTL_SECONDS = 8 * 3600
#: Beyond this many sessions the oldest is ended first: memory stays bounded.
SESSIONS_MAX = 1000
#: Who may use the console: SREs everywhere, desks within their scope (the servers apply it
#: to every call the console makes as them). Planners and agencies have their own tools.
ROLES = frozenset({Role.SRE, Role.DESK})
_ID_BYTES = 32


class LoginRefused(Exception):
    """A token that does not let its holder in; the message says why."""


@dataclass(frozen=True)
class Session:
    session_id: str
    identity: Identity
    csrf: str
    #: The token the person logged in with: every call the console makes for them carries it,
    #: so the servers authorize it as them and the actor on record is theirs.
    token: str
    expires_at: float  # monotonic

    def csrf_matches(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


class SessionStore:
    """The console's sessions, bounded in number and in time (thread-safe)."""

    def __init__(self, ca_pem: bytes | None, *, ttl_seconds: float = SESSION_TTL_SECONDS, sessions_max: int = SESSIONS_MAX) -> None:
        """``ca_pem`` None: an insecure console, where any non-empty token logs in as an anonymous sre (logged loudly by the server)."""
        assert ttl_seconds > 0 and sessions_max >= 1, "bounded sessions"
        self._ca_pem = ca_pem
        self._ttl = ttl_seconds
        self._max = sessions_max
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def login(self, token: str) -> Session:
        """A new session for the token's holder; LoginRefused when the token proves nothing or the wrong role."""
        token = token.strip()
        if not token:
            raise LoginRefused("paste a token: `ridgeline token create --role sre --principal YOU` (or --role desk) makes one")
        identity = self._verify(token)
        if identity.role not in ROLES:
            raise LoginRefused(f"{identity.actor} may not use the console: it needs the role {', '.join(sorted(r.value for r in ROLES))}")
        session = Session(secrets.token_urlsafe(_ID_BYTES), identity, secrets.token_urlsafe(_ID_BYTES), token, time.monotonic() + self._ttl)
        with self._lock:
            self._sessions[session.session_id] = session
            while len(self._sessions) > self._max:
                self._sessions.popitem(last=False)
        return session

    def find(self, session_id: str | None) -> Session | None:
        """The live session the cookie names, or None (unknown, ended or expired)."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires_at <= time.monotonic():
                del self._sessions[session_id]
                return None
            return session

    def logout(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def _verify(self, token: str) -> Identity:
        if self._ca_pem is None:
            return Identity("anonymous", Role.SRE)
        try:
            return tokens.verify(self._ca_pem, token)
        except tokens.TokenError as error:
            raise LoginRefused(str(error)) from None


def new_login_csrf() -> str:
    """The login form's CSRF token (also set as :data:`LOGIN_COOKIE`)."""
    return secrets.token_urlsafe(_ID_BYTES)


def login_csrf_matches(cookie: str | None, sent: str | None) -> bool:
    """Whether the login form sent back the token its cookie holds (constant time)."""
    if not cookie or not sent:
        return False
    return hmac.compare_digest(cookie.encode(), sent.encode())
