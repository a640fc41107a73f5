"""``ridgeline flows sweep|reconcile``: one settlement flow run now, for operators after an incident.

Each runs in this process against a region database and the gateway; nodes run the
same flows on their own loop.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from ridgeline.deploy.cli.options import parse_duration_seconds

#: ``ridgeline flows``; ``ridgeline.deploy.cli`` adds it under that name.
flows_app = typer.Typer(no_args_is_help=True, help="Run one settlement flow now (needs PREFECT_API_URL).")

DatabaseUrl = Annotated[str, typer.Option("--database-url", envvar="RIDGELINE_DATABASE_URL", help="Region database URL.")]
GatewayUrl = Annotated[str, typer.Option("--gateway-url", envvar="RIDGELINE_GATEWAY_URL", help="Payment gateway base URL.")]


@flows_app.command("sweep")
def sweep_now(region: Annotated[str, typer.Option("--region")], database_url: DatabaseUrl, gateway_url: GatewayUrl) -> None:
    """Expire every lapsed hold of the region now, as one flow run."""
    from ridgeline.flows.sweep import sweep

    with _runtime(database_url, gateway_url) as name:
        typer.echo(f"expired {sweep(name)} lapsed hold(s) in {region}")


@flows_app.command("reconcile")
def reconcile_now(
    region: Annotated[str, typer.Option("--region")],
    database_url: DatabaseUrl,
    gateway_url: GatewayUrl,
    grace: Annotated[str, typer.Option("--grace", help="Leave charges younger than this to settlement.")] = "60s",
) -> None:
    """Refund every standing charge of the region's basecamps without a confirmed booking."""
    from ridgeline.flows.reconcile import reconcile
    from ridgeline.flows.runtime import lookup
    from ridgeline.regional.booking.catalog import CatalogView

    with _runtime(database_url, gateway_url) as name:
        basecamps = [b.basecamp_id for b in CatalogView(lookup(name).engine, region).basecamps()]
        typer.echo(reconcile(name, basecamps, float(parse_duration_seconds(grace, "--grace"))))


@contextmanager
def _runtime(database_url: str, gateway_url: str) -> Iterator[str]:
    """A settlement runtime registered under a name for one command, torn down after it."""
    from ridgeline.flows import prefect_settings as prefect_runtime
    from ridgeline.flows import runtime
    from ridgeline.flows.outbox import SpoolSink
    from ridgeline.flows.payments import PaymentGateway
    from ridgeline.regional.storage.db import make_engine

    prefect_runtime.install()
    engine = make_engine(database_url, pool_size=4, application_name="ridgeline-flows-cli")
    gateway = PaymentGateway(gateway_url)
    spool = SpoolSink(Path(tempfile.mkdtemp(prefix="ridgeline-cli-spool-")))
    # Sweep and reconcile move no booking: the runtime holds no lease (an empty fence).
    runtime.register("cli", runtime.SettlementRuntime(engine, gateway, spool, lambda: datetime.now(timezone.utc), runtime.SettlePolicy(), dict))
    try:
        yield "cli"
    finally:
        runtime.unregister("cli")
        gateway.close()
        engine.dispose()
