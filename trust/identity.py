"""A caller's identity: a principal with one role, and for a desk the basecamps or regions it serves.

The identity comes from the caller's client certificate (principal in the subject's CN,
role in its OU, scope in ``ridgeline:scope:…`` URIs of the SAN) or from a signed bearer
token (:mod:`.tokens`). Servicers read it with :func:`current` to record the actor of a
change and to apply the data-dependent rules of :mod:`.policy` (a desk's basecamps, an
agency's own bookings).
"""

from __future__ import annotations

import contextvars
import enum
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Identity", "Role", "current", "acting_as", "actor_of", "node_actor", "ANONYMOUS_ACTOR", "PRINCIPAL_PATTERN", "SCOPE_URI_PREFIX", "SCOPE_MAX"]


class Role(enum.StrEnum):
    """The roles of ARCHITECTURE.md §8; each RPC and HTTP route names the roles it admits."""

    DESK = "desk"  # a regional booking desk, optionally scoped to basecamps or regions
    AGENCY = "agency"  # a partner agency: sees and changes only the bookings it made
    PLANNER = "planner"  # plans and follows cross-region treks
    SRE = "sre"  # status, audit, drills and every admin route
    NODE = "node"  # Ridgeline's own processes: legs, cluster info, decisions, payments


#: Principals are short, printable and safe in a file name (client.<principal>.crt).
PRINCIPAL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: A scope entry in a certificate's SAN: ``ridgeline:scope:argentiere`` or ``ridgeline:scope:eu-alps``.
SCOPE_URI_PREFIX = "ridgeline:scope:"
#: The most basecamps and regions one identity is scoped to.
SCOPE_MAX = 64
#: The actor the record names beside a change made through a server that runs without
#: authentication (``--insecure``): the record still says that nobody was identified.
ANONYMOUS_ACTOR = "anonymous"


@dataclass(frozen=True)
class Identity:
    """Who is calling. ``scope`` empty means unscoped (every basecamp a role may reach)."""

    principal: str
    role: Role
    scope: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        assert PRINCIPAL_PATTERN.match(self.principal), f"principal {self.principal!r} is not a plain name"
        assert isinstance(self.role, Role), f"role {self.role!r} is not a Role"
        assert len(self.scope) <= SCOPE_MAX, f"a scope of {len(self.scope)} entries is more than {SCOPE_MAX}"

    @property
    def actor(self) -> str:
        """How the record names this caller beside a change: ``role:principal``, e.g. ``desk:alice``."""
        return f"{self.role.value}:{self.principal}"

    def covers(self, basecamp_id: str, region: str) -> bool:
        """Whether a scoped identity may act on this basecamp (by its id or its region)."""
        return not self.scope or basecamp_id in self.scope or region in self.scope


_CURRENT: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("ridgeline_caller", default=None)


def current() -> Identity | None:
    """The identity of the call being served on this thread (None outside a call, or insecure)."""
    return _CURRENT.get()


@contextmanager
def acting_as(identity: Identity | None) -> Iterator[None]:
    """Serves one call as ``identity``: set by the server interceptor around the servicer."""
    token = _CURRENT.set(identity)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def actor_of(identity: Identity | None) -> str:
    """How the record names the caller of a change: its ``role:principal``, or ANONYMOUS_ACTOR."""
    return ANONYMOUS_ACTOR if identity is None else identity.actor


def node_actor(node_id: str) -> str:
    """How the record names what a Ridgeline process does by itself (settlement, sweeps,
    recovery, a coordinator's decisions): ``node:<node id>``. Node ids come from the
    cluster file, not a certificate, so only what would make the record ambiguous is
    refused (nothing empty, no spaces, no ``/``, which separates a caller's key space)."""
    assert node_id and node_id.isprintable() and not any(c.isspace() or c == "/" for c in node_id), f"node id {node_id!r}"
    return f"{Role.NODE.value}:{node_id}"
