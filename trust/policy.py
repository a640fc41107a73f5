"""The one authorization table: which roles may make each RPC and each HTTP admin request.

Every gRPC server (nodes, the trek coordinator) and every HTTP surface (the stand-in
payment gateway, the fault-control endpoint) asks :func:`authorize` before anything runs;
a route missing from the table is refused, so a new RPC is closed until a row names who
may call it. Rows that say ``scoped`` carry a data-dependent rule as well, applied where
the booking is read (:func:`may_touch`, :func:`owner_filter`): a desk acts only on its
basecamps or regions (when its identity is scoped), an agency only on bookings it made.
Refusals write nothing: they happen before the servicer or handler runs, or, for the
scoped rule, before the write it guards.
"""

from __future__ import annotations

from dataclasses import dataclass

from ridgeline.trust.identity import Identity, Role

__all__ = ["Rule", "TABLE", "Unauthenticated", "PermissionDenied", "authorize", "rule_for", "may_touch", "owner_filter", "scope_filter", "grpc_route", "http_route"]


class Unauthenticated(Exception):
    """No identity, or one that proves nothing here (UNAUTHENTICATED / HTTP 401)."""


class PermissionDenied(Exception):
    """A valid identity without the right (PERMISSION_DENIED / HTTP 403)."""


@dataclass(frozen=True)
class Rule:
    """Who may make a request. ``public``: no identity needed (health and metrics only)."""

    roles: frozenset[Role]
    scoped: bool = False
    public: bool = False

    def __post_init__(self) -> None:
        assert self.public or self.roles, "a rule that admits nobody is a missing row, not a rule"
        assert not (self.public and self.scoped), "a public route has no caller to scope"


def grpc_route(service: str, method: str) -> str:
    """The table's key for an RPC, as grpc names it: ``/ridgeline.v1.BookingService/PlaceHold``."""
    return f"/{service}/{method}"


def http_route(surface: str, verb: str, path_template: str) -> str:
    """The table's key for an HTTP request: ``gateway POST /v1/charges``."""
    return f"{surface} {verb} {path_template}"


_ALL = frozenset(Role)
_DESKS = frozenset({Role.DESK, Role.AGENCY})
_READERS = frozenset({Role.DESK, Role.AGENCY, Role.SRE})
_NODE = frozenset({Role.NODE})
_SRE = frozenset({Role.SRE})
_OPERATORS = frozenset({Role.SRE, Role.DESK})
_BOOKING = "ridgeline.v1.BookingService"
_CLUSTER = "ridgeline.v1.ClusterService"
_TREK = "ridgeline.v1.TrekService"
_LEG = "ridgeline.v1.TrekLegService"
_OPERATOR = "ridgeline.v1.OperatorService"
_TREK_OPERATOR = "ridgeline.v1.TrekOperatorService"
_HEALTH = "grpc.health.v1.Health"
_REFLECTION = "grpc.reflection.v1alpha.ServerReflection"

TABLE: dict[str, Rule] = {
    # The catalog and the ring: anyone Ridgeline knows (planners plan with them, the
    # coordinator finds a leg's region, clients route by ClusterInfo).
    grpc_route(_BOOKING, "ListBasecamps"): Rule(_ALL),
    grpc_route(_BOOKING, "GetAvailability"): Rule(_ALL),
    grpc_route(_CLUSTER, "GetClusterInfo"): Rule(_ALL),
    # Workflow versions and their rollout (ARCHITECTURE.md §11): an operation for SREs.
    grpc_route(_CLUSTER, "ListWorkflowVersions"): Rule(_SRE),
    grpc_route(_CLUSTER, "SetRollout"): Rule(_SRE),
    grpc_route(_CLUSTER, "RetireWorkflowVersion"): Rule(_SRE),
    # Bookings: desks and agencies book; an agency sees and changes only its own, a
    # scoped desk only its basecamps; SREs read everything (and act through drills).
    grpc_route(_BOOKING, "PlaceHold"): Rule(_DESKS, scoped=True),
    grpc_route(_BOOKING, "Book"): Rule(_DESKS, scoped=True),
    grpc_route(_BOOKING, "ConfirmBooking"): Rule(_DESKS, scoped=True),
    grpc_route(_BOOKING, "ReleaseHold"): Rule(_DESKS, scoped=True),
    grpc_route(_BOOKING, "CancelBooking"): Rule(_DESKS, scoped=True),
    grpc_route(_BOOKING, "GetBooking"): Rule(_READERS, scoped=True),
    grpc_route(_BOOKING, "ListBookings"): Rule(_READERS, scoped=True),
    # Operator actions on stuck work (issue 14) and the reads a console needs: SREs
    # anywhere, desks within their scope (a scoped desk's basecamps); never agencies.
    grpc_route(_OPERATOR, "RetrySettlement"): Rule(_OPERATORS, scoped=True),
    grpc_route(_OPERATOR, "ReleaseHold"): Rule(_OPERATORS, scoped=True),
    grpc_route(_OPERATOR, "RefundCharge"): Rule(_OPERATORS, scoped=True),
    grpc_route(_OPERATOR, "BulkAction"): Rule(_OPERATORS, scoped=True),
    grpc_route(_OPERATOR, "ListInFlight"): Rule(_OPERATORS, scoped=True),
    grpc_route(_OPERATOR, "GetTimeline"): Rule(_OPERATORS, scoped=True),
    grpc_route(_OPERATOR, "ListActions"): Rule(_OPERATORS, scoped=True),
    # Treks: planners plan and cancel; SREs follow them.
    grpc_route(_TREK, "PlanTrek"): Rule(frozenset({Role.PLANNER})),
    grpc_route(_TREK, "CancelTrek"): Rule(frozenset({Role.PLANNER})),
    grpc_route(_TREK, "GetTrek"): Rule(frozenset({Role.PLANNER, Role.SRE})),
    grpc_route(_TREK, "ListTreks"): Rule(frozenset({Role.PLANNER, Role.SRE})),
    # Operator actions on treks (issue 14): a redrive or an abort reaches every region a
    # trek spans, so only SREs, never a desk (scoped to basecamps) or a planner.
    grpc_route(_TREK_OPERATOR, "RedriveTrek"): Rule(_SRE),
    grpc_route(_TREK_OPERATOR, "AbortTrek"): Rule(_SRE),
    # Internal: legs and decisions pass only between Ridgeline's own processes.
    grpc_route(_TREK, "GetDecision"): Rule(_NODE),
    grpc_route(_LEG, "PrepareLeg"): Rule(_NODE),
    grpc_route(_LEG, "CommitLeg"): Rule(_NODE),
    grpc_route(_LEG, "AbortLeg"): Rule(_NODE),
    grpc_route(_LEG, "CancelLeg"): Rule(_NODE),
    # Probes answer any TLS client; reflection only an identity.
    grpc_route(_HEALTH, "Check"): Rule(frozenset(), public=True),
    grpc_route(_HEALTH, "Watch"): Rule(frozenset(), public=True),
    grpc_route(_HEALTH, "List"): Rule(frozenset(), public=True),
    grpc_route(_REFLECTION, "ServerReflectionInfo"): Rule(_ALL),
    # The stand-in payment gateway: nodes and the coordinator pay; SREs read and fault it.
    http_route("gateway", "POST", "/v1/charges"): Rule(_NODE),
    http_route("gateway", "POST", "/v1/refunds"): Rule(_NODE),
    http_route("gateway", "GET", "/v1/charges/{charge_id}"): Rule(frozenset({Role.NODE, Role.SRE})),
    http_route("gateway", "GET", "/v1/charges"): Rule(frozenset({Role.NODE, Role.SRE})),
    http_route("gateway", "GET", "/admin/faults"): Rule(_SRE),
    http_route("gateway", "PUT", "/admin/faults"): Rule(_SRE),
    http_route("gateway", "GET", "/admin/stats"): Rule(_SRE),
    http_route("gateway", "GET", "/metrics"): Rule(frozenset(), public=True),
    http_route("gateway", "GET", "/healthz"): Rule(frozenset(), public=True),
    # `ridgeline up`'s fault-control endpoint: drills only.
    http_route("faults", "GET", "/paths"): Rule(_SRE),
    http_route("faults", "PUT", "/paths/{name}"): Rule(_SRE),
}


def rule_for(route: str) -> Rule | None:
    return TABLE.get(route)


def authorize(identity: Identity | None, route: str) -> Rule:
    """The rule that admits ``identity`` to ``route``; raises when none does.

    Order matters for the message: an unknown route is refused to everyone, a public one
    admits anyone, and otherwise an identity must be proven before its role is judged.
    """
    rule = TABLE.get(route)
    if rule is None:
        raise PermissionDenied(f"{route} is not in Ridgeline's authorization table, so nobody may call it")
    if rule.public:
        return rule
    if identity is None:
        raise Unauthenticated(f"{route} needs an identity: a client certificate signed by the cluster CA, or a bearer token")
    if identity.role not in rule.roles:
        allowed = ", ".join(sorted(r.value for r in rule.roles))
        raise PermissionDenied(f"{identity.actor} may not call {route}: it needs the role {allowed}")
    return rule


def may_touch(identity: Identity | None, *, basecamp_id: str, region: str, created_by: str | None) -> bool:
    """The scoped rule for one booking: a desk within its scope, an agency on its own bookings.

    ``identity`` None means the server runs without authentication (``--insecure``).
    """
    if identity is None or identity.role in (Role.SRE, Role.NODE):
        return True
    if identity.role is Role.AGENCY:
        return created_by == identity.actor and identity.covers(basecamp_id, region)
    return identity.covers(basecamp_id, region)


def owner_filter(identity: Identity | None) -> str | None:
    """The actor whose bookings a listing is restricted to (an agency's own), else None."""
    return identity.actor if identity is not None and identity.role is Role.AGENCY else None


def scope_filter(identity: Identity | None, region: str) -> frozenset[str] | None:
    """The basecamps of ``region`` a scoped caller reaches (its scope's entries), else None (all of them).

    The SQL form of :func:`may_touch`'s scope half: a listing or a change restricted to
    ``basecamp_id = ANY(scope)``; None for SREs, nodes, unscoped callers and a scope that
    names the whole region.
    """
    if identity is None or identity.role in (Role.SRE, Role.NODE) or not identity.scope or region in identity.scope:
        return None
    return identity.scope
