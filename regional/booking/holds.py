"""Placing a hold: units for every night of a stay, all or nothing, until a TTL.

Invariant 1 (no overbooking) is kept by the database, twice over: the conditional
UPDATE only takes units where ``held + booked + units <= capacity``, and the inventory
table's CHECK refuses any write that would overbook anyway.

Invariant 6 (one writer per basecamp): the UPDATE also requires the basecamp's lease
row to carry the caller's epoch (``routing.leases.fence_sql``), so a node that lost the
lease takes nothing, and the same CHECK makes the statement fail; the slow path then
answers NotOwner instead of sold out.

The fast path is ONE statement run as its own implicit transaction: it takes the units
on every night of the stay with the conditional UPDATE (ARCHITECTURE.md §3), inserts
the booking recording how many nights were taken and who placed it (``created_by``), its
first history row naming the same actor, and its idempotency record (one more bind
parameter, no round trip). The bookings table CHECKs that the nights taken are all the nights
of the stay, so when any night is short (or not on sale) the insert fails and with it
the whole statement: nothing is half-taken, and there is no BEGIN/COMMIT round trip.

Neither path reads the idempotency record first: a repeated key surfaces as a unique
violation on the record's primary key and is answered from the stored first result.
When a night is short, the slow path (an explicit transaction) reclaims lapsed holds on
those nights, tries once more, and otherwise records the refusal under the key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, TextClause, text
from sqlalchemy.exc import IntegrityError

from ridgeline.regional import errors
from ridgeline.regional.booking import expiry, history, idempotency, ownership
from ridgeline.regional.booking.model import Booking, BookingState, Nights, Transition
from ridgeline.regional.storage.db import run_transaction
from ridgeline.regional.workflows import versions
from ridgeline.routing.leases import fence_sql

OPERATION = "PlaceHold"
#: A hold placed together with its settlement row (the Book RPC): charged by settlement.
BOOK_OPERATION = "Book"

#: The CHECK that fails when some night of the stay could not be taken.
_SHORT_CONSTRAINT = "bookings_reserved_every_night"



def booking_insert_sql(*, columns_from: str, reserved_nights: str, source: str, workflow: str) -> str:
    """The INSERT of the bookings holds create (held, version 1, stamped ``:now``), for the
    single hold and a group-commit round alike.

    ``workflow`` is the SQL expression of the workflow version the booking runs, recorded
    by this very statement (a bind or a round's column for a fixed version; for a Book,
    the settle rollout's choice, :func:`versions.chosen_sql`).

    ``columns_from`` prefixes the name of every value the request gives (``:`` for the
    single hold's bind parameters, ``r.`` for a round's request rows). ``reserved_nights``
    counts the nights actually taken: the table's CHECK that it covers the whole stay is
    what makes a hold with one short night fail whole.
    """
    assert columns_from in (":", "r."), f"values come from bind parameters or a round's request rows, not {columns_from!r}"
    c = columns_from
    return (
        "INSERT INTO bookings (booking_id, basecamp_id, resource_id, first_night, end_night, party_size,"
        " customer_id, state, version, total_price_cents, currency, created_at, updated_at, expires_at, reserved_nights, created_by, workflow)"
        f" SELECT {c}booking_id, {c}basecamp_id, {c}resource_id, {c}first_night, {c}end_night, {c}units,"
        f" {c}customer_id, '{BookingState.HELD.value}', 1, {c}total_price_cents, {c}currency, :now, :now, {c}expires_at,"
        f" {reserved_nights}, {c}actor, {workflow} {source}"
    )


_PLACE_HOLD_TEMPLATE = """
    WITH taken AS (
        UPDATE inventory SET held = held + :units
        WHERE resource_id = :resource_id AND night >= :first_night AND night < :end_night
          AND held + booked + :units <= capacity
          AND {fence}
        RETURNING night
    ), booking AS (
        {booking}
        RETURNING booking_id, created_by, workflow
    ), history AS (
        {history}
        RETURNING 1
    ){settlement}
    {record}
    RETURNING result->>'workflow' AS workflow
    """

# A Book also writes the booking's settlement row in the same statement, so a booking
# awaiting payment can never exist without the row that makes settlement charge it.
_SETTLEMENT_CTE = """, settlement AS (
        INSERT INTO settlements (booking_id, basecamp_id, state, amount_cents, currency, attempts,
                                 next_attempt_at, created_at, updated_at, trace_parent)
        SELECT booking_id, :basecamp_id, 'awaiting_payment', :total_price_cents, :currency, 0, :now, :now, :now, :trace_parent
        FROM booking
        RETURNING 1
    )"""

_HOLD_ROWS = {
    "fence": fence_sql(":basecamp_id", ":epoch"),
    "history": history.hold_placed_sql(source="FROM booking", lease_epoch=":epoch", actor="created_by"),
}


def _hold_sql(*, workflow: str, settlement: str) -> str:
    """The hold statement; its record keeps the version the statement chose (so a replay
    answers it) and it returns that version, the one thing of the booking only SQL knows."""
    return _PLACE_HOLD_TEMPLATE.format(
        settlement=settlement,
        booking=booking_insert_sql(columns_from=":", reserved_nights="count(*)", source="FROM taken", workflow=workflow),
        record=idempotency.record_insert_sql(
            source="FROM history, booking", result="jsonb_set(CAST(:result AS JSONB), '{workflow}', to_jsonb(booking.workflow))"
        ),
        **_HOLD_ROWS,
    )


_PLACE_HOLD = text(_hold_sql(workflow=":workflow", settlement=""))
_BOOK = text(_hold_sql(workflow=versions.chosen_sql(versions.SETTLE, ":rollout_bucket"), settlement=_SETTLEMENT_CTE))

_NIGHT_FREE = text(
    """
    SELECT night, capacity - held - booked AS free FROM inventory
    WHERE resource_id = :resource_id AND night >= :start AND night < :end
    ORDER BY night
    """
)


@dataclass(frozen=True)
class HoldRequest:
    """A validated PlaceHold; prices come from the catalog, not from the caller."""

    idempotency_key: str
    basecamp_id: str
    resource_id: str
    nights: Nights
    party_size: int
    customer_id: str
    ttl_seconds: int
    unit_price_cents: int
    currency: str
    #: Who places it (``access.Caller.actor``): the booking's ``created_by`` and its first history row.
    actor: str
    #: The node placing it (``node:<id>``): it names the expiry of the lapsed holds it reclaims.
    node_actor: str
    #: True for Book: the hold comes with a settlement row and is charged, then confirmed.
    settle: bool = False
    #: The Book call's W3C traceparent, for settlement to continue its trace ('' untraced).
    #: Not part of the fingerprint: a retry is the same request whatever trace it is in.
    trace_parent: str = ""
    #: The version of a booking that is not rolled out: hold@1 (PlaceHold) or trek@1 (a
    #: trek leg). A Book runs the version the settle rollout chooses inside its statement.
    workflow: str = versions.HOLD_V1

    @property
    def operation(self) -> str:
        return BOOK_OPERATION if self.settle else OPERATION

    def __post_init__(self) -> None:
        assert self.actor and self.node_actor.startswith("node:"), f"a hold names who places it ({self.actor!r}) and on which node ({self.node_actor!r})"
        assert self.workflow in (versions.HOLD_V1, versions.TREK_V1) and not (self.settle and self.workflow != versions.HOLD_V1), self.workflow

    def fingerprint(self) -> str:
        return idempotency.fingerprint(
            self.operation,
            {
                "basecamp_id": self.basecamp_id,
                "resource_id": self.resource_id,
                "start": self.nights.start,
                "end": self.nights.end,
                "party_size": self.party_size,
                "customer_id": self.customer_id,
                "ttl_seconds": self.ttl_seconds,
            },
        )


def place_hold(
    engine: Engine,
    request: HoldRequest,
    *,
    epoch: int,
    now: datetime,
    deadline: float | None = None,
    resolving: errors.AmbiguousCommit | None = None,
) -> Booking:
    """Holds ``party_size`` units on every night of the stay, or raises a BookingError.

    ``epoch`` is the basecamp lease this node believes it holds; the database refuses
    the hold (NotOwner) unless the lease still carries it. A commit lost in flight is
    resolved by the request's key (``idempotency.run_keyed``); ``resolving``: one lost
    before this call, by the group-commit round that had the request.
    """
    fingerprint = request.fingerprint()
    statement = _BOOK if request.settle else _PLACE_HOLD

    def attempt() -> Booking | errors.BookingError:
        # A new booking id per attempt: after a lost commit that did land, the re-run must
        # meet the key's record (answered from it), not the first attempt's booking row.
        booking = new_booking(request, now)
        params = {**_params(request, booking, fingerprint), "epoch": epoch}

        def fast(conn: Connection) -> Booking:
            # The statement answers the version it recorded (a Book's comes from the rollout).
            return replace(booking, workflow=conn.execute(statement, params).scalar_one())

        def slow(conn: Connection) -> Booking | errors.BookingError:
            outcome = hold_within(conn, request, booking, epoch=epoch, now=now)
            if isinstance(outcome, errors.NotOwner):
                return outcome  # not recorded: the same key must work at the owner
            if isinstance(outcome, errors.BookingError):
                idempotency.record(conn, request.idempotency_key, request.operation, fingerprint, now, error=outcome)
            return outcome

        try:
            return run_transaction(engine, fast, deadline=deadline, single_statement=True, operation=request.operation)
        except IntegrityError as error:
            if not _is_short(error):
                raise
        return run_transaction(engine, slow, deadline=deadline, operation=request.operation)

    outcome = idempotency.run_keyed(
        engine, request.idempotency_key, request.operation, fingerprint, attempt, deadline=deadline, ambiguous=resolving
    )
    if isinstance(outcome, errors.BookingError):
        raise outcome
    return outcome


def hold_within(
    conn: Connection, request: HoldRequest, booking: Booking, *, epoch: int | None, now: datetime, reclaim_first: bool = True
) -> Booking | errors.BookingError:
    """Places ``booking`` inside the caller's transaction, reclaiming lapsed holds when short.

    ``reclaim_first=False`` tries the hold before reclaiming: a caller that did not just
    fail (a trek leg) skips the reclaim's read of every hold on the resource, whose
    predicate locks made concurrent holds on one resource fail with 40001.
    Returns the refusal (sold out, not on sale) instead of raising it, so the caller can
    record it in the same transaction (an idempotency record, a trek leg's fence).
    """
    # One snapshot (and one now()) for the whole transaction: if the lease holds here, it
    # holds for the attempts below, so a refusal after it is about room, not ownership.
    fenced = ownership.refusal_if_fenced(conn, request.basecamp_id, epoch)
    if fenced is not None:
        return fenced
    params = {**_params(request, booking, request.fingerprint()), "epoch": epoch}
    statement = _BOOK if request.settle else _PLACE_HOLD
    if not reclaim_first and (workflow := _attempt(conn, statement, params)):
        return replace(booking, workflow=workflow)
    expiry.reclaim_for(conn, resource_id=request.resource_id, nights=request.nights, now=now, actor=request.node_actor)
    # Try in this transaction's snapshot, so that a refusal below is diagnosed from the
    # very state that refused it.
    if workflow := _attempt(conn, statement, params):
        return replace(booking, workflow=workflow)
    return _diagnose(conn, request)


def _attempt(conn: Connection, statement: TextClause, params: dict[str, object]) -> str | None:
    """The hold statement in a savepoint: the version it recorded, or None (and nothing
    taken) when a night is short."""
    attempt = conn.begin_nested()
    try:
        workflow = conn.execute(statement, params).scalar_one()
    except IntegrityError as error:
        attempt.rollback()
        if not _is_short(error):
            raise
        return None
    attempt.commit()
    return workflow


def _is_short(error: IntegrityError) -> bool:
    diag = getattr(error.orig, "diag", None)
    return getattr(diag, "constraint_name", None) == _SHORT_CONSTRAINT


def _diagnose(conn: Connection, request: HoldRequest) -> errors.BookingError:
    rows = conn.execute(
        _NIGHT_FREE, {"resource_id": request.resource_id, "start": request.nights.start, "end": request.nights.end}
    ).all()
    if len(rows) < request.nights.count:
        opened = {row.night for row in rows}
        missing = [night for night in request.nights.each() if night not in opened]
        return errors.NightsNotOpen(
            f"{request.resource_id} is not on sale for {len(missing)} night(s) from {missing[0].isoformat()}"
        )
    short = [row for row in rows if row.free < request.party_size]
    # Same snapshot as the failed UPDATE (SERIALIZABLE): some night must be short.
    assert short, "the conditional UPDATE failed although every night has room"
    worst = min(short, key=lambda row: row.free)
    return errors.SoldOut(
        f"{request.resource_id} has {worst.free} free unit(s) on {worst.night.isoformat()} "
        f"but {request.party_size} were asked ({len(short)} night(s) short)"
    )


def new_booking(request: HoldRequest, now: datetime) -> Booking:
    """The booking a hold creates (also built by the group committer for its rounds)."""
    total = request.unit_price_cents * request.party_size * request.nights.count
    return Booking(
        booking_id=str(uuid.uuid4()),
        basecamp_id=request.basecamp_id,
        resource_id=request.resource_id,
        nights=request.nights,
        party_size=request.party_size,
        customer_id=request.customer_id,
        state=BookingState.HELD,
        version=1,
        total_price_cents=total,
        currency=request.currency,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(seconds=request.ttl_seconds),
        created_by=request.actor,
        # A Book's version is chosen by its statement; place_hold fills it in from there.
        workflow=request.workflow,
        history=(Transition(1, None, BookingState.HELD, now, history.HOLD_PLACED_REASON, request.actor),),
    )


def _params(request: HoldRequest, booking: Booking, fingerprint: str) -> dict[str, object]:
    record = idempotency.insert_params(request.idempotency_key, request.operation, fingerprint, booking.created_at, result=booking)
    return {
        **record,
        "booking_id": booking.booking_id,
        "basecamp_id": booking.basecamp_id,
        "resource_id": booking.resource_id,
        "first_night": booking.nights.start,
        "end_night": booking.nights.end,
        "units": booking.party_size,
        "customer_id": booking.customer_id,
        "total_price_cents": booking.total_price_cents,
        "currency": booking.currency,
        "expires_at": booking.expires_at,
        "actor": booking.created_by,
        "trace_parent": request.trace_parent,
        "workflow": booking.workflow,
        "rollout_bucket": versions.rollout_bucket(request.idempotency_key),
    }
