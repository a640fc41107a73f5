"""``ridgeline trek plan|show|cancel|list``: cross-region treks (``ridgeline coordinator`` runs their coordinator).

Planner commands talk to the coordinators over gRPC (``--target``, or
RIDGELINE_COORDINATOR: every coordinator's host:port, comma-separated; the call goes to
whichever leads); gRPC failures end the command with the status and message.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import grpc
import typer

from ridgeline.deploy.cli import render, render_trek
from ridgeline.deploy.cli.options import Json, Timeout, client_transport, parse_day
from ridgeline.routing import night_range
from ridgeline.routing.coordinator_set import CoordinatorSet, LeaderStub, parse_targets
from ridgeline.v1 import trek_pb2 as tpb

#: The coordinators of the built-in local cluster (`ridgeline up`).
DEFAULT_COORDINATOR = "127.0.0.1:26070,127.0.0.1:26071"

#: ``ridgeline trek``; ``ridgeline.deploy.cli`` adds it under that name.
trek_app = typer.Typer(no_args_is_help=True, help="Cross-region treks: every leg booked and paid, or none.")

Coordinator = Annotated[
    str, typer.Option("--target", envvar="RIDGELINE_COORDINATOR", help="Coordinator addresses host:port[,host:port…] (default: the `ridgeline up` cluster's).")
]


@contextmanager
def _stub(target: str) -> Iterator[LeaderStub]:
    from ridgeline.deploy.cluster.local_cluster import state_coordinator

    try:
        targets = parse_targets(target or state_coordinator() or DEFAULT_COORDINATOR)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    coordinators = CoordinatorSet(targets, client_transport("planner"))
    try:
        yield coordinators.stub()
    except grpc.RpcError as error:
        typer.secho(f"error: {error.code().name}: {error.details()}", err=True, fg="red")
        raise typer.Exit(2) from None
    finally:
        coordinators.close()


def parse_leg(spec: str) -> tpb.TrekLeg:
    """``BASECAMP:RESOURCE:FROM:TO[:PARTY]``, e.g. ``argentiere:argentiere-dorm:2026-12-20:2026-12-22:2``."""
    parts = spec.split(":")
    if len(parts) not in (4, 5):
        raise typer.BadParameter(f"--leg must be BASECAMP:RESOURCE:FROM:TO[:PARTY], not {spec!r}")
    start, end = parse_day(parts[2], "--leg FROM"), parse_day(parts[3], "--leg TO")
    party = parts[4] if len(parts) == 5 else "1"
    if not party.isdigit():
        raise typer.BadParameter(f"--leg PARTY must be a number, not {party!r}")
    return tpb.TrekLeg(basecamp_id=parts[0], resource_id=parts[1], nights=night_range(start, end), party_size=int(party))


def _show_trek(json_out: bool, trek: tpb.Trek) -> None:
    if json_out:
        render.as_json(trek)
    else:
        render_trek.trek(trek)


@trek_app.command()
def plan(
    legs: Annotated[list[str], typer.Option("--leg", help="BASECAMP:RESOURCE:FROM:TO[:PARTY]; repeat for each leg, in route order.")],
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    key: Annotated[str, typer.Option("--key", help="Idempotency key; repeat it to retry safely.")] = "",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Return once the trek is settled (or the timeout passes).")] = True,
    target: Coordinator = "",
    json_out: Json = False,
    timeout: Timeout = 30.0,
) -> None:
    """Book every leg of a trek and charge it once, or book nothing."""
    request = tpb.PlanTrekRequest(idempotency_key=key or str(uuid.uuid4()), customer_id=customer, legs=[parse_leg(s) for s in legs], wait=wait)
    with _stub(target) as stub:
        _show_trek(json_out, stub.PlanTrek(request, timeout=timeout))


@trek_app.command()
def show(trek_id: Annotated[str, typer.Argument(help="Trek id.")], target: Coordinator = "", json_out: Json = False, timeout: Timeout = 10.0) -> None:
    """One trek: its legs, decision, charges and timings."""
    with _stub(target) as stub:
        _show_trek(json_out, stub.GetTrek(tpb.GetTrekRequest(trek_id=trek_id), timeout=timeout))


@trek_app.command()
def cancel(
    trek_id: Annotated[str, typer.Argument(help="Trek id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the trek's record.")] = "",
    target: Coordinator = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """Abort an undecided trek, or cancel every leg of a committed one and refund it."""
    with _stub(target) as stub:
        _show_trek(json_out, stub.CancelTrek(tpb.CancelTrekRequest(trek_id=trek_id, reason=reason), timeout=timeout))


@trek_app.command(name="list")
def list_treks(
    state: Annotated[str, typer.Option("--state", help="preparing, committing, committed, aborting, aborted, cancelling or cancelled.")] = "",
    stuck: Annotated[int, typer.Option("--stuck", help="Only unfinished treks older than this many seconds.")] = 0,
    limit: Annotated[int, typer.Option("--limit", help="At most this many (newest first).")] = 50,
    target: Coordinator = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """List treks, newest first."""
    request = tpb.ListTreksRequest(stuck_after_seconds=stuck, page_size=min(max(limit, 1), 500))
    if state:
        try:
            request.state = tpb.TrekState.Value(f"TREK_STATE_{state.upper()}")
        except ValueError:
            raise typer.BadParameter(f"--state {state!r} is not a trek state") from None
    with _stub(target) as stub:
        reply = stub.ListTreks(request, timeout=timeout)
    if json_out:
        render.as_json(list(reply.treks))
    else:
        render_trek.treks(reply.treks)
