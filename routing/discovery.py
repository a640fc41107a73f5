"""The cluster as a routing client sees it: who serves each basecamp, learned from ClusterInfo.

A desk or planner gives one or more seed addresses (any node of any region). The view
asks the seeds for ClusterInfo, which names the region's members and every basecamp's
owner and lists the other regions' seeds, and caches that. It learns as calls fail: an
OwnerHint (ownership moved) replaces the cached owner, and an address that answered
UNAVAILABLE is dropped until a refresh of its region lists it again. A booking id's
basecamp is remembered once found. :class:`.route.OwnerRoute` sends calls by this view.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_status import rpc_status

from ridgeline.trust.credentials import Transport
from ridgeline.v1 import booking_pb2_grpc as pb_grpc
from ridgeline.v1 import cluster_pb2 as cpb
from ridgeline.v1 import cluster_pb2_grpc as cpb_grpc

#: Booking ids whose basecamp the view remembers (most recently used).
_BOOKING_CACHE_MAX = 10_000


class ClusterUnreachable(Exception):
    """No seed or member answered ClusterInfo; the message lists what was tried."""


class UnknownBasecamp(LookupError):
    """No region of the cluster lists the basecamp."""


def failure_text(failure: Exception) -> str:
    """A failed call as people read it: ``NOT_FOUND: no booking …``, why the cluster did not
    answer, or, for anything else, the exception's type and message (its type is the clue)."""
    if isinstance(failure, grpc.RpcError) and isinstance(failure, grpc.Call):
        return f"{failure.code().name}: {failure.details()}"
    if isinstance(failure, (ClusterUnreachable, UnknownBasecamp)):
        return str(failure)
    return f"{type(failure).__name__}: {failure}"


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


class ClusterView:
    """The cached view of a whole cluster, and the channels to its nodes."""

    def __init__(self, seeds: Sequence[str], *, transport: Transport, timeout_seconds: float, dial: Mapping[str, str] | None = None) -> None:
        """``dial`` maps a node address to the address to connect to instead (a proxy on the
        path, e.g. a drill's fault proxy); the view keeps the nodes' own addresses."""
        if not seeds:
            raise ValueError("a cluster client needs at least one seed address")
        self._seeds = list(dict.fromkeys(seeds))
        self._transport = transport
        self._timeout_seconds = timeout_seconds
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

    def close(self) -> None:
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
            self._booking_stubs = {}
        for channel in channels:
            channel.close()

    # ------------------------------------------------------------------ questions

    def cluster_info(self) -> list[cpb.ClusterInfo]:
        """A fresh ClusterInfo from one node of every region reachable from the seeds."""
        return self.discover(time.monotonic() + self._timeout_seconds)

    def regions(self) -> list[str]:
        self.ensure(time.monotonic() + self._timeout_seconds)
        return sorted(self._regions)

    def region_of(self, basecamp_id: str) -> str:
        deadline = time.monotonic() + self._timeout_seconds
        self.ensure(deadline)
        if basecamp_id not in self._region_of:
            self.discover(deadline)
        if basecamp_id in self._region_of:
            return self._region_of[basecamp_id]
        if self._unreached:
            raise ClusterUnreachable(f"{basecamp_id!r} is in no region that answered; unreachable: {', '.join(self._unreached)}")
        raise UnknownBasecamp(f"no region of the cluster has a basecamp {basecamp_id!r}")

    def owner(self, region: str, basecamp_id: str) -> str:
        """The basecamp's cached owner, else any live node of its region."""
        return self._regions[region].owners.get(basecamp_id) or self.any_member(region)

    def any_member(self, region: str) -> str:
        view = self._regions.get(region)
        candidates = (view.members if view else []) or self._region_seeds.get(region, [])
        if not candidates:
            raise ClusterUnreachable(f"no live node known in region {region}")
        return random.choice(candidates)

    def basecamp_of_booking(self, booking_id: str) -> str | None:
        return self._booking_basecamp.get(booking_id)

    # ------------------------------------------------------------------ learning

    def ensure(self, deadline: float) -> None:
        """Discovers the cluster unless a view is cached already."""
        if not self._regions:
            self.discover(deadline)

    def discover(self, deadline: float) -> list[cpb.ClusterInfo]:
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

    def refresh_region(self, region: str, deadline: float, *, avoid: str) -> None:
        """A fresh view of one region from any of its nodes but ``avoid``."""
        candidates = [a for a in self._regions.get(region, _Region()).members + self._region_seeds.get(region, []) if a != avoid]
        for address in dict.fromkeys(candidates):
            try:
                info = self._cluster_stub(address).GetClusterInfo(cpb.GetClusterInfoRequest(), timeout=_remaining(deadline, cap=1.0))
            except grpc.RpcError:
                continue
            if info.region == region:
                self._absorb(info)
                return

    def redirected(self, error: grpc.RpcError, basecamp_id: str) -> bool:
        """Learns from a refused call to the basecamp's owner: an owner hint is cached (True:
        call again at once); UNAVAILABLE drops the address and refreshes the region (False:
        back off)."""
        region = self._region_of.get(basecamp_id)
        if region is None:
            return False
        code = error.code()
        if code is grpc.StatusCode.FAILED_PRECONDITION:
            hint = owner_hint(error)
            if hint is not None and hint.address:
                self.set_owner(region, basecamp_id, hint.address)
                return True
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            address = self._regions[region].owners.get(basecamp_id) or ""
            if address:
                self.forget(region, address)
            self.refresh_region(region, time.monotonic() + self._timeout_seconds, avoid=address)
        return False

    def set_owner(self, region: str, basecamp_id: str, address: str) -> None:
        with self._lock:
            self._regions[region].owners[basecamp_id] = address

    def forget(self, region: str, address: str) -> None:
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

    def remember_booking(self, booking_id: str, basecamp_id: str) -> None:
        with self._lock:
            self._booking_basecamp[booking_id] = basecamp_id
            self._booking_basecamp.move_to_end(booking_id)
            while len(self._booking_basecamp) > _BOOKING_CACHE_MAX:
                self._booking_basecamp.popitem(last=False)

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

    # ------------------------------------------------------------------ channels

    def channel(self, address: str) -> grpc.Channel:
        """The view's channel to ``address`` (shared, closed with the view)."""
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                dialled = self._dial.get(address, address)
                # Through a proxy the certificate to check is still the node's own.
                options = [("grpc.ssl_target_name_override", address.rsplit(":", 1)[0])] if dialled != address else []
                channel = self._channels[address] = self._transport.channel(dialled, options)
            return channel

    def booking_stub(self, address: str) -> pb_grpc.BookingServiceStub:
        stub = self._booking_stubs.get(address)
        if stub is None:
            stub = self._booking_stubs[address] = pb_grpc.BookingServiceStub(self.channel(address))
        return stub

    def _cluster_stub(self, address: str) -> cpb_grpc.ClusterServiceStub:
        return cpb_grpc.ClusterServiceStub(self.channel(address))


def _remaining(deadline: float, cap: float | None = None) -> float:
    remaining = max(deadline - time.monotonic(), 0.001)
    return remaining if cap is None else min(remaining, cap)
