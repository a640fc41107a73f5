"""The desk API: BookingService calls written once, sent to one node or routed by owner.

:class:`BookingClient` talks to one node (a test, a benchmark, a demo that knows its
node). :class:`ClusterClient` talks to the whole cluster from any seed addresses, and
each call goes to the node that serves it (:mod:`.route`, :mod:`.discovery`). Both
honour a deadline per call and retry only what is safe to retry; the requests come from
:mod:`.requests`, so a retry resends the same idempotency key (invariant 7).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import grpc

from ridgeline.routing import requests
from ridgeline.routing.discovery import ClusterView
from ridgeline.routing.retry import RetryPolicy
from ridgeline.routing.route import DirectRoute, OwnerRoute, Route
from ridgeline.trust.credentials import Transport
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import cluster_pb2 as cpb


class DeskClient:
    """The BookingService calls of a desk, over a :class:`.route.Route`."""

    def __init__(self, route: Route) -> None:
        self._route = route

    def close(self) -> None:
        self._route.close()

    def __enter__(self) -> DeskClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads

    def list_basecamps(self, region: str | None = None) -> pb.ListBasecampsResponse:
        """Every basecamp the client reaches (routed: the cluster's, or one region's), region by region."""
        replies = self._route.read_each_region(lambda stub: stub.ListBasecamps, pb.ListBasecampsRequest(), region)
        return pb.ListBasecampsResponse(basecamps=[basecamp for reply in replies for basecamp in reply.basecamps])

    def availability(self, basecamp_id: str, start: date, end: date, resource_id: str = "") -> pb.GetAvailabilityResponse:
        request = requests.availability_request(basecamp_id, start, end, resource_id)
        return self._route.read(lambda stub: stub.GetAvailability, request, basecamp_id=basecamp_id)

    def get_booking(self, booking_id: str) -> pb.Booking:
        return self._route.get_booking(booking_id)

    def list_bookings(self, request: pb.ListBookingsRequest, region: str | None = None) -> pb.ListBookingsResponse:
        """Bookings of the request's basecamp's region, or (routed) of ``region``."""
        return self._route.read(lambda stub: stub.ListBookings, request, basecamp_id=request.basecamp_id or None, region=region)

    # ------------------------------------------------------------------ writes

    def place_hold(
        self,
        basecamp_id: str,
        resource_id: str,
        start: date,
        end: date,
        party_size: int,
        customer_id: str,
        *,
        hold_ttl_seconds: int = 0,
        idempotency_key: str | None = None,
    ) -> pb.Booking:
        request = requests.hold_request(
            basecamp_id, resource_id, start, end, party_size, customer_id, hold_ttl_seconds=hold_ttl_seconds, idempotency_key=idempotency_key
        )
        return self._route.write(lambda stub: stub.PlaceHold, request, basecamp_id)

    def book(
        self,
        basecamp_id: str,
        resource_id: str,
        start: date,
        end: date,
        party_size: int,
        customer_id: str,
        *,
        hold_ttl_seconds: int = 0,
        wait: bool = False,
        idempotency_key: str | None = None,
    ) -> pb.Booking:
        """A hold that settlement charges and confirms; ``wait`` returns once it is settled."""
        request = requests.book_request(
            basecamp_id, resource_id, start, end, party_size, customer_id,
            hold_ttl_seconds=hold_ttl_seconds, wait=wait, idempotency_key=idempotency_key,
        )
        return self._route.write(lambda stub: stub.Book, request, basecamp_id)

    def confirm(self, booking_id: str, *, idempotency_key: str | None = None) -> pb.Booking:
        request = requests.confirm_request(booking_id, idempotency_key=idempotency_key)
        return self._route.write_booking(lambda stub: stub.ConfirmBooking, request, booking_id)

    def release(self, booking_id: str, *, reason: str = "", idempotency_key: str | None = None) -> pb.Booking:
        request = requests.release_request(booking_id, reason=reason, idempotency_key=idempotency_key)
        return self._route.write_booking(lambda stub: stub.ReleaseHold, request, booking_id)

    def cancel(self, booking_id: str, *, reason: str = "", idempotency_key: str | None = None) -> pb.Booking:
        request = requests.cancel_request(booking_id, reason=reason, idempotency_key=idempotency_key)
        return self._route.write_booking(lambda stub: stub.CancelBooking, request, booking_id)


class BookingClient(DeskClient):
    """One node's BookingService over one channel; each try gets all the time left."""

    def __init__(
        self,
        target: str,
        *,
        transport: Transport,
        timeout_seconds: float = 10.0,
        attempts_max: int = 5,
        backoff_base_seconds: float = 0.05,
        backoff_cap_seconds: float = 1.0,
    ) -> None:
        self.target = target
        retry = RetryPolicy(attempts_max, backoff_base_seconds, backoff_cap_seconds)
        super().__init__(DirectRoute(target, transport=transport, timeout_seconds=timeout_seconds, retry=retry))

    def __enter__(self) -> BookingClient:
        return self


class ClusterClient(DeskClient):
    """BookingService and ClusterService of a whole cluster, routed per basecamp."""

    def __init__(
        self,
        seeds: Sequence[str],
        *,
        transport: Transport,
        timeout_seconds: float = 10.0,
        attempts_max: int = 8,
        backoff_base_seconds: float = 0.05,
        backoff_cap_seconds: float = 1.0,
        hops_max: int = 4,
        dial: Mapping[str, str] | None = None,
    ) -> None:
        """``dial`` maps a node address to the address to connect to instead (a proxy on the
        path, e.g. a drill's fault proxy); the cluster's view keeps the nodes' own addresses."""
        self._view = ClusterView(seeds, transport=transport, timeout_seconds=timeout_seconds, dial=dial)
        retry = RetryPolicy(attempts_max, backoff_base_seconds, backoff_cap_seconds)
        super().__init__(OwnerRoute(self._view, timeout_seconds=timeout_seconds, retry=retry, hops_max=hops_max))

    def __enter__(self) -> ClusterClient:
        return self

    # ------------------------------------------------------------------ the cluster view

    def cluster_info(self) -> list[cpb.ClusterInfo]:
        """A fresh ClusterInfo from one node of every region reachable from the seeds."""
        return self._view.cluster_info()

    def regions(self) -> list[str]:
        return self._view.regions()

    def region_member(self, region: str) -> str:
        """Any live node of ``region`` (for calls any member answers, e.g. an operator's reads); ClusterUnreachable when none is known."""
        self.regions()  # discovers the cluster unless its view is cached
        return self._view.any_member(region)

    def region_of(self, basecamp_id: str) -> str:
        """The basecamp's region (raises UnknownBasecamp, or ClusterUnreachable when a region did not answer)."""
        return self._view.region_of(basecamp_id)

    # ------------------------------------------------------------------ for callers with their own stubs

    def owner_address(self, basecamp_id: str) -> str:
        """Where a write for ``basecamp_id`` goes now: its owner, else any live node of its region
        (which answers with the owner, or UNAVAILABLE while the basecamp is between owners)."""
        return self._view.owner(self.region_of(basecamp_id), basecamp_id)

    def redirected(self, error: grpc.RpcError, basecamp_id: str) -> bool:
        """Learns from a refused call to ``owner_address``: True when the error named the owner
        (call again at once), False after UNAVAILABLE dropped the address (back off)."""
        return self._view.redirected(error, basecamp_id)

    def channel(self, address: str) -> grpc.Channel:
        """The client's channel to ``address`` (shared, closed with the client)."""
        return self._view.channel(address)
