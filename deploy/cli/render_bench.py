"""How ``ridgeline bench …`` shows a run: rich tables and one verdict line per goal.

The engines in deploy/bench measure and return their reports; only this module prints them.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from rich.table import Table

from ridgeline.deploy.bench import holds_bench, settlement_bench, treks_bench
from ridgeline.deploy.bench.cluster_bench import ClusterBenchReport
from ridgeline.deploy.bench.coordinator_failover_bench import GOAL_SECONDS as COORDINATOR_GOAL_SECONDS
from ridgeline.deploy.bench.holds_bench import BenchReport
from ridgeline.deploy.bench.treks_bench import TreksReport
from ridgeline.deploy.cli.render import console


def holds(report: BenchReport) -> None:
    """Speed and CPU per phase, the medians when repeated, and the verdict against the goal."""
    settings = report.settings
    transport = "mTLS" if settings.secure else "plaintext (--insecure)"
    speed = Table(
        title=f"holds, {settings.workload}: {settings.threads} threads, {settings.seconds:g} s a phase, node workers {settings.workers}, "
        f"hold rounds of up to {settings.round_max}; grpc over {transport}"
    )
    for heading in ("phase", "holds", "holds/s", "p50 ms", "p99 ms", "retries/errors", "rollbacks"):
        speed.add_column(heading, justify="left" if heading == "phase" else "right")
    cpu = Table(title="CPU per hold (µs), and other load on the machine")
    for heading in ("phase", "bench", "node", "postgres", "sum", "other cores"):
        cpu.add_column(heading, justify="left" if heading == "phase" else "right")
    for phase in report.phases:
        speed.add_row(
            phase.phase,
            str(phase.ops),
            f"{phase.ops_per_second:,.0f}",
            _number(phase.p50_ms, 2),
            _number(phase.p99_ms, 2),
            f"{phase.retries if phase.phase == holds_bench.CEILING else '-'}/{sum(phase.errors.values())}",
            str(phase.rollbacks),
        )
        spent = phase.cpu_us_per_hold
        known = [v for v in spent.values() if v is not None]
        cpu.add_row(
            phase.phase,
            *(_number(spent[k], 0) for k in ("bench", "node", "postgres")),
            _number(sum(known) if known else None, 0),
            f"{phase.other_cores:.2f}",
        )
    if settings.repeat > 1:
        kinds = [k for k in (holds_bench.CEILING, holds_bench.GRPC, holds_bench.PLAINTEXT) if any(p.phase == k for p in report.phases)]
        for kind in kinds:
            same = [p for p in report.phases if p.phase == kind]
            speed.add_row(
                kind,
                "median",
                f"{statistics.median(p.ops_per_second for p in same):,.0f}",
                _number(_median_of(p.p50_ms for p in same), 2),
                _number(_median_of(p.p99_ms for p in same), 2),
                end_section=kind == kinds[0],
            )
    console.print(speed)
    for number, phase in enumerate(report.phases, start=1):
        if phase.errors:
            print(f"errors in {phase.phase} phase {number}: " + ", ".join(f"{kind} {count}" for kind, count in sorted(phase.errors.items())))
    console.print(cpu)
    if settings.repeat > 1:
        print("ratios grpc/ceiling: " + ", ".join(f"{r:.2f}" for r in report.ratios))
    verdict = "meets the goal" if report.median_ratio >= holds_bench.GOAL_RATIO else "BELOW the goal"
    label = "median ratio" if settings.repeat > 1 else "ratio"
    print(f"{label} grpc/ceiling = {report.median_ratio:.2f} (goal >= {holds_bench.GOAL_RATIO:.2f}): {verdict}")
    if report.median_mtls_ratio is not None:
        _mtls_verdict(report.median_mtls_ratio, report.mtls_ratios, report.median_ops_per_second(holds_bench.GRPC), report.median_ops_per_second(holds_bench.PLAINTEXT), "holds/s")
    if report.median_traced_ratio is not None:
        _traced_verdict(report)


def _traced_verdict(report: holds_bench.BenchReport) -> None:
    """Tracing on beside off in the same run, and issue 14's goal: a cost of at most 5%."""
    ratio, each = report.median_traced_ratio, report.traced_ratios
    assert ratio is not None
    spread = f" (each round: {', '.join(f'{r:.2f}' for r in each)})" if len(each) > 1 else ""
    verdict = "meets the goal" if ratio >= holds_bench.GOAL_TRACED_RATIO else "BELOW the goal"
    traced, untraced = report.median_ops_per_second(holds_bench.TRACED), report.median_ops_per_second(holds_bench.GRPC)
    print(
        f"traced {_number(traced, 1)} holds/s ({_number(report.spans_per_traced_hold, 1)} spans exported per hold), untraced {_number(untraced, 1)} holds/s: "
        f"ratio traced/untraced = {ratio:.2f}{spread}, cost {1 - ratio:.0%} (goal: cost <= {1 - holds_bench.GOAL_TRACED_RATIO:.0%}): {verdict}"
    )
    if report.span_cost_us is not None and report.span_share_of_node_cpu is not None:
        print(f"a server span costs {report.span_cost_us:.0f} µs of CPU (in-process), {report.span_share_of_node_cpu:.1%} of the untraced node's CPU per hold")


def _mtls_verdict(ratio: float, ratios: Iterable[float], secure: float | None, plaintext: float | None, unit: str) -> None:
    """mTLS beside plaintext of the same run, and issue 11's goal: a cost of at most 10%."""
    each = list(ratios)
    spread = f" (each round: {', '.join(f'{r:.2f}' for r in each)})" if len(each) > 1 else ""
    verdict = "meets the goal" if ratio >= holds_bench.GOAL_MTLS_RATIO else "BELOW the goal"
    print(
        f"mTLS {_number(secure, 1)} {unit}, plaintext {_number(plaintext, 1)} {unit}: ratio mTLS/plaintext = {ratio:.2f}{spread}, "
        f"cost {1 - ratio:.0%} (goal: cost <= {1 - holds_bench.GOAL_MTLS_RATIO:.0%}): {verdict}"
    )


def _median_of(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def settle(report: dict[str, object]) -> None:
    """Each phase's speed, then its CPU per confirmed booking by process tree (two tables, so
    that both fit 80 columns), Prefect's floor per run, and the batched/baseline verdict."""
    settings = report["settings"]
    assert isinstance(settings, dict)
    speed = Table(title=f"settlement, gateway latency {settings['latency_ms']} ms, {settings['threads']} client threads")
    for heading in ("phase", "booked", "confirmed", "per s", "p50 ms", "p99 ms", "flow runs"):
        speed.add_column(heading, justify="left" if heading == "phase" else "right")
    cpu = Table(title="CPU ms per confirmed booking (settlement: node + postgres + prefect)")
    for heading in ("phase", "node", "postgres", "prefect", "settlement", "gateway", "client"):
        cpu.add_column(heading, justify="left" if heading == "phase" else "right")
    phases = report["phases"]
    assert isinstance(phases, list)
    for p in phases:
        label = f"{p['phase']} {p['paced_rate']:g}/s" if p.get("paced_rate") else p["phase"]
        speed.add_row(
            label, str(p["bookings"]), str(p["confirmed"]), f"{p['confirmed_per_second']:,.1f}", f"{p['p50_ms']:,.0f}", f"{p['p99_ms']:,.0f}", str(p["flow_runs"])
        )
        if p.get("cpu_ms"):
            cpu.add_row(label, *(f"{p['cpu_ms'][k]:.1f}" for k in ("node", "postgres", "prefect", "settlement", "gateway", "client")))
    console.print(speed)
    console.print(cpu)
    print(f"load average {report.get('load_average')}")
    _prefect_floor(report["prefect_floor"], phases)
    ratio = report["ratio"]
    verdict = "meets the goal" if isinstance(ratio, float) and ratio >= settlement_bench.GOAL_RATIO else "BELOW the goal"
    print(f"ratio batched/baseline = {ratio:.1f} (goal >= {settlement_bench.GOAL_RATIO:.0f}): {verdict}" if isinstance(ratio, float) else "no baseline rate")


def _prefect_floor(floor: dict[str, object], phases: list[dict[str, object]]) -> None:
    """What an empty flow run costs, and that cost per booking at each phase's batch size."""
    cpu = floor["cpu_ms_per_run"]
    assert isinstance(cpu, dict)
    shares = [
        f"{p['phase']} {cpu['sum'] * p['flow_runs'] / p['confirmed']:.1f} ms ({p['confirmed'] / p['flow_runs']:.1f} bookings/run)"
        for p in phases if p.get("cpu_ms") and p["flow_runs"] and p["confirmed"]
    ]  # fmt: skip
    print(
        f"Prefect floor, {floor['runs']} empty flow runs: {cpu['sum']:.0f} ms CPU a run (engine {cpu['client']:.0f}, server {cpu['prefect']:.0f},"
        f" postgres {cpu['postgres']:.0f}), {floor['wall_ms_per_run']:.0f} ms wall; per booking: " + ("; ".join(shares) or "-")
    )


def peers(report: dict[str, object], ratios: list[dict[str, object]]) -> None:
    """Every phase with its ratios to the best peer of the same mode (burst or paced)."""
    settings = report["settings"]
    assert isinstance(settings, dict)
    paced = f", paced at {settings['paced_rate']:g}/s" if settings["paced_rate"] else ""
    table = Table(title=f"peers: {settings['bookings']} bookings, {settings['threads']} threads, gateway {settings['latency_ms']} ms, {settings['transport']}{paced}")
    for heading in ("system", "mode", "confirmed", "charges", "confirmed/s", "p50 ms", "p99 ms", "CPU ms", "×rate", "×p50", "×p99", "×CPU"):
        table.add_column(heading, justify="left" if heading in ("system", "mode") else "right")
    phases = report["phases"]
    assert isinstance(phases, list)
    for p, r in zip(phases, ratios, strict=True):
        table.add_row(
            p["system"], p["mode"], f"{p['confirmed']}/{p['bookings']}", str(p["charges"]), f"{p['confirmed_per_second']:,.1f}", f"{p['p50_ms']:,.0f}", f"{p['p99_ms']:,.0f}",
            f"{p['cpu_ms_per_booking']:.1f}", *(f"{r[k]:.2f}" for k in ("throughput", "p50", "p99", "cpu")),
        )  # fmt: skip
    console.print(table)
    print("CPU ms: per confirmed booking, every process summed; ×: ratio to the best peer (Restate, DBOS) of the same mode")


def treks(report: TreksReport) -> None:
    """Every phase in one table, the treks phase against the goals, then mTLS beside plaintext."""
    table = Table(title="Treks (3 legs, 3 regions) beside single-region bookings, same run")
    for column in ("phase", "transport", "threads", "done/s", "refused", "call p50/p99 ms", "decision p50/p99 ms", "settled p50/p99 ms"):
        table.add_column(column, justify="left" if column == "phase" else "right")

    def pair(a: float | None, b: float | None) -> str:
        return "-" if a is None else f"{a:.1f} / {b:.1f}"

    for r in report.phases:
        table.add_row(r.phase, r.transport, str(r.threads), f"{r.per_second:.1f}", str(r.refused), pair(r.call_p50_ms, r.call_p99_ms), pair(r.decision_p50_ms, r.decision_p99_ms), pair(r.settled_p50_ms, r.settled_p99_ms))
    console.print(table)
    trek = report.phases[0]
    verdict = (trek.decision_p50_ms or float("inf")) <= treks_bench.GOAL_DECISION_P50_MS and trek.per_second >= treks_bench.GOAL_TREKS_PER_SECOND
    console.print(
        f"goals: decision p50 ≤ {treks_bench.GOAL_DECISION_P50_MS:g} ms and ≥ {treks_bench.GOAL_TREKS_PER_SECOND:g} treks/s → "
        f"{'met' if verdict else 'NOT met'} ({trek.decision_p50_ms} ms, {trek.per_second:.1f} treks/s, {trek.transport})"
    )
    ratios = report.mtls_ratios
    if ratios:
        secure, plaintext = report.phases[:2], report.phases[2:]
        for (kind, unit), mine, theirs in zip((("treks", "treks/s"), ("singles", "singles/s")), secure, plaintext, strict=True):
            print(f"{kind}: ", end="")
            _mtls_verdict(ratios[kind], [ratios[kind]], mine.per_second, theirs.per_second, unit)


def cluster(report: ClusterBenchReport) -> None:
    """Throughput of both clusters, their ratio, and the failover samples against the lease bound."""
    failover = report.failover
    table = Table(title="Holds through the routing client")
    for column in ("cluster", "nodes", "holds/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column)
    for r in report.throughput:
        table.add_row(r.label, str(r.nodes), f"{r.holds_per_second:.0f}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", ", ".join(f"{k} {v}" for k, v in r.errors.items()) or "none")
    console.print(table)
    if report.ratio is not None:
        console.print(f"ratio 3x2 / one node: [bold]{report.ratio:.2f}[/]")
    if failover.samples_seconds:
        console.print(
            f"failover (SIGKILL → first successful hold on a moved basecamp), {len(failover.samples_seconds)} runs: "
            f"median [bold]{failover.median:.2f} s[/], max [bold]{failover.worst:.2f} s[/] "
            f"(lease TTL {failover.lease_ttl_seconds:g} s + heartbeat {failover.heartbeat_interval_seconds:g} s = "
            f"{failover.lease_ttl_seconds + failover.heartbeat_interval_seconds:g} s bound); samples "
            + ", ".join(f"{s:.2f}" for s in failover.samples_seconds)
        )
    database = report.database_failover
    if database is not None:
        rest = [f"{s:.2f}" if s is not None else "-" for s in database.rest_api_seconds]
        console.print(
            f"region primary failover (SIGKILL of the Patroni leader's PostgreSQL → first successful hold), {len(database.samples_seconds)} runs: "
            f"median [bold]{database.median:.2f} s[/], max [bold]{database.worst:.2f} s[/] (goal 5 s; ttl {database.ttl_seconds} s, "
            f"loop_wait {database.loop_wait_seconds} s, retry_timeout {database.retry_timeout_seconds} s); samples "
            + ", ".join(f"{s:.2f}" for s in database.samples_seconds)
            + f"; Patroni's REST API named the new leader after {', '.join(rest)} s"
        )

    coordinator = report.coordinator_failover
    if coordinator is not None and coordinator.samples_seconds:
        verdict = "[green]meets[/]" if coordinator.worst <= COORDINATOR_GOAL_SECONDS else "[red]misses[/]"
        console.print(
            f"coordinator failover (SIGKILL of the leader → next trek decided), {len(coordinator.samples_seconds)} runs: "
            f"median [bold]{coordinator.median:.2f} s[/], max [bold]{coordinator.worst:.2f} s[/] ({verdict} the {COORDINATOR_GOAL_SECONDS:g} s goal; "
            f"lease TTL {coordinator.lease_ttl_seconds:g} s, heartbeat {coordinator.heartbeat_interval_seconds:g} s); samples "
            + ", ".join(f"{s:.2f}" for s in coordinator.samples_seconds)
        )


def timers(report: dict[str, object]) -> None:
    """The tick at rest, the day that falls due, and settle@1's rate beside it."""
    tick, day = report["tick"], report["day_due"]
    assert isinstance(tick, dict) and isinstance(day, dict)
    table = Table(title=f"durable timers, gateway latency {report['settings']['latency_ms']} ms")  # type: ignore[index]
    for heading in ("measure", "value"):
        table.add_column(heading, justify="left" if heading == "measure" else "right")
    for name, value in (
        ("pending timers", f"{tick['pending']:,}"),
        ("tick, median / max ms", f"{tick['tick_ms_median']:.3f} / {tick['tick_ms_max']:.3f}"),
        ("timer rows read per idle tick", str(tick["timer_rows_read"])),
        ("index range, no table scan", "yes" if tick["indexed_range"] else "NO"),
        ("due at once (a day's worth)", f"{day['due']:,}"),
        ("first tick ms / rows read", f"{day['first_tick_ms']:.3f} / {day['first_tick_timer_rows_read']}"),
        ("balance charges/s", f"{day['balance_charges_per_second']:,.1f}"),
        ("settle@1 confirmed/s, same run", f"{report['settle_v1_confirmed_per_second']:,.1f}"),
    ):
        table.add_row(name, value)
    console.print(table)


def console_pages(report: dict[str, object]) -> None:
    """``bench console``: each page's p50, p95 and max against the bound."""
    settings = report["settings"]
    table = Table(title=f"console pages with {settings['bookings']:,} bookings in a region ({settings['requests']} requests each, {settings['transport']})")
    for column in ("page", "p50", "p95", "max", f"p95 ≤ {report['p95_bound_ms']:g} ms"):
        table.add_column(column)
    for name, timing in report["pages"].items():
        if "error" in timing:
            table.add_row(name, "", "", "", f"[yellow]{timing['error']}[/]")
            continue
        ok = timing["p95_ms"] <= report["p95_bound_ms"]
        table.add_row(name, f"{timing['p50_ms']} ms", f"{timing['p95_ms']} ms", f"{timing['max_ms']} ms", "[green]yes[/]" if ok else "[red]no[/]")
    console.print(table)
    console.print(f"seeded in {report['seed_seconds']} s · {report['machine']}")
