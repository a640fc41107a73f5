"""The reconcile flow: the gateway's ledger against the bookings (invariant 4).

A charge must not stand without a confirmed booking. Settlement refunds the charges it
knows about; reconciliation catches the rest: a charge that landed after settlement gave
up on it (a timed-out call the gateway finished later), or the charge of a booking a
desk cancelled after it was confirmed. A cancelled settle@2 booking keeps what its
cancellation policy keeps (flows/deposit.py), and reconciliation refunds only beyond that. Charges younger than the grace, or of bookings
still being settled, are left alone; charges of bookings this region does not know
(another region's) are counted, not touched. The report is returned and published as a
Prefect artifact.
"""

from __future__ import annotations

import uuid
from collections import Counter

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from ridgeline.flows import runtime as runtimes
from ridgeline.flows.deposit import refund_by_policy
from ridgeline.flows.settle import refund
from ridgeline.regional.booking.model import BookingState
from ridgeline.regional.settlement import rows as settlements
from ridgeline.regional.settlement.rows import OPEN_STATES
from ridgeline.regional.storage.db import read_transaction
from ridgeline.regional.workflows.versions import SETTLE_V2


@flow(name="reconcile", log_prints=False, persist_result=False)
def reconcile(runtime: str, basecamps: list[str], grace_seconds: float) -> dict[str, int]:
    """Refunds standing charges without a confirmed booking; returns counts by verdict."""
    rt = runtimes.lookup(runtime)
    now = rt.clock()
    standing = [
        c
        for c in rt.gateway.list_charges()
        if c.status == "succeeded" and c.refunded_cents < c.amount_cents and (now - c.created_at).total_seconds() >= grace_seconds
    ]
    ids = [c.reference for c in standing if _is_booking_id(c.reference)]
    known = read_transaction(rt.engine, lambda conn: settlements.get(conn, ids))
    report: Counter[str] = Counter()
    refunded: list[str] = []
    for charge in standing:
        found = known.get(charge.reference)
        if found is None or found.basecamp_id not in basecamps:
            report["not ours"] += 1
        elif found.booking_state is BookingState.CONFIRMED:
            report["confirmed"] += 1
        elif found.workflow == SETTLE_V2 and found.booking_state is BookingState.CANCELLED:
            refund_by_policy(rt, found.booking_id)  # brings what stands down to what the policy keeps, no lower
            report["kept by policy"] += 1
        elif found.state in OPEN_STATES and found.booking_state is BookingState.HELD:
            report["still settling"] += 1
        else:
            refund(rt, found)
            refunded.append(f"| {charge.reference} | {charge.charge_id} | {found.booking_state.value} | {charge.amount_cents} {charge.currency} |")
            report["refunded"] += 1
    body = "\n".join(["| booking | charge | booking state | amount |", "| --- | --- | --- | --- |", *refunded])
    create_markdown_artifact(markdown=f"## Reconciliation\n\n{dict(report)}\n\n{body}", key="reconcile", description="charges refunded")
    return dict(report)


def _is_booking_id(reference: str) -> bool:
    try:
        uuid.UUID(reference)
    except ValueError:
        return False
    return True
