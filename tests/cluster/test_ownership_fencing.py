"""Invariant 6 (one writer per basecamp) at the database: a write carrying a stale lease
epoch is refused by the statement itself, whichever path it takes, and writes racing a
takeover never land after it. The domain functions are called directly, so no Python
ownership check stands in front of the database here."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
from drive import grant_leases, night
from invariants import assert_inventory_matches_bookings, query, snapshot
from sqlalchemy import Engine, text

from ridgeline.regional import errors
from ridgeline.regional.booking import holds, transitions
from ridgeline.regional.booking.access import Caller
from ridgeline.regional.booking.group_commit import HoldGroupCommitter
from ridgeline.regional.booking.model import Nights
from ridgeline.regional.storage.db import make_engine, run_transaction
from ridgeline.routing import leases

BASECAMP = "argentiere"
DORM = "argentiere-dorm"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _hold(first: int, *, customer: str = "fenced-guest", key: str | None = None) -> holds.HoldRequest:
    return holds.HoldRequest(
        idempotency_key=key or str(uuid.uuid4()),
        basecamp_id=BASECAMP,
        resource_id=DORM,
        nights=Nights(night(first), night(first + 1)),
        party_size=1,
        customer_id=customer,
        ttl_seconds=900,
        unit_price_cents=6500,
        currency="EUR",
        actor="desk:fenced",
        node_actor="node:fenced",
    )


def _take_over(engine: Engine, new_holder: str) -> int:
    """What a new owner does once the old lease lapsed: the grant bumps the epoch."""

    def work(conn) -> int:  # noqa: ANN001 - a SQLAlchemy Connection
        conn.execute(text("UPDATE basecamp_leases SET expires_at = now() WHERE basecamp_id = :b"), {"b": BASECAMP})
        return leases.acquire(conn, node_id=new_holder, basecamp_ids=[BASECAMP], ttl_seconds=3600)[BASECAMP]

    return run_transaction(engine, work)


def test_invariant_6_every_write_path_refuses_a_stale_epoch(alps_engine: Engine, alps_db) -> None:
    old_epoch = grant_leases(alps_engine, [BASECAMP], holder="old-owner")[BASECAMP]
    held = holds.place_hold(alps_engine, _hold(20), epoch=old_epoch, now=_now())
    confirmed = holds.place_hold(alps_engine, _hold(21), epoch=old_epoch, now=_now())
    transitions.apply_move(
        alps_engine, transitions.CONFIRM, booking_id=confirmed.booking_id, idempotency_key=str(uuid.uuid4()),
        reason="", caller=Caller("desk:fenced"), fence={BASECAMP: old_epoch}, now=_now(),
    )
    new_epoch = _take_over(alps_engine, "new-owner")
    assert new_epoch == old_epoch + 1
    before = snapshot(alps_db.url)
    stale = {BASECAMP: old_epoch}
    stale_key = str(uuid.uuid4())

    with pytest.raises(errors.NotOwner, match="owned by node new-owner|between owners"):
        holds.place_hold(alps_engine, _hold(22, key=stale_key), epoch=old_epoch, now=_now())
    round_engine = make_engine(alps_db.url, pool_size=1, lock_timeout_ms=200)
    committer = HoldGroupCommitter(round_engine, alps_engine, _now, round_max=8)
    committer.start()
    try:
        with pytest.raises(errors.NotOwner):
            committer.place(_hold(23), epoch=old_epoch, deadline=time.monotonic() + 10)
    finally:
        committer.stop()
    for move, booking_id in ((transitions.CONFIRM, held.booking_id), (transitions.RELEASE, held.booking_id), (transitions.CANCEL, confirmed.booking_id)):
        with pytest.raises(errors.NotOwner):
            transitions.apply_move(alps_engine, move, booking_id=booking_id, idempotency_key=str(uuid.uuid4()), reason="", caller=Caller("desk:fenced"), fence=stale, now=_now())

    assert snapshot(alps_db.url) == before, "a stale writer changed something"
    # The refusal is about where, not what: it is not recorded, so the same key works at the owner.
    placed = holds.place_hold(alps_engine, _hold(22, key=stale_key), epoch=new_epoch, now=_now())
    assert placed.state.value == "held"
    assert_inventory_matches_bookings(alps_db.url)


@pytest.mark.slow
def test_invariant_6_writes_racing_a_takeover_never_land_after_it(alps_engine: Engine, alps_db) -> None:
    old_epoch = grant_leases(alps_engine, [BASECAMP], holder="old-owner")[BASECAMP]
    round_engine = make_engine(alps_db.url, pool_size=1, lock_timeout_ms=200)
    committer = HoldGroupCommitter(round_engine, alps_engine, _now, round_max=16)
    committer.start()
    outcomes: list[tuple[float, str, str | None]] = []  # (started, outcome, booking id)
    lock = threading.Lock()
    stop = threading.Event()

    def writer(index: int) -> None:
        first = 10
        while not stop.is_set():
            first = 10 + (first + 7 * index) % 150
            request = _hold(first, customer="racer")
            started = time.monotonic()
            try:
                if index % 2:
                    booking = committer.place(request, epoch=old_epoch, deadline=time.monotonic() + 10)
                else:
                    booking = holds.place_hold(alps_engine, request, epoch=old_epoch, now=_now())
                result: tuple[float, str, str | None] = (started, "placed", booking.booking_id)
            except errors.NotOwner:
                result = (started, "refused", None)
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    _take_over(alps_engine, "new-owner")
    taken_over = time.monotonic()
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(30)
    committer.stop()

    placed = [o for o in outcomes if o[1] == "placed"]
    after = [o for o in outcomes if o[0] > taken_over]
    assert placed and after, f"the race did not happen: {len(placed)} placed, {len(after)} after the takeover"
    assert all(o[1] == "refused" for o in after), "a write that started after the takeover landed"
    rows = {r.booking_id for r in query(alps_db.url, "SELECT CAST(booking_id AS TEXT) AS booking_id FROM bookings WHERE customer_id = 'racer'")}
    assert rows == {o[2] for o in placed}, "the database holds bookings no writer was told about, or lost some"
    assert_inventory_matches_bookings(alps_db.url)
