"""The one authorization table: every RPC has a row, each role gets exactly the answer written here."""

from __future__ import annotations

import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from ridgeline.trust import policy
from ridgeline.trust.identity import Identity, Role
from ridgeline.v1 import booking_pb2, cluster_pb2, operator_pb2, trek_pb2

D, A, P, S, N = Role.DESK, Role.AGENCY, Role.PLANNER, Role.SRE, Role.NODE
PUBLIC = "public"
_B, _C, _T, _L = "/ridgeline.v1.BookingService/", "/ridgeline.v1.ClusterService/", "/ridgeline.v1.TrekService/", "/ridgeline.v1.TrekLegService/"
_O = "/ridgeline.v1.OperatorService/"
_TO = "/ridgeline.v1.TrekOperatorService/"
_OPERATOR_RPCS = ("RetrySettlement", "ReleaseHold", "RefundCharge", "BulkAction", "ListInFlight", "GetTimeline", "ListActions")

#: Who may call what, written out on its own: a change to policy.TABLE must change this too.
EXPECTED: dict[str, frozenset[Role] | str] = {
    _B + "ListBasecamps": frozenset({D, A, P, S, N}),
    _B + "GetAvailability": frozenset({D, A, P, S, N}),
    _C + "GetClusterInfo": frozenset({D, A, P, S, N}),
    _C + "ListWorkflowVersions": frozenset({S}),
    _C + "SetRollout": frozenset({S}),
    _C + "RetireWorkflowVersion": frozenset({S}),
    _B + "PlaceHold": frozenset({D, A}),
    _B + "Book": frozenset({D, A}),
    _B + "ConfirmBooking": frozenset({D, A}),
    _B + "ReleaseHold": frozenset({D, A}),
    _B + "CancelBooking": frozenset({D, A}),
    _B + "GetBooking": frozenset({D, A, S}),
    _B + "ListBookings": frozenset({D, A, S}),
    _T + "PlanTrek": frozenset({P}),
    _T + "CancelTrek": frozenset({P}),
    _T + "GetTrek": frozenset({P, S}),
    _T + "ListTreks": frozenset({P, S}),
    _T + "GetDecision": frozenset({N}),
    _TO + "RedriveTrek": frozenset({S}),
    _TO + "AbortTrek": frozenset({S}),
    _L + "PrepareLeg": frozenset({N}),
    _L + "CommitLeg": frozenset({N}),
    _L + "AbortLeg": frozenset({N}),
    _L + "CancelLeg": frozenset({N}),
    "/grpc.health.v1.Health/Check": PUBLIC,
    "/grpc.health.v1.Health/Watch": PUBLIC,
    "/grpc.health.v1.Health/List": PUBLIC,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": frozenset({D, A, P, S, N}),
    "gateway POST /v1/charges": frozenset({N}),
    "gateway POST /v1/refunds": frozenset({N}),
    "gateway GET /v1/charges/{charge_id}": frozenset({N, S}),
    "gateway GET /v1/charges": frozenset({N, S}),
    "gateway GET /admin/faults": frozenset({S}),
    "gateway PUT /admin/faults": frozenset({S}),
    "gateway GET /admin/stats": frozenset({S}),
    "gateway GET /metrics": PUBLIC,
    "gateway GET /healthz": PUBLIC,
    "faults GET /paths": frozenset({S}),
    "faults PUT /paths/{name}": frozenset({S}),
    **{_O + m: frozenset({D, S}) for m in _OPERATOR_RPCS},
}
#: The routes whose rows also carry the per-booking rule (may_touch, owner_filter).
SCOPED = {_B + m for m in ("PlaceHold", "Book", "ConfirmBooking", "ReleaseHold", "CancelBooking", "GetBooking", "ListBookings")} | {_O + m for m in _OPERATOR_RPCS}


def served_rpcs() -> list[str]:
    """Every unary and streaming method of every service a Ridgeline server serves, from the descriptors."""
    modules = (booking_pb2, cluster_pb2, trek_pb2, operator_pb2, health_pb2, reflection_pb2)
    routes = [policy.grpc_route(s.full_name, m.name) for module in modules for s in module.DESCRIPTOR.services_by_name.values() for m in s.methods]
    assert len(routes) == len(set(routes)) and len(routes) >= 25
    return routes


def test_every_rpc_of_every_service_has_a_row() -> None:
    """A new RPC in proto/ridgeline/v1/*.proto (or a new health method) fails here until a row names who may call it."""
    missing = [route for route in served_rpcs() if policy.rule_for(route) is None]
    assert not missing, f"RPCs without a row in policy.TABLE (so refused to everyone): {missing}"
    assert set(served_rpcs()) <= set(EXPECTED), "every RPC has an expected answer written in this test"


def test_the_table_is_exactly_the_expected_one() -> None:
    assert set(policy.TABLE) == set(EXPECTED)
    for route, rule in policy.TABLE.items():
        assert (PUBLIC if rule.public else rule.roles) == EXPECTED[route], route
        assert rule.scoped == (route in SCOPED), route


@pytest.mark.parametrize("route", sorted(EXPECTED))
def test_each_role_gets_the_expected_answer(route: str) -> None:
    expected = EXPECTED[route]
    for role in Role:
        identity = Identity("p-1", role)
        if expected == PUBLIC or role in expected:
            assert policy.authorize(identity, route) is policy.TABLE[route]
        else:
            with pytest.raises(policy.PermissionDenied, match=f"{role.value}:p-1 may not call"):
                policy.authorize(identity, route)


@pytest.mark.parametrize("route", sorted(EXPECTED))
def test_no_identity_passes_only_public_rows(route: str) -> None:
    if EXPECTED[route] == PUBLIC:
        assert policy.authorize(None, route).public
    else:
        with pytest.raises(policy.Unauthenticated, match="needs an identity"):
            policy.authorize(None, route)


@pytest.mark.parametrize("route", ["/ridgeline.v1.BookingService/DropAllTables", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "", "gateway DELETE /v1/charges"])
def test_unknown_route_is_refused_to_everyone(route: str) -> None:
    for identity in [None, *(Identity("p-1", role) for role in Role)]:
        with pytest.raises(policy.PermissionDenied, match="not in Ridgeline's authorization table"):
            policy.authorize(identity, route)


ALPS = {"basecamp_id": "argentiere", "region": "eu-alps"}
ROCKIES = {"basecamp_id": "banff", "region": "na-rockies"}


@pytest.mark.parametrize(
    ("identity", "own_alps", "other_alps", "other_rockies"),
    [
        (None, True, True, True),
        (Identity("ops", S), True, True, True),
        (Identity("n1", N), True, True, True),
        (Identity("front", D), True, True, True),
        (Identity("front", D, frozenset({"eu-alps"})), True, True, False),
        (Identity("front", D, frozenset({"argentiere"})), True, True, False),
        (Identity("summit", A), True, False, False),
        (Identity("summit", A, frozenset({"na-rockies"})), False, False, False),
        (Identity("trails", P), True, True, True),
    ],
    ids=["insecure", "sre", "node", "desk", "desk-region", "desk-basecamp", "agency", "agency-scoped-elsewhere", "planner"],
)
def test_may_touch_per_role(identity: Identity | None, own_alps: bool, other_alps: bool, other_rockies: bool) -> None:
    """``own``: a booking this caller made; ``other``: one someone else made."""
    actor = identity.actor if identity is not None else None
    assert policy.may_touch(identity, created_by=actor, **ALPS) is own_alps
    assert policy.may_touch(identity, created_by="desk:someone-else", **ALPS) is other_alps
    assert policy.may_touch(identity, created_by="desk:someone-else", **ROCKIES) is other_rockies
    assert policy.may_touch(identity, created_by=None, **ROCKIES) is (other_rockies and (identity is None or identity.role is not A))


def test_owner_filter_restricts_only_agencies_to_their_own_bookings() -> None:
    assert policy.owner_filter(Identity("summit", A)) == "agency:summit"
    for identity in [None, *(Identity("p-1", role) for role in Role if role is not A)]:
        assert policy.owner_filter(identity) is None
