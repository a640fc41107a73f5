"""Who a booking read or change is for: the actor the record names, and the bookings it reaches.

The edge turns the call's identity (``ridgeline.trust.identity.current()``) into a
:class:`Caller` with :func:`caller_of`; what a node does by itself (settlement, the
sweeper, the in-doubt leg resolver) is :func:`node_caller`. The scoped rules are
``ridgeline.trust.policy``'s: an agency reaches only the bookings it created
(``owner_filter``), a scoped desk only its basecamps (``scope_filter``). Here they become
a predicate on one booking (:meth:`Caller.reaches`, which agrees with ``policy.may_touch``)
and the SQL filter of a listing (``queries.list_bookings``).

Idempotency keys are per caller (:meth:`Caller.own_key`): a key names a request of the
principal that sent it, so a key another principal repeats (by accident or by guessing)
is a new request of that principal and never answers the first principal's booking.
Refusing the repeat instead would tell the second caller that the key was used.
"""

from __future__ import annotations

from dataclasses import dataclass

from ridgeline.trust import policy
from ridgeline.trust.identity import ANONYMOUS_ACTOR, Identity, actor_of, node_actor

__all__ = ["Caller", "caller_of", "node_caller"]


@dataclass(frozen=True)
class Caller:
    """The actor of a change and the bookings it may reach; unrestricted by default."""

    actor: str
    #: Only bookings this actor created (an agency); None: whoever created them.
    own_only: str | None = None
    #: Only bookings of these basecamps (a scoped desk); None: every basecamp of the region.
    basecamps: frozenset[str] | None = None

    def __post_init__(self) -> None:
        assert self.actor and self.actor.isprintable(), f"an actor names someone: {self.actor!r}"
        assert self.own_only in (None, self.actor), "a caller is restricted to its own bookings, not another actor's"

    @property
    def restricted(self) -> bool:
        """Whether some bookings of the region are out of this caller's reach."""
        return self.own_only is not None or self.basecamps is not None

    def reaches(self, *, basecamp_id: str, created_by: str) -> bool:
        """Whether this caller may see and change a booking of ``basecamp_id`` made by ``created_by``."""
        return (self.own_only is None or created_by == self.own_only) and (self.basecamps is None or basecamp_id in self.basecamps)

    def may_book(self, basecamp_id: str) -> bool:
        """Whether this caller may place a hold at ``basecamp_id`` (a booking it would create)."""
        return self.reaches(basecamp_id=basecamp_id, created_by=self.actor)

    def own_key(self, key: str) -> str:
        """``key`` in this caller's own key space, as the idempotency record stores it.

        An actor contains no ``/``, so the prefix cannot be forged by choosing a key. An
        insecure server has one anonymous caller, whose keys stay as they were sent.
        """
        assert key, "an idempotency key is never empty"
        return key if self.actor == ANONYMOUS_ACTOR else f"{self.actor}/{key}"


def caller_of(identity: Identity | None, region: str) -> Caller:
    """The caller of a call served in ``region`` (identity None: an ``--insecure`` server)."""
    return Caller(actor_of(identity), own_only=policy.owner_filter(identity), basecamps=policy.scope_filter(identity, region))


def node_caller(node_id: str) -> Caller:
    """A node acting by itself: ``node:<id>`` on the record, every booking of its region in reach."""
    return Caller(node_actor(node_id))
