"""How the CLI shows replies: rich tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from ridgeline.v1 import booking_pb2 as pb

console = Console()


def as_json(messages: Message | Iterable[Message]) -> None:
    """Prints one message or a list of them as JSON (proto3 JSON mapping, field names as in the .proto)."""
    if isinstance(messages, Message):
        data: object = MessageToDict(messages, preserving_proto_field_name=True)
    else:
        data = [MessageToDict(m, preserving_proto_field_name=True) for m in messages]
    print(json.dumps(data, indent=2, sort_keys=True))


def day(value: pb.Date) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def state_name(state: int) -> str:
    return pb.BookingState.Name(state).removeprefix("BOOKING_STATE_").lower()


def money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency}"


def basecamps(reply: pb.ListBasecampsResponse) -> None:
    table = Table(title="Basecamps")
    for column in ("basecamp", "name", "region", "time zone", "resource", "kind", "capacity", "price/night"):
        table.add_column(column)
    for camp in reply.basecamps:
        for index, r in enumerate(camp.resources):
            first = index == 0
            table.add_row(
                camp.basecamp_id if first else "",
                camp.name if first else "",
                camp.region if first else "",
                camp.time_zone if first else "",
                r.resource_id,
                pb.ResourceKind.Name(r.kind).removeprefix("RESOURCE_KIND_").lower(),
                str(r.capacity),
                money(r.unit_price_cents, r.currency),
            )
    console.print(table)


def availability(reply: pb.GetAvailabilityResponse) -> None:
    table = Table(title=f"Availability at {reply.basecamp_id}")
    for column in ("resource", "night", "capacity", "held", "confirmed", "free"):
        table.add_column(column, justify="right" if column in {"capacity", "held", "confirmed", "free"} else "left")
    for item in reply.resources:
        for night in item.nights:
            free = f"[bold red]{night.free}[/]" if night.free == 0 else str(night.free)
            table.add_row(item.resource.resource_id, day(night.night), str(night.capacity), str(night.held), str(night.confirmed), free)
    console.print(table)


def bookings(items: Iterable[pb.Booking], title: str = "Bookings") -> None:
    table = Table(title=title)
    for column in ("booking", "state", "basecamp", "resource", "nights", "party", "customer", "total", "expires"):
        table.add_column(column)
    for b in items:
        expires = b.expires_at.ToDatetime().strftime("%H:%M:%S UTC") if b.HasField("expires_at") else ""
        table.add_row(
            b.booking_id,
            state_name(b.state),
            b.basecamp_id,
            b.resource_id,
            f"{day(b.nights.start)} → {day(b.nights.end)}",
            str(b.party_size),
            b.customer_id,
            money(b.total_price_cents, b.currency),
            expires,
        )
    console.print(table)


def booking(item: pb.Booking) -> None:
    bookings([item], title=f"Booking {item.booking_id}")
    history = Table(title="History")
    for column in ("version", "from", "to", "at", "reason"):
        history.add_column(column)
    for t in item.history:
        history.add_row(
            str(t.version),
            state_name(t.from_state) if t.from_state else "",
            state_name(t.to_state),
            t.at.ToDatetime().isoformat(timespec="seconds"),
            t.reason,
        )
    console.print(history)
