"""Stand-in participants for coordinator tests about the decision log and the provider's money."""

from __future__ import annotations

import grpc

from ridgeline.v1 import trek_pb2 as tpb


class _Legs:
    """A participant whose every leg call lands (an abort of a leg never prepared, or already aborted)."""

    def __getattr__(self, method: str):  # noqa: ANN204 - AbortLeg
        return lambda request, timeout: tpb.TrekLegReply(trek_id=request.trek_id, leg_index=request.leg_index)


class LandingParticipants:
    """Participants of one region whose every leg call lands (stand-ins: the tests using them
    are about the decision log and the money, not the participants)."""

    def region_of(self, basecamp_id: str) -> str | None:
        return "eu-alps"

    def leg_stub(self, region: str, basecamp_id: str) -> _Legs:
        return _Legs()

    def redirected(self, error: grpc.RpcError, basecamp_id: str) -> bool:
        return False

    def close(self) -> None:
        pass
