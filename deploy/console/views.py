"""Rendering shared by every page: the templates, the session's context, readable values."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import grpc
from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from google.protobuf.timestamp_pb2 import Timestamp

from ridgeline.deploy.console.backend import ConsoleBackend
from ridgeline.deploy.console.sessions import Session
from ridgeline.routing import ClusterUnreachable, UnknownBasecamp
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import operator_pb2 as opb
from ridgeline.v1 import trek_pb2 as tpb

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def render(request: Request, template: str, session: Session | None, status_code: int = 200, **context: object) -> Response:
    """``template`` with the session's identity and CSRF token (every form carries it)."""
    base = {"who": session.identity.actor if session else None, "csrf": session.csrf if session else "", "path": request.url.path}
    return TEMPLATES.TemplateResponse(request, template, {**base, **context}, status_code=status_code)


def backend_of(request: Request, session: Session) -> ConsoleBackend:
    """The backend that calls the cluster as the session's person (their token on every call)."""
    return request.app.state.backends.of(session.session_id, session.identity, session.token)


#: What a page's calls to the cluster may fail with; the page then says what did not answer.
FAILURES = (grpc.RpcError, ClusterUnreachable, UnknownBasecamp)
T = TypeVar("T")


def choices(read: Callable[[], list[T]]) -> list[T]:
    """A backend read for a form's choices: empty when the cluster does not answer (the page says what did not)."""
    try:
        return read()
    except FAILURES:
        return []


def when(stamp: Timestamp) -> str:
    """A protobuf timestamp in UTC to the second; "" when unset."""
    if not stamp.seconds and not stamp.nanos:
        return ""
    return datetime.fromtimestamp(stamp.seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def state_name(state: int) -> str:
    return pb.BookingState.Name(state).removeprefix("BOOKING_STATE_").lower()


def payment_state_name(state: int) -> str:
    return pb.PaymentState.Name(state).removeprefix("PAYMENT_STATE_").lower()


def day(value: pb.Date) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency}".strip()


def result_name(result: int) -> str:
    return opb.ActionResult.Name(result).removeprefix("ACTION_RESULT_").lower().replace("_", " ")


def trek_state(state: int) -> str:
    return tpb.TrekState.Name(state).removeprefix("TREK_STATE_").lower().replace("_", " ")


TEMPLATES.env.filters.update(when=when, state=state_name, payment_state=payment_state_name, day=day)
TEMPLATES.env.globals.update(money=money, result_name=result_name, trek_state=trek_state)
