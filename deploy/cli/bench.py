"""``ridgeline bench holds|settle|peers|timers|treks|cluster|console``: each benchmark's options, its engine, its tables.

The engines in deploy/bench run and measure; these commands check the options, print
the report (render_bench) and write it as JSON when asked. Each command imports its engine
and renderer when it runs: every process the cluster starts is a ``ridgeline`` command,
and importing all the benchmarks cost each of them about a second of CPU at start.

Every benchmark speaks mutual TLS with certificates it makes for the run (the global
``--certs-dir`` is not used); ``ridgeline --insecure bench …`` runs it in plaintext, and
``--insecure-baseline`` (holds, treks) measures both in the same run. A separate flag,
because the global ``--insecure`` means "everything this command starts runs insecure",
not "compare".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ridgeline.deploy.cli import options
from ridgeline.regional.config import NodeConfig

#: ``ridgeline bench``; ``ridgeline.deploy.cli`` adds it under that name.
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print ratios against a baseline of the same run.")

JsonFile = Annotated[Path | None, typer.Option("--json", help="Also write the results to this JSON file.")]
InsecureBaseline = Annotated[
    bool,
    typer.Option("--insecure-baseline", help="Also run plaintext phases (no TLS, no authorization) beside the mTLS ones, and print the cost of mTLS."),
]


@bench_app.command("holds")
def holds(
    seconds: Annotated[float, typer.Option("--seconds", help="Length of each timed phase.")] = 10.0,
    threads: Annotated[int, typer.Option("--threads", help="Client threads in each phase (each with its own connection or channel).")] = 16,
    workers: Annotated[int, typer.Option("--workers", help="The node's gRPC workers and pool size.")] = 16,
    hot: Annotated[bool, typer.Option("--hot/--spread", help="All holds on one resource and night, or spread over 8 resources x 300 nights.")] = False,
    repeat: Annotated[int, typer.Option("--repeat", help="gRPC phases; with more than one, each sits between two ceiling phases.")] = 1,
    round_max: Annotated[int, typer.Option("--round-max", help="The node's group-commit round size (1: one statement per hold).")] = NodeConfig.hold_round_max,
    insecure_baseline: InsecureBaseline = False,
    traced: Annotated[bool, typer.Option("--traced", help="Also run phases whose node traces every call, and print the cost of tracing.")] = False,
    trace_exporter: Annotated[str, typer.Option("--trace-exporter", help="Where traced spans go: none (made and dropped) or otlp (to a receiver that keeps nothing).")] = "none",
    json_path: JsonFile = None,
) -> None:
    """Holds/s and p50/p99 through gRPC (mTLS) against one node, beside the raw SQL ceiling of the same run."""
    if seconds <= 0 or threads <= 0 or workers <= 0 or repeat <= 0 or round_max <= 0:
        raise typer.BadParameter("--seconds, --threads, --workers, --repeat and --round-max must be positive")
    from ridgeline.deploy.bench import holds_bench
    from ridgeline.deploy.cli import render_bench

    if trace_exporter not in holds_bench.TRACE_EXPORTERS:
        raise typer.BadParameter(f"--trace-exporter takes one of {', '.join(holds_bench.TRACE_EXPORTERS)}")
    settings = holds_bench.BenchSettings(
        seconds=seconds, threads=threads, workers=workers, hot=hot, repeat=repeat, round_max=round_max,
        secure=_secure(insecure_baseline), insecure_baseline=insecure_baseline, traced=traced, trace_exporter=trace_exporter,
    )  # fmt: skip
    report = holds_bench.run_holds_benchmark(settings)
    render_bench.holds(report)
    _write_json(json_path, report.to_json())


@bench_app.command("settle")
def settle(
    bookings: Annotated[int, typer.Option("--bookings", help="Bookings in the batched phase.")] = 600,
    baseline_bookings: Annotated[int, typer.Option("--baseline-bookings", help="Bookings in the baseline phase (one flow run each).")] = 80,
    threads: Annotated[int, typer.Option("--threads", help="Client threads booking (and, in the baseline, running flows).")] = 8,
    latency_ms: Annotated[int, typer.Option("--latency-ms", help="Gateway latency per call.")] = 50,
    paced: Annotated[float | None, typer.Option("--paced", help="Also a paced phase: the batched node with bookings arriving at this many per second.")] = None,
    floor_runs: Annotated[int, typer.Option("--floor-runs", help="Empty flow runs that measure what Prefect costs a batch by itself.")] = 30,
    json_path: JsonFile = None,
) -> None:
    """Confirmed bookings/s and p50/p99 time to confirmed: batched settle flows against one flow run per booking, and Prefect's own cost per run."""
    if min(bookings, baseline_bookings, threads, floor_runs) <= 0 or latency_ms < 0 or (paced is not None and paced <= 0):
        raise typer.BadParameter("--bookings, --baseline-bookings, --threads, --floor-runs and --paced must be positive")
    from ridgeline.deploy.bench import settlement_bench
    from ridgeline.deploy.cli import render_bench

    report = settlement_bench.run_settle_benchmark(
        bookings=bookings, baseline_bookings=baseline_bookings, threads=threads, latency_ms=latency_ms, secure=_secure(insecure_baseline=False), paced=paced, floor_runs=floor_runs
    )
    render_bench.settle(report)
    _write_json(json_path, report)


@bench_app.command("peers")
def peers(
    bookings: Annotated[int, typer.Option("--bookings", help="Bookings in each phase (the same stays for every system).")] = 600,
    threads: Annotated[int, typer.Option("--threads", help="Client threads, each waiting for its booking.")] = 8,
    latency_ms: Annotated[int, typer.Option("--latency-ms", help="Gateway latency per call.")] = 50,
    paced: Annotated[bool, typer.Option("--paced/--burst-only", help="Also run the peers at half the slower system's rate.")] = True,
    json_path: JsonFile = None,
) -> None:
    """Confirmed/s, p50/p99 to confirmed and CPU per booking: Ridgeline beside Restate and DBOS Transact (needs `make bench-peers`)."""
    if min(bookings, threads) <= 0 or latency_ms < 0:
        raise typer.BadParameter("--bookings and --threads must be positive")
    from ridgeline.deploy.bench.peers.requirements import PeersMissing, require_peers

    try:
        require_peers()
    except PeersMissing as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(1) from None
    from ridgeline.deploy.bench.peers import peers_bench
    from ridgeline.deploy.cli import render_bench

    report = peers_bench.run_peers_benchmark(bookings=bookings, threads=threads, latency_ms=latency_ms, paced=paced, secure=_secure(insecure_baseline=False))
    render_bench.peers(report, peers_bench.ratios(report))
    _write_json(json_path, report)


@bench_app.command("timers")
def timers(
    pending: Annotated[int, typer.Option("--pending", help="Pending settle@2 balance timers in the region.")] = 100_000,
    ticks: Annotated[int, typer.Option("--ticks", help="Timer ticks EXPLAINed with the timers pending.")] = 20,
    settle_bookings: Annotated[int, typer.Option("--settle-bookings", help="Bookings of the settle@1 batch phase beside it.")] = 600,
    threads: Annotated[int, typer.Option("--threads", help="Client threads of the settle@1 phase.")] = 8,
    latency_ms: Annotated[int, typer.Option("--latency-ms", help="Gateway latency per call.")] = 50,
    json_path: JsonFile = None,
) -> None:
    """Time and rows read per timer tick at 100,000 pending; balance charges/s when a day's worth fall due, beside settle@1's rate."""
    if min(pending, ticks, settle_bookings, threads) <= 0 or latency_ms < 0:
        raise typer.BadParameter("--pending, --ticks, --settle-bookings and --threads must be positive")
    from ridgeline.deploy.bench.timers_bench import run_timers_benchmark
    from ridgeline.deploy.cli import render_bench

    report = run_timers_benchmark(
        pending=pending, ticks=ticks, settle_bookings=settle_bookings, threads=threads, latency_ms=latency_ms, secure=_secure(insecure_baseline=False)
    )
    render_bench.timers(report)
    _write_json(json_path, report)


@bench_app.command("console")
def console(
    bookings: Annotated[int, typer.Option("--bookings", help="Bookings seeded in the region before the pages are timed.")] = 100_000,
    requests: Annotated[int, typer.Option("--requests", help="Requests per page, one after another.")] = 50,
    json_path: JsonFile = None,
) -> None:
    """p50/p95 of every operator console page with --bookings bookings in a region (the bound: 200 ms p95)."""
    if min(bookings, requests) <= 0:
        raise typer.BadParameter("--bookings and --requests must be positive")
    from ridgeline.deploy.bench.console_bench import run_console_benchmark
    from ridgeline.deploy.cli import render_bench

    report = run_console_benchmark(bookings=bookings, requests=requests, secure=_secure(insecure_baseline=False))
    render_bench.console_pages(report)
    _write_json(json_path, report)


@bench_app.command("treks")
def treks(
    seconds: Annotated[float, typer.Option("--seconds", help="Length of each phase.")] = 5.0,
    threads: Annotated[int, typer.Option("--threads", help="Client threads in each phase.")] = 16,
    insecure_baseline: InsecureBaseline = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the results here.")] = None,
) -> None:
    """3-leg treks across 3 regions (mTLS): treks/s and p50/p99 to decision and to settled, beside single bookings."""
    if seconds <= 0 or threads <= 0:
        raise typer.BadParameter("--seconds and --threads must be positive")
    from ridgeline.deploy.bench import treks_bench
    from ridgeline.deploy.cli import render_bench

    report = treks_bench.run_treks_benchmark(seconds=seconds, threads=threads, secure=_secure(insecure_baseline), insecure_baseline=insecure_baseline)
    render_bench.treks(report)
    _write_json(json_path, report.to_json())


@bench_app.command("cluster")
def cluster(
    seconds: Annotated[float, typer.Option("--seconds", help="Length of each throughput phase.")] = 10.0,
    threads: Annotated[int, typer.Option("--threads", help="Desk threads placing holds.")] = 16,
    failovers: Annotated[int, typer.Option("--failovers", help="Failover samples (SIGKILL of an owner).")] = 5,
    lease_ttl: Annotated[float, typer.Option("--lease-ttl", help="Lease TTL of the cluster, seconds.")] = 5.0,
    heartbeat: Annotated[float, typer.Option("--heartbeat-interval", help="Heartbeat of the cluster, seconds.")] = 1.0,
    database_failovers: Annotated[
        int, typer.Option("--database-failovers", help="Samples of a region primary's SIGKILL on Patroni (needs Debian's patroni and etcd-server; 0: skip).")
    ] = 5,
    coordinator_failovers: Annotated[int, typer.Option("--coordinator-failovers", help="Coordinator failover samples (SIGKILL of the leading coordinator).")] = 5,
    json_path: JsonFile = None,
) -> None:
    """Failover times (median, max) of a node, a region primary and the leading coordinator, and holds/s through the routing client: 3 regions x 2 nodes vs one node."""
    if seconds <= 0 or threads <= 0 or failovers < 0 or database_failovers < 0 or coordinator_failovers < 0:
        raise typer.BadParameter("--seconds and --threads must be positive, --failovers, --database-failovers and --coordinator-failovers not negative")
    from ridgeline.deploy.bench import cluster_bench
    from ridgeline.deploy.cli import render_bench
    from ridgeline.deploy.run.etcd import EtcdError
    from ridgeline.deploy.run.postgres import PostgresError

    try:
        report = cluster_bench.run_cluster_benchmark(
            seconds=seconds, threads=threads, failovers=failovers, lease_ttl=lease_ttl, heartbeat=heartbeat, secure=_secure(insecure_baseline=False),
            database_failovers=database_failovers, coordinator_failovers=coordinator_failovers,
        )  # fmt: skip
    except (PostgresError, EtcdError) as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(1) from None
    render_bench.cluster(report)
    _write_json(json_path, report.to_json())


def _secure(insecure_baseline: bool) -> bool:
    """Whether the benchmark's processes speak mTLS: yes, unless the global ``--insecure``
    (which leaves nothing secure for ``--insecure-baseline`` to compare with)."""
    if not options.SECURITY.insecure:
        return True
    if insecure_baseline:
        raise typer.BadParameter("--insecure-baseline compares mTLS with plaintext; the global --insecure leaves no mTLS to compare")
    return False


def _write_json(path: Path | None, report: dict[str, object]) -> None:
    """``--json PATH``: the report as indented JSON (dates and other non-JSON values as text)."""
    if path is not None:
        path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
