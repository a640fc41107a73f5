"""The routing client: calls the cluster, not a node.

A desk or planner gives it one or more seed addresses (any node of any region). It asks
a seed for ClusterInfo, which names the region's members and every basecamp's owner and
lists the other regions' seeds, and caches that view. Then:

* a write for a basecamp goes to the basecamp's owner; a FAILED_PRECONDITION carrying an
  OwnerHint (ownership moved) updates the cache and goes to the hinted owner at once;
* UNAVAILABLE (a dead node, a basecamp between owners during a failover) refreshes the
  region's view from another node and retries with capped, jittered backoff;
* reads go to any live node of the basecamp's region, trying the next on UNAVAILABLE;
* a booking id is resolved to its basecamp once (GetBooking in each region) and cached.

Every retry of a mutating call reuses its idempotency key, and nothing is retried past
the caller's deadline, so a retry after a lost reply never has a second effect.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

import grpc
from grpc_status import rpc_status

from ridgeline.routing.client import book_request, hold_request, new_idempotency_key, night_range
from ridgeline.routing.retry import RetryPolicy
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import booking_pb2_grpc as pb_grpc
from ridgeline.v1 import cluster_pb2 as cpb
from ridgeline.v1 import cluster_pb2_grpc as cpb_grpc

Response = TypeVar("Response")

#: Below twice this much time left, a try gets all of it (no per-try split).
_PER_TRY_FLOOR_SECONDS = 0.25

#: Booking ids whose basecamp the client remembers (most recently used).
_BOOKING_CACHE_MAX = 10_000


class ClusterUnreachable(Exception):
    """No seed or member answered ClusterInfo; the message lists what was tried."""


class UnknownBasecamp(LookupError):
    """No region of the cluster lists the basecamp."""


def owner_hint(error: grpc.RpcError) -> cpb.OwnerHint | None:
    """The OwnerHint in a refused call's status details, if there is one."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(cpb.OwnerHint.DESCRIPTOR):
            hint = cpb.OwnerHint()
            detail.Unpack(hint)
            return hint
    return None


@dataclass
class _Region:
    members: list[str] = field(default_factory=list)
    owners: dict[str, str] = field(default_factory=dict)  # basecamp_id -> address ("" = none)


class ClusterClient:
    """BookingService and ClusterService of a whole cluster, routed per basecamp."""

    def __init__(
        self,
        seeds: Sequence[str],
        *,
        timeout_seconds: float = 10.0,
        attempts_max: int = 8,
        backoff_base_seconds: float = 0.05,
        backoff_cap_seconds: float = 1.0,
        hops_max: int = 4,
        dial: Mapping[str, str] | None = None,
    ) -> None:
        """``dial`` maps a node address to the address to connect to instead (a proxy on the
        path, e.g. a drill's fault proxy); the cluster's view keeps the nodes' own addresses."""
        if not seeds:
            raise ValueError("a cluster client needs at least one seed address")
        self._seeds = list(dict.fromkeys(seeds))
        self._timeout_seconds = timeout_seconds
        self._retry = RetryPolicy(attempts_max, backoff_base_seconds, backoff_cap_seconds)
        self._hops_max = hops_max
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._dial = dict(dial or {})
        self._booking_stubs: dict[str, pb_grpc.BookingServiceStub] = {}
        self._regions: dict[str, _Region] = {}
        self._region_seeds: dict[str, list[str]] = {}
        self._region_of: dict[str, str] = {}
        self._booking_basecamp: OrderedDict[str, str] = OrderedDict()
        #: Regions named by seeds that did not answer the last discovery.
        self._unreached: list[str] = []

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
            self._booking_stubs = {}
        for channel in channels:
            channel.close()

    def __enter__(self) -> ClusterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the cluster view

    def cluster_info(self) -> list[cpb.ClusterInfo]:
        """A fresh ClusterInfo from one node of every region reachable from the seeds."""
        return self._discover(time.monotonic() + self._timeout_seconds)

    def regions(self) -> list[str]:
        self._ensure_view(time.monotonic() + self._timeout_seconds)
        return sorted(self._regions)

    def region_of(self, basecamp_id: str) -> str:
        deadline = time.monotonic() + self._timeout_seconds
        self._ensure_view(deadline)
        if basecamp_id not in self._region_of:
            self._discover(deadline)
        if basecamp_id in self._region_of:
            return self._region_of[basecamp_id]
        if self._unreached:
            raise ClusterUnreachable(f"{basecamp_id!r} is in no region that answered; unreachable: {', '.join(self._unreached)}")
        raise UnknownBasecamp(f"no region of the cluster has a basecamp {basecamp_id!r}")

    # ------------------------------------------------------------------ for callers with their own stubs

    def owner_address(self, basecamp_id: str) -> str:
        """Where a write for ``basecamp_id`` goes now: its owner, else any live node of its region
        (which answers with the owner, or UNAVAILABLE while the basecamp is between owners)."""
        return self._owner(self.region_of(basecamp_id), basecamp_id)

    def redirected(self, error: grpc.RpcError, basecamp_id: str) -> bool:
        """Learns from a refused call to ``owner_address``: an owner hint is cached (True: call
        again at once); UNAVAILABLE drops the address and refreshes the region (False: back off)."""
        region = self._region_of.get(basecamp_id)
        if region is None:
            return False
        code = error.code()
        if code is grpc.StatusCode.FAILED_PRECONDITION:
            hint = owner_hint(error)
            if hint is not None and hint.address:
                self._set_owner(region, basecamp_id, hint.address)
                return True
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            address = self._regions[region].owners.get(basecamp_id) or ""
            if address:
                self._forget(region, address)
            self._refresh_region(region, time.monotonic() + self._timeout_seconds, avoid=address)
        return False

    def channel(self, address: str) -> grpc.Channel:
        """The client's channel to ``address`` (shared, closed with the client)."""
        return self._channel(address)

    # ------------------------------------------------------------------ reads

    def list_basecamps(self, region: str | None = None) -> pb.ListBasecampsResponse:
        """Every basecamp of the cluster (or of one region), region by region."""
        deadline = time.monotonic() + self._timeout_seconds
        regions = [region] if region else self.regions()
        basecamps = []
        for name in regions:
            reply = self._read(name, lambda stub: stub.ListBasecamps, pb.ListBasecampsRequest(), deadline)
            basecamps.extend(reply.basecamps)
        return pb.ListBasecampsResponse(basecamps=basecamps)

    def availability(self, basecamp_id: str, start: date, end: date, resource_id: str = "") -> pb.GetAvailabilityResponse:
        request = pb.GetAvailabilityRequest(basecamp_id=basecamp_id, resource_id=resource_id, nights=night_range(start, end))
        deadline = time.monotonic() + self._timeout_seconds
        return self._read(self.region_of(basecamp_id), lambda stub: stub.GetAvailability, request, deadline)

    def get_booking(self, booking_id: str) -> pb.Booking:
        deadline = time.monotonic() + self._timeout_seconds
        return self._find_booking(booking_id, deadline)

    def list_bookings(self, request: pb.ListBookingsRequest, region: str | None = None) -> pb.ListBookingsResponse:
        """Bookings of one basecamp's region (the request's basecamp), or of ``region``."""
        deadline = time.monotonic() + self._timeout_seconds
        name = region or (self.region_of(request.basecamp_id) if request.basecamp_id else None)
        if name is None:
            raise ValueError("list_bookings needs a basecamp in the request or a region")
        return self._read(name, lambda stub: stub.ListBookings, request, deadline)

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
        request = hold_request(
            basecamp_id, resource_id, start, end, party_size, customer_id, hold_ttl_seconds=hold_ttl_seconds, idempotency_key=idempotency_key
        )
        booking = self._write(basecamp_id, lambda stub: stub.PlaceHold, request)
        self._remember_booking(booking.booking_id, booking.basecamp_id)
        return booking

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
        """A hold that the owner's settlement charges and confirms; ``wait`` returns once settled."""
        request = book_request(
            basecamp_id, resource_id, start, end, party_size, customer_id,
            hold_ttl_seconds=hold_ttl_seconds, wait=wait, idempotency_key=idempotency_key,
        )
        booking = self._write(basecamp_id, lambda stub: stub.Book, request)
        self._remember_booking(booking.booking_id, booking.basecamp_id)
        return booking

    def confirm(self, booking_id: str, *, idempotency_key: str | None = None) -> pb.Booking:
        request = pb.ConfirmBookingRequest(idempotency_key=idempotency_key or new_idempotency_key(), booking_id=booking_id)
        return self._write_booking(booking_id, lambda stub: stub.ConfirmBooking, request)

    def release(self, booking_id: str, *, reason: str = "", idempotency_key: str | None = None) -> pb.Booking:
        request = pb.ReleaseHoldRequest(idempotency_key=idempotency_key or new_idempotency_key(), booking_id=booking_id, reason=reason)
        return self._write_booking(booking_id, lambda stub: stub.ReleaseHold, request)

    def cancel(self, booking_id: str, *, reason: str = "", idempotency_key: str | None = None) -> pb.Booking:
        request = pb.CancelBookingRequest(idempotency_key=idempotency_key or new_idempotency_key(), booking_id=booking_id, reason=reason)
        return self._write_booking(booking_id, lambda stub: stub.CancelBooking, request)

    # ------------------------------------------------------------------ routing

    def _write_booking(self, booking_id: str, method: Callable[[pb_grpc.BookingServiceStub], Callable[..., Response]], request: object) -> Response:
        basecamp_id = self._booking_basecamp.get(booking_id)
        if basecamp_id is None:
            basecamp_id = self._find_booking(booking_id, time.monotonic() + self._timeout_seconds).basecamp_id
        return self._write(basecamp_id, method, request)

    def _write(self, basecamp_id: str, method: Callable[[pb_grpc.BookingServiceStub], Callable[..., Response]], request: object) -> Response:
        """Calls the basecamp's owner, following owner hints and riding out failovers."""
        deadline = time.monotonic() + self._timeout_seconds
        region = self.region_of(basecamp_id)
        return self._routed(region, lambda: self._owner(region, basecamp_id), method, request, deadline, hinted=basecamp_id)

    def _read(self, region: str, method: Callable[[pb_grpc.BookingServiceStub], Callable[..., Response]], request: object, deadline: float) -> Response:
        """Calls any live node of the region; UNAVAILABLE moves on to another one."""
        self._ensure_view(deadline)
        return self._routed(region, lambda: self._any_member(region), method, request, deadline, hinted=None)

    def _routed(
        self,
        region: str,
        pick: Callable[[], str],
        method: Callable[[pb_grpc.BookingServiceStub], Callable[..., Response]],
        request: object,
        deadline: float,
        *,
        hinted: str | None,
    ) -> Response:
        """The retry loop: owner hints for ``hinted`` (a basecamp) are followed at once, at
        most ``hops_max`` times; UNAVAILABLE and ABORTED back off within the deadline, and
        UNAVAILABLE also drops the address and refreshes the region's view.

        Each try gets at most half the time left (a per-try timeout): a node that hangs
        instead of refusing (paused, overloaded, partitioned) costs one try, not the whole
        deadline, and is dropped like an unavailable one. Retrying a write after a try
        timed out is safe: the same idempotency key answers the first result if it landed.
        """
        attempt, hops = 0, 0
        while True:
            target = pick()
            remaining = deadline - time.monotonic()
            per_try = remaining / 2 if remaining > 2 * _PER_TRY_FLOOR_SECONDS else remaining
            try:
                return method(self._booking_stub(target))(request, timeout=max(per_try, 0.001))
            except grpc.RpcError as error:
                code = error.code()
                hint = owner_hint(error) if hinted and code is grpc.StatusCode.FAILED_PRECONDITION else None
                if hinted and hint is not None and hint.address and hops < self._hops_max:
                    hops += 1
                    self._set_owner(region, hinted, hint.address)
                    continue
                hung = code is grpc.StatusCode.DEADLINE_EXCEEDED
                if code is grpc.StatusCode.UNAVAILABLE or hung:
                    self._forget(region, target)
                if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED) and not (hung and time.monotonic() < deadline):
                    raise
                attempt += 1
                pause = 0.0 if hung else self._retry.backoff_seconds(attempt)
                if attempt >= self._retry.attempts_max or time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)
                if code is not grpc.StatusCode.ABORTED:
                    self._refresh_region(region, deadline, avoid=target)

    def _find_booking(self, booking_id: str, deadline: float) -> pb.Booking:
        """GetBooking in the booking's region, found by asking each region once."""
        request = pb.GetBookingRequest(booking_id=booking_id)
        known = self._booking_basecamp.get(booking_id)
        regions = [self.region_of(known)] if known else self.regions()
        last: grpc.RpcError | None = None
        for region in regions:
            try:
                booking = self._read(region, lambda stub: stub.GetBooking, request, deadline)
            except grpc.RpcError as error:
                if error.code() is not grpc.StatusCode.NOT_FOUND:
                    raise
                last = error
                continue
            self._remember_booking(booking_id, booking.basecamp_id)
            return booking
        assert last is not None, "the cluster has at least one region"
        raise last

    # ------------------------------------------------------------------ the cached view

    def _ensure_view(self, deadline: float) -> None:
        if not self._regions:
            self._discover(deadline)

    def _discover(self, deadline: float) -> list[cpb.ClusterInfo]:
        """Asks every known address for ClusterInfo at once, then the regions the answers name.

        Asking in parallel means one hung node (paused, partitioned) costs nothing but its
        own answer. Raises ClusterUnreachable when no node answered, or when a region the
        answers name could not be reached (its basecamps would look unknown otherwise).
        """
        answers: dict[str, cpb.ClusterInfo] = {}
        failures: dict[str, str] = {}
        asked: set[str] = set()
        wave = list(dict.fromkeys(list(self._seeds) + [a for addresses in self._region_seeds.values() for a in addresses]))
        while wave:
            asked.update(wave)
            calls = {
                address: self._cluster_stub(address).GetClusterInfo.future(cpb.GetClusterInfoRequest(), timeout=_remaining(deadline))
                for address in wave
            }
            for address, call in calls.items():
                try:
                    info = call.result()
                except grpc.RpcError as error:
                    failures[address] = error.code().name
                    continue
                if info.region not in answers:
                    answers[info.region] = info
                    self._absorb(info)
            named = {seeds.region: seeds.addresses for info in answers.values() for seeds in info.regions}
            wave = [a for region, addresses in named.items() if region not in answers for a in addresses if a not in asked]
        # A region is unreached when its seeds, or any seed of unknown region, did not answer.
        self._unreached = sorted(set(self._region_seeds) - set(answers)) + [f"seed {a}" for a in sorted(failures)]
        if not answers:
            raise ClusterUnreachable("no node answered ClusterInfo (" + "; ".join(f"{a}: {c}" for a, c in failures.items()) + ")")
        return [answers[r] for r in sorted(answers)]

    def _refresh_region(self, region: str, deadline: float, *, avoid: str) -> None:
        candidates = [a for a in self._regions.get(region, _Region()).members + self._region_seeds.get(region, []) if a != avoid]
        for address in dict.fromkeys(candidates):
            try:
                info = self._cluster_stub(address).GetClusterInfo(cpb.GetClusterInfoRequest(), timeout=_remaining(deadline, cap=1.0))
            except grpc.RpcError:
                continue
            if info.region == region:
                self._absorb(info)
                return

    def _absorb(self, info: cpb.ClusterInfo) -> None:
        with self._lock:
            self._regions[info.region] = _Region(
                members=[m.address for m in info.members],
                owners={o.basecamp_id: o.address for o in info.owners},
            )
            for owner in info.owners:
                self._region_of[owner.basecamp_id] = info.region
            for seeds in info.regions:
                self._region_seeds[seeds.region] = list(seeds.addresses)

    def _owner(self, region: str, basecamp_id: str) -> str:
        return self._regions[region].owners.get(basecamp_id) or self._any_member(region)

    def _any_member(self, region: str) -> str:
        view = self._regions.get(region)
        candidates = (view.members if view else []) or self._region_seeds.get(region, [])
        if not candidates:
            raise ClusterUnreachable(f"no live node known in region {region}")
        return random.choice(candidates)

    def _set_owner(self, region: str, basecamp_id: str, address: str) -> None:
        with self._lock:
            self._regions[region].owners[basecamp_id] = address

    def _forget(self, region: str, address: str) -> None:
        """Stops sending to an address that answered UNAVAILABLE until a refresh lists it again."""
        with self._lock:
            view = self._regions.get(region)
            if view is None:
                return
            if len(view.members) > 1 and address in view.members:
                view.members.remove(address)
            for basecamp_id, owner in view.owners.items():
                if owner == address:
                    view.owners[basecamp_id] = ""

    def _remember_booking(self, booking_id: str, basecamp_id: str) -> None:
        with self._lock:
            self._booking_basecamp[booking_id] = basecamp_id
            self._booking_basecamp.move_to_end(booking_id)
            while len(self._booking_basecamp) > _BOOKING_CACHE_MAX:
                self._booking_basecamp.popitem(last=False)

    def _channel(self, address: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                channel = self._channels[address] = grpc.insecure_channel(self._dial.get(address, address))
            return channel

    def _booking_stub(self, address: str) -> pb_grpc.BookingServiceStub:
        stub = self._booking_stubs.get(address)
        if stub is None:
            stub = self._booking_stubs[address] = pb_grpc.BookingServiceStub(self._channel(address))
        return stub

    def _cluster_stub(self, address: str) -> cpb_grpc.ClusterServiceStub:
        return cpb_grpc.ClusterServiceStub(self._channel(address))


def _remaining(deadline: float, cap: float | None = None) -> float:
    remaining = max(deadline - time.monotonic(), 0.001)
    return remaining if cap is None else min(remaining, cap)
