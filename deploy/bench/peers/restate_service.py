"""The booking workflow as a Restate service, served by Hypercorn (``restate_peer`` starts it).

Restate journals each ``ctx.run`` step's result: a replay after a crash reruns only the
steps it has no result for, and each step is idempotent by itself (workload.py). The
invocation's idempotency key, sent by the caller, is the booking id. Steps block (psycopg,
the gateway client), so each runs in a worker thread and the event loop keeps serving.
Configured by environment, as a process Hypercorn imports: ``PEER_DSN``, ``PEER_GATEWAY_URL``
and ``PEER_CERTS_DIR`` (empty: plaintext).
"""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import date

import psycopg
import restate

from ridgeline.deploy.bench.peers import workload
from ridgeline.deploy.bench.peers.workload import Booking
from ridgeline.flows.payments import PaymentGateway
from ridgeline.trust.credentials import Transport

_certs = os.environ.get("PEER_CERTS_DIR", "")
_gateway = PaymentGateway(os.environ.get("PEER_GATEWAY_URL", ""), Transport.from_dir(_certs) if _certs else Transport.insecure())
_local = threading.local()
service = restate.Service("booking")


def _conn() -> psycopg.Connection:
    if getattr(_local, "conn", None) is None:
        _local.conn = psycopg.connect(os.environ["PEER_DSN"], autocommit=True)
    return _local.conn


@service.handler()
async def book(ctx: restate.Context, request: dict[str, str]) -> bool:
    booking = Booking(request["booking_id"], request["resource"], date.fromisoformat(request["night"]))

    async def hold() -> None:
        await asyncio.to_thread(lambda: workload.hold(_conn(), booking))

    async def charge() -> str | None:
        return await asyncio.to_thread(workload.charge, _gateway, booking)

    await ctx.run("hold", hold)
    charge_id = await ctx.run("charge", charge)

    async def finish() -> None:
        if charge_id is None:
            await asyncio.to_thread(lambda: workload.release(_conn(), booking.booking_id))
        else:
            await asyncio.to_thread(lambda: workload.confirm(_conn(), booking.booking_id, charge_id))

    await ctx.run("finish", finish)
    return charge_id is not None


app = restate.app(services=[service])
