"""How ``ridgeline ops`` shows operator replies: tables that fit 80 columns (ids never wrap, details do)."""

from __future__ import annotations

from rich.table import Table

from ridgeline.deploy.cli.render import console, state_name
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import operator_pb2 as opb

#: The terminal width the tables are laid out for.
WIDTH_COLUMNS = 80


def _result(value: int) -> str:
    return opb.ActionResult.Name(value).removeprefix("ACTION_RESULT_").lower()


def _payment(value: int) -> str:
    return pb.PaymentState.Name(value).removeprefix("PAYMENT_STATE_").lower() if value else "-"


def _when(ts) -> str:  # noqa: ANN001 - a protobuf Timestamp
    return ts.ToDatetime().strftime("%m-%d %H:%M:%S") if ts.seconds else "-"


def outcomes(reply: opb.BulkActionResponse | opb.ActionOutcome) -> None:
    """One line per booking: what the action did, as the re-read found it, and why."""
    rows = [reply] if isinstance(reply, opb.ActionOutcome) else list(reply.outcomes)
    table = Table(title="Operator actions", width=WIDTH_COLUMNS)
    table.add_column("booking", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("now", no_wrap=True)
    table.add_column("detail")
    for o in rows:
        now = f"{state_name(o.booking.state)}/{_payment(o.booking.payment.state)}" if o.HasField("booking") else o.error_code
        table.add_row(o.booking_id, _result(o.result), now, o.detail)
    console.print(table, width=WIDTH_COLUMNS)
    if isinstance(reply, opb.BulkActionResponse) and reply.truncated:
        console.print("more bookings matched: run it again (with a new --key) for the rest", width=WIDTH_COLUMNS)


def in_flight(reply: opb.ListInFlightResponse) -> None:
    table = Table(title="In flight", width=WIDTH_COLUMNS)
    for column in ("booking", "basecamp", "state", "next", "why"):
        table.add_column(column, no_wrap=column != "why")
    for i in reply.items:
        why = i.timer_step or (f"{i.trek_id}#{i.leg_index}" if i.trek_id else i.last_error) or _payment(i.payment_state)
        table.add_row(i.booking_id, i.basecamp_id, state_name(i.state), _when(i.next_at), why)
    console.print(table, width=WIDTH_COLUMNS)
    if reply.next_page_token:
        console.print(f"next page: --page {reply.next_page_token}", width=WIDTH_COLUMNS, soft_wrap=True)


def timeline(reply: opb.BookingTimeline) -> None:
    title = f"Timeline of {reply.booking.booking_id}" + (f" (trace {reply.trace_id})" if reply.trace_id else "")
    table = Table(title=title, width=WIDTH_COLUMNS)
    for column in ("at", "kind", "actor", "what"):
        table.add_column(column, no_wrap=column != "what")
    for e in reply.entries:
        table.add_row(_when(e.at), opb.TimelineKind.Name(e.kind).removeprefix("TIMELINE_KIND_").lower(), e.actor or "-", e.detail)
    console.print(table, width=WIDTH_COLUMNS)
