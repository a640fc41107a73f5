"""The basecamp catalog: a readable TOML file, its loader, and a node's in-memory view.

The catalog changes rarely and every request needs it (validation, prices, time zones),
so a node keeps the rows of its region in memory (:class:`CatalogView`) and reloads
them when asked about an id it does not know. Inventory rows are opened ahead of time
for every night up to a horizon, so that placing a hold is a single conditional UPDATE.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Engine, text

from ridgeline.regional.booking.model import ResourceKind
from ridgeline.regional.storage.db import read_transaction

SAMPLE_CATALOG = "sample_catalog.toml"


class CatalogError(ValueError):
    """The catalog file is malformed; the message names the entry."""


@dataclass(frozen=True)
class Resource:
    resource_id: str
    basecamp_id: str
    kind: ResourceKind
    name: str
    capacity: int
    unit_price_cents: int
    currency: str


@dataclass(frozen=True)
class Basecamp:
    basecamp_id: str
    region: str
    name: str
    time_zone: str
    resources: tuple[Resource, ...]

    def today(self, now: datetime) -> date:
        """The basecamp's own calendar date at ``now``: nights are local dates."""
        return now.astimezone(ZoneInfo(self.time_zone)).date()


@dataclass(frozen=True)
class Catalog:
    regions: Mapping[str, str]
    basecamps: tuple[Basecamp, ...]

    def in_region(self, region: str) -> tuple[Basecamp, ...]:
        return tuple(b for b in self.basecamps if b.region == region)


def load_catalog(path: Path | None = None) -> Catalog:
    """Parses and validates a catalog file (the bundled sample when ``path`` is None)."""
    if path is None:
        raw = (resources.files(__package__) / SAMPLE_CATALOG).read_text(encoding="utf-8")
    else:
        raw = Path(path).read_text(encoding="utf-8")
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as error:
        raise CatalogError(f"catalog is not valid TOML: {error}") from error
    return parse_catalog(data)


def parse_catalog(data: Mapping[str, Any]) -> Catalog:
    """Validates catalog data already read from TOML (benchmarks and tests build their own)."""
    regions = {r["id"]: r.get("name", r["id"]) for r in data.get("regions", [])}
    basecamps: list[Basecamp] = []
    seen_resources: set[str] = set()
    for entry in data.get("basecamps", []):
        basecamp_id = _required(entry, "id", "basecamp")
        where = f"basecamp {basecamp_id!r}"
        region = _required(entry, "region", where)
        if region not in regions:
            raise CatalogError(f"{where}: unknown region {region!r}")
        time_zone = _required(entry, "time_zone", where)
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise CatalogError(f"{where}: unknown time zone {time_zone!r}") from error
        parsed_resources = []
        for item in entry.get("resources", []):
            resource_id = _required(item, "id", f"{where} resource")
            if resource_id in seen_resources:
                raise CatalogError(f"{where}: resource id {resource_id!r} is used twice")
            seen_resources.add(resource_id)
            try:
                kind = ResourceKind(item["kind"])
            except (KeyError, ValueError) as error:
                raise CatalogError(f"resource {resource_id!r}: kind must be one of {[k.value for k in ResourceKind]}") from error
            capacity = int(item.get("capacity", 0))
            price = int(item.get("unit_price_cents", -1))
            if capacity <= 0 or price < 0:
                raise CatalogError(f"resource {resource_id!r}: capacity must be > 0 and unit_price_cents >= 0")
            parsed_resources.append(
                Resource(resource_id, basecamp_id, kind, item.get("name", resource_id), capacity, price, _required(item, "currency", resource_id))
            )
        if not parsed_resources:
            raise CatalogError(f"{where}: has no resources")
        basecamps.append(Basecamp(basecamp_id, region, entry.get("name", basecamp_id), time_zone, tuple(parsed_resources)))
    if len({b.basecamp_id for b in basecamps}) != len(basecamps):
        raise CatalogError("a basecamp id is used twice")
    return Catalog(regions=regions, basecamps=tuple(basecamps))


def _required(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise CatalogError(f"{where}: missing {key!r}")
    return value


_UPSERT_BASECAMP = text(
    """
    INSERT INTO basecamps (basecamp_id, region, name, time_zone)
    VALUES (:basecamp_id, :region, :name, :time_zone)
    ON CONFLICT (basecamp_id) DO UPDATE
    SET region = excluded.region, name = excluded.name, time_zone = excluded.time_zone
    """
)

# Capacity changes are not applied to existing inventory here: lowering capacity under
# live bookings is an operator decision, not something a catalog reload may do silently.
_UPSERT_RESOURCE = text(
    """
    INSERT INTO resources (resource_id, basecamp_id, kind, name, capacity, unit_price_cents, currency)
    VALUES (:resource_id, :basecamp_id, :kind, :name, :capacity, :unit_price_cents, :currency)
    ON CONFLICT (resource_id) DO UPDATE
    SET name = excluded.name, unit_price_cents = excluded.unit_price_cents, currency = excluded.currency
    """
)

_OPEN_INVENTORY = text(
    """
    INSERT INTO inventory (resource_id, night, capacity, held, booked)
    SELECT r.resource_id, CAST(n AS DATE), r.capacity, 0, 0
    FROM resources r
    CROSS JOIN generate_series(CAST(:first AS TIMESTAMP), CAST(:last AS TIMESTAMP), INTERVAL '1 day') AS n
    WHERE r.basecamp_id IN (SELECT basecamp_id FROM basecamps WHERE region = :region)
    ON CONFLICT (resource_id, night) DO NOTHING
    """
)


def install_catalog(engine: Engine, catalog: Catalog, region: str) -> int:
    """Upserts the region's basecamps and resources; returns how many basecamps."""
    camps = catalog.in_region(region)
    with engine.begin() as conn:
        for camp in camps:
            conn.execute(_UPSERT_BASECAMP, {"basecamp_id": camp.basecamp_id, "region": camp.region, "name": camp.name, "time_zone": camp.time_zone})
            for r in camp.resources:
                conn.execute(
                    _UPSERT_RESOURCE,
                    {
                        "resource_id": r.resource_id,
                        "basecamp_id": r.basecamp_id,
                        "kind": r.kind.value,
                        "name": r.name,
                        "capacity": r.capacity,
                        "unit_price_cents": r.unit_price_cents,
                        "currency": r.currency,
                    },
                )
    return len(camps)


def open_inventory(engine: Engine, region: str, first: date, last: date) -> None:
    """Creates the inventory rows for every night in [first, last] (existing rows untouched)."""
    with engine.begin() as conn:
        conn.execute(_OPEN_INVENTORY, {"first": first, "last": last, "region": region})


class CatalogView:
    """A node's in-memory copy of its region's catalog rows.

    An unknown id triggers a reload (a basecamp may have been added), but at most once per
    ``reload_interval_seconds``: a caller sending made-up ids must not turn every request
    into catalog queries.
    """

    def __init__(self, engine: Engine, region: str, *, reload_interval_seconds: float = 5.0) -> None:
        self._engine = engine
        self._region = region
        self._reload_interval_seconds = reload_interval_seconds
        self._reloaded_at = float("-inf")
        self._basecamps: dict[str, Basecamp] = {}
        self._resources: dict[str, Resource] = {}
        self.reload()

    @property
    def region(self) -> str:
        return self._region

    def reload(self) -> None:
        """Re-reads the region's catalog rows (cheap: tens of rows)."""
        basecamps = read_transaction(self._engine, lambda conn: _read_basecamps(conn, self._region))
        self._basecamps = {b.basecamp_id: b for b in basecamps}
        self._resources = {r.resource_id: r for b in basecamps for r in b.resources}
        self._reloaded_at = time.monotonic()

    def _reload_if_due(self) -> None:
        if time.monotonic() - self._reloaded_at >= self._reload_interval_seconds:
            self.reload()

    def basecamps(self) -> list[Basecamp]:
        return sorted(self._basecamps.values(), key=lambda b: b.basecamp_id)

    def basecamp(self, basecamp_id: str) -> Basecamp | None:
        if basecamp_id not in self._basecamps:
            self._reload_if_due()
        return self._basecamps.get(basecamp_id)

    def resource(self, resource_id: str) -> Resource | None:
        if resource_id not in self._resources:
            self._reload_if_due()
        return self._resources.get(resource_id)


def _read_basecamps(conn: Connection, region: str) -> list[Basecamp]:
    camp_rows = conn.execute(
        text("SELECT basecamp_id, region, name, time_zone FROM basecamps WHERE region = :region ORDER BY basecamp_id"),
        {"region": region},
    ).all()
    resource_rows = conn.execute(
        text(
            """
            SELECT r.resource_id, r.basecamp_id, r.kind, r.name, r.capacity, r.unit_price_cents, r.currency
            FROM resources r JOIN basecamps b ON b.basecamp_id = r.basecamp_id
            WHERE b.region = :region ORDER BY r.resource_id
            """
        ),
        {"region": region},
    ).all()
    by_camp: dict[str, list[Resource]] = {}
    for row in resource_rows:
        by_camp.setdefault(row.basecamp_id, []).append(
            Resource(row.resource_id, row.basecamp_id, ResourceKind(row.kind), row.name, row.capacity, row.unit_price_cents, row.currency)
        )
    return [Basecamp(r.basecamp_id, r.region, r.name, r.time_zone, tuple(by_camp.get(r.basecamp_id, ()))) for r in camp_rows]

