"""One regional orchestrator node: the gRPC server, its database pool and its sweeper.

The node assumes its region database is migrated and holds the catalog; deploy/ does
that before starting it. Standard gRPC health and reflection services are served beside
BookingService so that load balancers, ``grpcurl`` and operators can see it.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sqlalchemy import Engine

from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import booking_pb2_grpc as pb_grpc
from ridgeline.v1 import trek_pb2 as tpb
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

from . import migrate
from .catalog import CatalogView
from .config import NodeConfig
from .db import make_engine
from .group_commit import HoldGroupCommitter
from .holds import place_hold
from .leg_resolver import LegResolver
from .leg_servicer import TrekLegServicer
from .servicer import BookingServicer, Clock, HoldPlacer, utc_now
from .sweeper import Sweeper

_log = logging.getLogger(__name__)

BOOKING_SERVICE = pb.DESCRIPTOR.services_by_name["BookingService"].full_name
TREK_LEG_SERVICE = tpb.DESCRIPTOR.services_by_name["TrekLegService"].full_name


class RegionalNode:
    def __init__(self, config: NodeConfig, clock: Clock = utc_now) -> None:
        self.config = config
        self._engine = make_engine(config.database_url, pool_size=config.workers, application_name=f"ridgeline-{config.node_id}")
        _require_schema_at_head(self._engine)
        self._catalog = CatalogView(self._engine, config.region)
        self._health = health.HealthServicer()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="rpc"),
            maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        )
        self._committer: HoldGroupCommitter | None = None
        if config.hold_round_max > 1:
            round_engine = make_engine(
                config.database_url,
                pool_size=1,
                application_name=f"ridgeline-{config.node_id}-rounds",
                lock_timeout_ms=config.hold_round_lock_timeout_ms,
            )
            self._committer = HoldGroupCommitter(round_engine, self._engine, clock, round_max=config.hold_round_max)
        servicer = BookingServicer(config, self._engine, self._catalog, self._hold_placer(clock), clock)
        pb_grpc.add_BookingServiceServicer_to_server(servicer, self._server)
        tpb_grpc.add_TrekLegServiceServicer_to_server(TrekLegServicer(config, self._engine, self._catalog, clock), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection((BOOKING_SERVICE, TREK_LEG_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server)
        try:
            self.port = self._server.add_insecure_port(config.listen_address)
        except RuntimeError as error:  # grpc raises RuntimeError("Failed to bind …")
            raise OSError(f"cannot listen on {config.listen_address}: is another process using it?") from error
        if self.port == 0:
            raise OSError(f"cannot listen on {config.listen_address}: is another process using it?")
        self._sweeper = Sweeper(
            self._engine,
            clock,
            interval_seconds=config.sweep_interval_seconds,
            batch_max=config.sweep_batch_max,
            key_retention_seconds=config.idempotency_retention_seconds,
        )
        # Prepared trek legs are not swept; they are resolved with their coordinator.
        self._resolver = LegResolver(self._engine, clock, interval_seconds=config.sweep_interval_seconds, batch_max=config.sweep_batch_max)

    def _hold_placer(self, clock: Clock) -> HoldPlacer:
        committer, engine = self._committer, self._engine
        if committer is not None:
            return lambda hold, deadline: committer.place(hold, deadline=deadline)
        return lambda hold, deadline: place_hold(engine, hold, now=clock(), deadline=deadline)

    @property
    def address(self) -> str:
        host = self.config.listen_address.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    def start(self) -> None:
        if self._committer is not None:
            self._committer.start()
        self._server.start()
        self._sweeper.start()
        self._resolver.start()
        for service in ("", BOOKING_SERVICE):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        _log.info("node %s of %s serving on %s", self.config.node_id, self.config.region, self.address)

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stops taking calls, lets in-flight ones finish within the grace, then closes."""
        self._health.enter_graceful_shutdown()
        self._server.stop(grace_seconds).wait()
        if self._committer is not None:
            self._committer.stop()
        self._sweeper.stop()
        self._resolver.stop()
        self._engine.dispose()

    def wait(self) -> None:
        self._server.wait_for_termination()


class SchemaMismatch(RuntimeError):
    """The region database is not at the schema revision this code expects."""


def _require_schema_at_head(engine: Engine) -> None:
    """Refuses to serve a database whose schema this code was not written for."""
    found, expected = migrate.current_revision(engine), migrate.head_revision()
    if found != expected:
        engine.dispose()
        raise SchemaMismatch(
            f"region database schema is at {found or 'nothing'}, this node needs {expected}: "
            "migrate it first (ridgeline node --prepare, or deploy's migration step)"
        )
