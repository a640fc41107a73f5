"""The set-based confirm of a batch of charged bookings (regional/settlement/confirms.py),
against real PostgreSQL under a real node's leases.

Each booking of a batch must be decided alone, exactly as the single confirm decides it:
a stale fence or a lapsed hold leaves that booking as it was and the others confirmed;
every booking the batch confirms has its history row, units, settlement row, one message
and its idempotency record, written by the one transaction; racing desk releases and
confirms each win or lose per booking, never half.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from drive import night, outcome
from invariants import assert_history_consistent, assert_inventory_matches_bookings, query
from sqlalchemy import Engine

from ridgeline.flows.runtime import borrowed_fence
from ridgeline.regional import errors
from ridgeline.regional.booking.model import BookingState
from ridgeline.regional.settlement import confirms
from ridgeline.regional.settlement import rows as settlements
from ridgeline.regional.storage.db import make_engine, read_transaction
from ridgeline.routing.client import BookingClient

ACTOR = "node:batch-confirmer"
BASECAMPS = ["argentiere", "hoernli"]


@pytest.fixture
def engine(alps_db) -> Iterator[Engine]:
    engine = make_engine(alps_db.url, pool_size=4)
    yield engine
    engine.dispose()


def _paid(engine: Engine, booking_ids: list[str]) -> list[confirms.Paid]:
    found = read_transaction(engine, lambda conn: settlements.get(conn, booking_ids))
    return [confirms.Paid(found[b], f"ch_test_{b[:8]}") for b in booking_ids]


def _messages(url: str, ids: list[str]) -> dict[str, int]:
    rows = query(url, "SELECT booking_id::text AS b, count(*) AS n FROM outbox WHERE booking_id::text = ANY(%(ids)s) GROUP BY 1", {"ids": ids})
    return {r.b: r.n for r in rows}


def _states(url: str, ids: list[str]) -> dict[str, tuple[str, str]]:
    rows = query(
        url,
        "SELECT b.booking_id::text AS b, b.state, s.state AS paid FROM bookings b JOIN settlements s USING (booking_id) WHERE b.booking_id::text = ANY(%(ids)s)",
        {"ids": ids},
    )
    return {r.b: (r.state, r.paid) for r in rows}


def test_a_batch_confirms_each_booking_alone_leaving_stale_fences_and_lapsed_holds_as_they_were(alps_client: BookingClient, alps_db, engine: Engine) -> None:
    # Two bookings on one inventory row (their units must both move), a booking of a
    # basecamp whose fence the batch holds stale, and short holds that lapse before `now`.
    live = [alps_client.book("argentiere", "argentiere-dorm", night(30), night(32), 2, f"live-{i}", hold_ttl_seconds=300).booking_id for i in range(2)]
    live += [alps_client.book("argentiere", "argentiere-guide", night(40 + i), night(41 + i), 1, f"guide-{i}", hold_ttl_seconds=300).booking_id for i in range(3)]
    stale = [alps_client.book("hoernli", "hoernli-dorm", night(30 + i), night(31 + i), 1, f"stale-{i}", hold_ttl_seconds=300).booking_id for i in range(2)]
    lapsing = [alps_client.book("argentiere", "argentiere-locker", night(50 + i), night(51 + i), 1, f"lapse-{i}", hold_ttl_seconds=10).booking_id for i in range(2)]
    fence = borrowed_fence(engine, BASECAMPS)
    fence["hoernli"] += 1  # an epoch nobody holds: that writer lost the basecamp
    now = datetime.now(timezone.utc) + timedelta(seconds=30)  # the 10 s holds have lapsed, the 300 s ones not
    ids = live + stale + lapsing

    confirmed = confirms.confirm_paid_batch(engine, _paid(engine, ids), actor=ACTOR, fence=fence, now=now)

    assert set(confirmed) == set(live)
    assert all(b.state is BookingState.CONFIRMED for b in confirmed.values())
    states = _states(alps_db.url, ids)
    assert {states[b] for b in live} == {("confirmed", "confirmed")}
    assert {states[b] for b in stale + lapsing} == {("held", "awaiting_payment")}, "a booking the batch could not confirm is untouched"
    assert _messages(alps_db.url, ids) == {b: 1 for b in live}
    paid = query(alps_db.url, "SELECT booking_id::text AS b, attempts, charge_id FROM settlements WHERE booking_id::text = ANY(%(ids)s)", {"ids": live})
    assert {(r.attempts, r.charge_id) for r in paid} == {(1, f"ch_test_{r.b[:8]}") for r in paid}
    history = query(
        alps_db.url,
        "SELECT booking_id::text AS b, actor, reason, lease_epoch FROM booking_history WHERE to_state = 'confirmed' AND booking_id::text = ANY(%(ids)s)",
        {"ids": ids},
    )
    assert sorted(r.b for r in history) == sorted(live)
    assert {(r.actor, r.reason, r.lease_epoch) for r in history} == {(ACTOR, confirms.REASON, fence["argentiere"])}
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)

    # The single confirm finds the batch's records under its own keys and answers them; it
    # names why each of the others cannot be confirmed.
    [again] = _paid(engine, live[:1])
    answered = confirms.confirm_paid(engine, again.settlement, again.charge_id, actor=ACTOR, fence=fence, now=now)
    assert answered == confirmed[live[0]]
    for booking_id, refusal in [(stale[0], errors.NotOwner), (lapsing[0], errors.HoldExpired)]:
        [left] = _paid(engine, [booking_id])
        with pytest.raises(refusal):
            confirms.confirm_paid(engine, left.settlement, left.charge_id, actor=ACTOR, fence=fence, now=now)
    assert _messages(alps_db.url, ids) == {b: 1 for b in live}, "no second message, no message for a refused confirm"
    assert_inventory_matches_bookings(alps_db.url)


def test_a_batch_is_nothing_when_no_booking_can_be_confirmed(alps_client: BookingClient, alps_db, engine: Engine) -> None:
    ids = [alps_client.book("hoernli", "hoernli-dorm", night(60 + i), night(61 + i), 1, f"fenced-{i}", hold_ttl_seconds=300).booking_id for i in range(3)]
    fence = {b: epoch + 1 for b, epoch in borrowed_fence(engine, BASECAMPS).items()}
    assert confirms.confirm_paid_batch(engine, _paid(engine, ids), actor=ACTOR, fence=fence, now=datetime.now(timezone.utc)) == {}
    assert set(_states(alps_db.url, ids).values()) == {("held", "awaiting_payment")}
    assert _messages(alps_db.url, ids) == {}


@pytest.mark.parametrize("rival", ["release", "confirm"])
def test_desks_racing_a_batch_confirm_each_win_or_lose_per_booking_never_half(
    alps_node, certs, alps_client: BookingClient, alps_db, engine: Engine, rival: str
) -> None:
    """A desk releasing (or confirming) half of the batch's bookings while the batch confirms
    them all: every booking ends in exactly one of the two outcomes, with its writes whole."""
    ids = [alps_client.book("argentiere", "argentiere-dorm", night(70 + i % 8), night(71 + i % 8), 1, f"race-{i}", hold_ttl_seconds=300).booking_id for i in range(32)]
    contested = ids[::2]
    batch = _paid(engine, ids)
    fence = borrowed_fence(engine, BASECAMPS)
    start = threading.Barrier(len(contested) + 1)
    confirmed: dict[str, object] = {}

    def confirmer() -> None:
        start.wait()
        confirmed.update(confirms.confirm_paid_batch(engine, batch, actor=ACTOR, fence=fence, now=datetime.now(timezone.utc)))

    desk_answers: dict[str, object] = {}

    def desk(booking_id: str) -> None:
        with BookingClient(alps_node.address, transport=certs.desk, timeout_seconds=30) as client:
            start.wait()
            move = client.release if rival == "release" else client.confirm
            desk_answers[booking_id] = outcome(lambda: move(booking_id))

    threads = [threading.Thread(target=confirmer)] + [threading.Thread(target=desk, args=(b,)) for b in contested]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    states = _states(alps_db.url, ids)
    messages = _messages(alps_db.url, ids)
    for booking_id in ids:
        if booking_id in confirmed:
            assert states[booking_id] == ("confirmed", "confirmed") and messages.get(booking_id) == 1
            if booking_id in contested and rival == "release":
                assert not desk_answers[booking_id].ok, "a released booking is never also confirmed"
        elif rival == "release":
            assert booking_id in contested and desk_answers[booking_id].ok
            assert states[booking_id] == ("released", "awaiting_payment") and booking_id not in messages, "the batch wrote nothing for it"
        else:  # the desk confirmed it first: the batch left it for the single confirm, which answers it
            assert booking_id in contested and states[booking_id] == ("confirmed", "awaiting_payment") and booking_id not in messages
    assert set(ids) - set(contested) <= set(confirmed), "an uncontested booking is confirmed by the batch"
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)
