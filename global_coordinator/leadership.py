"""Which coordinator leads: one lease row in the decision log's database, with an epoch.

The basecamp leases' design (``routing/leases.py``, ``routing/keeper.py``) for the one
thing every coordinator of a cluster wants: every time is the database's clock, every
grant increments the epoch, renewing keeps it, and whatever the holder writes carries the
epoch, so a deposed leader's writes are refused (invariant 5 rests on one decision per
trek: two leaders could each decide differently). Unlike a basecamp, the lease is held
by a process (its id and a per-process incarnation), not by an id: a restarted
coordinator waits for its old lease to lapse like anyone, and two processes given one
id (replicas of one Kubernetes spec) contend instead of taking it from each other.

Fencing, in SQL, twice over:

* every log write begins with :meth:`Leadership.fence`: the lease row with the writer's
  holder and epoch, unexpired, locked ``FOR SHARE`` until the transaction ends;
* the decision insert itself carries :func:`decision_fence_sql` and records its epoch.

A takeover (:func:`acquire`) locks the row ``FOR UPDATE`` before it stamps its grant, so
it waits for every fenced transaction in flight: every decision of epoch e is recorded
before epoch e+1 is granted (``coordinator_terms.granted_at``), which the tests check in
SQL. ``clock_timestamp()``, not ``now()``: ``now()`` is when the transaction began, and a
writer paused between BEGIN and its fence must not pass by an earlier clock. A process
paused while it holds the share lock would hold up a takeover: the coordinator's engine
ends idle transactions (``idle_in_transaction_session_timeout``) and a takeover waits at
most ``lock_timeout``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge
from sqlalchemy import Connection, text

from ridgeline.global_coordinator.errors import NotLeader

if TYPE_CHECKING:  # the decision log imports this module for its fence
    from ridgeline.global_coordinator.decision_log import Transact

_log = logging.getLogger(__name__)

LEADER_EPOCH = Gauge("ridgeline_coordinator_leader_epoch", "The leader epoch this coordinator holds (0: it follows).")
LEADER_SINCE = Gauge("ridgeline_coordinator_leader_since_seconds", "When this coordinator's epoch was granted (Unix time, database clock; 0: it follows).")
LEADER_CHANGES = Counter("ridgeline_coordinator_leader_changes_total", "Leader leases this coordinator gained or lost.", ["change"])
FENCE_REFUSED = Counter("ridgeline_coordinator_fence_refused_total", "Log writes of this coordinator the database refused: it believed it led, its epoch was stale.")

#: Tests only: "1" runs the lease belief on the process's CPU clock, which stands still while
#: the process is stopped, as a suspended VM's clock can: a SIGSTOPped leader then resumes
#: believing it leads, and only the database's fence keeps its writes out.
FROZEN_CLOCK_ENV = "RIDGELINE_COORDINATOR_FROZEN_CLOCK"


def belief_clock() -> Callable[[], float]:
    """The clock a coordinator's lease belief runs on (monotonic, unless a test froze it)."""
    return time.process_time if os.environ.get(FROZEN_CLOCK_ENV) == "1" else time.monotonic


#: How long after the lease's end a waiting follower asks for it (the database's clock decides).
_LAPSE_MARGIN_SECONDS = 0.01


def decision_fence_sql(epoch_expression: str) -> str:
    """The predicate a decision insert carries: the lease still has the writer's epoch and has not lapsed."""
    return (
        "EXISTS (SELECT 1 FROM coordinator_leader AS fence_leader WHERE fence_leader.lease = 'leader'"
        f" AND fence_leader.epoch = {epoch_expression} AND fence_leader.expires_at > clock_timestamp())"
    )


@dataclass(frozen=True)
class Leader:
    """The lease row as last read: who leads, where it serves, its epoch and since when."""

    holder: str
    #: Which process of ``holder`` (one id may run twice, e.g. Kubernetes replicas of one spec).
    incarnation: str
    address: str
    epoch: int
    acquired_at: datetime
    remaining_seconds: float

    @property
    def valid(self) -> bool:
        return self.remaining_seconds > 0


_CURRENT = text(
    """
    SELECT holder, incarnation, address, epoch, acquired_at, EXTRACT(EPOCH FROM expires_at - clock_timestamp()) AS remaining
    FROM coordinator_leader WHERE lease = 'leader'
    """
)

_FENCE = text(
    """
    SELECT epoch FROM coordinator_leader
    WHERE lease = 'leader' AND holder = :holder AND epoch = :epoch AND expires_at > clock_timestamp()
    FOR SHARE
    """
)

_LOCK = text("SELECT holder, incarnation, expires_at > clock_timestamp() AS valid FROM coordinator_leader WHERE lease = 'leader' FOR UPDATE")

# Granted when nobody holds it or its lease has lapsed (or this very process holds it: a
# renewal that came too late for its own view). Not to another process under the same id,
# not even a restarted one: two processes of one id (Kubernetes replicas of one spec) would
# take it from each other on every heartbeat. The WHERE guards a race of two first grants.
_GRANT = text(
    """
    INSERT INTO coordinator_leader AS l (lease, holder, incarnation, address, epoch, acquired_at, expires_at)
    VALUES ('leader', :holder, :incarnation, :address, 1, clock_timestamp(), clock_timestamp() + make_interval(secs => :ttl))
    ON CONFLICT (lease) DO UPDATE
    SET holder = excluded.holder, incarnation = excluded.incarnation, address = excluded.address, epoch = l.epoch + 1,
        acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
    WHERE l.expires_at <= clock_timestamp() OR (l.holder = excluded.holder AND l.incarnation = excluded.incarnation)
    RETURNING epoch, acquired_at
    """
)

_TERM = text(
    "INSERT INTO coordinator_terms (epoch, holder, incarnation, address, granted_at) VALUES (:epoch, :holder, :incarnation, :address, :granted_at)"
)

_RENEW = text(
    """
    UPDATE coordinator_leader SET expires_at = clock_timestamp() + make_interval(secs => :ttl)
    WHERE lease = 'leader' AND holder = :holder AND epoch = :epoch AND expires_at > clock_timestamp()
    RETURNING epoch
    """
)

_RELEASE = text(
    "UPDATE coordinator_leader SET expires_at = clock_timestamp() WHERE lease = 'leader' AND holder = :holder AND epoch = :epoch AND expires_at > clock_timestamp()"
)


#: Decisions the lease should have made impossible, one row each (the audit's and the tests'
#: check, from the log alone): written under an epoch never granted, before their epoch was
#: granted, or once a later epoch had been granted (a deposed leader's). Epoch 0: before HA.
STALE_DECISIONS_SQL = """
SELECT CAST(d.trek_id AS TEXT) AS trek_id, d.epoch, d.recorded_at,
       CASE WHEN own.epoch IS NULL THEN 'under an epoch never granted'
            WHEN d.recorded_at < own.granted_at THEN 'before its epoch was granted'
            ELSE 'after epoch ' || CAST(later.epoch AS TEXT) || ' was granted' END AS why
FROM trek_decisions AS d
LEFT JOIN coordinator_terms AS own ON own.epoch = d.epoch
LEFT JOIN LATERAL (
    SELECT t.epoch FROM coordinator_terms AS t WHERE t.epoch > d.epoch AND t.granted_at <= d.recorded_at ORDER BY t.epoch LIMIT 1
) AS later ON TRUE
WHERE d.epoch > 0 AND (own.epoch IS NULL OR d.recorded_at < own.granted_at OR later.epoch IS NOT NULL)
ORDER BY d.recorded_at
"""


def current(conn: Connection) -> Leader | None:
    """The lease row, valid or lapsed; None before any coordinator ever led."""
    row = conn.execute(_CURRENT).first()
    return None if row is None else Leader(row.holder, row.incarnation, row.address, int(row.epoch), row.acquired_at, float(row.remaining))


def acquire(conn: Connection, *, holder: str, incarnation: str, address: str, ttl_seconds: float, lock_wait_ms: int) -> tuple[int, datetime] | None:
    """Takes the lease when it is free, lapsed or this process's own; returns (epoch, granted at), else None."""
    assert holder and incarnation and ttl_seconds > 0 and lock_wait_ms > 0, (holder, incarnation, ttl_seconds, lock_wait_ms)
    conn.execute(text(f"SET LOCAL lock_timeout = {int(lock_wait_ms)}"))
    locked = conn.execute(_LOCK).first()  # waits for every fenced write in flight to end
    if locked is not None and locked.valid and (locked.holder, locked.incarnation) != (holder, incarnation):
        return None
    params = {"holder": holder, "incarnation": incarnation, "address": address}
    granted = conn.execute(_GRANT, {**params, "ttl": ttl_seconds}).first()
    if granted is None:
        return None
    conn.execute(_TERM, {**params, "epoch": granted.epoch, "granted_at": granted.acquired_at})
    return int(granted.epoch), granted.acquired_at


def renew(conn: Connection, *, holder: str, epoch: int, ttl_seconds: float) -> bool:
    """Extends the lease while ``holder`` still holds it at ``epoch``; False when it is gone."""
    return conn.execute(_RENEW, {"holder": holder, "epoch": epoch, "ttl": ttl_seconds}).first() is not None


def release(conn: Connection, *, holder: str, epoch: int) -> None:
    """Ends the lease now, so that a follower takes over at its next heartbeat instead of after the TTL."""
    conn.execute(_RELEASE, {"holder": holder, "epoch": epoch})


def fence(conn: Connection, *, holder: str, epoch: int) -> bool:
    """Whether ``holder`` leads at ``epoch`` now; when it does, the row stays share-locked until COMMIT."""
    return conn.execute(_FENCE, {"holder": holder, "epoch": epoch}).first() is not None


class Leadership:
    """A coordinator's thread that takes, renews and hands back the leader lease.

    Every ``heartbeat_interval_seconds`` the leader renews; a follower reads the row (for
    leader hints) and takes it once it has lapsed. The view here (:attr:`epoch`) only says
    whether to *try* to lead: it lapses on its own a TTL after the last renewal was sent,
    and the database decides, because every write carries the epoch.
    """

    def __init__(
        self,
        transact: Transact,
        *,
        holder: str,
        address: str,
        lease_ttl_seconds: float,
        heartbeat_interval_seconds: float,
        on_gain: Callable[[int], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock``: what the belief in the lease lapses by (seconds; a test passes a frozen one)."""
        assert 0 < heartbeat_interval_seconds * 2 <= lease_ttl_seconds, "a lease must survive at least one missed heartbeat"
        self._clock = clock
        self.holder = holder
        self.incarnation = uuid.uuid4().hex[:12]
        self.address = address
        self._transact = transact
        self._ttl = lease_ttl_seconds
        self._heartbeat = heartbeat_interval_seconds
        self._on_gain = on_gain
        self._lock = threading.Lock()
        self._epoch: int | None = None
        self._believed_until = 0.0  # the clock's reading past which this process stops believing it leads
        self._seen: Leader | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="coordinator-leadership", daemon=True)

    @property
    def epoch(self) -> int | None:
        """The epoch this coordinator leads with, or None while it follows."""
        with self._lock:
            return self._epoch if self._epoch is not None and self._clock() < self._believed_until else None

    @property
    def seen(self) -> Leader | None:
        """The leader as this coordinator last saw it (itself while it leads)."""
        return self._seen

    def hint(self) -> str | None:
        """Where the leader serves, for a caller that asked a follower; None when unknown."""
        seen = self._seen
        return seen.address if seen is not None and seen.valid and not self._mine(seen) else None

    def _mine(self, lease: Leader) -> bool:
        return (lease.holder, lease.incarnation) == (self.holder, self.incarnation)

    def start(self) -> None:
        """Takes a first round synchronously (a lone coordinator leads at once), then keeps going."""
        try:
            self.tick()
        except Exception:  # noqa: BLE001 - the log may be down at start; the thread keeps trying
            _log.warning("first leadership round of %s failed; retrying every %.1f s", self.holder, self._heartbeat, exc_info=True)
        self._thread.start()

    def stop(self, *, release_lease: bool = True) -> None:
        """Stops renewing; with ``release_lease`` ends the lease at once so a follower need not wait out the TTL."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._ttl)
        with self._lock:
            held, self._epoch = self._epoch, None
        LEADER_EPOCH.set(0)
        if release_lease and held is not None:
            try:
                self._transact(lambda conn: release(conn, holder=self.holder, epoch=held))
            except Exception:  # noqa: BLE001 - best effort: the lease lapses within its TTL anyway
                _log.warning("could not hand back the leader lease; it lapses within %.1f s", self._ttl)

    def fence(self, conn: Connection) -> int:
        """The fence of one log write, first in its transaction: returns the epoch it writes under, or raises NotLeader."""
        epoch = self.epoch
        if epoch is None:
            raise NotLeader(f"coordinator {self.holder} does not lead", self.hint())
        if not fence(conn, holder=self.holder, epoch=epoch):
            FENCE_REFUSED.inc()
            self._step_down(epoch, "a write found its epoch stale")
            raise NotLeader(f"coordinator {self.holder}'s epoch {epoch} no longer leads", self.hint())
        return epoch

    def tick(self) -> None:
        """One round: renew while leading, else read the lease and take it when it has lapsed."""
        asked = self._clock()
        with self._lock:
            held = self._epoch
        if held is not None:
            if self._transact(lambda conn: renew(conn, holder=self.holder, epoch=held, ttl_seconds=self._ttl)):
                with self._lock:
                    if self._epoch == held:
                        self._believed_until = asked + self._ttl
                return
            self._step_down(held, "its renewal found the lease gone")
        seen = self._transact(current)
        self._seen = seen
        if seen is not None and seen.valid and not self._mine(seen):
            return
        granted = self._transact(
            lambda conn: acquire(conn, holder=self.holder, incarnation=self.incarnation, address=self.address, ttl_seconds=self._ttl, lock_wait_ms=int(self._ttl * 1000))
        )
        if granted is None:
            return
        epoch, granted_at = granted
        with self._lock:
            self._epoch, self._believed_until = epoch, asked + self._ttl
        self._seen = Leader(self.holder, self.incarnation, self.address, epoch, granted_at, self._ttl)
        LEADER_EPOCH.set(epoch)
        LEADER_SINCE.set(granted_at.timestamp())
        LEADER_CHANGES.labels("gained").inc()
        _log.info("coordinator %s leads with epoch %d", self.holder, epoch)
        self._on_gain(epoch)

    def _step_down(self, epoch: int, why: str) -> None:
        with self._lock:
            if self._epoch != epoch:
                return
            self._epoch = None
        LEADER_EPOCH.set(0)
        LEADER_SINCE.set(0)
        LEADER_CHANGES.labels("lost").inc()
        _log.warning("coordinator %s no longer leads (epoch %d): %s", self.holder, epoch, why)

    def _next_wait(self) -> float:
        """A heartbeat; but a follower that saw the lease lapse sooner wakes just after it does,
        so a takeover costs the lease's remainder, not up to a heartbeat more."""
        seen = self._seen
        if self.epoch is None and seen is not None and not self._mine(seen) and 0 < seen.remaining_seconds < self._heartbeat:
            return seen.remaining_seconds + _LAPSE_MARGIN_SECONDS
        return self._heartbeat

    def _run(self) -> None:
        while not self._stop.wait(self._next_wait()):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a failed round must not end the thread
                # The log is unreachable or contended: the belief lapses by itself, writes are fenced anyway.
                _log.warning("leadership round of %s failed; retrying in %.1f s", self.holder, self._heartbeat, exc_info=True)
