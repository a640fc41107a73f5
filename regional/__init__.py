"""The regional orchestrator: one region's nodes book its basecamps against the region's own database.

Rooms: :mod:`.edge` (the gRPC servicers, validation, conversion, status mapping),
:mod:`.booking` (the booking domain: holds, moves, expiry, idempotency, ownership,
catalog), :mod:`.trek_legs` (the participant side of a trek), :mod:`.settlement` (the
payment rows settlement flows step through) and :mod:`.storage` (engines and retry,
migrations, audit SQL). Beside them, what every room of a node shares: :mod:`.node`
(composes one node), :mod:`.config`, :mod:`.errors`, and the node-internal
:mod:`.metrics` and :mod:`.periodic` (not for other rooms).
"""

__all__ = ["booking", "config", "edge", "errors", "node", "settlement", "storage", "trek_legs"]
