"""Invariant 1, no overbooking: many clients race through real gRPC for the same units.

Every check is made in SQL against the region database, independently of the code under
test: inventory counters equal the units of the live bookings covering each night, and
held + confirmed never exceeds capacity. Races run until the contested nights are full, so
"exactly full" is a deterministic outcome, not a likely one.
"""

from __future__ import annotations

import queue
import random
import threading
from dataclasses import dataclass
from datetime import date, timedelta

import grpc
from drive import Outcome, night, outcome, race
from invariants import (
    assert_history_consistent,
    assert_inventory_matches_bookings,
    bookings_by_id,
    inventory_problems,
    night_tallies,
)

from ridgeline.routing.client import BookingClient

BASECAMP = "argentiere"
GUIDE, GUIDE_CAPACITY = "argentiere-guide", 6
LOCKER, LOCKER_CAPACITY = "argentiere-locker", 12
RACERS = 32
PARTY_SIZES = (1, 2, 3)
#: Lost races the client could not win within its bounded retries: allowed, but rare.
ABORTED_SHARE_MAX = 0.05

Code = grpc.StatusCode
HOLD_CODES = {Code.OK, Code.RESOURCE_EXHAUSTED, Code.ABORTED}
MOVE_CODES = {Code.OK, Code.FAILED_PRECONDITION, Code.ABORTED}


@dataclass(frozen=True)
class Attempt:
    resource_id: str
    start: date
    end: date
    size: int
    outcome: Outcome

    def nights(self) -> list[date]:
        return [self.start + timedelta(days=d) for d in range((self.end - self.start).days)]


def _hold(client: BookingClient, customer: str, resource_id: str, start: date, end: date, size: int) -> Attempt:
    result = outcome(lambda: client.place_hold(BASECAMP, resource_id, start, end, size, customer))
    return Attempt(resource_id, start, end, size, result)


def _hold_until_full(client: BookingClient, customer: str, resource_id: str, start: date, end: date, size: int) -> list[Attempt]:
    """Holds the stay again and again, stepping the party size down when refused, until even one
    unit is refused: at that moment some night of the stay is full (nothing is ever given back
    in these races, so it stays full). Bounded: more attempts than the units there are to win."""
    attempts: list[Attempt] = []
    for _ in range(LOCKER_CAPACITY + 8):
        attempt = _hold(client, customer, resource_id, start, end, size)
        attempts.append(attempt)
        if attempt.outcome.code is Code.RESOURCE_EXHAUSTED:
            if size == 1:
                break
            size -= 1
        elif attempt.outcome.code not in HOLD_CODES:
            break
    return attempts


def _assert_losers_only_refused(attempts: list[Attempt]) -> None:
    codes = {a.outcome.code for a in attempts}
    assert codes <= HOLD_CODES, f"unexpected answers: {[(a.outcome.code, a.outcome.details) for a in attempts if a.outcome.code not in HOLD_CODES][:5]}"
    refused = [a for a in attempts if a.outcome.code is Code.RESOURCE_EXHAUSTED]
    assert refused and all("free unit" in a.outcome.details for a in refused), refused[:3]
    aborted = [a for a in attempts if a.outcome.code is Code.ABORTED]
    assert len(aborted) <= max(2, ABORTED_SHARE_MAX * len(attempts)), f"{len(aborted)} of {len(attempts)} holds ABORTED"


def _assert_only_winners_booked(url: str, attempts: list[Attempt]) -> None:
    """Every booking row is an acknowledged hold: losers (refused or aborted) left nothing."""
    won = {a.outcome.reply.booking_id for a in attempts if a.outcome.ok}
    assert set(bookings_by_id(url)) == won


def test_invariant_1_no_overbooking_when_32_clients_race_for_the_last_units_of_a_night(alps_node, alps_db, certs) -> None:
    first, end = night(30), night(31)

    def racer(i: int, client: BookingClient) -> list[Attempt]:
        return _hold_until_full(client, f"racer-{i}", GUIDE, first, end, PARTY_SIZES[i % len(PARTY_SIZES)])

    attempts = [a for racer_attempts in race(alps_node.address, RACERS, racer, transport=certs.desk) for a in racer_attempts]

    [tally] = night_tallies(alps_db.url, GUIDE, first, end)
    assert not tally.problems(), tally.problems()
    assert (tally.capacity, tally.held, tally.booked, tally.bookings_held) == (GUIDE_CAPACITY, GUIDE_CAPACITY, 0, GUIDE_CAPACITY)
    assert sum(a.size for a in attempts if a.outcome.ok) == GUIDE_CAPACITY
    _assert_only_winners_booked(alps_db.url, attempts)
    _assert_losers_only_refused(attempts)
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)


def test_invariant_1_no_overbooking_when_overlapping_multi_night_holds_race(alps_node, alps_db, certs) -> None:
    window_start, window_nights = night(40), 6
    window_end = window_start + timedelta(days=window_nights)

    def racer(i: int, client: BookingClient) -> list[Attempt]:
        rng = random.Random(i)
        offset = rng.randrange(window_nights)
        start = window_start + timedelta(days=offset)
        end = start + timedelta(days=rng.randint(1, min(4, window_nights - offset)))
        return _hold_until_full(client, f"racer-{i}", LOCKER, start, end, rng.choice(PARTY_SIZES))

    attempts = [a for racer_attempts in race(alps_node.address, RACERS, racer, transport=certs.desk) for a in racer_attempts]

    acknowledged = {n: 0 for n in (window_start + timedelta(days=d) for d in range(window_nights))}
    for attempt in attempts:
        if attempt.outcome.ok:
            assert attempt.outcome.reply.party_size == attempt.size
            for n in attempt.nights():
                acknowledged[n] += attempt.size
    tallies = night_tallies(alps_db.url, LOCKER, window_start, window_end)
    assert [t.night for t in tallies] == list(acknowledged)
    for tally in tallies:
        assert not tally.problems(), (tally, tally.problems())
        assert tally.taken == tally.bookings_held == acknowledged[tally.night] <= LOCKER_CAPACITY
    assert any(t.taken == LOCKER_CAPACITY for t in tallies), tallies
    _assert_only_winners_booked(alps_db.url, attempts)
    _assert_losers_only_refused(attempts)
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)


class _Monitor(threading.Thread):
    """Checks the counters against the bookings, one SQL snapshot after another, during the race."""

    def __init__(self, url: str) -> None:
        super().__init__(name="inventory-monitor", daemon=True)
        self._url = url
        self._done = threading.Event()
        self.samples = 0
        self.problems: list[str] = []

    def run(self) -> None:
        while not self._done.wait(0.005):
            self.problems += inventory_problems(self._url)
            self.samples += 1

    def stop(self) -> None:
        self._done.set()
        self.join(10)


def test_invariant_1_counters_equal_bookings_while_holds_confirms_releases_and_cancels_race(alps_node, alps_db, certs) -> None:
    holders, movers, holds_each = 16, 8, 6
    window_start, window_nights = night(60), 4
    todo: queue.Queue[str | None] = queue.Queue()
    holders_left = [holders]
    lock = threading.Lock()

    def holder(i: int, client: BookingClient) -> list[Outcome]:
        rng = random.Random(i)
        results = []
        try:
            for _ in range(holds_each):
                offset = rng.randrange(window_nights)
                start = window_start + timedelta(days=offset)
                end = start + timedelta(days=rng.randint(1, min(2, window_nights - offset)))
                result = _hold(client, f"holder-{i}", LOCKER, start, end, rng.choice(PARTY_SIZES[:2])).outcome
                results.append(result)
                if result.ok:
                    # Every booking goes to two movers, whose moves on it then contend.
                    todo.put(result.reply.booking_id)
                    todo.put(result.reply.booking_id)
        finally:
            with lock:
                holders_left[0] -= 1
                if holders_left[0] == 0:
                    for _ in range(movers):
                        todo.put(None)
        return results

    def mover(i: int, client: BookingClient) -> list[Outcome]:
        rng = random.Random(1000 + i)
        results = []
        while (booking_id := todo.get(timeout=30)) is not None:
            action = rng.choice(("confirm", "release", "confirm-cancel", "keep"))
            if action in ("confirm", "confirm-cancel"):
                results.append(outcome(lambda: client.confirm(booking_id)))
                if action == "confirm-cancel" and results[-1].ok:
                    results.append(outcome(lambda: client.cancel(booking_id)))
            elif action == "release":
                results.append(outcome(lambda: client.release(booking_id)))
        return results

    monitor = _Monitor(alps_db.url)
    monitor.start()
    try:
        results = race(alps_node.address, holders + movers, lambda i, c: holder(i, c) if i < holders else mover(i - holders, c), transport=certs.desk)
    finally:
        monitor.stop()

    hold_results, move_results = results[:holders], results[holders:]
    assert {r.code for rs in hold_results for r in rs} <= HOLD_CODES
    assert {r.code for rs in move_results for r in rs} <= MOVE_CODES, [r for rs in move_results for r in rs if r.code not in MOVE_CODES][:5]
    assert monitor.samples >= 5 and not monitor.problems, monitor.problems[:10]
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)
    states = {row.state for row in bookings_by_id(alps_db.url).values()}
    assert {"held", "confirmed", "released", "cancelled"} <= states, states
