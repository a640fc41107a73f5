"""Errors the coordinator's callers are meant to see; :mod:`.servicer` maps them to status codes."""

from __future__ import annotations


class TrekError(Exception):
    """Base of every coordinator error a caller sees."""


class InvalidTrek(TrekError):
    """A malformed request, or an idempotency key reused for a different trek."""


class TrekNotFound(TrekError):
    """No trek with that id (or a basecamp no region serves)."""


class TrekStateConflict(TrekError):
    """The trek's state does not allow the request (e.g. cancelling a trek being aborted)."""


class StoreUnavailable(TrekError):
    """The decision log could not be reached or stayed contended; retry with the same key."""


class ParticipantsUnreachable(TrekError):
    """No node of some region answered, so a leg's basecamp could not be placed; retry later."""


class NotLeader(TrekError):
    """This coordinator does not hold the leader lease (or its epoch is stale): ask the leader.

    ``leader_address``: where the lease says the leader serves, when this coordinator knows.
    """

    def __init__(self, message: str, leader_address: str | None = None) -> None:
        super().__init__(message)
        self.leader_address = leader_address
