"""``ridgeline load`` (and the chaos drills that run it): what SREs run against a cluster."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.table import Table

from ridgeline.routing.router import ClusterUnreachable

from .cli import Json, Target, app, seeds_for
from .load import OPERATIONS, LoadGenerator, LoadReport, LoadSettings, parse_mix

_console = Console()


@app.command()
def load(
    duration: Annotated[float, typer.Option("--duration", help="Seconds to run.")] = 30.0,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Desk threads, each with its own routing client.")] = 8,
    rate: Annotated[float, typer.Option("--rate", help="Operations per second over all desks (0: as fast as answered).")] = 0.0,
    mix: Annotated[str, typer.Option("--mix", help=f"Weights of {', '.join(OPERATIONS)}, e.g. hold=3,book=5,release=1,cancel=1.")] = "hold=3,book=5,release=1,cancel=1",
    hot: Annotated[float, typer.Option("--hot", help="Share of holds and books on one resource and night (0-1).")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the desks' random choices.")] = 0,
    target: Target = "",
    json_out: Json = False,
    acknowledged: Annotated[Path | None, typer.Option("--acknowledged", help="Write the ids and states of every acknowledged booking here (JSON).")] = None,
) -> None:
    """Drive desks against the cluster; print throughput, latency percentiles and errors per operation."""
    try:
        settings = LoadSettings(
            seeds=seeds_for(target), duration_seconds=duration, concurrency=concurrency, rate=rate or None,
            mix=parse_mix(mix), hot_fraction=hot, seed=seed,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    generator = LoadGenerator(settings)
    stop = threading.Event()
    with _console.status("starting desks…") as status:
        def progress(elapsed: float, done: int, errors: int) -> None:
            status.update(f"{elapsed:5.1f}/{duration:g} s · {done} operations · {done / max(elapsed, 0.001):.0f}/s · {errors} errors")

        try:
            report = generator.run(stop, progress)
        except KeyboardInterrupt:
            stop.set()
            raise
        except (ClusterUnreachable, grpc.RpcError) as error:
            typer.secho(f"error: cannot reach the cluster: {error}", err=True, fg="red")
            raise typer.Exit(2) from None
    if acknowledged is not None:
        acknowledged.write_text(json.dumps(report.acknowledged, indent=1) + "\n", encoding="utf-8")
    if json_out:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_load_report(report, _console)


def print_load_report(report: LoadReport, console: Console) -> None:
    summary = report.to_json()["operations"]
    table = Table(title=f"Load: {report.settings.concurrency} desks, {report.elapsed_seconds:.1f} s")
    for column in ("operation", "ok", "per s", "p50 ms", "p95 ms", "p99 ms", "errors by status"):
        table.add_column(column)
    for name, figures in summary.items():  # type: ignore[union-attr]
        table.add_row(
            name, str(figures["ok"]), f"{figures['per_second']:.1f}",
            *(f"{figures[p]:.1f}" if figures[p] is not None else "" for p in ("p50_ms", "p95_ms", "p99_ms")),
            ", ".join(f"{code} {count}" for code, count in sorted(figures["errors"].items())) or "none",
        )
    console.print(table)
