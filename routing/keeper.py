"""The lease keeper: one thread per node that keeps its membership and its leases.

Every ``heartbeat_interval`` it, in one transaction each step:

1. heartbeats its membership row (the database's clock sets the expiry);
2. reads the region's live members and asks the ring who should own each basecamp,
   over the members that can run every workflow version in use (:func:`eligible_owners`);
3. renews the leases it holds and should keep, releases the ones the ring now gives to
   another live node (so a joining node gets its share within a heartbeat or two), and
   acquires the free or lapsed ones the ring gives to it.

A dead node stops heartbeating and renewing: after at most the lease TTL its basecamps
lapse and the nodes the ring now proposes take them with a higher epoch. The keeper's
view (:class:`Ownership`) only tells the servicer where to *try*: the database decides,
because every write carries the epoch and :func:`leases.fence_sql` refuses stale ones.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client import Counter, Gauge
from sqlalchemy import Connection

from ridgeline.routing import leases
from ridgeline.routing.leases import Fence
from ridgeline.routing.ring import propose_owners

_log = logging.getLogger(__name__)

LEASE_CHANGES = Counter(
    "ridgeline_lease_changes_total", "Basecamp leases this node acquired, handed over or lost.", ["change"]
)
LEASES_HELD = Gauge("ridgeline_leases_held", "Basecamp leases this node holds now.")

T = TypeVar("T")
#: Runs ``work`` in one region-database transaction (with the region's retry policy).
Transact = Callable[[Callable[[Connection], T]], T]
#: Of the capabilities some live member lacks, the ones in use now (regional/ knows which:
#: the workflow versions bookings in flight run, ``workflows.rollout.in_use``).
InUse = Callable[[Connection, frozenset[str]], frozenset[str]]


def eligible_owners(members: list[leases.Member], in_use: frozenset[str]) -> list[leases.Member]:
    """The members the ring may give basecamps to: those that can run everything in use.

    A member that lacks a version in use would have to leave that version's bookings alone,
    and a basecamp has one writer (invariant 6), so it must not own basecamps at all while
    another member can run everything; when none can, every member stays eligible, because
    a basecamp nobody owns would refuse every hold (liveness first; the owner leaves what it
    cannot run alone, and a capable node that joins takes over).
    """
    capable = [m for m in members if in_use <= m.capabilities]
    return capable or members


class NodeIdInUse(RuntimeError):
    """Another live process is a member of the cluster under the same node id."""


@dataclass(frozen=True)
class LeaseSettings:
    #: How long a grant lasts without renewal: the longest a dead owner blocks its basecamps.
    lease_ttl_seconds: float = 5.0
    #: How often the keeper heartbeats, renews and rebalances (well under the TTL).
    heartbeat_interval_seconds: float = 1.0

    def __post_init__(self) -> None:
        assert 0 < self.heartbeat_interval_seconds * 2 <= self.lease_ttl_seconds, (
            "a lease must survive at least one missed heartbeat"
        )


@dataclass
class Ownership:
    """What this node believes it holds: basecamp_id -> epoch. Replaced whole, read lock-free.

    The belief expires like the leases themselves: ``valid_until`` (``time.monotonic()``) is
    taken just before the transaction that last renewed them, so it never outlives a lease
    on the database's clock. A node cut off from its database (issue 12: it keeps its
    clients, loses the database) then stops claiming its basecamps within one TTL even when
    every keeper round hangs on a dead connection, and its settlement loop claims nothing.
    """

    _fence: dict[str, int] = field(default_factory=dict)
    _valid_until: float = math.inf

    def epoch_of(self, basecamp_id: str) -> int | None:
        return self.fence().get(basecamp_id)

    def fence(self) -> Fence:
        return self._fence if time.monotonic() < self._valid_until else {}

    def replace(self, fence: dict[str, int], *, valid_until: float | None = None) -> None:
        """The new belief; ``valid_until`` None keeps the current deadline (a subset of what was renewed)."""
        if valid_until is not None:
            self._valid_until = valid_until
        self._fence = fence


@dataclass(frozen=True)
class Changes:
    """What one keeper round did (logged)."""

    acquired: dict[str, int]
    released: list[str]
    lost: list[str]


class LeaseKeeper:
    def __init__(
        self,
        transact: Transact,
        *,
        node_id: str,
        region: str,
        address: str,
        settings: LeaseSettings,
        metrics_address: str = "",
        capabilities: frozenset[str] = frozenset(),
        in_use: InUse | None = None,
    ) -> None:
        """``capabilities``: what this node advertises in its membership row; ``in_use``:
        which capabilities some member lacks are in use (None: all members are equal)."""
        self.node_id = node_id
        self.region = region
        self.address = address
        self.metrics_address = metrics_address
        self.capabilities = capabilities
        self._in_use = in_use
        self.ownership = Ownership()
        # Read at each scrape: what the node believes now, which lapses with the leases even
        # while a keeper round hangs on a database that stopped answering.
        LEASES_HELD.set_function(lambda: len(self.ownership.fence()))
        self._transact = transact
        self._settings = settings
        self._incarnation = str(uuid.uuid4())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def start(self) -> None:
        """Takes a first round synchronously (a lone node owns its region at once), then keeps going.

        Refuses to start when a live node elsewhere already uses this node id: two processes
        under one id would take the same leases from each other on every heartbeat. A
        restart at the same address is the same node coming back, and goes ahead. A node
        SIGKILLed a moment ago at another address (a restart on a new port) still looks live
        until its membership lapses, so the check waits out one membership lifetime: a dead
        node's row lapses within it, a live one's heartbeats keep it.
        """
        deadline = time.monotonic() + self._settings.lease_ttl_seconds + self._settings.heartbeat_interval_seconds
        other = self._other_live_member()
        while other is not None and time.monotonic() < deadline:
            self._stop.wait(self._settings.heartbeat_interval_seconds)
            other = self._other_live_member()
        if other is not None:
            raise NodeIdInUse(
                f"node id {self.node_id} is in use by a live node at {other.address} "
                f"(heartbeat {other.heartbeat_age_seconds:.1f} s ago); give this node another --node-id"
            )
        self.tick()
        self._thread.start()

    def _other_live_member(self) -> leases.Member | None:
        other = self._transact(lambda conn: leases.live_member(conn, self.node_id))
        return other if other is not None and other.address != self.address else None

    def stop(self, *, release: bool = True) -> None:
        """Stops renewing; with ``release`` hands every lease back and leaves membership at once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._settings.lease_ttl_seconds)
        held = self.ownership.fence()
        self.ownership.replace({})
        if release:
            try:
                self._transact(lambda conn: self._leave(conn, held))
            except Exception:  # noqa: BLE001 - best effort: the leases lapse by themselves within the TTL
                _log.warning("could not hand back leases on stop; they lapse within %.1f s", self._settings.lease_ttl_seconds)

    def _leave(self, conn: Connection, held: Fence) -> None:
        leases.release(conn, node_id=self.node_id, fence=held)
        leases.leave(conn, node_id=self.node_id, incarnation=self._incarnation)

    def tick(self) -> Changes:
        """One round: heartbeat, renew, hand over, acquire. Returns what changed."""
        ttl = self._settings.lease_ttl_seconds
        self._transact(
            lambda conn: leases.heartbeat(
                conn,
                node_id=self.node_id,
                region=self.region,
                address=self.address,
                metrics_address=self.metrics_address,
                incarnation=self._incarnation,
                ttl_seconds=ttl,
                capabilities=self.capabilities,
            )
        )
        basecamps, owners = self._transact(self._candidates)
        proposal = propose_owners([m.node_id for m in owners], basecamps)
        held = dict(self.ownership.fence())
        keep = {b: e for b, e in held.items() if proposal.get(b) == self.node_id}
        give = {b: e for b, e in held.items() if b not in keep}
        # Stop writing for a basecamp before handing it back, never after.
        self.ownership.replace(keep)
        if give:
            self._transact(lambda conn: leases.release(conn, node_id=self.node_id, fence=give))
        # Every lease renewed or taken from here on expires no sooner than this, by our clock:
        # the database stamps it in a transaction that starts after this instant.
        valid_until = time.monotonic() + ttl
        renewed = self._transact(lambda conn: leases.renew(conn, node_id=self.node_id, fence=keep, ttl_seconds=ttl))
        wanted = [b for b, owner in proposal.items() if owner == self.node_id and b not in renewed]
        acquired = self._transact(lambda conn: leases.acquire(conn, node_id=self.node_id, basecamp_ids=wanted, ttl_seconds=ttl))
        self.ownership.replace({**renewed, **acquired}, valid_until=valid_until)
        changes = Changes(acquired=acquired, released=sorted(give), lost=sorted(set(keep) - set(renewed)))
        for change, count in (("acquired", len(changes.acquired)), ("handed_over", len(changes.released)), ("lost", len(changes.lost))):
            if count:
                LEASE_CHANGES.labels(change).inc(count)
        if changes.acquired or changes.released or changes.lost:
            _log.info(
                "node %s leases: acquired %s, handed over %s, lost %s",
                self.node_id, changes.acquired, changes.released, changes.lost,
            )
        return changes

    def _candidates(self, conn: Connection) -> tuple[list[str], list[leases.Member]]:
        """The region's basecamps, and the live members eligible to own them."""
        members = leases.live_members(conn, self.region)
        basecamps = leases.region_basecamps(conn, self.region)
        # Only what some member lacks can make a member ineligible: with every member
        # equal (the usual case) this costs no query.
        everyone = [m.capabilities for m in members]
        lacking = frozenset().union(*everyone) - frozenset.intersection(*everyone) if members else frozenset()
        in_use = self._in_use(conn, lacking) if self._in_use is not None and lacking else frozenset()
        return basecamps, eligible_owners(members, in_use)

    def _run(self) -> None:
        while not self._stop.wait(self._settings.heartbeat_interval_seconds):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a failed round must not kill the keeper
                # The database is unreachable or refused: keep the view (writes are fenced by
                # the database anyway) and try again next round.
                _log.warning("lease round of node %s failed; retrying in %.1f s", self.node_id,
                             self._settings.heartbeat_interval_seconds, exc_info=True)
