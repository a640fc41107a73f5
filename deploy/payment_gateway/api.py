"""The gateway's HTTP/JSON API: ``/v1`` for payments, ``/admin`` for drills, ``/metrics``
and ``/healthz`` for operators.

Over TLS every request is authorized first (``authorization.py``: the one table's
``gateway …`` rows): nodes and the coordinator pay, SREs read the ledger and set faults,
``/metrics`` and ``/healthz`` answer any client the handshake admitted. An insecure
gateway (``--insecure``) answers anyone.

Every ``/v1`` request first draws its faults (``faults.py``): it may be delayed, refused
with 503 before any work, or done and committed and then answered 503 (a lost reply,
the ambiguous failure a payer must survive by retrying with the same key). Errors are
JSON ``{"error": code, "message": text}``, never a traceback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from ridgeline import tracing
from ridgeline.deploy.payment_gateway.authorization import AuthorizeRequests
from ridgeline.deploy.payment_gateway.faults import FaultInjector, FaultPlan, FaultSettings, sleep_for
from ridgeline.deploy.payment_gateway.ledger import PAGE_SIZE_MAX, Ledger, LedgerError
from ridgeline.deploy.payment_gateway.metrics import CONTENT_TYPE, GatewayMetrics
from ridgeline.regional.errors import Contention, DatabaseUnavailable
from ridgeline.trust.credentials import Transport

#: Largest single charge, cents: far above any stay, far below BIGINT.
AMOUNT_MAX_CENTS = 10**12
_KEY = Field(min_length=1, max_length=200)


class ChargeRequest(BaseModel):
    idempotency_key: str = _KEY
    amount_cents: int = Field(gt=0, le=AMOUNT_MAX_CENTS)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    reference: str = Field(min_length=1, max_length=200)


class RefundRequest(BaseModel):
    idempotency_key: str = _KEY
    charge_id: str = Field(min_length=1, max_length=200)
    amount_cents: int = Field(gt=0, le=AMOUNT_MAX_CENTS)


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "message": message, **extra})


def create_app(ledger: Ledger, faults: FaultInjector, transport: Transport) -> FastAPI:
    """The app over one ledger and one fault injector (both owned by the caller), its
    requests authorized with ``transport``'s CA unless the transport is insecure."""
    # No interactive docs: routes outside the authorization table would be refused anyway.
    app = FastAPI(title="Ridgeline payment gateway (local stand-in)", docs_url=None, redoc_url=None, openapi_url=None)
    counter_lock = threading.Lock()
    v1_requests_total = 0

    metrics = GatewayMetrics()
    if transport.secure:
        app.add_middleware(AuthorizeRequests, routes=app.router.routes, ca_pem=transport.ca_pem, metrics=metrics)
    if tracing.enabled():  # added last: outermost, so refusals are in the trace too
        # Continues the caller's trace (its traceparent header), so a booking's charge is in its trace.
        @app.middleware("http")
        async def traced(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            with tracing.span(f"gateway {request.method} {request.url.path}", context=tracing.extract(request.headers), attributes={"http.route": request.url.path}):
                return await call_next(request)

    def guarded(operation: str, work: Callable[[FaultPlan], JSONResponse]) -> JSONResponse:
        started = time.monotonic()
        response = _answer(work)
        metrics.observe(operation, response.status_code, time.monotonic() - started)
        return response

    def _answer(work: Callable[[FaultPlan], JSONResponse]) -> JSONResponse:
        nonlocal v1_requests_total
        with counter_lock:
            v1_requests_total += 1
        plan = faults.plan()
        metrics.drawn(plan)
        sleep_for(plan)
        if plan.fail_before:
            return _error(503, "unavailable", "the payment gateway is unavailable; retry with the same idempotency key")
        try:
            response = work(plan)
        except LedgerError as error:
            response = _error(error.status, error.code, error.message)
        except (Contention, DatabaseUnavailable) as error:
            return _error(503, "unavailable", str(error))
        if plan.lose_reply:
            return _error(503, "unavailable", "the payment gateway is unavailable; retry with the same idempotency key")
        return response

    @app.post("/v1/charges")
    def create_charge(request: ChargeRequest) -> JSONResponse:
        def work(plan: FaultPlan) -> JSONResponse:
            result = ledger.charge(request.idempotency_key, request.amount_cents, request.currency, request.reference, decline=plan.decline)
            if result.declined:
                return _error(402, "card_declined", "the card was declined", charge_id=result.row["charge_id"])
            return JSONResponse(jsonable_encoder(result.row))

        return guarded("charge", work)

    @app.post("/v1/refunds")
    def create_refund(request: RefundRequest) -> JSONResponse:
        return guarded("refund", lambda _: JSONResponse(jsonable_encoder(ledger.refund(request.idempotency_key, request.charge_id, request.amount_cents))))

    @app.get("/v1/charges/{charge_id}")
    def get_charge(charge_id: str) -> JSONResponse:
        return guarded("get_charge", lambda _: JSONResponse(jsonable_encoder(ledger.get_charge(charge_id))))

    @app.get("/v1/charges")
    def list_charges(
        reference: str | None = None, after: str | None = None, limit: int = Query(100, ge=1, le=PAGE_SIZE_MAX)
    ) -> JSONResponse:
        def work(_: FaultPlan) -> JSONResponse:
            rows = ledger.list_charges(reference=reference, after=after, limit=limit)
            next_after = rows[-1]["charge_id"] if len(rows) == limit else None
            return JSONResponse(jsonable_encoder({"data": rows, "next_after": next_after}))

        return guarded("list_charges", work)

    @app.get("/admin/faults")
    def get_faults() -> FaultSettings:
        return faults.settings

    @app.put("/admin/faults")
    def put_faults(settings: FaultSettings) -> FaultSettings:
        faults.update(settings)
        metrics.settings_changed(settings)
        return settings

    @app.get("/admin/stats")
    def stats() -> dict[str, int]:
        """How many ``/v1`` requests arrived, faulted or not: drills count provider calls with it."""
        with counter_lock:
            return {"v1_requests_total": v1_requests_total}

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/healthz")
    def health() -> JSONResponse:
        """Serving when the ledger's database answers: a gateway without it can take no payment."""
        if ledger.reachable():
            return JSONResponse({"status": "serving"})
        return _error(503, "not_serving", "the gateway's ledger database is unreachable")

    return app
