"""Resolves prepared trek legs whose trek outlived its decision deadline, by asking the coordinator.

ARCHITECTURE.md §5: a participant never guesses. A prepared leg keeps its units (the
sweep skips it) until the coordinator says COMMIT or ABORT; the coordinator answers
ABORT for a trek it does not know or that is still undecided past its deadline (presumed
abort), and PENDING otherwise; a trek id it cannot read or a trek it says does not exist
(INVALID_ARGUMENT, NOT_FOUND) is ABORT too (:mod:`.coordinators`), so a leg prepared for
no trek ends within its TTL. Only the coordinators the node knows are asked. An
unreachable coordinator leaves the leg prepared until the next pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import grpc
from sqlalchemy import Engine

from ridgeline.regional.errors import BookingError, CoordinatorUnavailable
from ridgeline.regional.periodic import Periodic
from ridgeline.regional.storage.db import read_transaction
from ridgeline.regional.trek_legs import participant as legs
from ridgeline.regional.trek_legs.coordinators import KnownCoordinators
from ridgeline.routing.keeper import Ownership
from ridgeline.routing.leases import Fence
from ridgeline.v1 import trek_pb2 as tpb

_log = logging.getLogger(__name__)


def resolve_in_doubt(engine: Engine, *, fence: Fence, now: datetime, batch_max: int, ask: Callable[[str, str], int], actor: str) -> int:
    """Asks (``ask(coordinator_target, trek_id)``: a ``KnownCoordinators``) about every prepared leg past its deadline of the basecamps ``fence`` holds (one
    batch) and applies the answers, under those leases, as ``actor`` (the node's own,
    ``node:<id>``: it acts by itself); returns how many were resolved."""
    doubtful = read_transaction(engine, lambda conn: legs.in_doubt(conn, basecamps=list(fence), now=now, batch_max=batch_max))
    resolved = 0
    for key, target in doubtful:
        try:
            decision = ask(target, key.trek_id)
        except grpc.RpcError as error:  # no answer (an answer of "no such trek" came back as ABORT)
            _log.warning("trek %s leg %d in doubt; coordinator %s did not answer: %s", key.trek_id, key.leg_index, target, error.code())
            continue
        except CoordinatorUnavailable as error:
            _log.warning("trek %s leg %d in doubt: %s", key.trek_id, key.leg_index, error)
            continue
        apply = {tpb.DECISION_COMMIT: legs.commit, tpb.DECISION_ABORT: legs.abort}.get(decision)
        if apply is None:  # still pending: ask again next pass
            continue
        try:
            apply(engine, key, actor=actor, fence=fence, now=now)
        except BookingError as error:  # one leg's trouble must not stall the others
            _log.warning("trek %s leg %d: applying the coordinator's decision failed: %s", key.trek_id, key.leg_index, error)
            continue
        resolved += 1
    return resolved


class LegResolver:
    """A node's thread that resolves in-doubt legs every ``interval_seconds``."""

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime],
        owned: Ownership,
        coordinators: KnownCoordinators,
        *,
        interval_seconds: float,
        batch_max: int,
        actor: str,
    ) -> None:
        """``coordinators``: the node's, shared with its TrekLegService (the node closes them).
        ``actor``: the node's own (``node:<id>``), named on the legs it resolves."""
        self._actor = actor
        self._engine = engine
        self._clock = clock
        self._owned = owned
        self._batch_max = batch_max
        self._ask = coordinators
        self._periodic = Periodic("leg-resolver", interval_seconds, self._pass)

    def start(self) -> None:
        self._periodic.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        self._periodic.stop(timeout_seconds)

    def _pass(self) -> None:
        resolved = resolve_in_doubt(
            self._engine, fence=dict(self._owned.fence()), now=self._clock(), batch_max=self._batch_max, ask=self._ask, actor=self._actor
        )
        if resolved:
            _log.info("resolved %d in-doubt trek leg(s) with the coordinator", resolved)
