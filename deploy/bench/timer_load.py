"""Pending settle@2 balance timers in bulk, and what one timer tick costs: for the timer
benchmark and for the test that proves a tick is an index range read.

:func:`seed_balance_timers` writes confirmed settle@2 bookings straight in SQL (no Book
calls: 100,000 of them would take the benchmark a quarter of an hour), each with its
deposit step, its balance-due step and its pending balance timer, and keeps inventory
true to them (capacity raised, ``booked`` counted), so the database stays consistent at
rest. :func:`tick_cost` EXPLAINs one claim (``timers.CLAIM_SQL``) with ANALYZE inside a
transaction it rolls back, and reports the plan's time and the timer rows it read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from ridgeline.regional.workflows import timers
from ridgeline.routing.leases import Fence, fence_json

_SEED = text(
    """
    WITH picked AS (
        SELECT i, r.resource_id, r.basecamp_id, r.unit_price_cents, r.currency,
               CAST(:first_night AS DATE) + (i / :resources) % :nights_span AS night
        FROM generate_series(0, :count - 1) AS i
        JOIN (SELECT resource_id, basecamp_id, unit_price_cents, currency, row_number() OVER (ORDER BY resource_id) - 1 AS n
              FROM resources WHERE basecamp_id = ANY(:basecamps)) AS r ON r.n = i % :resources
    ), seeded AS (
        INSERT INTO bookings (booking_id, basecamp_id, resource_id, first_night, end_night, party_size, customer_id, state, version,
                              total_price_cents, currency, created_at, updated_at, expires_at, reserved_nights, created_by, workflow)
        SELECT gen_random_uuid(), basecamp_id, resource_id, night, night + 1, 1, 'bench-' || i, 'confirmed', 2,
               unit_price_cents, currency, :now, :now, :now, 1, 'bench:seed', 'settle@2'
        FROM picked
        RETURNING booking_id, basecamp_id, resource_id, first_night, total_price_cents, currency
    ), history AS (
        INSERT INTO booking_history (booking_id, version, from_state, to_state, at, reason, lease_epoch, actor)
        SELECT booking_id, v, CASE v WHEN 1 THEN NULL ELSE 'held' END, CASE v WHEN 1 THEN 'held' ELSE 'confirmed' END,
               :now, 'seeded', NULL, 'bench:seed'
        FROM seeded CROSS JOIN (VALUES (1), (2)) AS t(v)
    ), settled AS (
        INSERT INTO settlements (booking_id, basecamp_id, state, amount_cents, currency, attempts, next_attempt_at, created_at, updated_at)
        SELECT booking_id, basecamp_id, 'confirmed', total_price_cents, currency, 1, :now, :now, :now FROM seeded
    ), stepped AS (
        INSERT INTO workflow_steps (booking_id, step, at, amount_cents, detail, actor)
        SELECT booking_id, s.step, :now, CASE s.step WHEN 'deposit charged' THEN total_price_cents * 30 / 100
                                                  ELSE total_price_cents - total_price_cents * 30 / 100 END, 'seeded', 'bench:seed'
        FROM seeded CROSS JOIN (VALUES ('deposit charged'), ('balance due')) AS s(step)
    ), timed AS (
        INSERT INTO workflow_timers (booking_id, step, basecamp_id, workflow, due_at, next_attempt_at)
        SELECT booking_id, 'balance', basecamp_id, 'settle@2', :due_at, :due_at FROM seeded
    )
    SELECT resource_id, first_night, count(*) AS n FROM seeded GROUP BY resource_id, first_night
    """
)

_BOOK_UNITS = text(
    """
    UPDATE inventory AS i SET capacity = i.capacity + c.n, booked = i.booked + c.n
    FROM jsonb_to_recordset(CAST(:counts AS JSONB)) AS c(resource_id TEXT, night DATE, n INT)
    WHERE i.resource_id = c.resource_id AND i.night = c.night
    """
)


def seed_balance_timers(
    conn: Connection, *, basecamps: Sequence[str], count: int, due_at: datetime, now: datetime, first_night_in_days: int = 60, nights_span: int = 240
) -> int:
    """Writes ``count`` confirmed settle@2 bookings of ``basecamps`` whose balance timers fall due at ``due_at``."""
    assert count > 0 and nights_span > 0
    resources = conn.execute(text("SELECT count(*) FROM resources WHERE basecamp_id = ANY(:b)"), {"b": list(basecamps)}).scalar_one()
    assert resources > 0, f"no resources in {basecamps}"
    params = {
        "count": count, "basecamps": list(basecamps), "resources": resources, "nights_span": nights_span, "now": now, "due_at": due_at,
        "first_night": (now + timedelta(days=first_night_in_days)).date(),
    }
    counts = [{"resource_id": r.resource_id, "night": r.first_night.isoformat(), "n": r.n} for r in conn.execute(_SEED, params)]
    conn.execute(_BOOK_UNITS, {"counts": json.dumps(counts)})
    seeded = sum(c["n"] for c in counts)
    assert seeded == count, (seeded, count)
    return seeded


@dataclass(frozen=True)
class TickCost:
    milliseconds: float
    #: Rows the plan read from workflow_timers, wherever in the plan: the due rows by the
    #: range, then each claimed row again by its primary key to update it.
    timer_rows_read: int
    #: The range over due timers went through the pending-timer index, and no node of the
    #: plan scanned the table.
    indexed_range: bool
    claimed: int


def tick_cost(conn: Connection, *, fence: Fence, workflows: Sequence[str], now: datetime, batch_max: int) -> TickCost:
    """EXPLAIN ANALYZE of one claim, rolled back so nothing is claimed."""
    params = {
        "now": now, "basecamps": sorted(fence), "workflows": sorted(workflows), "fence": fence_json(fence),
        "batch_max": batch_max, "claimed_until": now + timedelta(seconds=30),
    }
    savepoint = conn.begin_nested()
    try:
        [[plan]] = conn.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + timers.CLAIM_SQL), params).all()
    finally:
        savepoint.rollback()
    top = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
    scans = [node for node in _nodes(top["Plan"]) if node.get("Relation Name") == "workflow_timers" and "Scan" in node["Node Type"]]
    return TickCost(
        milliseconds=float(top["Execution Time"]),
        timer_rows_read=sum(int(n["Actual Rows"]) * int(n.get("Actual Loops", 1)) + int(n.get("Rows Removed by Filter", 0)) for n in scans),
        indexed_range=any(n.get("Index Name") == "workflow_timers_due" for n in scans) and not any(n["Node Type"] == "Seq Scan" for n in scans),
        claimed=int(top["Plan"]["Actual Rows"]),
    )


def _nodes(node: dict) -> list[dict]:
    return [node, *(child for sub in node.get("Plans", []) for child in _nodes(sub))]
