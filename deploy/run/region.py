"""Readies a region database: schema at head, the region's catalog, inventory on sale."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ridgeline.regional.booking.catalog import Catalog, install_catalog, open_inventory
from ridgeline.regional.storage import migrate
from ridgeline.regional.storage.db import make_engine

#: Margin around the horizon so that time zones ahead of or behind UTC are covered.
_ZONE_MARGIN_DAYS = 2


def prepare_region_database(database_url: str, region: str, catalog: Catalog, *, advance_booking_days: int) -> int:
    """Migrates, installs the catalog and opens inventory; idempotent. Returns basecamps installed."""
    engine = make_engine(database_url, pool_size=1, application_name=f"ridgeline-prepare-{region}")
    try:
        migrate.upgrade(engine)
        installed = install_catalog(engine, catalog, region)
        today = datetime.now(timezone.utc).date()
        open_inventory(
            engine,
            region,
            today - timedelta(days=_ZONE_MARGIN_DAYS),
            today + timedelta(days=advance_booking_days + _ZONE_MARGIN_DAYS),
        )
        return installed
    finally:
        engine.dispose()
