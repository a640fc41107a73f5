"""The booking state machine, driven at random against real PostgreSQL and a Python model.

A hypothesis ``RuleBasedStateMachine`` places holds, confirms, releases and cancels
bookings (known ones and unknown ids), repeats requests under their idempotency key,
reuses keys for other requests, advances a fake clock and sweeps lapsed holds, all
through the real domain functions (``holds``, ``transitions``, ``expiry``, ``sweeper``,
``queries``) on one real region database. A small Python model predicts every outcome:
success, or the exact domain error class. After every step the database is checked
against the model and against itself:

- invariant 1 (no overbooking): every inventory row's ``held``/``booked`` counters equal
  the units of the held/confirmed bookings covering that night, within capacity;
- invariant 3 (holds end): queries report a lapsed hold as free before any sweep, a
  lapsed hold cannot be confirmed, and the sweep expires lapsed holds oldest first;
- invariant 7 (idempotency): a repeated key answers its first result (same booking,
  same error class) with no second effect; a key reused for another request is refused
  and not recorded;
- every booking's history is versions 1..version, each a legal transition chained to the
  one before, ending in the booking's current state.

One fresh database serves the whole test; each hypothesis example starts by emptying the
bookings, history and idempotency tables and zeroing the inventory counters (the catalog
and the opened inventory stay). Failures print the steps to replay them and a
``@reproduce_failure`` blob.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pytest
from drive import grant_leases
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from invariants import inventory_problems
from sqlalchemy import Engine, text

from ridgeline.regional import errors
from ridgeline.regional.booking import expiry, holds, queries, sweeper, transitions
from ridgeline.regional.booking.access import Caller
from ridgeline.regional.booking.model import LEGAL_TRANSITIONS, BookingState, Nights
from ridgeline.regional.storage.db import run_transaction

#: The small universe: two guide resources with little capacity, five nights.
RESOURCES = ("argentiere-guide", "hoernli-guide")
WINDOW_NIGHTS = 5
#: The first night of the window, in days after the fake clock's start.
LEAD_DAYS = 10
PARTY_SIZE_MAX = 4
HOLD_TTL_SECONDS = (10, 900)
CLOCK_STEP_SECONDS_MAX = 2000
HOLD_TICK_MICROSECONDS = 1000
CUSTOMERS = ("alice", "bruno")
REASONS = ("", "desk request")
MOVES = {"confirm": transitions.CONFIRM, "release": transitions.RELEASE, "cancel": transitions.CANCEL}

STEPS_MAX = 25
assert STEPS_MAX * HOLD_TICK_MICROSECONDS < 1_000_000, "hold ticks must stay within one second"
STATE_MACHINE_SETTINGS = settings(
    max_examples=40,
    stateful_step_count=STEPS_MAX,
    deadline=None,
    print_blob=True,
    # Shrink one failure, not several: shrinking against a database is slow.
    report_multiple_bugs=False,
    # No explain phase: it re-runs the failing steps under a tracer, which costs minutes
    # against a database; the shrunk steps and the reproduce_failure blob are enough.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Between examples: empty the booking tables and zero the counters, keeping the catalog and
# the opened inventory. DELETE rather than TRUNCATE: for the few rows an example writes it
# is several times faster (TRUNCATE recreates every table and index file).
_RESET = (
    "DELETE FROM booking_history",
    "DELETE FROM idempotency_records",
    "DELETE FROM bookings",
    "UPDATE inventory SET held = 0, booked = 0 WHERE held <> 0 OR booked <> 0",
)

_BOOKINGS = text(
    """
    SELECT booking_id, resource_id, first_night, end_night, party_size, state, version, expires_at
    FROM bookings ORDER BY booking_id
    """
)
_HISTORY = text("SELECT booking_id, version, from_state, to_state FROM booking_history ORDER BY booking_id, version")
_RECORD_KEYS = text("SELECT idempotency_key FROM idempotency_records")
_CATALOG = text(
    """
    SELECT r.resource_id, r.basecamp_id, r.unit_price_cents, r.currency, i.night, i.capacity
    FROM resources AS r JOIN inventory AS i USING (resource_id)
    WHERE r.resource_id = ANY(:resource_ids) AND i.night >= :start AND i.night < :end
    """
)


@dataclass(frozen=True)
class Product:
    """What a HoldRequest needs from the catalog, and the capacity per night."""

    basecamp_id: str
    unit_price_cents: int
    currency: str
    capacity: dict[date, int]


@dataclass(frozen=True)
class World:
    """Fixed for the whole test: the database, the catalog rows and the time frame."""

    engine: Engine
    products: dict[str, Product]
    start_now: datetime
    window: Nights
    #: The window plus a night either side, which no hold may touch.
    checked_nights: Nights
    #: The leases the test writes under (basecamp_id -> epoch).
    fence: dict[str, int]


@dataclass
class ModelBooking:
    booking_id: str
    resource_id: str
    nights: Nights
    units: int
    expires_at: datetime
    state: BookingState
    version: int

    def covers(self, night: date) -> bool:
        return self.nights.start <= night < self.nights.end

    def lapsed(self, now: datetime) -> bool:
        return self.state is BookingState.HELD and self.expires_at <= now


@dataclass(frozen=True)
class HoldAsk:
    resource_id: str
    nights: Nights
    party_size: int
    customer_id: str
    ttl_seconds: int


@dataclass(frozen=True)
class MoveAsk:
    move: str
    booking_id: str
    reason: str


@dataclass(frozen=True)
class Outcome:
    """What a call answered: a booking snapshot, or the exact class of a domain error."""

    booking_id: str | None = None
    state: BookingState | None = None
    version: int | None = None
    error: type[errors.BookingError] | None = None

    def __repr__(self) -> str:
        if self.error is not None:
            return self.error.__name__
        return f"Booking({self.booking_id}, {self.state.value if self.state else None}, v{self.version})"


@dataclass(frozen=True)
class KeyRecord:
    ask: HoldAsk | MoveAsk
    first: Outcome


def _outcome_of(call) -> Outcome:  # noqa: ANN001 - a zero-argument callable returning a Booking
    try:
        booking = call()
    except errors.BookingError as error:
        return Outcome(error=type(error))
    return Outcome(booking.booking_id, booking.state, booking.version)


class BookingMachine(RuleBasedStateMachine):
    """Rules call the real domain functions; ``world`` is bound by the test."""

    world: World

    def __init__(self) -> None:
        super().__init__()
        with self.world.engine.begin() as conn:
            for statement in _RESET:
                conn.execute(text(statement))
        self.now = self.world.start_now
        self.bookings: dict[str, ModelBooking] = {}  # in creation order, so draws replay
        self.keys: dict[str, KeyRecord] = {}  # only keys the database recorded
        self._key_numbers = itertools.count()
        self._hold_requests = 0

    # ------------------------------------------------------------------ the model

    def _new_key(self) -> str:
        return f"key-{next(self._key_numbers)}"

    def _used(self, resource_id: str, night: date, *, lapsed_holds_taken: bool) -> int:
        return sum(
            b.units
            for b in self.bookings.values()
            if b.resource_id == resource_id
            and b.covers(night)
            and (
                b.state is BookingState.CONFIRMED
                or (b.state is BookingState.HELD and (lapsed_holds_taken or b.expires_at > self.now))
            )
        )

    def _short(self, ask: HoldAsk, *, lapsed_holds_taken: bool) -> bool:
        capacity = self.world.products[ask.resource_id].capacity
        return any(
            capacity[night] - self._used(ask.resource_id, night, lapsed_holds_taken=lapsed_holds_taken) < ask.party_size
            for night in ask.nights.each()
        )

    def _live_holds(self) -> list[ModelBooking]:
        """Holds not yet lapsed, soonest to lapse first."""
        live = [b for b in self.bookings.values() if b.state is BookingState.HELD and b.expires_at > self.now]
        return sorted(live, key=lambda b: b.expires_at)

    def _expire(self, booking: ModelBooking) -> None:
        assert booking.lapsed(self.now)
        booking.state = BookingState.EXPIRED
        booking.version += 1

    def _predict_hold(self, ask: HoldAsk) -> Outcome:
        """A new key: the hold succeeds iff every night has room once lapsed holds count as free.

        The database's fast path counts every held row; only when a night is short does the
        slow path expire the lapsed holds on that resource overlapping the stay (committed
        even if the hold then sells out), so the model does the same.
        """
        if self._short(ask, lapsed_holds_taken=True):
            for b in self.bookings.values():
                overlaps = b.nights.start < ask.nights.end and b.nights.end > ask.nights.start
                if b.resource_id == ask.resource_id and overlaps and b.lapsed(self.now):
                    self._expire(b)
            if self._short(ask, lapsed_holds_taken=False):
                return Outcome(error=errors.SoldOut)
        return Outcome(state=BookingState.HELD, version=1)

    def _predict_move(self, ask: MoveAsk) -> Outcome:
        move = MOVES[ask.move]
        b = self.bookings.get(ask.booking_id)
        if b is None:
            return Outcome(error=errors.NotFound)
        if b.state is move.target:  # already there: answered as it is, no effect
            return Outcome(b.booking_id, b.state, b.version)
        if b.state is not move.source:
            return Outcome(error=errors.IllegalTransition)
        if move.requires_live_hold and b.expires_at <= self.now:
            return Outcome(error=errors.HoldExpired)
        assert move.target in LEGAL_TRANSITIONS[b.state]
        b.state = move.target
        b.version += 1
        return Outcome(b.booking_id, b.state, b.version)

    def _replayed(self, key: str, ask: HoldAsk | MoveAsk) -> Outcome:
        """What a known key must answer: its first result, or a refusal for another request."""
        prior = self.keys[key]
        return prior.first if prior.ask == ask else Outcome(error=errors.IdempotencyKeyReused)

    # ------------------------------------------------------------------ calling the system

    def _place_hold(self, key: str, ask: HoldAsk) -> Outcome:
        product = self.world.products[ask.resource_id]
        request = holds.HoldRequest(
            idempotency_key=key,
            basecamp_id=product.basecamp_id,
            resource_id=ask.resource_id,
            nights=ask.nights,
            party_size=ask.party_size,
            customer_id=ask.customer_id,
            ttl_seconds=ask.ttl_seconds,
            unit_price_cents=product.unit_price_cents,
            currency=product.currency,
            actor="desk:model",
            node_actor="node:model",
        )
        epoch = self.world.fence[product.basecamp_id]
        return _outcome_of(lambda: holds.place_hold(self.world.engine, request, epoch=epoch, now=self.now))

    def _apply_move(self, key: str, ask: MoveAsk) -> Outcome:
        return _outcome_of(
            lambda: transitions.apply_move(
                self.world.engine,
                MOVES[ask.move],
                booking_id=ask.booking_id,
                idempotency_key=key,
                reason=ask.reason,
                caller=Caller("desk:model"),
                fence=self.world.fence,
                now=self.now,
            )
        )

    def _send_hold(self, key: str, ask: HoldAsk) -> None:
        # Each hold request moves the clock to the next millisecond of the current second,
        # numbered by the request (steps move it by whole seconds or to an earlier hold's
        # expiry instant, so this never goes backwards): no two holds ever expire at the
        # same instant, which lapsed hold a partial sweep batch takes is determined, and so
        # is every later draw.
        self._hold_requests += 1
        ticked = self.now.replace(microsecond=self._hold_requests * HOLD_TICK_MICROSECONDS)
        assert ticked > self.now, "the fake clock went backwards"
        self.now = ticked
        if key in self.keys:
            expected = self._replayed(key, ask)
            actual = self._place_hold(key, ask)
            assert actual == expected, f"PlaceHold under known key {key}: expected {expected}, got {actual}"
            return
        expected = self._predict_hold(ask)
        actual = self._place_hold(key, ask)
        if expected.error is not None:
            assert actual == expected, f"PlaceHold {ask}: expected {expected}, got {actual}"
        else:
            assert (actual.error, actual.state, actual.version) == (None, BookingState.HELD, 1), (
                f"PlaceHold {ask}: expected a new hold, got {actual}"
            )
            assert actual.booking_id not in self.bookings, f"a new hold reused booking id {actual.booking_id}"
            self.bookings[actual.booking_id] = ModelBooking(
                actual.booking_id,
                ask.resource_id,
                ask.nights,
                ask.party_size,
                self.now + timedelta(seconds=ask.ttl_seconds),
                BookingState.HELD,
                1,
            )
        self.keys[key] = KeyRecord(ask, actual)

    def _send_move(self, key: str, ask: MoveAsk) -> None:
        expected = self._replayed(key, ask) if key in self.keys else self._predict_move(ask)
        actual = self._apply_move(key, ask)
        assert actual == expected, f"{ask.move} {ask.booking_id} under key {key}: expected {expected}, got {actual}"
        if key not in self.keys:
            self.keys[key] = KeyRecord(ask, actual)

    # ------------------------------------------------------------------ strategies in rules

    def _hold_ask(self, data: st.DataObject) -> HoldAsk:
        first = data.draw(st.integers(0, WINDOW_NIGHTS - 1), label="first night (offset)")
        count = data.draw(st.integers(1, WINDOW_NIGHTS - first), label="nights")
        start = self.world.window.start + timedelta(days=first)
        return HoldAsk(
            resource_id=data.draw(st.sampled_from(RESOURCES), label="resource"),
            nights=Nights(start, start + timedelta(days=count)),
            party_size=data.draw(st.integers(1, PARTY_SIZE_MAX), label="party size"),
            customer_id=data.draw(st.sampled_from(CUSTOMERS), label="customer"),
            ttl_seconds=data.draw(st.integers(*HOLD_TTL_SECONDS), label="ttl seconds"),
        )

    def _move_ask(self, data: st.DataObject, move: str) -> MoveAsk:
        """A booking the move applies to, a lapsed hold, one it does not apply to, or an unknown id."""
        source = MOVES[move].source
        by_kind = {
            "movable": [b.booking_id for b in self.bookings.values() if b.state is source],
            "lapsed": [b.booking_id for b in self.bookings.values() if b.lapsed(self.now)],
            "unmovable": [b.booking_id for b in self.bookings.values() if b.state is not source],
        }
        target = data.draw(st.sampled_from(("movable", "movable", "lapsed", "unmovable", "unknown")), label="target")
        candidates = by_kind.get(target) or list(self.bookings)
        if target != "unknown" and candidates:
            booking_id = data.draw(st.sampled_from(candidates), label="booking")
        else:
            booking_id = str(data.draw(st.uuids(), label="unknown booking id"))
        return MoveAsk(move, booking_id, data.draw(st.sampled_from(REASONS), label="reason"))

    def _key_for_new_request(self, data: st.DataObject) -> str:
        """Usually a new key; sometimes one already answered, which must refuse a different request."""
        if self.keys and data.draw(st.sampled_from(("new", "new", "new", "reused")), label="key") == "reused":
            return data.draw(st.sampled_from(list(self.keys)), label="reused key")
        return self._new_key()

    # ------------------------------------------------------------------ rules

    @rule(data=st.data())
    def place_hold(self, data: st.DataObject) -> None:
        self._send_hold(self._key_for_new_request(data), self._hold_ask(data))

    def _move(self, data: st.DataObject, move: str) -> None:
        self._send_move(self._key_for_new_request(data), self._move_ask(data, move))

    @precondition(lambda self: bool(self.bookings))
    @rule(data=st.data())
    def confirm(self, data: st.DataObject) -> None:
        self._move(data, "confirm")

    @precondition(lambda self: bool(self.bookings))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        self._move(data, "release")

    @precondition(lambda self: bool(self.bookings))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self._move(data, "cancel")

    @precondition(lambda self: bool(self.keys))
    @rule(data=st.data())
    def repeat_a_request(self, data: st.DataObject) -> None:
        """The same request under the same key, as a client retrying after a lost reply."""
        key = data.draw(st.sampled_from(list(self.keys)), label="repeated key")
        ask = self.keys[key].ask
        if isinstance(ask, HoldAsk):
            self._send_hold(key, ask)
        else:
            self._send_move(key, ask)

    @rule(seconds=st.integers(0, CLOCK_STEP_SECONDS_MAX))
    def advance_clock(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @precondition(lambda self: bool(self._live_holds()))
    @rule(data=st.data())
    def advance_clock_to_a_hold_expiry(self, data: st.DataObject) -> None:
        """To the instant a live hold lapses, or a moment after: the boundary ``expires_at <= now``.

        "last" lapses every live hold at once, so that a sweep batch has to choose among them.
        """
        live = self._live_holds()
        which = data.draw(st.sampled_from(("next", "last", "any")), label="which hold lapses")
        chosen = {"next": live[0], "last": live[-1]}.get(which) or data.draw(st.sampled_from(live), label="hold")
        self.now = chosen.expires_at + timedelta(seconds=data.draw(st.integers(0, 5), label="seconds past its expiry"))

    @precondition(lambda self: any(b.lapsed(self.now) for b in self.bookings.values()))
    @rule(batch_max=st.integers(1, 2), whole_sweep=st.booleans())
    def sweep(self, batch_max: int, whole_sweep: bool) -> None:
        """Either the node's sweep pass (batches until done) or a single expiry batch."""
        if whole_sweep:
            expired = sweeper.sweep_once(self.world.engine, now=self.now, batch_max=batch_max, actor="node:model")
            self._expect_expired(expired, limit=batch_max * sweeper.SWEEP_BATCHES_MAX)
        else:
            result = run_transaction(
                self.world.engine, lambda conn: expiry.expire_lapsed_holds(conn, now=self.now, batch_max=batch_max, actor="node:model")
            )
            self._expect_expired(result.expired, limit=batch_max)

    def _expect_expired(self, expired: int, *, limit: int) -> None:
        """The sweep expired min(lapsed, limit) holds, the oldest first; the model follows."""
        lapsed = [b for b in self.bookings.values() if b.lapsed(self.now)]
        assert expired == min(len(lapsed), limit), f"expired {expired} of {len(lapsed)} lapsed holds (limit {limit})"
        with self.world.engine.connect() as conn:
            states = {str(row.booking_id): BookingState(row.state) for row in conn.execute(_BOOKINGS)}
        chosen = [b for b in lapsed if states[b.booking_id] is BookingState.EXPIRED]
        left = [b for b in lapsed if states[b.booking_id] is not BookingState.EXPIRED]
        assert len(chosen) == expired, f"{len(chosen)} lapsed holds read as expired, sweep said {expired}"
        if chosen and left:
            newest_taken, oldest_left = max(b.expires_at for b in chosen), min(b.expires_at for b in left)
            assert newest_taken <= oldest_left, f"sweep took a hold lapsed at {newest_taken} before one lapsed at {oldest_left}"
        for b in chosen:
            self._expire(b)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def database_agrees_with_itself_and_the_model(self) -> None:
        """After every step, read once (one snapshot) and check each invariant in turn."""
        with self.world.engine.connect() as conn:
            bookings = conn.execute(_BOOKINGS).all()
            history = conn.execute(_HISTORY).all()
            recorded = {row.idempotency_key for row in conn.execute(_RECORD_KEYS)}
            reported = queries.availability(conn, list(RESOURCES), self.world.checked_nights, self.now)
        # Invariant 1 (nothing runs between steps, so a second snapshot sees the same state).
        problems = inventory_problems(self.world.engine.url.render_as_string(hide_password=False))
        assert not problems, "inventory disagrees with bookings:\n" + "\n".join(problems)
        self._check_bookings_and_records_match_the_model(bookings, recorded)
        self._check_history_is_complete_and_legal(bookings, history)
        self._check_availability_treats_lapsed_holds_as_free(reported)

    def _check_bookings_and_records_match_the_model(self, bookings: list, recorded: set[str]) -> None:
        stored = {
            str(row.booking_id): (
                row.resource_id,
                Nights(row.first_night, row.end_night),
                row.party_size,
                row.expires_at,
                BookingState(row.state),
                row.version,
            )
            for row in bookings
        }
        modelled = {
            b.booking_id: (b.resource_id, b.nights, b.units, b.expires_at, b.state, b.version) for b in self.bookings.values()
        }
        assert stored == modelled, f"bookings in the database {stored} != model {modelled}"
        assert recorded == set(self.keys), f"idempotency keys recorded {sorted(recorded)} != answered {sorted(self.keys)}"

    @staticmethod
    def _check_history_is_complete_and_legal(bookings: list, history: list) -> None:
        by_booking: dict[str, list] = {}
        for row in history:
            by_booking.setdefault(str(row.booking_id), []).append(row)
        current = {str(row.booking_id): (BookingState(row.state), row.version) for row in bookings}
        assert set(by_booking) <= set(current), f"history for unknown bookings {set(by_booking) - set(current)}"
        for booking_id, (state, version) in current.items():
            rows = by_booking.get(booking_id, [])
            assert [row.version for row in rows] == list(range(1, version + 1)), (
                f"{booking_id} at version {version} has history versions {[row.version for row in rows]}"
            )
            assert (rows[0].from_state, rows[0].to_state) == (None, BookingState.HELD.value), f"{booking_id} began {rows[0]}"
            for before, after in itertools.pairwise(rows):
                assert after.from_state == before.to_state, f"{booking_id}: v{after.version} does not follow v{before.version}"
                assert BookingState(after.to_state) in LEGAL_TRANSITIONS[BookingState(after.from_state)], (
                    f"{booking_id}: illegal {after.from_state} -> {after.to_state}"
                )
            assert BookingState(rows[-1].to_state) is state, f"{booking_id} is {state.value}, history ends {rows[-1].to_state}"

    def _check_availability_treats_lapsed_holds_as_free(self, reported: dict) -> None:
        for resource_id in RESOURCES:
            capacity = self.world.products[resource_id].capacity
            mine = [b for b in self.bookings.values() if b.resource_id == resource_id]
            expected = [
                (
                    night,
                    capacity[night],
                    sum(b.units for b in mine if b.covers(night) and b.state is BookingState.HELD and b.expires_at > self.now),
                    sum(b.units for b in mine if b.covers(night) and b.state is BookingState.CONFIRMED),
                )
                for night in self.world.checked_nights.each()
            ]
            got = [(n.night, n.capacity, n.held, n.confirmed) for n in reported[resource_id]]
            assert got == expected, f"availability of {resource_id} at {self.now}: {got} != model {expected}"


def _world(engine: Engine) -> World:
    start_now = datetime.now(timezone.utc).replace(hour=8, minute=0, second=0, microsecond=0)
    window_start = start_now.date() + timedelta(days=LEAD_DAYS)
    window = Nights(window_start, window_start + timedelta(days=WINDOW_NIGHTS))
    checked = Nights(window.start - timedelta(days=1), window.end + timedelta(days=1))
    products: dict[str, Product] = {}
    with engine.connect() as conn:
        for row in conn.execute(_CATALOG, {"resource_ids": list(RESOURCES), "start": checked.start, "end": checked.end}):
            product = products.setdefault(row.resource_id, Product(row.basecamp_id, row.unit_price_cents, row.currency, {}))
            product.capacity[row.night] = row.capacity
    for resource_id in RESOURCES:
        assert len(products[resource_id].capacity) == checked.count, f"inventory of {resource_id} not open for {checked}"
    fence = grant_leases(engine, {p.basecamp_id for p in products.values()})
    return World(engine, products, start_now, window, checked, fence)


# Room for hypothesis to shrink a failure (it stops shrinking after five minutes) and
# still report it, rather than being cut off by the suite's default timeout.
@pytest.mark.timeout(600)
def test_invariants_1_3_7_booking_state_machine_matches_its_model(alps_engine: Engine) -> None:
    class Machine(BookingMachine):
        world = _world(alps_engine)

    run_state_machine_as_test(Machine, settings=STATE_MACHINE_SETTINGS)
