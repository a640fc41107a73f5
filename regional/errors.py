"""Domain errors of the regional orchestrator.

Each error names the situation, not the transport; :mod:`.edge.status_codes` maps them to gRPC
status codes at the edge (ARCHITECTURE.md §6), so a client always gets a readable
message and never a traceback.
"""

from __future__ import annotations

from ridgeline.routing.retry import CommitOutcomeUnknown


class BookingError(Exception):
    """Base of every error a caller is meant to see."""


class InvalidRequest(BookingError):
    """A field is missing, malformed or out of range."""


class IdempotencyKeyReused(InvalidRequest):
    """The key was first used for a different request; its first result stands."""


class NotFound(BookingError):
    """Unknown basecamp, resource or booking."""


class NotVisible(NotFound):
    """A booking the caller may not see (another agency's, outside a desk's scope): answered
    exactly like one that does not exist, so the answer does not reveal that it exists, and
    never recorded under the caller's key (the refusal leaves no trace)."""


class PermissionDenied(BookingError):
    """A valid identity asked for something its scope does not cover (a scoped desk booking
    outside its basecamps); refused before any write."""


class IllegalTransition(BookingError):
    """The booking's state does not allow the requested change."""


class HoldExpired(IllegalTransition):
    """The hold lapsed before the confirmation arrived."""


class ForeignCoordinator(BookingError):
    """A PrepareLeg named a trek coordinator this node's cluster does not know.

    FAILED_PRECONDITION, not INVALID_ARGUMENT: the address is well formed, and a node whose
    cluster file names it would take the leg. What refuses it is this node's configuration
    (state, in ARCHITECTURE.md §6's terms), and no retry of the same call will help, which
    the coordinator reads as a no vote at once. Nothing is written.
    """


class DecisionRefused(IllegalTransition):
    """The coordinator's log does not allow the leg move asked for (a CommitLeg of a trek not
    decided commit, a CancelLeg of a trek not being cancelled); nothing is written."""


class CoordinatorUnavailable(BookingError):
    """The trek coordinator could not be asked for its decision; retryable, nothing was written."""


class NightsNotOpen(BookingError):
    """Inventory for some requested nights has not been opened for sale."""


class SoldOut(BookingError):
    """Not enough free units on at least one requested night."""


class Contention(BookingError):
    """Lost to concurrent writers more often than the retry policy allows."""


class DeadlineExceeded(BookingError):
    """The caller's deadline passed before the work could finish."""


class DatabaseUnavailable(BookingError):
    """The region database could not be reached; the call had no effect or is retryable."""


class AmbiguousCommit(DatabaseUnavailable, CommitOutcomeUnknown):
    """The connection was lost while the transaction's COMMIT (or its single autocommit
    statement) was in flight: it may have committed. ``operation`` names what was attempted.

    A DatabaseUnavailable, so a caller that cannot resolve it answers UNAVAILABLE and its
    client retries with the same idempotency key, which resolves it; keyed writes resolve it
    on the node already (``idempotency.run_keyed``), and work idempotent by state is re-run
    (``storage.db.run_transaction(idempotent=True)``).
    """

    def __init__(self, message: str, *, operation: str, sqlstate: str | None = None) -> None:
        DatabaseUnavailable.__init__(self, message)
        CommitOutcomeUnknown.__init__(self, message, operation=operation)
        #: The SQLSTATE the lost COMMIT reported, if any (08xxx, 57P01…); None when the
        #: connection ended without a word.
        self.sqlstate = sqlstate


class NotOwner(BookingError):
    """This node does not hold the basecamp's lease (a misrouted call, or ownership moved).

    ``owner_node_id``/``owner_address`` name the current holder when one holds a valid
    lease; without one the basecamp is between owners (a failover) and a retry after a
    short pause finds the new one.
    """

    def __init__(self, message: str, *, basecamp_id: str, region: str, owner_node_id: str = "", owner_address: str = "", epoch: int = 0) -> None:
        super().__init__(message)
        self.basecamp_id = basecamp_id
        self.region = region
        self.owner_node_id = owner_node_id
        self.owner_address = owner_address
        self.epoch = epoch

    @property
    def has_owner(self) -> bool:
        return bool(self.owner_address)


class NodeUnavailable(BookingError):
    """This node is draining or cannot serve right now; another node (or a retry) can."""
