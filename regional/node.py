"""One regional orchestrator node: the gRPC server, its database pool, its lease keeper and its sweeper.

The node assumes its region database is migrated and holds the catalog; deploy/ does
that before starting it. Standard gRPC health and reflection services are served beside
BookingService so that load balancers, ``grpcurl`` and operators can see it.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server
from sqlalchemy import Engine

from ridgeline import tracing
from ridgeline.regional.booking.catalog import CatalogView
from ridgeline.regional.booking.group_commit import HoldGroupCommitter
from ridgeline.regional.booking.holds import place_hold
from ridgeline.regional.booking.sweeper import Sweeper
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.edge.booking_servicer import BookingServicer, HoldPlacer
from ridgeline.regional.edge.cluster_servicer import ClusterServicer
from ridgeline.regional.edge.leg_servicer import TrekLegServicer
from ridgeline.regional.edge.operator_servicer import OperatorServicer
from ridgeline.regional.metrics import MetricsInterceptor
from ridgeline.regional.storage import migrate
from ridgeline.regional.storage.db import make_engine, run_transaction
from ridgeline.regional.trek_legs.coordinators import KnownCoordinators
from ridgeline.regional.trek_legs.resolver import LegResolver
from ridgeline.regional.vitals import Vitals
from ridgeline.regional.workflows import rollout
from ridgeline.request_decoding import DecodeGuard
from ridgeline.routing.clock import Clock, utc_now
from ridgeline.routing.keeper import LeaseKeeper, LeaseSettings
from ridgeline.trust.credentials import Transport
from ridgeline.trust.identity import node_actor
from ridgeline.trust.server_auth import Authenticator
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import booking_pb2_grpc as pb_grpc
from ridgeline.v1 import cluster_pb2 as cpb
from ridgeline.v1 import cluster_pb2_grpc as cpb_grpc
from ridgeline.v1 import operator_pb2 as opb
from ridgeline.v1 import operator_pb2_grpc as opb_grpc
from ridgeline.v1 import trek_pb2 as tpb
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

_log = logging.getLogger(__name__)

BOOKING_SERVICE = pb.DESCRIPTOR.services_by_name["BookingService"].full_name
CLUSTER_SERVICE = cpb.DESCRIPTOR.services_by_name["ClusterService"].full_name
TREK_LEG_SERVICE = tpb.DESCRIPTOR.services_by_name["TrekLegService"].full_name
OPERATOR_SERVICE = opb.DESCRIPTOR.services_by_name["OperatorService"].full_name


class RegionalNode:
    def __init__(self, config: NodeConfig, clock: Clock = utc_now) -> None:
        self.config = config
        self._engine = make_engine(
            config.database_url,
            pool_size=config.workers,
            application_name=f"ridgeline-{config.node_id}",
            idle_in_transaction_timeout_ms=int(config.lease_ttl_seconds * 1000 / 2),
        )
        _require_schema_at_head(self._engine)
        self._catalog = CatalogView(self._engine, config.region)
        self._health = health.HealthServicer()
        #: Mutual TLS for every port and every call the node makes (ARCHITECTURE.md §8).
        self.transport = Transport.serving(config.certs_dir, insecure=config.insecure, what=f"node {config.node_id}")
        # Metrics outermost (they count refusals too); identity before decoding, so an
        # unidentified caller learns nothing about what its bytes would have done.
        authenticate = [Authenticator(self.transport.ca_pem)] if self.transport.secure else []
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="rpc"),
            interceptors=[*tracing.server_interceptors(), MetricsInterceptor(), *authenticate, DecodeGuard()],
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
        try:
            self.port = self.transport.bind(self._server, config.listen_address)
        except RuntimeError as error:  # grpc raises RuntimeError("Failed to bind …")
            raise OSError(f"cannot listen on {config.listen_address}: is another process using it?") from error
        if self.port == 0:
            raise OSError(f"cannot listen on {config.listen_address}: is another process using it?")
        self._metrics = _serve_metrics(config.metrics_listen_address)
        self.keeper = LeaseKeeper(
            # Not idempotent (an acquire that landed unseen is not granted again), so a lost
            # COMMIT fails the round: such a lease stays unused until it lapses and is taken
            # again (at most one lease TTL of UNAVAILABLE for its basecamp; writes stay fenced).
            lambda work: run_transaction(self._engine, work, operation="lease_keeper"),
            node_id=config.node_id,
            region=config.region,
            address=self.address,
            settings=LeaseSettings(config.lease_ttl_seconds, config.heartbeat_interval_seconds),
            metrics_address=self.metrics_address,
            capabilities=frozenset(config.workflows),
            in_use=rollout.in_use,
        )
        #: Set after each Book commits: the node's settlement loop (if it runs one) starts a pass at once.
        self.booked = threading.Event()
        servicer = BookingServicer(config, self._engine, self._catalog, self._hold_placer(clock), self.keeper.ownership, clock, booked=self.booked)
        pb_grpc.add_BookingServiceServicer_to_server(servicer, self._server)
        # The cluster's trek coordinators: the only ones a leg may name, and the only ones asked.
        self._coordinators = KnownCoordinators(config.coordinator_targets, self.transport)
        legs = TrekLegServicer(config, self._engine, self._catalog, self.keeper.ownership, self._coordinators, clock)
        tpb_grpc.add_TrekLegServiceServicer_to_server(legs, self._server)
        cluster = ClusterServicer(
            self._engine, self._catalog, region=config.region, node_id=config.node_id, address=self.address, seeds=config.cluster_seeds
        )
        cpb_grpc.add_ClusterServiceServicer_to_server(cluster, self._server)
        operator = OperatorServicer(config, self._engine, self._catalog, self.keeper.ownership, clock)
        opb_grpc.add_OperatorServiceServicer_to_server(operator, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (BOOKING_SERVICE, CLUSTER_SERVICE, TREK_LEG_SERVICE, OPERATOR_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        # The sweep's own connection, READ COMMITTED with a short lock wait: it never fails
        # on a hold's serializable snapshot, and never queues long behind one (expiry.py).
        self._sweep_engine = make_engine(
            config.database_url,
            pool_size=1,
            application_name=f"ridgeline-{config.node_id}-sweeper",
            lock_timeout_ms=config.sweep_lock_timeout_ms,
            isolation_level="READ COMMITTED",
        )
        self._sweeper = Sweeper(
            self._sweep_engine,
            clock,
            interval_seconds=config.sweep_interval_seconds,
            batch_max=config.sweep_batch_max,
            key_retention_seconds=config.idempotency_retention_seconds,
            actor=node_actor(config.node_id),
        )
        # A lapsed hold counts as left behind once two sweep intervals passed without it being expired.
        self._vitals = Vitals(self._engine, clock, interval_seconds=config.vitals_interval_seconds, sweep_grace_seconds=2 * config.sweep_interval_seconds)
        # Prepared trek legs are not swept; they are resolved with their coordinator.
        self._resolver = LegResolver(
            self._engine,
            clock,
            self.keeper.ownership,
            self._coordinators,
            interval_seconds=config.sweep_interval_seconds,
            batch_max=config.sweep_batch_max,
            actor=node_actor(config.node_id),
        )

    def _hold_placer(self, clock: Clock) -> HoldPlacer:
        committer, engine = self._committer, self._engine
        if committer is not None:
            return lambda hold, epoch, deadline: committer.place(hold, epoch=epoch, deadline=deadline)
        return lambda hold, epoch, deadline: place_hold(engine, hold, epoch=epoch, now=clock(), deadline=deadline)

    @property
    def address(self) -> str:
        if self.config.advertise_address:
            return self.config.advertise_address
        host = self.config.listen_address.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    @property
    def metrics_address(self) -> str:
        """host:port of the Prometheus endpoint (the advertised host), or "" when not served."""
        if self._metrics is None:
            return ""
        host = self.address.rsplit(":", 1)[0]
        return f"{host}:{self._metrics.server_port}"

    def start(self) -> None:
        try:
            self.keeper.start()  # first: it may refuse (node id in use) before anything runs
        except BaseException:
            if self._committer is not None:
                self._committer.stop()
            if self._metrics is not None:
                self._metrics.server_close()
            self._engine.dispose()
            self._sweep_engine.dispose()
            raise
        if self._committer is not None:
            self._committer.start()
        self._server.start()
        self._sweeper.start()
        self._resolver.start()
        self._vitals.start()
        for service in ("", BOOKING_SERVICE):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        _log.info("node %s of %s serving on %s", self.config.node_id, self.config.region, self.address)

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stops taking calls, lets in-flight ones finish within the grace, then closes."""
        self._health.enter_graceful_shutdown()
        self._server.stop(grace_seconds).wait()
        if self._committer is not None:
            self._committer.stop()
        # After the in-flight calls (which write under the leases), hand the leases over.
        self.keeper.stop(release=True)
        self._sweeper.stop()
        self._resolver.stop()
        self._vitals.stop()
        self._coordinators.close()
        if self._metrics is not None:
            self._metrics.shutdown()
            self._metrics.server_close()
        self._engine.dispose()
        self._sweep_engine.dispose()

    def wait(self) -> None:
        self._server.wait_for_termination()


def _serve_metrics(listen: str | None) -> WSGIServer | None:
    """Starts the Prometheus HTTP endpoint (GET /metrics) in a daemon thread."""
    if listen is None:
        return None
    host, port = listen.rsplit(":", 1)
    try:
        server, _ = start_http_server(int(port), addr=host)
    except OSError as error:
        raise OSError(f"cannot serve metrics on {listen}: {error.strerror}") from None
    return server


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
