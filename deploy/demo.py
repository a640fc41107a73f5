"""``ridgeline demo``: one regional node on an embedded PostgreSQL, with the sample catalog.

The database lives in ``--data-dir`` and is reused on the next run, so bookings made in
one demo are still there in the next. The node runs in this process; Ctrl-C drains it
and stops the database.
"""

from __future__ import annotations

import signal
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rich.console import Console

from ridgeline.regional.catalog import load_catalog
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.routing.client import BookingClient

from . import render
from .postgres import PostgresServer
from .region import prepare_region_database

_console = Console(stderr=False)


def run_demo(*, data_dir: Path, region: str, listen: str, tour: bool, serve: bool) -> None:
    """Starts the database and the node, optionally books something, then serves or exits."""
    catalog = load_catalog()
    if not catalog.in_region(region):
        raise SystemExit(f"region {region!r} has no basecamps; choose one of {', '.join(catalog.regions)}")
    data_dir.mkdir(parents=True, exist_ok=True)
    database = PostgresServer(data_dir / "postgres")
    database.start()
    node: RegionalNode | None = None
    try:
        url = database.create_database(f"ridgeline_{region.replace('-', '_')}")
        config = NodeConfig(region=region, node_id=f"{region}-demo", database_url=url, listen_address=listen)
        basecamps = prepare_region_database(url, region, catalog, advance_booking_days=config.advance_booking_days)
        try:
            node = RegionalNode(config)
        except OSError as error:
            raise SystemExit(f"ridgeline demo: {error} (choose another with --listen)") from None
        node.start()
        _console.print(
            f"[bold green]Ridgeline demo[/]: region [bold]{region}[/] ({basecamps} basecamps) "
            f"on PostgreSQL ({database.engine_used}, port {database.port}, data in {data_dir})"
        )
        _console.print(f"node {config.node_id} listening on [bold]{node.address}[/]")
        if tour:
            _tour(node.address)
        if serve:
            _console.print(
                "\nTry, in another terminal:\n"
                f"  ridgeline basecamps --target {node.address}\n"
                f"  ridgeline availability argentiere --target {node.address}\n"
                f"  ridgeline book argentiere argentiere-dorm --from <date> --to <date> --party 2 --customer you --target {node.address}\n"
                f"  ridgeline bookings --target {node.address}\n"
                "Ctrl-C stops the node and the database."
            )
            _wait_for_signal()
    finally:
        if node is not None:
            node.stop()
        database.stop()


def _tour(target: str) -> None:
    """Books a stay at the region's first basecamp and shows each step."""
    with BookingClient(target) as client:
        camp = client.list_basecamps().basecamps[0]
        resource = camp.resources[0]
        first = datetime.now(timezone.utc).date() + timedelta(days=14)
        last = first + timedelta(days=2)
        _console.rule(f"Availability at {camp.name}")
        render.availability(client.availability(camp.basecamp_id, first, last, resource.resource_id))
        customer = f"demo-{uuid.uuid4().hex[:6]}"
        hold = client.place_hold(camp.basecamp_id, resource.resource_id, first, last, 2, customer)
        _console.rule("Hold placed (2 units, 2 nights)")
        render.booking(hold)
        confirmed = client.confirm(hold.booking_id)
        _console.rule("Confirmed")
        render.booking(confirmed)
        render.availability(client.availability(camp.basecamp_id, first, last, resource.resource_id))


def _wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
