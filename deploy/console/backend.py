"""The console's one way to the cluster: gRPC clients acting as the person logged in.

Bookings and availability go through the routing client (:class:`ClusterClient`: reads
to any live node of the basecamp's region), treks through the :class:`CoordinatorSet`
(whichever coordinator leads). The console holds no SQL: whatever a page needs and no
RPC gives belongs in a proto first.

Every logged-in person gets a backend of their own (:class:`ConsoleBackends`) whose calls
carry the token they logged in with: the servers authorize each read and each action as
that person, so a desk scoped to its basecamps sees and retries only theirs, by the same
rules (ARCHITECTURE.md §8) that bind it everywhere else, and the actor on record is the
person. The console's own client pair only opens the TLS connection.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from ridgeline.deploy.cluster.cluster_file import ClusterSpec
from ridgeline.deploy.console import cluster_view
from ridgeline.deploy.console.operator_calls import OperatorCalls
from ridgeline.routing import ClusterClient
from ridgeline.routing.coordinator_set import CoordinatorSet
from ridgeline.routing.requests import night_range
from ridgeline.trust import policy
from ridgeline.trust.credentials import Transport
from ridgeline.trust.identity import Identity
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import operator_pb2 as opb

#: Deadline of one page's gRPC calls, seconds: a page answers or says what did not.
CALL_TIMEOUT_SECONDS = 5.0
#: The longest span the availability heat map shows, nights.
HEAT_MAP_NIGHTS_MAX = 62
#: Bookings a search page lists.
SEARCH_PAGE_SIZE = 50
#: People whose backends stay open at once; the least recently seen one beyond is closed
#: (and opened again if they come back), so open channels stay bounded like sessions.
BACKENDS_OPEN_MAX = 32
_LIST_TREKS = policy.grpc_route("ridgeline.v1.TrekService", "ListTreks")


@dataclass(frozen=True)
class BookingSearch:
    """The bookings page's filters, as the form sends them ("" = not filtered)."""

    booking_id: str = ""
    customer_id: str = ""
    region: str = ""
    basecamp_id: str = ""
    state: str = ""
    night: str = ""
    workflow: str = ""
    page_token: str = ""

    def request(self) -> pb.ListBookingsRequest:
        """The ListBookings request; ValueError for a filter that is not one (an unknown state, a bad date)."""
        request = pb.ListBookingsRequest(
            basecamp_id=self.basecamp_id, customer_id=self.customer_id, workflow=self.workflow, page_size=SEARCH_PAGE_SIZE, page_token=self.page_token
        )
        if self.state:
            request.state = pb.BookingState.Value(f"BOOKING_STATE_{self.state.upper()}")
        if self.night:
            night = date.fromisoformat(self.night)
            request.nights.CopyFrom(night_range(night, night + timedelta(days=1)))
        return request


@dataclass(frozen=True)
class HeatCell:
    night: date
    free: int
    capacity: int

    @property
    def share_free(self) -> float:
        return self.free / self.capacity if self.capacity else 0.0


@dataclass(frozen=True)
class HeatRow:
    resource_id: str
    name: str
    cells: tuple[HeatCell, ...]


class ConsoleBackend:
    """The gRPC clients of one person's pages (thread-safe: pages are served from a thread pool)."""

    def __init__(
        self, seeds: list[str], transport: Transport, identity: Identity, *, spec: ClusterSpec | None = None, drills_dir: Path | None = None
    ) -> None:
        """``transport`` carries ``identity``'s token (or is insecure, where nobody is identified)."""
        assert seeds, "the console needs at least one node address"
        self.transport = transport
        self.identity = identity
        self.spec = spec
        self._drills_dir = drills_dir
        self.client = ClusterClient(seeds, transport=transport, timeout_seconds=CALL_TIMEOUT_SECONDS)
        coordinators = [c.listen for c in spec.coordinators()] if spec is not None else []
        self.coordinators = CoordinatorSet(coordinators, transport) if coordinators else None
        self.operator = OperatorCalls(self.client, self.coordinators)
        self._basecamps: list[pb.Basecamp] | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()
        if self.coordinators is not None:
            self.coordinators.close()

    @property
    def follows_treks(self) -> bool:
        """Whether this person may list treks (SREs do; a desk's scope is basecamps, and a trek spans regions)."""
        rule = policy.rule_for(_LIST_TREKS)
        return not self.transport.secure or (rule is not None and self.identity.role in rule.roles)

    def overview(self) -> cluster_view.ClusterOverview:
        return cluster_view.overview(self.client, self.spec, self.transport, self._drills_dir)

    def regions(self) -> list[str]:
        return sorted(self.client.regions())

    def basecamps(self) -> list[pb.Basecamp]:
        """The catalog, read once (it changes with a deploy, not at run time)."""
        with self._lock:
            if self._basecamps is None:
                self._basecamps = sorted(self.client.list_basecamps().basecamps, key=lambda b: (b.region, b.basecamp_id))
            return self._basecamps

    def booking(self, booking_id: str) -> pb.Booking:
        return self.client.get_booking(booking_id)

    def timeline(self, booking: pb.Booking) -> opb.BookingTimeline:
        """The operator API's timeline of a booking (transitions, settlement, charges, refunds, steps, actions)."""
        return self.operator.timeline(self.client.region_of(booking.basecamp_id), booking.booking_id)

    def search(self, search: BookingSearch) -> pb.ListBookingsResponse:
        """One page of bookings matching the filters (a basecamp names its region; else the region chosen)."""
        region = None if search.basecamp_id else (search.region or self.regions()[0])
        return self.client.list_bookings(search.request(), region=region)

    def heat_map(self, basecamp_id: str, start: date, nights: int) -> list[HeatRow]:
        """Per resource of the basecamp, each night's free units out of its capacity."""
        assert 1 <= nights <= HEAT_MAP_NIGHTS_MAX, f"{nights} nights"
        reply = self.client.availability(basecamp_id, start, start + timedelta(days=nights))
        rows = []
        for resource in reply.resources:
            cells = tuple(HeatCell(date(n.night.year, n.night.month, n.night.day), n.free, n.capacity) for n in resource.nights)
            rows.append(HeatRow(resource.resource.resource_id, resource.resource.name, cells))
        return rows


class ConsoleBackends:
    """One :class:`ConsoleBackend` per logged-in person, acting as them (thread-safe).

    A backend is opened at a person's first page, kept while they come back, and closed when
    they log out or when :data:`BACKENDS_OPEN_MAX` others were seen since (its channels go
    with it; the next page opens it again).
    """

    def __init__(self, seeds: list[str], transport: Transport, *, spec: ClusterSpec | None = None, drills_dir: Path | None = None) -> None:
        self._seeds, self._transport, self._spec, self._drills_dir = seeds, transport, spec, drills_dir
        self._open: OrderedDict[str, ConsoleBackend] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, session_id: str, identity: Identity, token: str) -> ConsoleBackend:
        """The backend of the person logged in as ``session_id``, whose calls carry ``token``."""
        with self._lock:
            backend = self._open.get(session_id)
            if backend is not None:
                self._open.move_to_end(session_id)
                return backend
            transport = dataclasses.replace(self._transport, token=token) if self._transport.secure else self._transport
            backend = self._open[session_id] = ConsoleBackend(self._seeds, transport, identity, spec=self._spec, drills_dir=self._drills_dir)
            evicted = [self._open.popitem(last=False)[1] for _ in range(len(self._open) - BACKENDS_OPEN_MAX)]
        for old in evicted:
            old.close()
        return backend

    def end(self, session_id: str) -> None:
        """Closes the backend of a session that ended (logout)."""
        with self._lock:
            backend = self._open.pop(session_id, None)
        if backend is not None:
            backend.close()

    def close(self) -> None:
        with self._lock:
            backends, self._open = list(self._open.values()), OrderedDict()
        for backend in backends:
            backend.close()
