"""The in-flight page: what has not finished, per region, and the bulk retry over it.

Three tables from ``OperatorService.ListInFlight`` (stuck bookings older than the
threshold, bookings waiting on a timer, trek legs in doubt) and the treks the leading
coordinator lists as unfinished (for SREs: a desk follows its basecamps, and a trek spans
regions). The bulk form retries the settlement of every stuck
booking the filter selects; its answer is each booking's outcome as the node re-read it
after the step (applied, still pending with the gateway's reason, …), not a "done".
Each rendering of the form carries a fresh idempotency key: posting it twice (a reload)
repeats nothing.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ridgeline.deploy.console.guard import first, form_session, page_session
from ridgeline.deploy.console.sessions import Session
from ridgeline.deploy.console.views import FAILURES, backend_of, choices, render
from ridgeline.routing import failure_text
from ridgeline.v1 import operator_pb2 as opb

router = APIRouter()

#: The threshold unless the form says otherwise: older than a minute is worth a look.
OLDER_THAN_DEFAULT_SECONDS = 60
#: The longest threshold the form takes (a week), in seconds.
OLDER_THAN_MAX_SECONDS = 7 * 86400
_KINDS = (("stuck", opb.IN_FLIGHT_KIND_STUCK), ("timers", opb.IN_FLIGHT_KIND_WAITING_ON_TIMER), ("legs", opb.IN_FLIGHT_KIND_LEG_IN_DOUBT))


@router.get("/inflight")
def in_flight(request: Request, session: Session = Depends(page_session), region: str = "", basecamp_id: str = "", older_than: int = OLDER_THAN_DEFAULT_SECONDS) -> Response:
    return _page(request, session, region, basecamp_id, older_than)


@router.post("/inflight/retry")
def bulk_retry(request: Request, posted: tuple[Session, dict[str, list[str]]] = Depends(form_session)) -> Response:
    session, form = posted
    backend = backend_of(request, session)
    region, basecamp_id, key = first(form, "region"), first(form, "basecamp_id"), first(form, "key")
    try:
        older_than = int(first(form, "older_than") or OLDER_THAN_DEFAULT_SECONDS)
    except ValueError:
        older_than = 0
    if not key or not 1 <= older_than <= OLDER_THAN_MAX_SECONDS or not region:
        return _page(request, session, region, basecamp_id, older_than, error="INVALID_ARGUMENT: a bulk retry needs its form's key, a region and a threshold of 1 s to 7 days", status_code=400)
    try:
        reply = backend.operator.bulk_retry(region, key=key, basecamp_id=basecamp_id, stuck_seconds=older_than, reason=first(form, "reason") or "retried from the console")
    except FAILURES as failure:
        return _page(request, session, region, basecamp_id, older_than, error=failure_text(failure), status_code=502)
    return _page(request, session, region, basecamp_id, older_than, outcomes=list(reply.outcomes), truncated=reply.truncated)


def _page(
    request: Request, session: Session, region: str, basecamp_id: str, older_than: int, *, error: str | None = None, status_code: int = 200,
    outcomes: list[opb.ActionOutcome] | None = None, truncated: bool = False,
) -> Response:
    backend = backend_of(request, session)
    tables: dict[str, list[opb.InFlightItem]] = {name: [] for name, _ in _KINDS}
    treks = []
    regions: list[str] = []
    try:
        regions = backend.regions()
        region = region or regions[0]
        if not 1 <= older_than <= OLDER_THAN_MAX_SECONDS:
            raise ValueError(f"the threshold must be 1 s to {OLDER_THAN_MAX_SECONDS} s, not {older_than}")
        for name, kind in _KINDS:
            tables[name] = list(backend.operator.in_flight(region, kind, older_than_seconds=older_than if kind != opb.IN_FLIGHT_KIND_WAITING_ON_TIMER else 0, basecamp_id=basecamp_id).items)
        if backend.follows_treks:
            treks = backend.operator.unfinished_treks(older_than)
    except ValueError as invalid:
        error = error or f"INVALID_ARGUMENT: {invalid}"
    except FAILURES as failure:
        error = error or failure_text(failure)
    return render(
        request, "inflight.html", session, status_code=status_code, error=error, region=region, regions=regions, basecamp_id=basecamp_id,
        older_than=older_than, tables=tables, treks=treks, follows_treks=backend.follows_treks, outcomes=outcomes, truncated=truncated, key=uuid.uuid4().hex,
        basecamps=[b for b in choices(backend.basecamps) if b.region == region],
    )
