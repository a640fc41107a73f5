"""The authorization matrix: every RPC a node and the coordinator serve, called by every kind
of caller, ends exactly as the one authorization table (``ridgeline.trust.policy``) promises,
and a refused call writes nothing.

Callers: the strangers refused at the handshake (plaintext, TLS without a client
certificate, another CA's pair: the client sees UNAVAILABLE), a valid pair carrying an
expired bearer token (UNAUTHENTICATED), and the session's identity of each role by its
certificate (the table's roles get past authorization; the others get PERMISSION_DENIED).
Each call carries a request that would write if it ran (a hold, a leg, a trek, a move of an
existing booking), so "writes nothing" is a real claim; it is checked in SQL on the node's
region database and on the coordinator's log. The routes come from the proto descriptors,
and reflection confirms that they are every service each server serves.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
from certificates import ROLE_PRINCIPALS, STRANGERS, SessionCerts, health_status
from drive import night
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from invariants import query, snapshot
from trek_cluster import TrekCluster, leg, plan_request, running_cluster

from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.routing import BookingClient, night_range
from ridgeline.trust import policy
from ridgeline.trust.identity import Identity, Role
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import cluster_pb2, operator_pb2
from ridgeline.v1 import trek_pb2 as tpb

Code = grpc.StatusCode
_HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
_REFLECTION = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
NODE_SERVICES = (
    pb.DESCRIPTOR.services_by_name["BookingService"],
    cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"],
    tpb.DESCRIPTOR.services_by_name["TrekLegService"],
    operator_pb2.DESCRIPTOR.services_by_name["OperatorService"],
    _HEALTH,
    _REFLECTION,
)
COORDINATOR_SERVICES = (tpb.DESCRIPTOR.services_by_name["TrekService"], operator_pb2.DESCRIPTOR.services_by_name["TrekOperatorService"], _HEALTH, _REFLECTION)
EXPIRED = "an expired token"
ROLES = tuple(Role)
CALLERS = (*STRANGERS, EXPIRED, *(role.value for role in ROLES))
#: The node every node route is called on; its region database is the one checked.
REGION = "eu-alps"


@dataclass(frozen=True)
class Route:
    server: str  # "node" or "coordinator"
    path: str  # /package.Service/Method, the table's key
    client_streaming: bool
    server_streaming: bool


ROUTES = [
    Route(server, f"/{service.full_name}/{method.name}", method.client_streaming, method.server_streaming)
    for server, services in (("node", NODE_SERVICES), ("coordinator", COORDINATOR_SERVICES))
    for service in services
    for method in service.methods
]


def expected(caller: str, route: str) -> str:
    """What the trust boundary promises ``caller`` on ``route``: "refused at the handshake",
    UNAUTHENTICATED, PERMISSION_DENIED, or "admitted" (any status past authorization)."""
    if caller in STRANGERS:
        return "refused at the handshake"
    if caller == EXPIRED:
        return Code.UNAUTHENTICATED.name  # a credential that proves nothing is refused, even where none is needed
    role = Role(caller)
    try:
        policy.authorize(Identity(ROLE_PRINCIPALS[role] or "local-node", role), route)
    except policy.PermissionDenied:
        return Code.PERMISSION_DENIED.name
    return "admitted"


def verdict(code: Code) -> str:
    if code is Code.UNAVAILABLE:
        return "refused at the handshake"
    if code in (Code.UNAUTHENTICATED, Code.PERMISSION_DENIED):
        return code.name
    return "admitted"


@dataclass(frozen=True)
class Bookings:
    """Bookings of the agency the matrix acts as (so a desk and that agency may both move them)."""

    held: str
    confirmed: str


def _requests(cluster: TrekCluster, existing: Bookings) -> dict[str, Callable[[], bytes]]:
    """A request per writing route that would write if it ran (fresh keys and ids per call);
    other routes get the empty request."""
    key = lambda: str(uuid.uuid4())  # noqa: E731
    stay = night_range(night(60), night(61))
    routes: dict[str, Callable[[], object]] = {
        "/ridgeline.v1.BookingService/PlaceHold": lambda: pb.PlaceHoldRequest(
            idempotency_key=key(), basecamp_id="argentiere", resource_id="argentiere-dorm", nights=stay, party_size=1, customer_id="matrix"
        ),
        "/ridgeline.v1.BookingService/Book": lambda: pb.BookRequest(
            idempotency_key=key(), basecamp_id="argentiere", resource_id="argentiere-dorm", nights=stay, party_size=1, customer_id="matrix"
        ),
        "/ridgeline.v1.BookingService/ConfirmBooking": lambda: pb.ConfirmBookingRequest(idempotency_key=key(), booking_id=existing.held),
        "/ridgeline.v1.BookingService/ReleaseHold": lambda: pb.ReleaseHoldRequest(idempotency_key=key(), booking_id=existing.held),
        "/ridgeline.v1.BookingService/CancelBooking": lambda: pb.CancelBookingRequest(idempotency_key=key(), booking_id=existing.confirmed),
        "/ridgeline.v1.BookingService/GetBooking": lambda: pb.GetBookingRequest(booking_id=existing.confirmed),
        "/ridgeline.v1.TrekLegService/PrepareLeg": lambda: tpb.PrepareLegRequest(
            trek_id=key(), leg_index=0, leg=leg("gouter", "gouter-dorm", night(130)), customer_id="matrix", hold_ttl_seconds=10, coordinator_target=cluster.target
        ),
        "/ridgeline.v1.TrekLegService/CommitLeg": lambda: tpb.LegRef(trek_id=key(), leg_index=0),
        "/ridgeline.v1.TrekLegService/AbortLeg": lambda: tpb.LegRef(trek_id=key(), leg_index=0),
        "/ridgeline.v1.TrekLegService/CancelLeg": lambda: tpb.LegRef(trek_id=key(), leg_index=0),
        "/ridgeline.v1.TrekService/PlanTrek": lambda: plan_request(key(), [leg("argentiere", "argentiere-dorm", night(140))], wait=False),
        "/ridgeline.v1.TrekService/CancelTrek": lambda: tpb.CancelTrekRequest(trek_id=key(), reason="matrix"),
        "/ridgeline.v1.TrekService/GetTrek": lambda: tpb.GetTrekRequest(trek_id=key()),
        "/ridgeline.v1.TrekService/GetDecision": lambda: tpb.GetDecisionRequest(trek_id=key()),
        "/ridgeline.v1.TrekOperatorService/RedriveTrek": lambda: operator_pb2.TrekActionRequest(idempotency_key=key(), trek_id=key(), reason="matrix"),
        "/ridgeline.v1.TrekOperatorService/AbortTrek": lambda: operator_pb2.TrekActionRequest(idempotency_key=key(), trek_id=key(), reason="matrix"),
        # Writes the rollout row (its changed_at and changed_by) even when the target stays.
        "/ridgeline.v1.ClusterService/SetRollout": lambda: cluster_pb2.SetRolloutRequest(version="settle@1", percent=100),
        "/ridgeline.v1.ClusterService/RetireWorkflowVersion": lambda: cluster_pb2.RetireWorkflowVersionRequest(version="settle@2"),
    }
    return {route: (lambda make=make: make().SerializeToString()) for route, make in routes.items()}


def status_of(channel: grpc.Channel, route: Route, request: bytes, timeout_seconds: float = 10.0) -> Code:
    """How one call of ``route`` with the raw ``request`` ends (a stream: its first reply)."""
    try:
        if not route.client_streaming and not route.server_streaming:
            channel.unary_unary(route.path)(request, timeout=timeout_seconds)
            return Code.OK
        if route.client_streaming:
            call = channel.stream_stream(route.path)(iter([request]), timeout=timeout_seconds)
        else:
            call = channel.unary_stream(route.path)(request, timeout=timeout_seconds)
        next(call, None)
        call.cancel()
    except grpc.RpcError as error:
        return error.code()
    return Code.OK


@dataclass
class Matrix:
    cluster: TrekCluster
    certs: SessionCerts
    requests: dict[str, Callable[[], bytes]]

    def address(self, route: Route) -> str:
        return self.cluster.region_targets[REGION] if route.server == "node" else self.cluster.target

    def channel(self, caller: str, address: str) -> grpc.Channel:
        if caller in STRANGERS:
            return self.certs.stranger_channel(caller, address)
        if caller == EXPIRED:
            return self.certs.expired_token().channel(address)
        return self.certs.as_role(Role(caller)).channel(address)

    def call(self, caller: str, route: Route) -> Code:
        request = self.requests.get(route.path, lambda: b"")()
        with self.channel(caller, self.address(route)) as channel:
            return status_of(channel, route, request)

    def written(self) -> tuple:
        """What a refused call must not change: the region's bookings, history, keys, counters,
        settlements, leg fences and rollout state, and every table of the coordinator's log."""
        url = self.cluster.region_urls[REGION]
        region = query(
            url,
            """SELECT (SELECT count(*) FROM settlements) AS settlements, (SELECT count(*) FROM trek_legs) AS legs,
                      (SELECT max(changed_at) FROM workflow_rollouts) AS rolled, (SELECT count(retired_at) FROM workflow_versions) AS retired""",
        )[0]
        log = query(
            self.cluster.coordinator_db_url,
            """SELECT (SELECT count(*) FROM treks) AS treks, (SELECT count(*) FROM trek_legs) AS legs,
                      (SELECT count(*) FROM trek_decisions) AS decisions, (SELECT count(*) FROM trek_charges) AS charges,
                      (SELECT count(*) FROM trek_operator_actions) AS operator_actions""",
        )[0]
        return snapshot(url), tuple(region), tuple(log)


@pytest.fixture(scope="module")
def matrix(region_servers: dict[str, PostgresServer], fresh_database, certs: SessionCerts) -> Iterator[Matrix]:
    with running_cluster(region_servers, fresh_database, certs) as cluster:
        coordinator = cluster.start_coordinator()
        try:
            with BookingClient(cluster.region_targets[REGION], transport=certs.as_role(Role.AGENCY)) as agency:
                held = agency.place_hold("argentiere", "argentiere-dorm", night(50), night(51), 1, "matrix-guest").booking_id
                confirmed = agency.place_hold("argentiere", "argentiere-dorm", night(52), night(53), 1, "matrix-guest").booking_id
                agency.confirm(confirmed)
            yield Matrix(cluster, certs, _requests(cluster, Bookings(held, confirmed)))
        finally:
            coordinator.stop()


def test_the_matrix_covers_every_service_each_server_serves(matrix: Matrix) -> None:
    # A guard against the matrix silently missing a service added to a server.
    for server, services in (("node", NODE_SERVICES), ("coordinator", COORDINATOR_SERVICES)):
        address = matrix.cluster.region_targets[REGION] if server == "node" else matrix.cluster.target
        with matrix.certs.sre.channel(address) as channel:
            replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
            )
            served = {s.name for reply in replies for s in reply.list_services_response.service}
        assert served == {s.full_name for s in services}, server
    assert len(ROUTES) >= 25 and all(policy.rule_for(r.path) is not None for r in ROUTES), "every route has a row in the table"


def test_every_refused_call_ends_as_the_table_says_and_writes_nothing(matrix: Matrix) -> None:
    """Strangers, the expired token and each role on the routes the table denies it. Runs
    before the admitted calls (file order): those write, and their trek legs and treks keep
    writing in the background for a while."""
    wrong: list[str] = []
    cells = 0
    for route in ROUTES:
        for caller in CALLERS:
            promised = expected(caller, route.path)
            if promised == "admitted":
                continue
            before = matrix.written()
            code = matrix.call(caller, route)
            after = matrix.written()
            cells += 1
            if verdict(code) != promised:
                wrong.append(f"{route.path} as {caller}: {code.name}, promised {promised}")
            if after != before:
                wrong.append(f"{route.path} as {caller} was refused ({code.name}) but wrote: {before} -> {after}")
    assert not wrong, "\n".join(wrong)
    assert cells >= len(ROUTES) * (len(STRANGERS) + 1), cells


def test_every_role_the_table_admits_gets_past_authorization(matrix: Matrix) -> None:
    wrong: list[str] = []
    admitted = 0
    for route in ROUTES:
        for role in ROLES:
            if expected(role.value, route.path) != "admitted":
                continue
            admitted += 1
            code = matrix.call(role.value, route)
            if verdict(code) != "admitted":
                wrong.append(f"{route.path} as {role.value}: {code.name}, but the table admits it")
    assert not wrong, "\n".join(wrong)
    assert admitted >= len(ROUTES), admitted


@pytest.mark.parametrize("server", ["node", "coordinator"])
def test_every_grpc_port_refuses_strangers_and_health_answers_every_valid_pair(matrix: Matrix, server: str) -> None:
    """Every node of the cluster and the coordinator: plaintext, certificate-less and
    foreign-CA clients are refused at the handshake; any role's pair gets SERVING from health."""
    addresses = list(matrix.cluster.region_targets.values()) if server == "node" else [matrix.cluster.target]
    for address in addresses:
        for kind in STRANGERS:
            with matrix.certs.stranger_channel(kind, address) as channel:
                assert health_status(channel) is Code.UNAVAILABLE, f"{address} answered a client with {kind}"
        for role in ROLES:
            with matrix.certs.as_role(role).channel(address) as channel:
                assert health_status(channel) is Code.OK, f"{address} refused health to {role.value}"
