"""The pages that existing RPCs serve: cluster, bookings (search and one booking), availability.

Each handler reads like its page: take the query, ask the backend (gRPC), render. A
refused call is shown on the page with its status and message, never as a traceback.
"""

from __future__ import annotations

from datetime import date, timedelta
from urllib.parse import urlencode

import grpc
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ridgeline.deploy.console.backend import HEAT_MAP_NIGHTS_MAX, BookingSearch
from ridgeline.deploy.console.guard import page_session
from ridgeline.deploy.console.sessions import Session
from ridgeline.deploy.console.views import FAILURES, backend_of, choices, money, render, state_name, when
from ridgeline.routing import failure_text
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import operator_pb2 as opb

router = APIRouter()

#: What a search form may ask for, in the order the form shows them.
STATES = ("held", "confirmed", "released", "expired", "cancelled")
#: Nights the heat map shows unless asked for another span.
HEAT_MAP_NIGHTS_DEFAULT = 14


@router.get("/cluster")
def cluster(request: Request, session: Session = Depends(page_session)) -> Response:
    return render(request, "cluster.html", session, view=backend_of(request, session).overview())


@router.get("/bookings")
def bookings(
    request: Request, session: Session = Depends(page_session), booking_id: str = "", customer_id: str = "", region: str = "", basecamp_id: str = "", state: str = "",
    night: str = "", workflow: str = "", page_token: str = "",
) -> Response:
    backend = backend_of(request, session)
    search = BookingSearch(booking_id.strip(), customer_id.strip(), region, basecamp_id, state, night.strip(), workflow.strip(), page_token)
    found: list[pb.Booking] = []
    next_token, error = "", None
    try:
        if search.booking_id:
            found = [backend.booking(search.booking_id)]
        elif request.url.query:
            reply = backend.search(search)
            found, next_token = list(reply.bookings), reply.next_page_token
    except ValueError as invalid:
        error = f"INVALID_ARGUMENT: {invalid}"
    except FAILURES as failure:
        error = failure_text(failure)
    next_url = "/bookings?" + urlencode({**dict(request.query_params), "page_token": next_token}) if next_token else ""
    return render(
        request, "bookings.html", session, search=search, bookings=found, next_url=next_url, error=error, states=STATES,
        regions=choices(backend.regions), basecamps=choices(backend.basecamps),
    )


@router.get("/bookings/{booking_id}")
def booking(request: Request, booking_id: str, session: Session = Depends(page_session)) -> Response:
    try:
        found = backend_of(request, session).booking(booking_id)
    except FAILURES as failure:
        message = failure_text(failure)
        status = 404 if isinstance(failure, grpc.RpcError) and failure.code() is grpc.StatusCode.NOT_FOUND else 502
        return render(request, "booking.html", session, booking=None, error=message, status_code=status)
    trace_id, entries = found.payment.trace_id, None
    try:
        full = backend_of(request, session).timeline(found)
        trace_id, entries = full.trace_id or trace_id, operator_timeline(full)
    except grpc.RpcError as failure:
        if failure.code() is not grpc.StatusCode.UNIMPLEMENTED:  # a node before the operator API: the booking's own record
            return render(request, "booking.html", session, booking=found, timeline=booking_timeline(found), trace_id=trace_id, error=failure_text(failure))
    except FAILURES as failure:
        return render(request, "booking.html", session, booking=found, timeline=booking_timeline(found), trace_id=trace_id, error=failure_text(failure))
    return render(request, "booking.html", session, booking=found, timeline=entries or booking_timeline(found), trace_id=trace_id, error=None)


def operator_timeline(timeline: opb.BookingTimeline) -> list[dict[str, str]]:
    """The operator API's timeline as the page lists it: time, what, actor, detail, kind."""
    entries = []
    for entry in timeline.entries:
        kind = opb.TimelineKind.Name(entry.kind).removeprefix("TIMELINE_KIND_").lower()
        if entry.kind == opb.TIMELINE_KIND_TRANSITION:
            what = f"{_state(entry.from_state) or 'new'} → {_state(entry.to_state)}"
        else:
            what = kind.replace("_", " ")
        detail = " · ".join(filter(None, [entry.detail, entry.reference, money(entry.amount_cents, timeline.booking.currency) if entry.amount_cents else ""]))
        entries.append({"at": when(entry.at), "what": what, "actor": entry.actor, "detail": detail, "kind": "transition" if kind == "transition" else "step"})
    return entries


def booking_timeline(booking: pb.Booking) -> list[dict[str, str]]:
    """Every transition and workflow step of a booking, oldest first, from the Booking itself."""
    entries = [
        {"at": when(t.at), "what": f"{_state(t.from_state) or 'new'} → {_state(t.to_state)}", "actor": t.actor, "detail": t.reason, "kind": "transition"}
        for t in booking.history
    ]
    entries += [{"at": when(s.at), "what": s.step, "actor": s.actor, "detail": s.detail, "kind": "step"} for s in booking.steps]
    return sorted(entries, key=lambda entry: entry["at"])


@router.get("/availability")
def availability(request: Request, session: Session = Depends(page_session), basecamp_id: str = "", start: str = "", nights: int = HEAT_MAP_NIGHTS_DEFAULT) -> Response:
    backend = backend_of(request, session)
    camps = choices(backend.basecamps)
    rows, error = [], None
    first_night = date.today()
    try:
        first_night = date.fromisoformat(start) if start else date.today()
        if not 1 <= nights <= HEAT_MAP_NIGHTS_MAX:
            raise ValueError(f"nights must be 1 to {HEAT_MAP_NIGHTS_MAX}, not {nights}")
        chosen = basecamp_id or (camps[0].basecamp_id if camps else "")
        if chosen:
            rows = backend.heat_map(chosen, first_night, nights)
    except ValueError as invalid:
        error, chosen = f"INVALID_ARGUMENT: {invalid}", basecamp_id
    except FAILURES as failure:
        error = failure_text(failure)
    dates = [first_night + timedelta(days=i) for i in range(nights)] if rows else []
    return render(request, "availability.html", session, basecamps=camps, chosen=chosen, start=first_night.isoformat(), nights=nights, dates=dates, rows=rows, error=error)


def _state(state: int) -> str:
    return "" if state == pb.BOOKING_STATE_UNSPECIFIED else state_name(state)
