"""How the coordinator reaches the node that owns a leg's basecamp.

:class:`Participants` is the seam the protocol uses. :class:`RoutedParticipants` is the
cluster's routing client behind it: each basecamp's region and owner come from
ClusterInfo (one reachable node per region is enough), a "not the owner" answer carries
the owner and is followed at once, and a node that is down is dropped from the view
until the region's lease moves. The coordinator imports nothing from regional/.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from typing import Protocol

import grpc

from ridgeline.global_coordinator.errors import ParticipantsUnreachable
from ridgeline.routing import ClusterClient, ClusterUnreachable, UnknownBasecamp
from ridgeline.trust.credentials import Transport
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

#: How long warming up waits for one node's channel.
WARM_TIMEOUT_SECONDS = 2.0


class Participants(Protocol):
    def region_of(self, basecamp_id: str) -> str | None:
        """The region that serves ``basecamp_id``, or None if no region does (raises
        ParticipantsUnreachable when a region that might serve it did not answer)."""

    def leg_stub(self, region: str, basecamp_id: str) -> tpb_grpc.TrekLegServiceStub:
        """A TrekLegService stub for the node that owns ``basecamp_id`` in ``region``
        (raises ParticipantsUnreachable when no node of the region answers)."""

    def redirected(self, error: grpc.RpcError, basecamp_id: str) -> bool:
        """True when ``error`` named the basecamp's owner: call ``leg_stub`` again at once."""

    def warm(self) -> None:
        """Learns the cluster and opens its channels ahead of need (a follower, before it leads)."""

    def close(self) -> None: ...


class RoutedParticipants:
    """Participants found through the routing client, from any seed nodes of the cluster."""

    def __init__(self, seeds: Sequence[str], *, transport: Transport, timeout_seconds: float = 5.0, dial: Mapping[str, str] | None = None) -> None:
        """``dial``: node address -> address to connect to instead (a fault proxy, for drills)."""
        self._client = ClusterClient(seeds, transport=transport, timeout_seconds=timeout_seconds, dial=dial)
        self._stubs: dict[str, tpb_grpc.TrekLegServiceStub] = {}
        self._lock = threading.Lock()

    def region_of(self, basecamp_id: str) -> str | None:
        try:
            return self._client.region_of(basecamp_id)
        except UnknownBasecamp:
            return None
        except ClusterUnreachable as error:
            raise ParticipantsUnreachable(str(error)) from None

    def leg_stub(self, region: str, basecamp_id: str) -> tpb_grpc.TrekLegServiceStub:
        try:
            address = self._client.owner_address(basecamp_id)
        except (ClusterUnreachable, UnknownBasecamp) as error:
            raise ParticipantsUnreachable(f"no node of {region} answers for {basecamp_id}: {error}") from None
        with self._lock:
            stub = self._stubs.get(address)
            if stub is None:
                stub = self._stubs[address] = tpb_grpc.TrekLegServiceStub(self._client.channel(address))
            return stub

    def redirected(self, error: grpc.RpcError, basecamp_id: str) -> bool:
        return self._client.redirected(error, basecamp_id)

    def warm(self) -> None:
        """Reads every region's members and owners and connects to each owner, so a coordinator
        that takes over does not pay for discovery and TLS handshakes on its first treks."""
        try:
            infos = self._client.cluster_info()
        except ClusterUnreachable:
            return  # the first trek discovers the cluster then
        for owner in {o.address for info in infos for o in info.owners if o.address}:
            with contextlib.suppress(grpc.FutureTimeoutError):
                grpc.channel_ready_future(self._client.channel(owner)).result(timeout=WARM_TIMEOUT_SECONDS)

    def close(self) -> None:
        self._client.close()
