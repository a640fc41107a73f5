"""Idempotency keys are remembered for the retention window, then forgotten by the sweeper."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from drive import night, place_hold_directly
from sqlalchemy import Engine, text

from ridgeline.regional.booking.sweeper import forget_old_keys


def test_sweeper_forgets_keys_older_than_retention_and_keeps_younger_ones(alps_engine: Engine) -> None:
    now = datetime.now(timezone.utc)
    placed = {
        age_days: place_hold_directly(
            alps_engine, "argentiere", "argentiere-dorm", night(30), night(31), 1, placed_at=now - timedelta(days=age_days), ttl_seconds=600
        )
        for age_days in (8, 9, 10, 11, 6)
    }

    forgotten = forget_old_keys(alps_engine, cutoff=now - timedelta(days=7), batch_max=2)

    assert forgotten == 4
    with alps_engine.connect() as conn:
        remembered = conn.execute(text("SELECT result->>'booking_id' FROM idempotency_records")).scalars().all()
    assert remembered == [placed[6].booking_id]
