"""``ridgeline load`` and ``ridgeline chaos``: what SREs run against a cluster."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.table import Table

from ridgeline.deploy.cli import options
from ridgeline.deploy.cli.options import Json, Target, client_transport, seeds_for
from ridgeline.deploy.cluster.cluster_file import default_cluster, with_free_ports
from ridgeline.deploy.cluster.local_cluster import DEFAULT_STATE_DIR, ClusterStartError, LocalCluster, state_coordinator
from ridgeline.deploy.drills.audit import print_report
from ridgeline.deploy.drills.chaos import DrillRun
from ridgeline.deploy.drills.load import OPERATIONS, LoadGenerator, LoadReport, LoadSettings, parse_mix
from ridgeline.deploy.run.etcd import EtcdError
from ridgeline.deploy.run.postgres import PostgresError
from ridgeline.routing import ClusterUnreachable

_console = Console()

#: Top-level commands; ``ridgeline.deploy.cli`` merges them into ``ridgeline``.
commands = typer.Typer()


@commands.command()
def load(
    duration: Annotated[float, typer.Option("--duration", help="Seconds to run.")] = 30.0,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Desk threads, each with its own routing client.")] = 8,
    rate: Annotated[float, typer.Option("--rate", help="Operations per second over all desks (0: as fast as answered).")] = 0.0,
    mix: Annotated[str, typer.Option("--mix", help=f"Weights of {', '.join(OPERATIONS)}, e.g. hold=3,book=5,release=1,cancel=1.")] = "hold=3,book=5,release=1,cancel=1",
    hot: Annotated[float, typer.Option("--hot", help="Share of holds and books on one resource and night (0-1).")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the desks' random choices.")] = 0,
    coordinator: Annotated[str, typer.Option("--coordinator", envvar="RIDGELINE_COORDINATOR", help="Trek coordinator host:port, for treks in the mix (default: the `ridgeline up` cluster's).")] = "",
    target: Target = "",
    json_out: Json = False,
    acknowledged: Annotated[Path | None, typer.Option("--acknowledged", help="Write the ids and states of every acknowledged booking here (JSON).")] = None,
) -> None:
    """Drive desks against the cluster; print throughput, latency percentiles and errors per operation."""
    try:
        settings = LoadSettings(
            seeds=seeds_for(target), transport=client_transport("desk"), duration_seconds=duration, concurrency=concurrency, rate=rate or None,
            mix=parse_mix(mix), hot_fraction=hot, seed=seed, coordinator=coordinator or state_coordinator(), planner=client_transport("planner"),
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


#: ``ridgeline chaos``; ``ridgeline.deploy.cli`` adds it under that name.
chaos_app = typer.Typer(no_args_is_help=True, help="Chaos drills: load, a fault on a timeline, recovery, and an audit.")


@chaos_app.command("list")
def chaos_list() -> None:
    """Every drill, what it acts on and its steady-state hypothesis."""
    from ridgeline.deploy.drills.chaos import DRILLS

    table = Table(title="Chaos drills", caption="`ridgeline chaos run DRILL` runs any of them against the running `ridgeline up` (--fresh: a throwaway cluster)")
    table.add_column("drill", no_wrap=True)
    for column in ("acts on", "hypothesis"):
        table.add_column(column)
    for name, make in DRILLS.items():
        fault = make()
        table.add_row(name, fault.acts_on, fault.hypothesis)
    _console.print(table)


@chaos_app.command("run")
def chaos_run(
    drill: Annotated[str, typer.Argument(help="Drill name (see `ridgeline chaos list`).")],
    fresh: Annotated[bool, typer.Option("--fresh", help="Run on a throwaway local cluster (3 regions x 2 nodes) instead of the running `ridgeline up`.")] = False,
    warmup: Annotated[float, typer.Option("--warmup", help="Seconds of load before the fault.")] = 5.0,
    fault_seconds: Annotated[float, typer.Option("--fault", help="Seconds the fault lasts.")] = 10.0,
    recovery_max: Annotated[float, typer.Option("--recovery-max", help="Seconds to wait for recovery before calling it failed.")] = 60.0,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Desk threads of the background load.")] = 4,
    rate: Annotated[float, typer.Option("--rate", help="Operations per second of the background load (0: unpaced).")] = 20.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the report here.")] = None,
    state_dir: Annotated[Path, typer.Option("--state-dir", help="State directory of the running cluster.")] = DEFAULT_STATE_DIR,
    ha: Annotated[bool, typer.Option("--ha", help="With --fresh: region databases on Patroni, as `ridgeline up --ha` (implied by drills that need it).")] = False,
) -> None:
    """Run one drill and print its report; exit 1 when the hypothesis or an invariant failed."""
    from ridgeline.deploy.drills.chaos import DRILLS, DrillTimes, run_drill

    if drill not in DRILLS:
        raise typer.BadParameter(f"no drill {drill!r}; known: {', '.join(DRILLS)}")
    fault = DRILLS[drill]()
    times = DrillTimes(warmup=warmup, fault=fault_seconds, recovery_max=recovery_max)
    with _cluster_for_drill(fresh, state_dir.expanduser(), ha=ha or fault.needs_patroni) as cluster:
        run = run_drill(fault, cluster, times, concurrency=concurrency, rate=rate or None, progress=lambda step: _console.print(f"[dim]{step}…[/]"))
    report = run.to_json()
    reports = state_dir.expanduser() / "drills"
    reports.mkdir(parents=True, exist_ok=True)
    saved = reports / f"{drill}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    for path in filter(None, (saved, json_path)):
        path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    _print_drill(run)
    _console.print(f"report: {saved}")
    if not run.passed:
        raise typer.Exit(1)


@contextmanager
def _cluster_for_drill(fresh: bool, state_dir: Path, *, ha: bool) -> Iterator[LocalCluster]:
    if not fresh:
        try:
            yield LocalCluster.attach(state_dir)
        except ClusterStartError as error:
            typer.secho(f"error: {error} (start one with `ridgeline up`, or use --fresh)", err=True, fg="red")
            raise typer.Exit(2) from None
        return
    root = Path(tempfile.mkdtemp(prefix="ridgeline-drill-"))
    spec = with_free_ports(default_cluster(), lease_ttl_seconds=2.0, heartbeat_interval_seconds=0.5)  # with gateway, Prefect and coordinator
    if ha:
        spec = replace(spec, region_databases="patroni")
    cluster = LocalCluster(spec, root, progress=lambda step: _console.print(f"[dim]{step}…[/]"), insecure=options.SECURITY.insecure)
    try:
        try:
            cluster.start()
        except (ClusterStartError, OSError, PostgresError, EtcdError) as error:
            typer.secho(f"error: {error}", err=True, fg="red")
            raise typer.Exit(2) from None
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _print_drill(run: DrillRun) -> None:
    _console.rule(f"Drill {run.drill}")
    _console.print(f"[bold]Hypothesis[/]: {run.hypothesis}")
    if run.error:
        _console.print(f"[bold red]{run.error}[/]")
    timeline = Table(title="Timeline")
    timeline.add_column("t (s)", justify="right")
    timeline.add_column("event")
    for at, event in run.timeline:
        timeline.add_row(f"{at:.2f}", event)
    _console.print(timeline)
    if run.load is not None:
        print_load_report(run.load, _console)
    if run.recovery_seconds:
        worst = max(run.recovery_seconds.values())
        _console.print(
            f"recovery: worst {worst:.2f} s (bound {run.recovery_bound_seconds:.1f} s): "
            + ", ".join(f"{b} {s:.2f} s" for b, s in sorted(run.recovery_seconds.items()))
        )
    if run.audit is not None:
        print_report(run.audit, json_out=False, console=_console)
    if run.passed:
        _console.print("[bold green]drill passed[/]")
        return
    _console.print("[bold red]drill failed[/]")
    for reason in run.failures():
        _console.print(f"  {reason}", markup=False)
