"""How the coordinator reaches the node that serves a leg's basecamp.

:class:`Participants` is the seam: the cluster's routing client (per-basecamp owner
lookup, owner hints) plugs in here. :class:`StaticParticipants` is today's
implementation: one node address per region, and each basecamp's region learnt from the
regions themselves (ListBasecamps), so the coordinator imports nothing from regional/.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import grpc

from ridgeline.routing.client import BookingClient
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

#: An unknown basecamp re-reads the regions' catalogs at most this often.
CATALOG_RELOAD_SECONDS = 5.0
#: A node that restarts is reached again within a second: gRPC's default reconnect
#: backoff grows to minutes, which would hold a trek's commits long after the node is back.
_CHANNEL_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000))


class Participants(Protocol):
    def region_of(self, basecamp_id: str) -> str | None:
        """The region that serves ``basecamp_id``, or None if no region does."""

    def leg_stub(self, region: str, basecamp_id: str) -> tpb_grpc.TrekLegServiceStub:
        """A TrekLegService stub for the node that owns ``basecamp_id`` in ``region``."""

    def close(self) -> None: ...


class StaticParticipants:
    """One node per region at a fixed address (``{region: host:port}``)."""

    def __init__(self, targets: dict[str, str], *, catalog_timeout_seconds: float = 5.0) -> None:
        self._targets = dict(targets)
        self._channels = {region: grpc.insecure_channel(target, options=_CHANNEL_OPTIONS) for region, target in targets.items()}
        self._stubs = {region: tpb_grpc.TrekLegServiceStub(channel) for region, channel in self._channels.items()}
        self._timeout = catalog_timeout_seconds
        self._regions: dict[str, str] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def region_of(self, basecamp_id: str) -> str | None:
        with self._lock:
            if basecamp_id not in self._regions and time.monotonic() - self._loaded_at >= CATALOG_RELOAD_SECONDS:
                self._reload()
            return self._regions.get(basecamp_id)

    def leg_stub(self, region: str, basecamp_id: str) -> tpb_grpc.TrekLegServiceStub:
        return self._stubs[region]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def _reload(self) -> None:
        """Asks every reachable region for its basecamps; an unreachable one keeps what was known."""
        self._loaded_at = time.monotonic()
        for region, target in self._targets.items():
            try:
                with BookingClient(target, timeout_seconds=self._timeout, attempts_max=2) as client:
                    camps = client.list_basecamps().basecamps
            except grpc.RpcError:
                continue
            self._regions.update({camp.basecamp_id: region for camp in camps})
