"""Ambiguous commits handled, not guessed (ARCHITECTURE.md §3; invariants 1, 2 and 7).

A real PostgreSQL behind a proxy that cuts the connection exactly at a commit
(commit_cut_proxy.py): ``before`` the server sees the COMMIT (it rolls back: not
committed), or ``after`` it committed and before its reply reaches the client (committed
but unacknowledged: the truly ambiguous case). Either way the client sees the same
dropped connection. Every keyed write must come out with exactly one effect and answer
the first result, and every ambiguous commit must be counted with how it was resolved.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import psycopg
import pytest
from commit_cut_proxy import CommitCutProxy, Cut
from drive import grant_leases, night
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invariants import assert_history_consistent, assert_inventory_matches_bookings, history_of, libpq_url
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from ridgeline.regional import errors
from ridgeline.regional.booking import holds, transitions
from ridgeline.regional.booking.access import Caller
from ridgeline.regional.booking.model import Booking, BookingState, Nights
from ridgeline.regional.storage.db import AMBIGUOUS_RERUNS_MAX, make_engine, run_transaction
from ridgeline.routing.leases import Fence
from ridgeline.routing.retry import Resolution

BASECAMP = "argentiere"
DORM = "argentiere-dorm"
#: The hold's statement (single path and group-commit round alike) writes the key's record.
HOLD_STATEMENT = b"idempotency_records"
#: Each hypothesis example holds its own two nights, so no example sells out another's.
_first_nights = itertools.count(50)


@pytest.fixture
def cut_engine(alps_db, region_servers) -> Iterator[tuple[CommitCutProxy, Engine]]:  # noqa: ANN001
    """An engine whose every connection passes through a commit-cutting proxy."""
    proxy = CommitCutProxy(region_servers["eu-alps"].port, marker=HOLD_STATEMENT)
    engine = make_engine(proxy.url(alps_db.url), pool_size=4)
    yield proxy, engine
    engine.dispose()
    proxy.close()


@pytest.fixture
def fence(alps_engine: Engine) -> Fence:
    return grant_leases(alps_engine, [BASECAMP])


def _request(key: str, party_size: int = 2, first_night: int = 40, *, book: bool = False) -> holds.HoldRequest:
    return holds.HoldRequest(
        settle=book,
        idempotency_key=key,
        basecamp_id=BASECAMP,
        resource_id=DORM,
        nights=Nights(night(first_night), night(first_night + 2)),
        party_size=party_size,
        customer_id="ambiguous-guest",
        ttl_seconds=900,
        unit_price_cents=100,
        currency="EUR",
        actor="desk:ambiguous",
        node_actor="node:ambiguous",
    )


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _resolved(operation: str, resolution: Resolution) -> float:
    return REGISTRY.get_sample_value("ridgeline_db_ambiguous_resolutions_total", {"operation": operation, "resolution": resolution.value}) or 0.0


def _resolutions(operation: str) -> dict[Resolution, float]:
    return {resolution: _resolved(operation, resolution) for resolution in Resolution}


def _ambiguous(operation: str) -> float:
    return REGISTRY.get_sample_value("ridgeline_db_ambiguous_commits_total", {"operation": operation}) or 0.0


def _bookings_of_key(url: str, key: str) -> list:
    """The bookings the key's request made: its record's booking, and any other row for its guest."""
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute(
            "SELECT CAST(booking_id AS TEXT), state FROM bookings WHERE customer_id = 'ambiguous-guest' AND resource_id = %s", (DORM,)
        ).fetchall(), conn.execute("SELECT result->>'booking_id' FROM idempotency_records WHERE idempotency_key = %s", (key,)).fetchall()


@pytest.mark.parametrize(("cut", "resolution"), [("after", Resolution.COMMITTED), ("before", Resolution.NOT_COMMITTED)])
def test_invariant_7_a_hold_whose_commit_was_cut_has_exactly_one_effect(cut_engine, fence, alps_db, cut: Cut, resolution: Resolution) -> None:  # noqa: ANN001
    proxy, engine = cut_engine
    before, ambiguous_before = _resolutions(holds.OPERATION), _ambiguous(holds.OPERATION)
    proxy.plan([cut])

    booking = holds.place_hold(engine, _request("cut-hold"), epoch=fence[BASECAMP], now=_now())

    assert proxy.cuts == [cut] and proxy.planned == 0
    rows, records = _bookings_of_key(alps_db.url, "cut-hold")
    assert rows == [(booking.booking_id, "held")], "one hold, and it is the one answered"
    assert records == [(booking.booking_id,)]
    assert _ambiguous(holds.OPERATION) == ambiguous_before + 1
    after = _resolutions(holds.OPERATION)
    assert {r: after[r] - before[r] for r in Resolution} == {r: float(r is resolution) for r in Resolution}
    tallies = assert_inventory_matches_bookings(alps_db.url)
    assert sum(t.held for t in tallies if t.resource_id == DORM) == 2 * 2  # 2 units x 2 nights, once


@pytest.mark.parametrize(("cut", "resolution"), [("after", Resolution.COMMITTED), ("before", Resolution.NOT_COMMITTED)])
def test_invariant_7_a_confirm_whose_commit_was_cut_confirms_once(cut_engine, fence, alps_engine, alps_db, cut: Cut, resolution: Resolution) -> None:  # noqa: ANN001
    proxy, engine = cut_engine
    held = holds.place_hold(alps_engine, _request("to-confirm"), epoch=fence[BASECAMP], now=_now())
    before = _resolutions(transitions.CONFIRM.operation)
    proxy.plan([cut])

    confirmed = _confirm(engine, held, fence)

    assert proxy.cuts == [cut]
    assert confirmed.state is BookingState.CONFIRMED and confirmed.version == 2
    assert [(h.version, h.to_state) for h in history_of(alps_db.url, held.booking_id)] == [(1, "held"), (2, "confirmed")]
    after = _resolutions(transitions.CONFIRM.operation)
    assert {r: after[r] - before[r] for r in Resolution} == {r: float(r is resolution) for r in Resolution}
    assert_inventory_matches_bookings(alps_db.url)


def _confirm(engine: Engine, held: Booking, fence: Fence) -> Booking:
    return transitions.apply_move(
        engine, transitions.CONFIRM, booking_id=held.booking_id, idempotency_key=f"confirm-{held.booking_id}",
        reason="", caller=Caller("desk:ambiguous"), fence=fence, now=_now(),
    )


def test_a_commit_cut_before_the_server_saw_it_left_nothing_and_an_idempotent_rerun_counts_as_such(cut_engine, alps_db) -> None:  # noqa: ANN001
    """Not keyed: an unnamed write raises AmbiguousCommit rather than guessing; declared
    idempotent, it is run again and counted ``rerun``."""
    proxy, engine = cut_engine
    mark = f"note-{uuid.uuid4()}"

    def note(conn) -> None:  # noqa: ANN001
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS notes (mark TEXT PRIMARY KEY)")
        conn.exec_driver_sql(f"INSERT INTO notes VALUES ('{mark}') ON CONFLICT DO NOTHING")

    proxy.plan(["after"])
    with pytest.raises(errors.AmbiguousCommit) as lost:
        run_transaction(engine, note, operation="note")
    assert lost.value.operation == "note" and "unknown" in str(lost.value)
    rerun_before = _resolved("note", Resolution.RERUN)
    proxy.plan(["before", "after"])
    run_transaction(engine, note, operation="note", idempotent=True)
    assert proxy.cuts == ["after", "before", "after"]
    assert _resolved("note", Resolution.RERUN) == rerun_before + 2
    with psycopg.connect(libpq_url(alps_db.url)) as conn:
        assert conn.execute("SELECT count(*) FROM notes WHERE mark = %s", (mark,)).fetchone() == (1,)


@pytest.mark.parametrize(("cut", "resolution"), [("after", Resolution.COMMITTED), ("before", Resolution.NOT_COMMITTED)])
def test_invariant_7_a_sold_out_refusal_whose_commit_was_cut_is_recorded_once(cut_engine, fence, alps_engine, alps_db, cut: Cut, resolution: Resolution) -> None:  # noqa: ANN001
    """The refusal is a keyed write too (the slow path records it in an explicit transaction):
    its COMMIT cut, the re-run answers SoldOut from one record, or records it now."""
    proxy, engine = cut_engine
    holds.place_hold(alps_engine, _request("fills-the-dorm", party_size=40, first_night=44), epoch=fence[BASECAMP], now=_now())
    before = _resolutions(holds.OPERATION)
    proxy.plan(["pass", cut])  # the fast statement finds a night short; the slow path's COMMIT is cut

    with pytest.raises(errors.SoldOut):
        holds.place_hold(engine, _request("too-late", party_size=1, first_night=44), epoch=fence[BASECAMP], now=_now())

    assert proxy.cuts == ["pass", cut]
    with psycopg.connect(libpq_url(alps_db.url)) as conn:
        records = conn.execute("SELECT error_kind FROM idempotency_records WHERE idempotency_key = 'too-late'").fetchall()
    assert records == [("SoldOut",)]
    after = _resolutions(holds.OPERATION)
    assert {r: after[r] - before[r] for r in Resolution} == {r: float(r is resolution) for r in Resolution}
    assert_inventory_matches_bookings(alps_db.url)


@pytest.mark.timeout(600)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cuts=st.lists(st.sampled_from(["before", "after", "pass"]), max_size=AMBIGUOUS_RERUNS_MAX + 4),
    then=st.sampled_from(["nothing", "confirm", "book"]),
    party_size=st.integers(1, 4),
)
def test_invariants_1_2_7_any_sequence_of_cut_commits_leaves_one_effect_per_key(cut_engine, fence, alps_db, cuts: list[Cut], then: str, party_size: int) -> None:  # noqa: ANN001
    """Cuts before and after, on the hold's statement (or Book's, which also writes the
    settlement row) and on every COMMIT that follows (the record's read, the confirm): the
    write either answers its one effect or says UNAVAILABLE, and its retry with the same key
    then answers that same effect."""
    confirm, book = then == "confirm", then == "book"
    proxy, engine = cut_engine
    key, first_night, cuts_before = f"h-{uuid.uuid4()}", next(_first_nights), len(proxy.cuts)
    detected_before = _ambiguous(holds.OPERATION) + _ambiguous(transitions.CONFIRM.operation) + _ambiguous("read")
    resolved_before = sum(_resolutions(holds.OPERATION).values()) + sum(_resolutions(transitions.CONFIRM.operation).values())
    resolved_before += sum(_resolutions("read").values())
    proxy.plan(cuts)

    def hold() -> Booking:
        return holds.place_hold(engine, _request(key, party_size, first_night, book=book), epoch=fence[BASECAMP], now=_now())

    booking = _until_answered(hold, proxy)
    assert _until_answered(hold, proxy) == booking, "a repeat answers the first result"
    if confirm:
        confirmed = _until_answered(lambda: _confirm(engine, booking, fence), proxy)
        assert confirmed.state is BookingState.CONFIRMED and confirmed.version == 2

    with psycopg.connect(libpq_url(alps_db.url)) as conn:
        rows = conn.execute(
            "SELECT CAST(b.booking_id AS TEXT), b.state FROM bookings AS b JOIN idempotency_records AS k"
            " ON k.result->>'booking_id' = CAST(b.booking_id AS TEXT) WHERE k.idempotency_key = %s",
            (key,),
        ).fetchall()
        orphans = conn.execute(
            "SELECT count(*) FROM bookings AS b WHERE b.customer_id = 'ambiguous-guest' AND NOT EXISTS"
            " (SELECT 1 FROM idempotency_records AS k WHERE k.result->>'booking_id' = CAST(b.booking_id AS TEXT))"
        ).fetchone()
        settlements = conn.execute("SELECT count(*) FROM settlements WHERE booking_id = %s", (booking.booking_id,)).fetchone()
    assert rows == [(booking.booking_id, "confirmed" if confirm else "held")]
    assert orphans == (0,), "a hold that no key answers for is a second effect"
    assert settlements == (int(book),), "a Book has exactly one settlement row, a hold none"
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)
    detected = _ambiguous(holds.OPERATION) + _ambiguous(transitions.CONFIRM.operation) + _ambiguous("read") - detected_before
    resolved = sum(_resolutions(holds.OPERATION).values()) + sum(_resolutions(transitions.CONFIRM.operation).values())
    resolved += sum(_resolutions("read").values())
    assert detected == resolved - resolved_before, "every ambiguous commit is counted with its resolution"
    assert detected <= len(proxy.cuts) - cuts_before


def _until_answered(call, proxy: CommitCutProxy) -> Booking:  # noqa: ANN001 - a zero-argument call
    """The call's answer; after an UNAVAILABLE (too many cuts in a row), the plan is lifted and
    the call retried with the same key, as the routing client would."""
    try:
        return call()
    except errors.DatabaseUnavailable:
        proxy.plan([])
        return call()
