"""TrekLegService: the coordinator's calls on this region's legs; thin, like BookingServicer.

CommitLeg and CancelLeg go through :mod:`..trek_legs.checked_moves`: they move a leg only
as the coordinator's log allows. The caller (the coordinator's node identity,
``node:<principal>``; ``anonymous`` on an ``--insecure`` server) is the actor the leg's
booking history names; the reason names the trek.
"""

from __future__ import annotations

import grpc
from sqlalchemy import Engine

from ridgeline.regional.booking.catalog import CatalogView
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.edge import convert, validation
from ridgeline.regional.edge.booking_servicer import deadline_of
from ridgeline.regional.edge.status_codes import guarded
from ridgeline.regional.trek_legs import checked_moves
from ridgeline.regional.trek_legs import participant as legs
from ridgeline.regional.trek_legs.coordinators import KnownCoordinators
from ridgeline.routing.clock import Clock
from ridgeline.routing.keeper import Ownership
from ridgeline.trust.identity import actor_of, current
from ridgeline.v1 import trek_pb2 as tpb
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc


class TrekLegServicer(tpb_grpc.TrekLegServiceServicer):
    def __init__(self, config: NodeConfig, engine: Engine, catalog: CatalogView, owned: Ownership, coordinators: KnownCoordinators, clock: Clock) -> None:
        """``owned``: the node's leases; a leg is prepared, committed or aborted only under its basecamp's.
        ``coordinators``: the cluster's, asked before a commit or a cancel (the node closes them)."""
        self._config = config
        self._coordinators = coordinators
        self._engine = engine
        self._catalog = catalog
        self._owned = owned
        self._clock = clock

    @guarded
    def PrepareLeg(self, request: tpb.PrepareLegRequest, context: grpc.ServicerContext) -> tpb.TrekLegReply:
        now = self._clock()
        asked = validation.leg_prepare(request, self._catalog, self._config, now, actor_of(current()))
        leg = legs.prepare(
            self._engine,
            asked.key,
            asked.hold,
            fence=self._owned.fence(),
            coordinator_target=asked.coordinator_target,
            now=now,
            deadline=deadline_of(context),
        )
        return convert.leg_pb(leg)

    @guarded
    def CommitLeg(self, request: tpb.LegRef, context: grpc.ServicerContext) -> tpb.TrekLegReply:
        key = validation.leg_key(request)
        leg = checked_moves.commit(
            self._engine, key, actor=actor_of(current()), coordinators=self._coordinators, fence=self._owned.fence(), now=self._clock(),
            deadline=deadline_of(context),
        )  # fmt: skip
        return convert.leg_pb(leg)

    @guarded
    def AbortLeg(self, request: tpb.LegRef, context: grpc.ServicerContext) -> tpb.TrekLegReply:
        key = validation.leg_key(request)
        aborted = legs.abort(self._engine, key, actor=actor_of(current()), fence=self._owned.fence(), now=self._clock(), deadline=deadline_of(context))
        return convert.leg_pb(aborted)

    @guarded
    def CancelLeg(self, request: tpb.LegRef, context: grpc.ServicerContext) -> tpb.TrekLegReply:
        key = validation.leg_key(request)
        leg = checked_moves.cancel(
            self._engine, key, actor=actor_of(current()), coordinators=self._coordinators, fence=self._owned.fence(), now=self._clock(),
            deadline=deadline_of(context),
        )  # fmt: skip
        return convert.leg_pb(leg)
