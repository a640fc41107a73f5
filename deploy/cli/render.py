"""How the CLI shows replies: rich tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date

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


def stay(nights: pb.NightRange) -> str:
    """A night range as its first night and its length, e.g. ``2026-12-20 +2 nights``."""
    start = date(nights.start.year, nights.start.month, nights.start.day)
    end = date(nights.end.year, nights.end.month, nights.end.day)
    count = (end - start).days
    return f"{start.isoformat()} +{count} night{'s' if count != 1 else ''}"


def _expires(item: pb.Booking) -> str:
    return item.expires_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC") if item.HasField("expires_at") else ""


def payment_name(item: pb.Booking) -> str:
    """The payment state, with attempts while they matter; empty for unpaid holds."""
    if not item.HasField("payment"):
        return ""
    name = pb.PaymentState.Name(item.payment.state).removeprefix("PAYMENT_STATE_").lower().replace("_", " ")
    return f"{name} ({item.payment.attempts} tries)" if item.payment.attempts > 1 else name


def bookings(items: Iterable[pb.Booking], title: str = "Bookings") -> None:
    """One line per booking; the id and the stay never wrap (a desk copies the id)."""
    table = Table(title=title)
    for column in ("booking", "state", "payment", "resource", "stay", "party", "total"):
        table.add_column(column, no_wrap=column in {"booking", "stay"})
    for b in items:
        table.add_row(b.booking_id, state_name(b.state), payment_name(b), b.resource_id, stay(b.nights), str(b.party_size), money(b.total_price_cents, b.currency))
    console.print(table)


def booking(item: pb.Booking) -> None:
    """Every field of one booking, then its history."""
    fields = Table(title=f"Booking {item.booking_id}", show_header=False)
    fields.add_column("field", style="bold")
    fields.add_column("value")
    for name, value in (
        ("state", state_name(item.state)),
        ("basecamp", item.basecamp_id),
        ("resource", item.resource_id),
        ("nights", f"{day(item.nights.start)} → {day(item.nights.end)} (check-out)"),
        ("party", str(item.party_size)),
        ("customer", item.customer_id),
        ("created by", item.created_by),
        ("workflow", item.workflow),
        ("total", money(item.total_price_cents, item.currency)),
        ("hold expires", _expires(item)),
        ("payment", payment_name(item)),
        ("payment error", item.payment.last_error),
        ("charge", item.payment.charge_id),
        ("trace", item.payment.trace_id),
    ):
        fields.add_row(name, value)
    console.print(fields)
    history = Table(title="History")
    for column in ("version", "from", "to", "at", "by", "reason"):
        history.add_column(column, no_wrap=column == "by")
    for t in item.history:
        history.add_row(
            str(t.version),
            state_name(t.from_state) if t.from_state else "",
            state_name(t.to_state),
            t.at.ToDatetime().isoformat(timespec="seconds"),
            t.actor,
            t.reason,
        )
    console.print(history)
    if item.steps:
        steps = Table(title=f"Steps of {item.workflow}")
        for column in ("at", "step", "amount", "detail"):
            steps.add_column(column, no_wrap=column == "step")
        for s in item.steps:
            amount = money(s.amount_cents, item.currency) if s.amount_cents else ""
            steps.add_row(s.at.ToDatetime().isoformat(timespec="seconds"), s.step, amount, s.detail)
        console.print(steps)
