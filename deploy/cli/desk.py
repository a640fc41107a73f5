"""Desk commands: basecamps, availability, book, bookings, show and cancel.

They talk to the cluster through the routing client: ``--target`` (or RIDGELINE_TARGET)
names one or more seed nodes, comma-separated; without it they use the cluster
``ridgeline up`` runs, else the demo node.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

import typer

from ridgeline.deploy.cli import render
from ridgeline.deploy.cli.options import Json, Target, Timeout, cluster_client, parse_day, parse_duration_seconds, print_reply
from ridgeline.v1 import booking_pb2 as pb

#: Top-level commands; ``ridgeline.deploy.cli`` merges them into ``ridgeline``.
commands = typer.Typer()


@commands.command()
def basecamps(target: Target = "", json_out: Json = False, timeout: Timeout = 10.0) -> None:
    """List the basecamps and resources of every region."""
    with cluster_client(target, timeout) as client:
        print_reply(json_out, client.list_basecamps(), render.basecamps)


@commands.command()
def availability(
    basecamp: Annotated[str, typer.Argument(help="Basecamp id, e.g. argentiere.")],
    start: Annotated[str, typer.Option("--from", help="First night (YYYY-MM-DD); default today.")] = "",
    end: Annotated[str, typer.Option("--to", help="Check-out day (YYYY-MM-DD); default 7 nights later.")] = "",
    resource: Annotated[str, typer.Option("--resource", help="Only this resource.")] = "",
    target: Target = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """Free units per resource and night."""
    first = parse_day(start, "--from") if start else date.today()
    last = parse_day(end, "--to") if end else first + timedelta(days=7)
    with cluster_client(target, timeout) as client:
        print_reply(json_out, client.availability(basecamp, first, last, resource), render.availability)


@commands.command()
def book(
    basecamp: Annotated[str, typer.Argument(help="Basecamp id.")],
    resource: Annotated[str, typer.Argument(help="Resource id, e.g. argentiere-dorm.")],
    start: Annotated[str, typer.Option("--from", help="First night (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--to", help="Check-out day (YYYY-MM-DD).")],
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    party: Annotated[int, typer.Option("--party", help="Units (beds, places, lockers).")] = 1,
    hold_only: Annotated[bool, typer.Option("--hold-only", help="Place the hold and leave it unconfirmed.")] = False,
    desk: Annotated[bool, typer.Option("--desk", help="Paid at the desk: hold and confirm at once, no settlement.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Return once the payment is settled (within --timeout).")] = False,
    ttl: Annotated[int, typer.Option("--ttl", help="Hold TTL in seconds (0: node default).")] = 0,
    key: Annotated[str, typer.Option("--key", help="Idempotency key; repeat it to retry safely.")] = "",
    target: Target = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """Book a stay: the node charges it and confirms it (Book); or --desk, or --hold-only."""
    first, last = parse_day(start, "--from"), parse_day(end, "--to")
    with cluster_client(target, timeout) as client:
        hold_key = key or None
        if not (hold_only or desk):
            booking = client.book(basecamp, resource, first, last, party, customer, hold_ttl_seconds=ttl, wait=wait, idempotency_key=hold_key)
            print_reply(json_out, booking, render.booking)
            return
        booking = client.place_hold(basecamp, resource, first, last, party, customer, hold_ttl_seconds=ttl, idempotency_key=hold_key)
        if desk and booking.state == pb.BOOKING_STATE_HELD:
            confirm_key = f"{key}:confirm" if key else None
            booking = client.confirm(booking.booking_id, idempotency_key=confirm_key)
        print_reply(json_out, booking, render.booking)


@commands.command()
def bookings(
    basecamp: Annotated[str, typer.Option("--basecamp", help="Only this basecamp.")] = "",
    state: Annotated[str, typer.Option("--state", help="held, confirmed, released, expired or cancelled.")] = "",
    start: Annotated[str, typer.Option("--from", help="With a night on or after this date.")] = "",
    end: Annotated[str, typer.Option("--to", help="With a night before this date.")] = "",
    limit: Annotated[int, typer.Option("--limit", help="At most this many (newest first).")] = 50,
    region: Annotated[str, typer.Option("--region", help="Region to list when no --basecamp is given (default: every region).")] = "",
    stuck: Annotated[str, typer.Option("--stuck", help="Only bookings older than this (e.g. 90s, 10m, 2h) still held or awaiting payment, or with a timer overdue by as much.")] = "",
    workflow: Annotated[str, typer.Option("--workflow", help="Only bookings that run this workflow version, e.g. settle@2.")] = "",
    target: Target = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """List bookings, newest first."""
    request = pb.ListBookingsRequest(
        basecamp_id=basecamp, page_size=min(limit, 500), stuck_seconds=parse_duration_seconds(stuck, "--stuck") if stuck else 0, workflow=workflow
    )
    if state:
        try:
            request.state = pb.BookingState.Value(f"BOOKING_STATE_{state.upper()}")
        except ValueError:
            raise typer.BadParameter(f"--state must be held, confirmed, released, expired or cancelled, not {state!r}") from None
    if start or end:
        first = parse_day(start, "--from") if start else date(2000, 1, 1)
        last = parse_day(end, "--to") if end else first + timedelta(days=366)
        request.nights.start.CopyFrom(pb.Date(year=first.year, month=first.month, day=first.day))
        request.nights.end.CopyFrom(pb.Date(year=last.year, month=last.month, day=last.day))
    with cluster_client(target, timeout) as client:
        regions = [client.region_of(basecamp)] if basecamp else ([region] if region else client.regions())
        found: list[pb.Booking] = []
        for name in regions:
            page = pb.ListBookingsRequest()
            page.CopyFrom(request)
            while len(found) < limit:
                reply = client.list_bookings(page, region=name)
                found.extend(reply.bookings)
                if not reply.next_page_token:
                    break
                page.page_token = reply.next_page_token
        found.sort(key=lambda b: b.created_at.ToDatetime(), reverse=True)
        print_reply(json_out, found[:limit], render.bookings)


@commands.command()
def show(
    booking_id: Annotated[str, typer.Argument(help="Booking id.")],
    target: Target = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """One booking with its full history."""
    with cluster_client(target, timeout) as client:
        print_reply(json_out, client.get_booking(booking_id), render.booking)


@commands.command()
def confirm(
    booking_id: Annotated[str, typer.Argument(help="Booking id of a hold.")],
    key: Annotated[str, typer.Option("--key", help="Idempotency key; repeat it to retry safely.")] = "",
    target: Target = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """Confirm a hold paid at the desk (no settlement): it becomes a booking."""
    with cluster_client(target, timeout) as client:
        print_reply(json_out, client.confirm(booking_id, idempotency_key=key or None), render.booking)


@commands.command()
def cancel(
    booking_id: Annotated[str, typer.Argument(help="Booking id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the booking's history.")] = "",
    key: Annotated[str, typer.Option("--key", help="Idempotency key; repeat it to retry safely.")] = "",
    target: Target = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """Cancel a confirmed booking, or release a hold; the units go back on sale."""
    with cluster_client(target, timeout) as client:
        current = client.get_booking(booking_id)
        if current.state == pb.BOOKING_STATE_HELD:
            booking = client.release(booking_id, reason=reason, idempotency_key=key or None)
        else:
            booking = client.cancel(booking_id, reason=reason, idempotency_key=key or None)
        print_reply(json_out, booking, render.booking)
