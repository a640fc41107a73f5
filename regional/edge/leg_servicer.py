"""TrekLegService: the coordinator's calls on this region's legs; thin, like BookingServicer."""

from __future__ import annotations

import grpc
from sqlalchemy import Engine

from ridgeline.regional.booking.catalog import CatalogView
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.edge import convert, validation
from ridgeline.regional.edge.booking_servicer import deadline_of
from ridgeline.regional.edge.status_codes import guarded
from ridgeline.regional.errors import InvalidRequest
from ridgeline.regional.trek_legs import participant as legs
from ridgeline.routing.clock import Clock
from ridgeline.routing.keeper import Ownership
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import trek_pb2 as tpb
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

#: A leg's hold lasts at least this long (the coordinator's prepare deadline fits in it)
#: and at most a day: past that, a planner is better served by a fresh trek.
LEG_TTL_MIN_SECONDS = 10
LEG_TTL_MAX_SECONDS = 24 * 3600
_ID_LENGTH_MAX = 64
_LEG_INDEX_MAX = 63
_TARGET_LENGTH_MAX = 255

_STATE_PB = {
    legs.LegState.PREPARED: tpb.LEG_STATE_PREPARED,
    legs.LegState.COMMITTED: tpb.LEG_STATE_COMMITTED,
    legs.LegState.ABORTED: tpb.LEG_STATE_ABORTED,
    legs.LegState.CANCELLED: tpb.LEG_STATE_CANCELLED,
}


class TrekLegServicer(tpb_grpc.TrekLegServiceServicer):
    def __init__(self, config: NodeConfig, engine: Engine, catalog: CatalogView, owned: Ownership, clock: Clock) -> None:
        """``owned``: the node's leases; a leg is prepared, committed or aborted only under its basecamp's."""
        self._config = config
        self._engine = engine
        self._catalog = catalog
        self._owned = owned
        self._clock = clock

    @guarded
    def PrepareLeg(self, request: tpb.PrepareLegRequest, context: grpc.ServicerContext) -> tpb.TrekLegReply:
        now = self._clock()
        key = leg_key(request.trek_id, request.leg_index)
        if not LEG_TTL_MIN_SECONDS <= request.hold_ttl_seconds <= LEG_TTL_MAX_SECONDS:
            raise InvalidRequest(f"hold_ttl_seconds must be between {LEG_TTL_MIN_SECONDS} and {LEG_TTL_MAX_SECONDS}; got {request.hold_ttl_seconds}")
        as_hold = pb.PlaceHoldRequest(
            idempotency_key=key.trek_id,  # replaced by the leg's own key below
            basecamp_id=request.leg.basecamp_id,
            resource_id=request.leg.resource_id,
            nights=request.leg.nights,
            party_size=request.leg.party_size,
            customer_id=request.customer_id,
            hold_ttl_seconds=self._config.hold_ttl_default_seconds,
        )
        hold = legs.leg_hold(validation.hold_request(as_hold, self._catalog, self._config, now), key, request.hold_ttl_seconds)
        target = _coordinator_target(request.coordinator_target)
        leg = legs.prepare(self._engine, key, hold, fence=self._owned.fence(), coordinator_target=target, now=now, deadline=deadline_of(context))
        return leg_reply(leg)

    @guarded
    def CommitLeg(self, request: tpb.LegRef, context: grpc.ServicerContext) -> tpb.TrekLegReply:
        key = leg_key(request.trek_id, request.leg_index)
        return leg_reply(legs.commit(self._engine, key, fence=self._owned.fence(), now=self._clock(), deadline=deadline_of(context)))

    @guarded
    def AbortLeg(self, request: tpb.LegRef, context: grpc.ServicerContext) -> tpb.TrekLegReply:
        key = leg_key(request.trek_id, request.leg_index)
        return leg_reply(legs.abort(self._engine, key, fence=self._owned.fence(), now=self._clock(), deadline=deadline_of(context)))

    @guarded
    def CancelLeg(self, request: tpb.LegRef, context: grpc.ServicerContext) -> tpb.TrekLegReply:
        key = leg_key(request.trek_id, request.leg_index)
        return leg_reply(legs.cancel(self._engine, key, fence=self._owned.fence(), now=self._clock(), deadline=deadline_of(context)))


def leg_key(trek_id: str, leg_index: int) -> legs.LegKey:
    """Validates a (trek, leg) reference at the edge."""
    if not trek_id or len(trek_id) > _ID_LENGTH_MAX or not trek_id.isprintable():
        raise InvalidRequest(f"trek_id must be 1 to {_ID_LENGTH_MAX} printable characters")
    if not 0 <= leg_index <= _LEG_INDEX_MAX:
        raise InvalidRequest(f"leg_index must be between 0 and {_LEG_INDEX_MAX}; got {leg_index}")
    return legs.LegKey(trek_id, leg_index)


def _coordinator_target(value: str) -> str:
    if not value or len(value) > _TARGET_LENGTH_MAX or not value.isprintable() or ":" not in value:
        raise InvalidRequest(f"coordinator_target must be host:port (at most {_TARGET_LENGTH_MAX} characters)")
    return value


def leg_reply(leg: legs.Leg) -> tpb.TrekLegReply:
    reply = tpb.TrekLegReply(trek_id=leg.key.trek_id, leg_index=leg.key.leg_index, state=_STATE_PB[leg.state])
    if leg.booking is not None:
        reply.booking.CopyFrom(convert.booking_pb(leg.booking))
    return reply
