"""The coordinator as a gRPC server: TrekService, TrekOperatorService, standard health and reflection."""

from __future__ import annotations

import dataclasses
import logging
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ridgeline import tracing
from ridgeline.global_coordinator.decision_log import Transact
from ridgeline.global_coordinator.operator_servicer import TrekOperatorServicer
from ridgeline.global_coordinator.participants import Participants
from ridgeline.global_coordinator.payments import Payments
from ridgeline.global_coordinator.protocol import Coordinator, CoordinatorConfig
from ridgeline.global_coordinator.servicer import TrekServicer
from ridgeline.request_decoding import DecodeGuard
from ridgeline.trust.credentials import Transport
from ridgeline.trust.server_auth import Authenticator
from ridgeline.v1 import operator_pb2 as opb
from ridgeline.v1 import operator_pb2_grpc as opb_grpc
from ridgeline.v1 import trek_pb2 as tpb
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

_log = logging.getLogger(__name__)

TREK_SERVICE = tpb.DESCRIPTOR.services_by_name["TrekService"].full_name
TREK_OPERATOR_SERVICE = opb.DESCRIPTOR.services_by_name["TrekOperatorService"].full_name


class CoordinatorServer:
    """Binds ``listen`` first, so participants are told the address actually served."""

    def __init__(
        self, config: CoordinatorConfig, listen: str, transact: Transact, participants: Participants, payments: Payments, *, transport: Transport, workers: int = 32
    ) -> None:
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trek-rpc"),
            interceptors=[*tracing.server_interceptors(), *([Authenticator(transport.ca_pem)] if transport.secure else []), DecodeGuard()],
            maximum_concurrent_rpcs=workers * 8,
        )
        try:
            port = transport.bind(self._server, listen)
        except RuntimeError as error:
            raise OSError(f"cannot listen on {listen}: is another process using it?") from error
        if port == 0:
            raise OSError(f"cannot listen on {listen}: is another process using it?")
        self.address = f"{listen.rsplit(':', 1)[0]}:{port}"
        if not config.advertise_target:
            config = dataclasses.replace(config, advertise_target=self.address)
        self.coordinator = Coordinator(config, transact, participants, payments)
        self._participants = participants
        self._health = health.HealthServicer()
        tpb_grpc.add_TrekServiceServicer_to_server(TrekServicer(self.coordinator, participants), self._server)
        opb_grpc.add_TrekOperatorServiceServicer_to_server(TrekOperatorServicer(self.coordinator), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection((TREK_SERVICE, TREK_OPERATOR_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server)

    def start(self) -> None:
        self._server.start()
        self.coordinator.start()
        # A follower learns the cluster now, so that its first treks after a takeover are not cold.
        threading.Thread(target=self._participants.warm, name="participants-warm", daemon=True).start()
        for service in ("", TREK_SERVICE, TREK_OPERATOR_SERVICE):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        _log.info("trek coordinator serving on %s", self.address)

    def stop(self, grace_seconds: float = 5.0) -> None:
        self._health.enter_graceful_shutdown()
        self._server.stop(grace_seconds).wait()
        self.coordinator.stop()
        self._participants.close()
