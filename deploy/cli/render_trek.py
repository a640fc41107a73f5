"""How the trek CLI shows treks: one trek as fields, legs and charges; a list as one line each."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table

from ridgeline.deploy.cli.render import console, money, stay
from ridgeline.v1 import trek_pb2 as tpb


def trek_state(state: int) -> str:
    return tpb.TrekState.Name(state).removeprefix("TREK_STATE_").lower()


def _millis_after(trek: tpb.Trek, field: str) -> str:
    if not trek.HasField(field):
        return ""
    elapsed = getattr(trek, field).ToDatetime() - trek.created_at.ToDatetime()
    return f"+{elapsed.total_seconds() * 1000:.0f} ms"


def trek(item: tpb.Trek) -> None:
    fields = Table(title=f"Trek {item.trek_id}", show_header=False)
    fields.add_column("field", style="bold")
    fields.add_column("value")
    for name, value in (
        ("state", trek_state(item.state)),
        ("decision", tpb.Decision.Name(item.decision).removeprefix("DECISION_").lower()),
        ("reason", item.reason),
        ("customer", item.customer_id),
        ("planned by", item.planned_by),
        ("created", item.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("decided", _millis_after(item, "decided_at")),
        ("decided by", item.decided_by),
        ("cancelled by", item.cancelled_by),
        ("settled", _millis_after(item, "settled_at")),
    ):
        fields.add_row(name, value)
    console.print(fields)
    # Two tables, so that each stays readable at 80 columns: what each leg is, then its booking.
    legs = Table(title="Legs")
    for column in ("#", "resource", "party", "stay", "state", "price"):
        legs.add_column(column, no_wrap=column != "price")
    bookings = Table(title="Leg bookings")
    for column in ("#", "region", "booking / detail"):
        bookings.add_column(column, no_wrap=column != "booking / detail")
    for leg in item.legs:
        legs.add_row(
            str(leg.leg_index),
            leg.leg.resource_id,
            str(leg.leg.party_size),
            stay(leg.leg.nights),
            tpb.LegState.Name(leg.state).removeprefix("LEG_STATE_").lower(),
            money(leg.price_cents, leg.currency) if leg.currency else "",
        )
        bookings.add_row(str(leg.leg_index), leg.region, leg.booking_id or leg.detail)
    console.print(legs)
    console.print(bookings)
    if item.charges:
        charges = Table(title="Charges")
        for column in ("charge", "amount", "refunded"):
            charges.add_column(column)
        for c in item.charges:
            charges.add_row(c.charge_id, money(c.amount_cents, c.currency), money(c.refunded_cents, c.currency))
        console.print(charges)


def treks(items: Iterable[tpb.Trek]) -> None:
    """One line per trek; the id never wraps (a planner copies it). ``show`` has the rest."""
    table = Table(title="Treks")
    for column in ("trek", "state", "legs", "created"):
        table.add_column(column, no_wrap=True)
    for t in items:
        table.add_row(t.trek_id, trek_state(t.state), str(len(t.legs)), t.created_at.ToDatetime().strftime("%m-%d %H:%M:%S"))
    console.print(table)
