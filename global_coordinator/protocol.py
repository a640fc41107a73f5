"""Two-phase commit with presumed abort over a trek's legs, payment as a saga step.

ARCHITECTURE.md §5, invariant 5 (treks are atomic) and 4 (money balances). One pass of
a new trek:

1. prepare every leg in parallel, each bounded by the trek's prepare deadline (a leg
   that does not answer in time votes no);
2. if every leg prepared: charge the trek once per currency (keyed by trek and currency,
   reference = the trek id), while the legs are held;
3. write the decision durably: commit only when every leg prepared and every charge went
   through, abort otherwise (:func:`decision_log.decide`: the first decision stands);
4. drive the decision: commits retried until they land, or aborts to every leg (an abort
   to a leg never prepared leaves a fence that refuses a late prepare) and refunds of
   every charge the provider holds for the trek (found by reference, so a charge made
   just before a crash is refunded too).

Recovery: whenever this process becomes the leader (:mod:`.leadership`: at start when it
takes the lease, or when it takes over from a leader that stopped renewing) it re-drives
every trek without a final state, and then keeps doing so on an interval while it leads
(a commit to a dead node lands once it is back). A trek with no decision row that this
process did not plan in its current term is aborted (presumed abort): after a restart or
a takeover nobody remembers whether its charges went through, and aborting is always safe.
Every log write is fenced by the leader's epoch (:meth:`Coordinator._write`); a follower
writes nothing and its callers are sent to the leader.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, as_completed
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import grpc
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Connection

from ridgeline import tracing
from ridgeline.global_coordinator import crash_points as crash
from ridgeline.global_coordinator import decision_log as log
from ridgeline.global_coordinator.decision_log import Decision, LegPlan, LegRecord, LegState, PrepareOutcome, TrekRecord, TrekState
from ridgeline.global_coordinator.errors import InvalidTrek, NotLeader, ParticipantsUnreachable, StoreUnavailable, TrekNotFound, TrekStateConflict
from ridgeline.global_coordinator.group_commit import GroupCommit
from ridgeline.global_coordinator.leadership import Leadership, belief_clock
from ridgeline.global_coordinator.participants import Participants
from ridgeline.global_coordinator.payments import PaymentRefused, Payments, PaymentUnknown
from ridgeline.routing import night_range
from ridgeline.routing.clock import Clock, utc_now
from ridgeline.routing.retry import RetryPolicy
from ridgeline.trust.identity import node_actor
from ridgeline.v1 import trek_pb2 as tpb

_log = logging.getLogger(__name__)
T = TypeVar("T")

DECISION_SECONDS = Histogram(
    "ridgeline_trek_decision_seconds",
    "From a trek's plan to its decision, by decision.",
    ["decision"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
LOG_OUTCOME_UNKNOWN = Counter(
    "ridgeline_coordinator_log_outcome_unknown_total",
    "Decision-log writes whose outcome was unknown (the log unreachable, maybe mid-COMMIT), each then run again to read it back.",
)
UNFINISHED = Gauge("ridgeline_treks_unfinished", "Treks without a final state at the leader's last redrive pass (in doubt or being driven); 0 on a follower.")


#: Leg calls that may succeed when repeated (the node restarts, sheds load, loses a race).
_RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}
)
#: Owner hints a prepare follows before giving up (ownership that keeps moving).
_REDIRECTS_MAX = 4
_LEG_RETRY = RetryPolicy(attempts_max=1_000_000, backoff_base_seconds=0.02, backoff_cap_seconds=0.5)
#: A decision-log write whose outcome is unknown runs again this often at most (see Coordinator._write).
_LOG_RETRY = RetryPolicy(attempts_max=4, backoff_base_seconds=0.05, backoff_cap_seconds=0.5)
#: Unfinished treks one redrive pass picks up.
REDRIVE_BATCH_MAX = 200
#: How often a waiting PlanTrek with a repeated key re-reads the trek.
_WAIT_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class CoordinatorConfig:
    #: host:port where participants reach this coordinator's GetDecision.
    advertise_target: str
    #: Every leg must have prepared within this long after the trek was recorded.
    prepare_timeout_seconds: float = 5.0
    #: A prepared leg's hold outlasts the prepare deadline by this much before its node asks.
    decision_grace_seconds: float = 30.0
    #: One pass of commits or aborts retries a leg for at most this long; the redriver resumes it.
    drive_pass_seconds: float = 10.0
    redrive_interval_seconds: float = 2.0
    #: Each leg call's own deadline.
    leg_call_timeout_seconds: float = 2.0
    drive_workers: int = 32
    call_workers: int = 64
    #: The name the decision log gives this coordinator beside what it decides by itself
    #: (``node:<node_id>``): a commit or abort, presumed or not.
    node_id: str = "coordinator"
    #: How long the leader lease lasts without renewal: the longest a dead leader stops treks.
    lease_ttl_seconds: float = 2.0
    #: How often the leader renews and a follower looks for a lapsed lease (well under the TTL).
    heartbeat_interval_seconds: float = 0.5

    @property
    def actor(self) -> str:
        return node_actor(self.node_id)

    @property
    def leg_ttl_seconds(self) -> int:
        return math.ceil(self.prepare_timeout_seconds + self.decision_grace_seconds)


@dataclass(frozen=True)
class TrekRequest:
    """A validated PlanTrek."""

    idempotency_key: str
    customer_id: str
    legs: tuple[LegPlan, ...]

    def fingerprint(self) -> str:
        body = {"customer_id": self.customer_id, "legs": [{**vars(leg), "first_night": str(leg.first_night), "end_night": str(leg.end_night)} for leg in self.legs]}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class Coordinator:
    def __init__(self, config: CoordinatorConfig, transact: log.Transact, participants: Participants, payments: Payments, clock: Clock = utc_now) -> None:
        self.config = config
        self._transact = transact  # reads: each its own (read-only) transaction
        self._group = GroupCommit(transact)  # writes: concurrent ones share a transaction
        self.leadership = Leadership(
            transact,
            holder=config.node_id,
            address=config.advertise_target,
            lease_ttl_seconds=config.lease_ttl_seconds,
            heartbeat_interval_seconds=config.heartbeat_interval_seconds,
            on_gain=self._on_gain,
            clock=belief_clock(),
        )
        self._participants = participants
        self._payments = payments
        self._clock = clock
        # Each drive and leg call stays in the trace of the plan that started it.
        self._drivers = tracing.pool(config.drive_workers, thread_name_prefix="trek-drive")
        self._calls = tracing.pool(config.call_workers, thread_name_prefix="trek-leg-call")
        self._active: set[str] = set()
        self._active_lock = threading.Lock()
        #: When this process last became the leader: treks it planned since are its own to drive.
        self._term_started_at = clock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # a redrive pass now: leadership was just gained
        self._redriver = threading.Thread(target=self._redrive_loop, name="trek-redriver", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Takes the leader lease if it is free (else follows), then redrives while it leads:
        recovery at once (every unfinished trek), then on an interval."""
        self.leadership.start()
        self._redriver.start()

    def stop(self) -> None:
        """Stops driving, then hands the lease back so that a follower takes over at its next heartbeat."""
        self._stop.set()
        self._wake.set()
        self._redriver.join(10)
        UNFINISHED.set(0)  # this process drives none now (in tests, others share the registry)
        self._drivers.shutdown(wait=True, cancel_futures=True)
        self._calls.shutdown(wait=True, cancel_futures=True)
        self._group.close()
        self.leadership.stop(release_lease=True)

    def _on_gain(self, epoch: int) -> None:
        self._term_started_at = self._clock()
        self._wake.set()

    def _write(self, work: Callable[[Connection, int], T]) -> T:
        """A log write, fenced by the leader epoch in its own transaction (``work`` gets the
        epoch to record); raises NotLeader when this coordinator does not lead.

        StoreUnavailable means the outcome is unknown: the connection may have dropped
        during COMMIT, after the write landed. It is never guessed: every log write is keyed
        (a trek per idempotency key, a decision per trek, a charge per currency) or guarded
        by the state it moves from, so the same write runs again and reads back what the
        first attempt wrote, or writes it now. Still unknown after the retries: raised."""
        for attempt in range(1, _LOG_RETRY.attempts_max + 1):
            try:
                return self._group(lambda conn: work(conn, self.leadership.fence(conn)))
            except StoreUnavailable:
                LOG_OUTCOME_UNKNOWN.inc()
                if attempt == _LOG_RETRY.attempts_max or self._stop.is_set():
                    raise
                _log.warning("a decision-log write's outcome is unknown (attempt %d); running it again to read back what landed", attempt)
                time.sleep(_LOG_RETRY.backoff_seconds(attempt))
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def write(self, work: Callable[[Connection, int], T]) -> T:
        """A log write outside the protocol (:mod:`.operator_actions`), through the same fence
        and the same read-back of an unknown outcome as the protocol's own writes."""
        return self._write(work)

    def now(self) -> datetime:
        return self._clock()

    def drive_now(self, trek_id: str) -> Future[TrekRecord | None] | None:
        """Starts one pass over an unfinished trek now, as the redriver would; None when a
        thread of this process drives it already or its planner in this term is still
        preparing it (then its own drive decides it, as :meth:`redrive_once` leaves it)."""
        if not self._claim(trek_id):
            return None
        try:
            trek = self.get(trek_id)
            if trek.final or self._preparing_here(trek, self._clock()):
                self._release(trek_id)
                return None
            return self._drivers.submit(self._drive_claimed, trek_id, None)
        except BaseException:  # the log unreadable: the redriver takes the trek up later
            self._release(trek_id)
            raise

    def _preparing_here(self, trek: TrekRecord, now: datetime) -> bool:
        """Planned by this process in its current term and still within its prepare deadline."""
        return trek.state is TrekState.PREPARING and trek.created_at >= self._term_started_at and now < trek.prepare_deadline

    def ensure_leading(self) -> None:
        """Raises NotLeader, naming the leader when known, while this coordinator follows."""
        if self.leadership.epoch is None:
            raise NotLeader(f"coordinator {self.config.node_id} follows", self.leadership.hint())

    # -- planner calls -----------------------------------------------------------------

    def plan(self, request: TrekRequest, *, wait_seconds: float | None, actor: str) -> TrekRecord:
        """Records the trek (once per key) as planned by ``actor`` and drives it; with ``wait_seconds``, until it is final."""
        now = self._clock()
        fingerprint = request.fingerprint()
        # Claimed before it is visible, so the redriver never takes a trek its planner drives.
        new = log.planned(
            trek_id=str(uuid.uuid4()),
            customer_id=request.customer_id,
            legs=request.legs,
            now=now,
            prepare_deadline=now + timedelta(seconds=self.config.prepare_timeout_seconds),
            planned_by=actor,
        )
        self._claim(new.trek_id)
        try:
            trek_id, first_fingerprint = self._write(lambda conn, _: log.new_trek(conn, new, key=request.idempotency_key, fingerprint=fingerprint))
        except BaseException:
            self._release(new.trek_id)
            raise
        if trek_id != new.trek_id:  # the key was planned before: answer that trek
            self._release(new.trek_id)
            if first_fingerprint != fingerprint:
                raise InvalidTrek(f"idempotency key {request.idempotency_key!r} was first used for a different trek ({trek_id})")
            if wait_seconds is not None:
                self._wait_final(trek_id, wait_seconds)
            return self.get(trek_id)
        running = self._drivers.submit(self._drive_claimed, trek_id, new)
        if wait_seconds is not None:
            try:
                ended = running.result(timeout=wait_seconds)
            except TimeoutError:
                pass
            else:
                if ended is not None:  # the drive knows how it ended the trek: no need to read it back
                    return ended
        return self.get(trek_id)

    def get(self, trek_id: str) -> TrekRecord:
        trek = self._transact(lambda conn: log.load(log.read_only(conn), trek_id))
        if trek is None:
            raise TrekNotFound(f"no trek {trek_id}")
        return trek

    def treks(self, *, state: TrekState | None, stuck_after_seconds: int, limit: int) -> list[TrekRecord]:
        stuck_before = self._clock() - timedelta(seconds=stuck_after_seconds) if stuck_after_seconds else None

        def read(conn) -> list[TrekRecord]:  # noqa: ANN001 - a Connection
            ids = log.list_treks(log.read_only(conn), state=state, stuck_before=stuck_before, limit=limit)
            return [trek for trek in (log.load(conn, trek_id) for trek_id in ids) if trek is not None]

        return self._transact(read)

    def cancel(self, trek_id: str, reason: str, *, actor: str) -> TrekRecord:
        """Aborts an undecided trek (the decision is ``actor``'s), compensates a committed one;
        a trek already ending answers as it is. The log names ``actor`` as who cancelled it."""
        trek = self.get(trek_id)
        why = reason or "cancelled by the planner"

        def abort(conn: Connection, epoch: int) -> Decision:
            decision = log.decide(conn, trek_id, Decision.ABORT, why, self._clock(), actor, epoch=epoch)
            if decision is Decision.ABORT:
                log.cancel_asked(conn, trek_id, actor)
            return decision

        def compensate(conn: Connection, _: int) -> None:
            if log.move(conn, trek_id, [TrekState.COMMITTED], TrekState.CANCELLING, self._clock(), why):
                log.cancel_asked(conn, trek_id, actor)

        if trek.decision is None:
            if self._write(abort) is Decision.COMMIT:
                raise TrekStateConflict(f"trek {trek_id} was just decided commit; cancel it again once it is committed")
        elif trek.state is TrekState.COMMITTING:
            raise TrekStateConflict(f"trek {trek_id} is committing; cancel it again once it is committed")
        elif trek.state is TrekState.COMMITTED:
            self._write(compensate)
        if self._claim(trek_id):
            self._drivers.submit(self._drive_claimed, trek_id, None)
        return self.get(trek_id)

    def decision_for(self, trek_id: str) -> tuple[Decision | None, TrekState | None]:
        """GetDecision: the standing decision and the trek's state in the log.

        ABORT (and no state) for a trek never recorded; an overdue trek is decided ABORT
        first; None while it prepares in time. Participants check CommitLeg (COMMIT) and
        CancelLeg (cancelling or cancelled) against this answer."""
        trek = self._transact(lambda conn: log.load(conn, trek_id))
        if trek is None:
            return Decision.ABORT, None
        if trek.decision is not None:
            return trek.decision, trek.state
        if self._clock() < trek.prepare_deadline:
            return None, trek.state
        self._write(lambda conn, epoch: log.decide(conn, trek_id, Decision.ABORT, "undecided past its prepare deadline", self._clock(), self.config.actor, epoch=epoch))
        decided = self.get(trek_id)  # the decision that stands, and the state it moved the trek to
        assert decided.decision is not None, f"trek {trek_id} has no decision right after one was written"
        return decided.decision, decided.state

    # -- driving -----------------------------------------------------------------------

    def _claim(self, trek_id: str) -> bool:
        with self._active_lock:
            if trek_id in self._active:
                return False
            self._active.add(trek_id)
            return True

    def _drive_claimed(self, trek_id: str, planned: TrekRecord | None) -> TrekRecord | None:
        """Drives a claimed trek for one pass, then releases it; returns the trek if the pass ended it.

        ``planned``: the trek as its planner just recorded it (a fresh drive: prepare,
        charge, decide); None: take the trek over as the log has it.
        """
        try:
            return self._drive(planned or self.get(trek_id), fresh=planned is not None)
        except NotLeader as error:  # deposed mid-pass: the leader's redriver takes the trek over
            _log.info("stopped driving trek %s: %s", trek_id, error)
            return None
        except Exception:  # noqa: BLE001 - a failed pass is retried by the redriver
            _log.exception("driving trek %s failed; the redriver resumes it", trek_id)
            return None
        finally:
            self._release(trek_id)

    def _release(self, trek_id: str) -> None:
        with self._active_lock:
            self._active.discard(trek_id)

    def _drive(self, trek: TrekRecord, fresh: bool) -> TrekRecord | None:
        """One pass over ``trek``; returns it as the pass ended it, or None while it is not final."""
        if trek.final:
            return trek
        if trek.decision is None:
            if fresh and trek.state is TrekState.PREPARING:
                trek = self._prepare_and_decide(trek)
            else:
                reason = "no decision when the coordinator took the trek over (presumed abort)"
                self._write(lambda conn, epoch: log.decide(conn, trek.trek_id, Decision.ABORT, reason, self._clock(), self.config.actor, epoch=epoch))
                trek = self.get(trek.trek_id)
            crash.point("decided")
        if trek.state is TrekState.COMMITTING:
            return self._settle(trek, "CommitLeg", {LegState.PREPARED}, LegState.COMMITTED, TrekState.COMMITTED, refund=False)
        if trek.state is TrekState.ABORTING:
            touched = {LegState.PENDING, LegState.PREPARED, LegState.REFUSED}
            return self._settle(trek, "AbortLeg", touched, LegState.ABORTED, TrekState.ABORTED, refund=True)
        if trek.state is TrekState.CANCELLING:
            return self._settle(trek, "CancelLeg", {LegState.COMMITTED}, LegState.CANCELLED, TrekState.CANCELLED, refund=True)
        return None

    def _prepare_and_decide(self, trek: TrekRecord) -> TrekRecord:
        """Prepares every leg, charges if all prepared, and writes the decision; returns the trek decided."""
        remaining = (trek.prepare_deadline - self._clock()).total_seconds()
        calls = [self._calls.submit(self._prepare_leg, trek, leg, remaining) for leg in trek.legs]
        outcomes: list[PrepareOutcome] = []
        for call in as_completed(calls):
            outcomes.append(call.result())
            crash.point("prepared")
        refused = [o for o in outcomes if not o.prepared]
        charges: list[log.ChargeRecord] = []
        reason = ""
        if refused:
            first = min(refused, key=lambda o: o.index)
            reason = f"leg {first.index} refused: {first.detail}"
        else:
            charges, reason = self._charge(trek.trek_id, outcomes)
        crash.point("charged")
        decision = Decision.ABORT if reason else Decision.COMMIT
        why = reason or "every leg prepared and the trek is paid"
        try:
            decided = self._write(lambda conn, epoch: log.record_decision(conn, trek, outcomes, charges, decision, why, self._clock(), self.config.actor, epoch=epoch))
        except NotLeader:
            if not refused:
                self._refund_as_deposed(trek)
            raise
        DECISION_SECONDS.labels(decision.value).observe(max((self._clock() - trek.created_at).total_seconds(), 0.0))
        return decided

    def _refund_as_deposed(self, trek: TrekRecord) -> None:
        """Invariant 4 when this coordinator charged a trek, then found it no longer leads.

        The leader presumes abort for a trek it did not plan and refunds what the provider
        holds for it *then*; a charge this process made later (it was paused between prepare
        and charge, measured in tests/coordinator_ha) would stand for an aborted trek. So the
        deposed coordinator refunds every charge for the trek itself, by reference and with
        the leader's own refund keys: a refund both make lands once."""
        if self._refund_all(trek) is None:
            _log.error("trek %s: deposed after charging and the payment provider did not answer; its charges may stand (the audit's money check shows them)", trek.trek_id)
        else:
            _log.warning("trek %s: deposed after charging; refunded its charges (the leader aborts the trek)", trek.trek_id)

    def _prepare_leg(self, trek: TrekRecord, leg: LegRecord, timeout_seconds: float) -> PrepareOutcome:
        if timeout_seconds <= 0:
            return PrepareOutcome(leg.index, False, detail="prepare deadline passed before the call")
        plan = leg.plan
        request = tpb.PrepareLegRequest(
            trek_id=trek.trek_id,
            leg_index=leg.index,
            leg=tpb.TrekLeg(basecamp_id=plan.basecamp_id, resource_id=plan.resource_id, nights=night_range(plan.first_night, plan.end_night), party_size=plan.party_size),
            customer_id=trek.customer_id,
            hold_ttl_seconds=self.config.leg_ttl_seconds,
            coordinator_target=self.config.advertise_target,
        )
        until = time.monotonic() + timeout_seconds
        for _ in range(_REDIRECTS_MAX + 1):
            try:
                reply = self._participants.leg_stub(plan.region, plan.basecamp_id).PrepareLeg(request, timeout=max(until - time.monotonic(), 0.01))
                break
            except ParticipantsUnreachable as error:
                return PrepareOutcome(leg.index, False, detail=f"UNAVAILABLE: {error}")
            except grpc.RpcError as error:
                # A "not the owner" answer names the owner: ask it (same leg, same fence row key).
                if not self._participants.redirected(error, plan.basecamp_id) or time.monotonic() >= until:
                    return PrepareOutcome(leg.index, False, detail=f"{error.code().name}: {error.details()}")
        else:
            return PrepareOutcome(leg.index, False, detail=f"ownership of {plan.basecamp_id} kept moving")
        booking = reply.booking
        return PrepareOutcome(leg.index, True, booking.booking_id, booking.total_price_cents, booking.currency)

    def _charge(self, trek_id: str, outcomes: list[PrepareOutcome]) -> tuple[list[log.ChargeRecord], str]:
        """Charges once per currency, the currencies in parallel; returns the charges made and,
        if one failed, why the trek aborts (the abort refunds the others by reference)."""
        totals: dict[str, int] = {}
        for outcome in outcomes:
            totals[outcome.currency] = totals.get(outcome.currency, 0) + outcome.price_cents
        due = {currency: amount for currency, amount in totals.items() if amount > 0}
        calls = {
            currency: self._calls.submit(self._payments.charge, f"trek:{trek_id}:{currency}", amount, currency, trek_id)
            for currency, amount in sorted(due.items())
        }
        charges: list[log.ChargeRecord] = []
        failures: list[str] = []
        for currency, call in calls.items():
            try:
                charges.append(log.ChargeRecord(currency, due[currency], call.result(), 0))
            except (PaymentRefused, PaymentUnknown) as error:
                failures.append(f"payment of {due[currency] / 100:.2f} {currency} failed: {error}")
        return charges, "; ".join(failures)

    def _settle(
        self, trek: TrekRecord, method: str, sources: set[LegState], target: LegState, final: TrekState, *, refund: bool
    ) -> TrekRecord | None:
        """Sends ``method`` to every leg in ``sources`` in parallel, each retried for one pass; records
        what landed and, once every leg is at ``target`` (and, with ``refund``, every charge is
        refunded), ends the trek in ``final`` in the same transaction. Returns the trek when
        this pass ended it, else None."""
        todo = [leg for leg in trek.legs if leg.state in sources]
        until = time.monotonic() + self.config.drive_pass_seconds
        calls = {self._calls.submit(self._call_leg, trek.trek_id, leg, method, until): leg for leg in todo}
        landed: list[int] = []
        failures: list[tuple[int, str]] = []
        point = target.value
        for call in as_completed(calls):
            failure = call.result()
            if failure is None:
                landed.append(calls[call].index)
                crash.point(point)
            else:
                failures.append((calls[call].index, failure))
        every_leg = all(leg.state is target or leg.index in landed for leg in trek.legs)
        refunded = self._refund_all(trek) if every_leg and refund else None
        ends = every_leg and (not refund or refunded is not None)

        def write(conn: Connection, _: int) -> TrekRecord | None:
            log.set_legs(conn, trek.trek_id, landed, target)
            for index, failure in failures:
                log.note_leg(conn, trek.trek_id, index, failure)
            if refunded:
                log.record_charges(conn, trek.trek_id, refunded)
                for charge in refunded:
                    log.record_refund(conn, trek.trek_id, charge.charge_id, charge.amount_cents)
            now = self._clock()
            if not (ends and log.move(conn, trek.trek_id, [trek.state], final, now)):
                return None
            # Refunds recorded the provider's own list of charges: read the trek's back here.
            return log.load(conn, trek.trek_id) if refund else log.settled(trek, landed, target, final, now)

        return self._write(write)

    def _call_leg(self, trek_id: str, leg: LegRecord, method: str, until: float) -> str | None:
        """One leg call retried until it lands or the pass ends; None when it landed, else the last error."""
        request = tpb.LegRef(trek_id=trek_id, leg_index=leg.index)
        attempt = 0
        while True:
            attempt += 1
            remaining = until - time.monotonic()
            try:
                stub = self._participants.leg_stub(leg.plan.region, leg.plan.basecamp_id)
                getattr(stub, method)(request, timeout=max(0.05, min(self.config.leg_call_timeout_seconds, remaining)))
                return None
            except grpc.RpcError as error:
                failure = f"{method} {error.code().name}: {error.details()}"
                if self._participants.redirected(error, leg.plan.basecamp_id) and time.monotonic() < until:
                    continue  # the owner moved and the answer named the new one
                if error.code() not in _RETRYABLE:
                    _log.error("trek %s leg %d: %s", trek_id, leg.index, failure)
                    return failure
                if attempt == 1:  # visible in GetTrek and the stuck list while retries go on
                    self._write(lambda conn, _: log.note_leg(conn, trek_id, leg.index, failure))
            except ParticipantsUnreachable as error:  # no node of the leg's region answers at all
                failure = f"{method} UNAVAILABLE: {error}"
                if attempt == 1:
                    self._write(lambda conn, _: log.note_leg(conn, trek_id, leg.index, failure))
            pause = _LEG_RETRY.backoff_seconds(min(attempt, 10))
            if time.monotonic() + pause >= until or self._stop.is_set():
                return failure
            time.sleep(pause)

    def _refund_all(self, trek: TrekRecord) -> list[log.ChargeRecord] | None:
        """Refunds every charge the provider holds for the trek; returns them (to record as
        refunded), or None when the provider did not answer."""
        try:
            ledger = self._payments.charges_for(trek.trek_id)
            for charge in ledger:
                if charge.succeeded and charge.refunded_cents < charge.amount_cents:
                    self._payments.refund(f"trek:{trek.trek_id}:refund:{charge.charge_id}", charge.charge_id, charge.amount_cents - charge.refunded_cents)
        except PaymentUnknown as error:
            _log.warning("trek %s: refund pending, the payment provider did not answer: %s", trek.trek_id, error)
            return None
        return [log.ChargeRecord(c.currency, c.amount_cents, c.charge_id, c.amount_cents) for c in ledger if c.succeeded]

    def _wait_final(self, trek_id: str, wait_seconds: float) -> None:
        until = time.monotonic() + wait_seconds
        while time.monotonic() < until and not self.get(trek_id).final:
            time.sleep(_WAIT_POLL_SECONDS)

    # -- recovery ----------------------------------------------------------------------

    def _redrive_loop(self) -> None:
        while not self._stop.is_set():
            if self.leadership.epoch is not None:  # a follower leaves every trek to the leader
                try:
                    self.redrive_once()
                except NotLeader as error:
                    _log.info("redrive pass stopped: %s", error)
                except Exception:  # noqa: BLE001 - the decision log may be down; try again next interval
                    _log.exception("redrive pass failed")
            else:
                UNFINISHED.set(0)  # the leader's gauge counts them; a stale count here would page
            self._wake.wait(self.config.redrive_interval_seconds)
            self._wake.clear()

    def redrive_once(self) -> int:
        """Drives every unfinished trek no thread of this process is driving; returns how many."""
        started = 0
        now = self._clock()
        unfinished = self._transact(lambda conn: log.unfinished(log.read_only(conn), limit=REDRIVE_BATCH_MAX))
        UNFINISHED.set(len(unfinished))
        for trek_id in unfinished:
            if not self._claim(trek_id):  # a thread of this process drives it
                continue
            trek = self.get(trek_id)
            # A trek planned by this process is left to its own drive until its prepare deadline.
            if trek.final or self._preparing_here(trek, now):
                self._release(trek_id)
                continue
            self._drivers.submit(self._drive_claimed, trek_id, None)
            started += 1
        return started
