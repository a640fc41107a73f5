"""The console's one way to the cluster: gRPC clients acting as the ``sre`` client identity.

Bookings and availability go through the routing client (:class:`ClusterClient`: reads
to any live node of the basecamp's region), treks through the :class:`CoordinatorSet`
(whichever coordinator leads). The console holds no SQL: whatever a page needs and no
RPC gives belongs in a proto first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from ridgeline.deploy.cluster.cluster_file import ClusterSpec
from ridgeline.deploy.console import cluster_view
from ridgeline.deploy.console.operator_calls import OperatorCalls
from ridgeline.routing import ClusterClient
from ridgeline.routing.coordinator_set import CoordinatorSet
from ridgeline.routing.requests import night_range
from ridgeline.trust.credentials import Transport
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import operator_pb2 as opb

#: Deadline of one page's gRPC calls, seconds: a page answers or says what did not.
CALL_TIMEOUT_SECONDS = 5.0
#: The longest span the availability heat map shows, nights.
HEAT_MAP_NIGHTS_MAX = 62
#: Bookings a search page lists.
SEARCH_PAGE_SIZE = 50


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
    """The gRPC clients of one console process (thread-safe: pages are served from a thread pool)."""

    def __init__(self, seeds: list[str], transport: Transport, *, spec: ClusterSpec | None = None, drills_dir: Path | None = None) -> None:
        assert seeds, "the console needs at least one node address"
        self.transport = transport
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
