"""``ridgeline ops``: what operators do to stuck work, through OperatorService (issue 14).

Every action takes ``--key`` (repeat it to get the first outcome, with no second effect)
and ``--reason`` (recorded with the action and the actor); every answer is the booking as
re-read after the action. Commands act as the ``sre`` pair unless ``--as`` names another.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated

import typer

from ridgeline.deploy.cli import render_ops
from ridgeline.deploy.cli.options import Json, Target, Timeout, cluster_client, parse_duration_seconds, print_reply
from ridgeline.routing.operator_client import OperatorClient
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import operator_pb2 as opb

ops_app = typer.Typer(no_args_is_help=True, help="Operator actions on stuck work, and what is in flight.")

Key = Annotated[str, typer.Option("--key", help="Idempotency key; repeat it to get the first outcome.")]
Reason = Annotated[str, typer.Option("--reason", help="Why, recorded with the action.")]
Wait = Annotated[int, typer.Option("--wait", help="Seconds to wait for the step to run (0: the node's 10 s).")]
As = Annotated[str, typer.Option("--as", help="Client pair to act as (sre, or a desk).")]
_ACTIONS = {"retry": opb.OPERATOR_ACTION_RETRY_SETTLEMENT, "release": opb.OPERATOR_ACTION_RELEASE_HOLD, "refund": opb.OPERATOR_ACTION_REFUND_CHARGE}
_KINDS = {"stuck": opb.IN_FLIGHT_KIND_STUCK, "timers": opb.IN_FLIGHT_KIND_WAITING_ON_TIMER, "legs": opb.IN_FLIGHT_KIND_LEG_IN_DOUBT}
_STATES = {"held": pb.BOOKING_STATE_HELD, "confirmed": pb.BOOKING_STATE_CONFIRMED, "released": pb.BOOKING_STATE_RELEASED,
           "expired": pb.BOOKING_STATE_EXPIRED, "cancelled": pb.BOOKING_STATE_CANCELLED}


def _timeout(timeout: float, wait: int) -> float:
    return max(timeout, wait + 15.0)


def _act(pick: Callable[[OperatorClient], Callable[..., opb.ActionOutcome]], booking_id: str, key: str, reason: str, wait: int | None, act_as: str, target: str, json_out: bool, timeout: float) -> None:
    """One action on one booking, at its basecamp's owner; ``wait`` None for an action that waits for nothing."""
    budget = _timeout(timeout, wait or 0)
    extra = {} if wait is None else {"wait_seconds": wait}
    with cluster_client(target, budget, principal=act_as) as cluster:
        reply = pick(OperatorClient(cluster, timeout_seconds=budget))(booking_id, reason=reason, idempotency_key=key or None, **extra)
        print_reply(json_out, reply, render_ops.outcomes)


@ops_app.command()
def retry(booking_id: str, key: Key = "", reason: Reason = "", wait: Wait = 0, act_as: As = "sre", target: Target = "", json_out: Json = False, timeout: Timeout = 30.0) -> None:
    """Take a booking's settlement step now; answers once it ran (or --wait passed)."""
    _act(lambda c: c.retry_settlement, booking_id, key, reason, wait, act_as, target, json_out, timeout)


@ops_app.command()
def release(booking_id: str, key: Key = "", reason: Reason = "", act_as: As = "sre", target: Target = "", json_out: Json = False, timeout: Timeout = 30.0) -> None:
    """Release a hold (one being paid is released and any charge refunded)."""
    _act(lambda c: c.release_hold, booking_id, key, reason, None, act_as, target, json_out, timeout)


@ops_app.command()
def refund(booking_id: str, key: Key = "", reason: Reason = "", wait: Wait = 0, act_as: As = "sre", target: Target = "", json_out: Json = False, timeout: Timeout = 30.0) -> None:
    """Refund whatever stands of a booking that is not confirmed."""
    _act(lambda c: c.refund_charge, booking_id, key, reason, wait, act_as, target, json_out, timeout)


@ops_app.command()
def bulk(
    action: Annotated[str, typer.Argument(help="retry, release or refund.")],
    basecamp: Annotated[str, typer.Option("--basecamp", help="Only this basecamp.")] = "",
    state: Annotated[str, typer.Option("--state", help="Only bookings in this state (held, confirmed, …).")] = "",
    stuck: Annotated[str, typer.Option("--stuck", help="Only stuck for longer than this (e.g. 10m).")] = "",
    workflow: Annotated[str, typer.Option("--workflow", help="Only this workflow version (settle@2).")] = "",
    region: Annotated[str, typer.Option("--region", help="Without --basecamp: the region to act in.")] = "",
    limit: Annotated[int, typer.Option("--limit", help="At most this many bookings (0: 100).")] = 0,
    key: Key = "", reason: Reason = "", wait: Wait = 0, act_as: As = "sre", target: Target = "", json_out: Json = False, timeout: Timeout = 60.0,
) -> None:
    """One action over every booking a filter selects, reported per booking."""
    if action not in _ACTIONS or (state and state not in _STATES):
        raise typer.BadParameter(f"action is one of {', '.join(_ACTIONS)}; --state one of {', '.join(_STATES)}")
    where = opb.BookingFilter(basecamp_id=basecamp, state=_STATES.get(state, 0), stuck_seconds=parse_duration_seconds(stuck, "--stuck") if stuck else 0, workflow=workflow)
    request = opb.BulkActionRequest(idempotency_key=key or str(uuid.uuid4()), action=_ACTIONS[action], filter=where, reason=reason, limit=limit, wait_seconds=wait)
    with cluster_client(target, _timeout(timeout, wait), principal=act_as) as cluster:
        reply = OperatorClient(cluster, timeout_seconds=_timeout(timeout, wait)).bulk(request, region=region or None)
        print_reply(json_out, reply, render_ops.outcomes)


@ops_app.command("in-flight")
def in_flight(
    kind: Annotated[str, typer.Argument(help="stuck, timers or legs.")] = "stuck",
    older_than: Annotated[str, typer.Option("--older-than", help="e.g. 10m (stuck: since created; timers, legs: overdue by).")] = "",
    basecamp: Annotated[str, typer.Option("--basecamp", help="Only this basecamp.")] = "",
    region: Annotated[str, typer.Option("--region", help="Without --basecamp: the region to list.")] = "eu-alps",
    page: Annotated[str, typer.Option("--page", help="A next-page token from a previous listing.")] = "",
    act_as: As = "sre", target: Target = "", json_out: Json = False, timeout: Timeout = 10.0,
) -> None:
    """Work that is not finished: stuck bookings, pending timers, legs in doubt (one page)."""
    if kind not in _KINDS:
        raise typer.BadParameter(f"kind is one of {', '.join(_KINDS)}")
    seconds = parse_duration_seconds(older_than, "--older-than") if older_than else 0
    request = opb.ListInFlightRequest(kind=_KINDS[kind], older_than_seconds=seconds, basecamp_id=basecamp, page_token=page)
    with cluster_client(target, timeout, principal=act_as) as cluster:
        print_reply(json_out, OperatorClient(cluster, timeout_seconds=timeout).list_in_flight(request, region=region), render_ops.in_flight)


@ops_app.command()
def timeline(booking_id: str, act_as: As = "sre", target: Target = "", json_out: Json = False, timeout: Timeout = 10.0) -> None:
    """Every transition, payment fact, step and operator action of one booking, with its trace id."""
    with cluster_client(target, timeout, principal=act_as) as cluster:
        print_reply(json_out, OperatorClient(cluster, timeout_seconds=timeout).timeline(booking_id), render_ops.timeline)
