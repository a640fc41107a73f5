"""``ridgeline bench holds``: holds/s through gRPC against the raw SQL ceiling of the same run.

The goal: a hold placed through one node's gRPC API reaches at least 60% of the rate at
which the database takes the same conditional UPDATE plus the booking INSERT straight
from psycopg, from the same number of threads (the *ceiling*, ARCHITECTURE.md §3).
These machines are small and noisy (2 cores), so an absolute holds/s figure says little
from one day to the next: the ceiling is measured in the same run and the verdict is the
ratio. ``--repeat`` brackets every gRPC phase between two ceiling phases, so that drift
during the run shows up instead of skewing the ratio.

The node serves as production does: mutual TLS with certificates made for the run, every
call identified, authorized and charged to its desk's fair share (each client thread is
a desk of its own, deploy/bench/security.py). ``--insecure-baseline`` prices that: each
round runs a second gRPC phase against a plaintext node, the two in alternating order
from round to round, and the verdict is mTLS holds/s over plaintext holds/s of the same
round (goal: mTLS and authorization cost at most 10%, so ≥ 0.90). Channels, and with
them TLS sessions, live for the whole phase; the warm-up hold opens them untimed.

Everything is throwaway: a PostgreSQL server in a temporary directory (removed even on
Ctrl-C), a catalog whose capacity never runs out (every hold takes the fast path), and
a node started exactly as production starts it (``python -m ridgeline.deploy.cli node``)
so that it does not share a GIL with the client threads here. It does share the cores,
so every phase also reports where the CPU went (this process, the node, PostgreSQL) and
how much other processes used meanwhile, read from /proc (Linux only).

The CLI (deploy/cli/bench.py) imports this module for every command, so the database
side (psycopg, SQLAlchemy, Alembic: about half a second) is imported inside the functions
that use it.
"""

from __future__ import annotations

import math
import os
import platform
import random
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import grpc
from rich.console import Console

from ridgeline import tracing
from ridgeline.deploy.bench.security import BenchSecurity
from ridgeline.deploy.bench.span_cost import traced_call_cost_us
from ridgeline.deploy.cluster.scrape import scrape
from ridgeline.deploy.run.otlp_receiver import OtlpReceiver
from ridgeline.deploy.run.processes import child_pids, cpu_seconds, free_port, machine_busy_seconds, spawn_ready
from ridgeline.regional.config import NodeConfig
from ridgeline.routing.client import BookingClient
from ridgeline.trust.credentials import Transport

if TYPE_CHECKING:
    from ridgeline.regional.booking.catalog import Catalog

#: The issue's goal: gRPC holds/s at least this fraction of the ceiling's.
GOAL_RATIO = 0.60
#: Issue 11's goal: mTLS and authorization cost at most 10% of the plaintext holds/s.
GOAL_MTLS_RATIO = 0.90
#: Issue 14: tracing on with a no-op exporter (or OTLP to a receiver that keeps nothing) costs at most 5 %.
GOAL_TRACED_RATIO = 0.95
#: The phases: the raw SQL ceiling, gRPC as configured (mTLS unless --insecure), plaintext gRPC.
CEILING, GRPC, PLAINTEXT, TRACED = "ceiling", "grpc", "grpc-plaintext", "grpc-traced"
TRACE_EXPORTERS = ("none", "otlp")

_REGION = "bench"
_BASECAMP = "bench-camp"
_DATABASE = "ridgeline_bench"
_RESOURCE_COUNT = 8
#: So large that no hold is ever refused, even all on one night: no slow path, no sell-out.
_CAPACITY = 1_000_000
_UNIT_PRICE_CENTS = 5_000
_CURRENCY = "EUR"
_CUSTOMER = "bench"
_HOLD_TTL_SECONDS = 900
#: Spread holds ask for one random night among this many, starting tomorrow.
_NIGHTS_AHEAD = 300
_NODE_READY_TIMEOUT_SECONDS = 60.0
_NODE_STOP_TIMEOUT_SECONDS = 15.0
_WORKERS_READY_TIMEOUT_SECONDS = 60.0
_CALL_TIMEOUT_SECONDS = 30.0
_BACKENDS_GONE_TIMEOUT_SECONDS = 15.0

# The ceiling as ARCHITECTURE.md §3 defines it: the node's conditional UPDATE and a
# booking INSERT in one explicit transaction (BEGIN, UPDATE, INSERT, COMMIT).
_TAKE_UNIT = """
    UPDATE inventory SET held = held + 1
    WHERE resource_id = %(resource_id)s AND night >= %(start)s AND night < %(end)s
      AND held + booked + 1 <= capacity
    RETURNING night
"""
_INSERT_BOOKING = """
    INSERT INTO bookings (booking_id, basecamp_id, resource_id, first_night, end_night, party_size,
                          customer_id, state, version, total_price_cents, currency,
                          created_at, updated_at, expires_at, reserved_nights)
    VALUES (%(booking_id)s, %(basecamp_id)s, %(resource_id)s, %(start)s, %(end)s, 1,
            %(customer_id)s, 'held', 1, %(price)s, %(currency)s, %(now)s, %(now)s, %(expires_at)s, 1)
"""

_err = Console(stderr=True)


@dataclass(frozen=True)
class BenchSettings:
    """One run's shape; the same threads, seconds and workload serve both phases, so they compare."""

    seconds: float = 10.0
    threads: int = 16
    #: The node's gRPC workers and database pool size.
    workers: int = 16
    hot: bool = False
    repeat: int = 1
    #: The node's group-commit round size; 1 places every hold with its own statement.
    round_max: int = NodeConfig.hold_round_max
    #: The gRPC phases over mutual TLS with authorization (production), or plaintext (--insecure).
    secure: bool = True
    #: Also a plaintext gRPC phase in every round, to price mTLS and authorization.
    insecure_baseline: bool = False
    #: Also a phase in every round whose node traces every call: the price of tracing.
    traced: bool = False
    #: Where the traced node's spans go: ``none`` (made and dropped, the issue's no-op
    #: exporter: the instrumentation's cost alone) or ``otlp`` (exported every 100 ms to a
    #: receiver in this process that counts them and keeps nothing: the exporter's too).
    trace_exporter: str = "none"

    def __post_init__(self) -> None:
        assert self.seconds > 0 and self.threads > 0 and self.workers > 0 and self.repeat > 0 and self.round_max > 0, self
        assert self.secure or not self.insecure_baseline, "an insecure baseline needs secure gRPC phases to compare with"
        assert self.trace_exporter in TRACE_EXPORTERS, self.trace_exporter

    @property
    def workload(self) -> str:
        return "hot" if self.hot else "spread"


@dataclass(frozen=True)
class PhaseResult:
    """One timed phase. Latencies are per successful hold, retries included."""

    phase: str
    ops: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    #: Whole-transaction retries counted by the bench (ceiling only: the node retries inside).
    retries: int
    #: Transactions the database rolled back (pg_stat_database), for both phases alike;
    #: warm-up and node start-up included (a handful). Here each one is a lost race.
    rollbacks: int
    errors: dict[str, int]
    #: CPU time per successful hold, µs: this process ("bench"), the node, PostgreSQL.
    cpu_us_per_hold: dict[str, float | None]
    #: Cores busy with anything else meanwhile (other processes, kernel threads): noise.
    other_cores: float

    @property
    def ops_per_second(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class BenchReport:
    """Everything a run measured, with what it ran on: numbers from another day need both."""

    settings: BenchSettings
    #: When the run started (UTC, ISO 8601).
    date: str
    machine: dict[str, object]
    phases: tuple[PhaseResult, ...]
    #: gRPC holds/s over the ceiling beside it, one per gRPC phase.
    ratios: tuple[float, ...]
    #: mTLS holds/s over plaintext holds/s of the same round (``insecure_baseline`` only).
    mtls_ratios: tuple[float, ...] = ()
    #: Traced holds/s over untraced holds/s of the same round (``traced`` only).
    traced_ratios: tuple[float, ...] = ()
    #: Spans the traced phases' nodes exported (proof that tracing was on), per traced hold.
    spans_per_traced_hold: float | None = None
    #: CPU µs the server span adds to one call, measured in this process after the phases
    #: (``span_cost``): what tracing takes of the node, steadier than two phases' rates.
    span_cost_us: float | None = None

    @property
    def span_share_of_node_cpu(self) -> float | None:
        """The span's cost over the untraced node's median CPU per hold of this run."""
        measured = [n for p in self.phases if p.phase == GRPC and (n := p.cpu_us_per_hold.get("node"))]
        return self.span_cost_us / statistics.median(measured) if self.span_cost_us is not None and measured else None

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def median_mtls_ratio(self) -> float | None:
        return statistics.median(self.mtls_ratios) if self.mtls_ratios else None

    @property
    def median_traced_ratio(self) -> float | None:
        return statistics.median(self.traced_ratios) if self.traced_ratios else None

    def median_ops_per_second(self, phase: str) -> float | None:
        """Median holds/s of the phases of one kind (None when the run had none)."""
        rates = [p.ops_per_second for p in self.phases if p.phase == phase]
        return statistics.median(rates) if rates else None

    def to_json(self) -> dict[str, object]:
        return {
            "date": self.date,
            "machine": self.machine,
            **asdict(self.settings),
            "workload": self.settings.workload,
            "phases": [{**asdict(p), "ops_per_second": p.ops_per_second} for p in self.phases],
            "ratios": list(self.ratios),
            "median_ratio": self.median_ratio,
            "goal_ratio": GOAL_RATIO,
            "grpc_transport": "mTLS" if self.settings.secure else "plaintext",
            "median_holds_per_second": {kind: self.median_ops_per_second(kind) for kind in (CEILING, GRPC, PLAINTEXT, TRACED) if self.median_ops_per_second(kind) is not None},
            "mtls_ratios": list(self.mtls_ratios),
            "median_mtls_ratio": self.median_mtls_ratio,
            "mtls_goal_ratio": GOAL_MTLS_RATIO,
            "traced_ratios": list(self.traced_ratios),
            "median_traced_ratio": self.median_traced_ratio,
            "traced_goal_ratio": GOAL_TRACED_RATIO,
            "spans_per_traced_hold": self.spans_per_traced_hold,
            "span_cost_us": self.span_cost_us,
            "span_share_of_node_cpu": self.span_share_of_node_cpu,
        }


def run_holds_benchmark(settings: BenchSettings) -> BenchReport:
    """Runs ceiling and gRPC phases alternately on a throwaway database, then cleans up.

    The database, catalog and node live only for this call; the temporary directory is
    removed and every process stopped even when interrupted (Ctrl-C).
    """
    from ridgeline.deploy.run.postgres import PostgresServer
    from ridgeline.deploy.run.region import prepare_region_database

    started = datetime.now(timezone.utc)
    root = Path(tempfile.mkdtemp(prefix="ridgeline-bench-"))
    server = PostgresServer(root / "postgres")
    try:
        server.start()
        url = server.create_database(_DATABASE)
        catalog = _bench_catalog()
        prepare_region_database(url, _REGION, catalog, advance_booking_days=NodeConfig.advance_booking_days)
        workload = _Workload(
            hot=settings.hot,
            resource_ids=tuple(r.resource_id for r in catalog.basecamps[0].resources),
            first_night=started.date() + timedelta(days=1),
        )
        admin_dsn, bench_dsn = server.admin_dsn(), server.libpq_dsn(_DATABASE)
        machine = _machine(admin_dsn)
        postmaster = _postmaster_pid(server.data_dir)
        configured = BenchSecurity.made_in(root) if settings.secure else BenchSecurity.plaintext()
        security = {GRPC: configured, PLAINTEXT: BenchSecurity.plaintext(), TRACED: configured}
        desks = {phase: way.desks(settings.threads) for phase, way in security.items()}
        phases: list[PhaseResult] = []
        sink = OtlpReceiver(keep_spans=False).start() if settings.trace_exporter == "otlp" else None
        # The traced node hands its spans over every 100 ms (the SDK's default is 5 s): a phase sees that cost.
        exporter = {tracing.ENDPOINT_VARIABLE: sink.endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true"} if sink else {tracing.EXPORTER_VARIABLE: "none"}
        traced_env = {**_untraced_environment(), **exporter, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        environments = {GRPC: _untraced_environment(), PLAINTEXT: _untraced_environment(), TRACED: traced_env}
        spans_exported = 0
        for phase in _schedule(settings.repeat, extras=_extra_phases(settings)):
            over = f", {security[phase].label}" if phase != CEILING else ""
            _err.print(f"[dim]{phase} phase {len(phases) + 1}: {settings.threads} threads, {settings.seconds:g} s, {settings.workload}{over}[/]")
            before = _rollbacks_settled(admin_dsn)
            if phase == CEILING:
                drive = _drive(lambda _: _SqlWorker(bench_dsn), workload, settings, pids=_Pids(None, postmaster))
            else:
                with _node_process(url, settings, security[phase], root / "node.log", environments[phase]) as (pid, address, metrics_port):
                    _err.print(f"[dim]node pid {pid} serving on {address}[/]")
                    phase_desks = desks[phase]
                    drive = _drive(lambda index: _GrpcWorker(address, phase_desks[index]), workload, settings, pids=_Pids(pid, postmaster))
                    if phase == TRACED:
                        spans_exported += _spans_exported(metrics_port)
            phases.append(drive.result(phase, rollbacks=_rollbacks_settled(admin_dsn) - before))
        traced_holds = sum(p.ops for p in phases if p.phase == TRACED)
        return BenchReport(
            settings=settings,
            date=started.isoformat(timespec="seconds"),
            machine=machine,
            phases=tuple(phases),
            ratios=_ratios(phases),
            mtls_ratios=_round_ratios(phases, GRPC, PLAINTEXT),
            traced_ratios=_round_ratios(phases, TRACED, GRPC),
            spans_per_traced_hold=spans_exported / traced_holds if traced_holds else None,
            span_cost_us=traced_call_cost_us() if settings.traced else None,
        )
    finally:
        if sink is not None:
            sink.stop()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _extra_phases(settings: BenchSettings) -> list[str]:
    """The gRPC phases each round runs beside the production one, to price what they leave out or add."""
    return [*([PLAINTEXT] if settings.insecure_baseline else []), *([TRACED] if settings.traced else [])]


def _schedule(repeat: int, *, extras: list[str]) -> list[str]:
    """ceiling, grpc for one run; ceiling, grpc, ceiling, … ceiling to bracket several.

    With extra phases (plaintext, traced) each round has them beside the gRPC one, in
    forward order in odd rounds and reversed in even ones, so that none always runs on a
    warmer database.
    """
    order: list[str] = []
    for round_number in range(repeat):
        grpc_phases = [GRPC, *extras]
        order += [CEILING, *(grpc_phases if round_number % 2 == 0 else grpc_phases[::-1])]
    order = order + [CEILING] if repeat > 1 else order
    assert all(order.count(phase) == repeat for phase in (GRPC, *extras))
    return order


def _untraced_environment() -> dict[str, str]:
    """This process's environment without what turns tracing on: only the traced phase traces."""
    return {name: value for name, value in os.environ.items() if name not in (tracing.ENDPOINT_VARIABLE, tracing.EXPORTER_VARIABLE)}


def _spans_exported(metrics_port: int) -> int:
    """The spans the node says it exported, once its last batch (100 ms) went out: the
    proof that the traced phase traced."""
    time.sleep(0.3)
    figures = scrape(f"127.0.0.1:{metrics_port}", timeout_seconds=5)
    if figures is None:
        raise RuntimeError(f"the traced node's metrics on 127.0.0.1:{metrics_port} did not answer")
    return figures.spans_exported


def _ratios(phases: list[PhaseResult]) -> tuple[float, ...]:
    """Each gRPC phase over the mean of the nearest ceiling phases before and after it."""
    ratios = []
    for index, phase in enumerate(phases):
        if phase.phase != GRPC:
            continue
        before = next((p for p in reversed(phases[:index]) if p.phase == CEILING), None)
        after = next((p for p in phases[index + 1 :] if p.phase == CEILING), None)
        around = [p.ops_per_second for p in (before, after) if p is not None]
        ceiling = statistics.mean(around) if around else 0.0
        ratios.append(phase.ops_per_second / ceiling if ceiling > 0 else 0.0)
    return tuple(ratios)


def _round_ratios(phases: list[PhaseResult], numerator: str, denominator: str) -> tuple[float, ...]:
    """Each round's ``numerator`` holds/s over its ``denominator`` holds/s (rounds pair up in
    schedule order); empty when the run had no phase of one of them."""
    tops = [p for p in phases if p.phase == numerator]
    bottoms = [p for p in phases if p.phase == denominator]
    if not tops or not bottoms:
        return ()
    assert len(tops) == len(bottoms), "every round has one phase of each"
    return tuple(t.ops_per_second / b.ops_per_second if b.ops_per_second > 0 else 0.0 for t, b in zip(tops, bottoms, strict=True))


def _bench_catalog() -> Catalog:
    from ridgeline.regional.booking.catalog import parse_catalog

    return parse_catalog(
        {
            "regions": [{"id": _REGION, "name": "Benchmark"}],
            "basecamps": [
                {
                    "id": _BASECAMP,
                    "region": _REGION,
                    "name": "Benchmark basecamp",
                    "time_zone": "UTC",
                    "resources": [
                        {
                            "id": f"{_BASECAMP}-{number}",
                            "kind": "hut_bed",
                            "capacity": _CAPACITY,
                            "unit_price_cents": _UNIT_PRICE_CENTS,
                            "currency": _CURRENCY,
                        }
                        for number in range(_RESOURCE_COUNT)
                    ],
                }
            ],
        }
    )


@dataclass(frozen=True)
class _Workload:
    """Which resource and night each hold asks for; both phases use the same choice."""

    hot: bool
    resource_ids: tuple[str, ...]
    first_night: date

    def pick(self, rng: random.Random) -> tuple[str, date]:
        if self.hot:
            return self.resource_ids[0], self.first_night
        return rng.choice(self.resource_ids), self.first_night + timedelta(days=rng.randrange(_NIGHTS_AHEAD))


class _Failed(Exception):
    """One hold that did not succeed; the message is its kind, for the error tally."""

    def __init__(self, kind: str, *, retries: int = 0) -> None:
        super().__init__(kind)
        self.retries = retries


class _HoldWorker(Protocol):
    def hold(self, resource_id: str, night: date) -> int:
        """Places one 1-unit, 1-night hold; returns the retries it took or raises _Failed."""
        ...

    def close(self) -> None: ...


class _SqlWorker:
    """One connection taking holds the ceiling's way, retried whole like the node does."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        from ridgeline.regional.storage.db import DEFAULT_RETRY, RETRYABLE_SQLSTATES

        # autocommit off: psycopg opens a transaction at the server default, SERIALIZABLE.
        self._conn = psycopg.connect(dsn, autocommit=False, application_name="ridgeline-bench-ceiling")
        self._cursor = self._conn.cursor()
        self._database_error = psycopg.Error
        self._retry, self._retryable = DEFAULT_RETRY, RETRYABLE_SQLSTATES

    def hold(self, resource_id: str, night: date) -> int:
        for attempt in range(1, self._retry.attempts_max + 1):
            now = datetime.now(timezone.utc)
            params = {
                "booking_id": uuid.uuid4(),
                "basecamp_id": _BASECAMP,
                "resource_id": resource_id,
                "start": night,
                "end": night + timedelta(days=1),
                "customer_id": _CUSTOMER,
                "price": _UNIT_PRICE_CENTS,
                "currency": _CURRENCY,
                "now": now,
                "expires_at": now + timedelta(seconds=_HOLD_TTL_SECONDS),
            }
            try:
                self._cursor.execute(_TAKE_UNIT, params)
                if len(self._cursor.fetchall()) != 1:
                    self._conn.rollback()
                    raise _Failed("sold out", retries=attempt - 1)
                self._cursor.execute(_INSERT_BOOKING, params)
                self._conn.commit()
                return attempt - 1
            except self._database_error as error:
                self._conn.rollback()
                if error.sqlstate not in self._retryable:
                    raise _Failed(error.sqlstate or type(error).__name__, retries=attempt - 1) from error
                if attempt == self._retry.attempts_max:
                    raise _Failed("exhausted", retries=attempt - 1) from error
                time.sleep(self._retry.backoff_seconds(attempt))
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def close(self) -> None:
        self._conn.close()


class _GrpcWorker:
    """One desk's BookingClient (its own channel, TLS session included) placing holds through the node."""

    def __init__(self, address: str, transport: Transport) -> None:
        self._client = BookingClient(address, transport=transport, timeout_seconds=_CALL_TIMEOUT_SECONDS)

    def hold(self, resource_id: str, night: date) -> int:
        end = night + timedelta(days=1)
        try:
            self._client.place_hold(_BASECAMP, resource_id, night, end, 1, _CUSTOMER, hold_ttl_seconds=_HOLD_TTL_SECONDS)
        except grpc.RpcError as error:
            raise _Failed(error.code().name) from error
        return 0

    def close(self) -> None:
        self._client.close()


@dataclass
class _Tally:
    """What one client thread saw; merged after the phase, so no locks on the hot path."""

    latencies_seconds: list[float] = field(default_factory=list)
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _Pids:
    node: int | None
    postmaster: int


@dataclass(frozen=True)
class _Cpu:
    """Cumulative CPU seconds: this process, the node, PostgreSQL, and the whole machine."""

    bench: float
    node: float
    postgres: float
    machine: float

    def __sub__(self, other: _Cpu) -> _Cpu:
        return _Cpu(self.bench - other.bench, self.node - other.node, self.postgres - other.postgres, self.machine - other.machine)


@dataclass(frozen=True)
class _Drive:
    tallies: list[_Tally]
    seconds: float
    cpu_before: _Cpu
    cpu_after: _Cpu

    def result(self, phase: str, *, rollbacks: int) -> PhaseResult:
        latencies = sorted(s for t in self.tallies for s in t.latencies_seconds)
        errors: Counter[str] = sum((t.errors for t in self.tallies), Counter())
        ops = len(latencies)
        spent = self.cpu_after - self.cpu_before
        ours = {"bench": spent.bench, "node": spent.node if phase != CEILING else None, "postgres": spent.postgres}
        return PhaseResult(
            phase=phase,
            ops=ops,
            seconds=self.seconds,
            p50_ms=_percentile_ms(latencies, 0.50),
            p99_ms=_percentile_ms(latencies, 0.99),
            retries=sum(t.retries for t in self.tallies),
            rollbacks=rollbacks,
            errors=dict(errors),
            cpu_us_per_hold={k: (v * 1e6 / ops if v is not None and ops else None) for k, v in ours.items()},
            other_cores=(spent.machine - spent.bench - spent.node - spent.postgres) / self.seconds,
        )


def _drive(open_worker: Callable[[int], _HoldWorker], workload: _Workload, settings: BenchSettings, *, pids: _Pids) -> _Drive:
    """Runs ``settings.threads`` workers (``open_worker(thread index)``) for ``settings.seconds`` after one untimed warm-up hold each.

    The warm-up opens connections, channels and plan caches before the clock starts, so
    both phases are timed in their steady state. Only holds that finish inside the window
    count: a straggler's retries after the stop neither stretch the window nor add holds.
    """
    start = threading.Barrier(settings.threads + 1)
    stop = threading.Event()
    tallies = [_Tally() for _ in range(settings.threads)]
    failures: list[BaseException] = []

    def run(index: int) -> None:
        tally, rng = tallies[index], random.Random(index)
        try:
            worker = open_worker(index)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)
            start.abort()
            return
        try:
            worker.hold(*workload.pick(rng))
            start.wait()
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    retries = worker.hold(*workload.pick(rng))
                except _Failed as failure:
                    if not stop.is_set():
                        tally.errors[str(failure)] += 1
                        tally.retries += failure.retries
                    continue
                if not stop.is_set():
                    tally.latencies_seconds.append(time.perf_counter() - began)
                    tally.retries += retries
        except threading.BrokenBarrierError:
            pass  # another thread failed to start, or the run was interrupted
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)
            stop.set()
            start.abort()
        finally:
            worker.close()

    pool = [threading.Thread(target=run, args=(i,), name=f"bench-{i}", daemon=True) for i in range(settings.threads)]
    for thread in pool:
        thread.start()
    stopped: float | None = None
    try:
        start.wait(_WORKERS_READY_TIMEOUT_SECONDS)
        cpu_before, started = _cpu(pids), time.perf_counter()
        stop.wait(settings.seconds)
        # Read while every connection is still open: the CPU time of a backend that has
        # exited only shows once the postmaster has reaped it.
        cpu_after, stopped = _cpu(pids), time.perf_counter()
    except threading.BrokenBarrierError:
        pass  # a worker failed (raised below) or the workers were not ready in time
    finally:
        stop.set()
        if stopped is None:  # failed or interrupted: free the workers still waiting
            start.abort()
        for thread in pool:
            thread.join(_CALL_TIMEOUT_SECONDS)
    if failures:
        raise RuntimeError(f"a benchmark thread failed: {failures[0]!r}") from failures[0]
    if stopped is None:
        raise RuntimeError(f"benchmark threads were not ready within {_WORKERS_READY_TIMEOUT_SECONDS:g} s")
    return _Drive(tallies, stopped - started, cpu_before, cpu_after)


def _percentile_ms(sorted_seconds: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_seconds:
        return None
    rank = max(math.ceil(fraction * len(sorted_seconds)), 1)
    return sorted_seconds[rank - 1] * 1e3


def _cpu(pids: _Pids) -> _Cpu:
    return _Cpu(
        bench=cpu_seconds(os.getpid()),
        node=cpu_seconds(pids.node) if pids.node is not None else 0.0,
        postgres=_postgres_cpu_seconds(pids.postmaster),
        machine=machine_busy_seconds(),
    )


def _postgres_cpu_seconds(postmaster: int) -> float:
    """The postmaster, its live backends, and the backends it has already reaped.

    A backend that exits mid-phase (a client disconnecting) is not lost: once the
    postmaster reaps it, its CPU time moves into the postmaster's cutime/cstime.
    """
    total = cpu_seconds(postmaster, reaped_children=True)
    for backend in child_pids(postmaster):
        with suppress(OSError):  # exited while we looked
            total += cpu_seconds(backend)
    return total


def _postmaster_pid(data_dir: Path) -> int:
    """The first line of postmaster.pid (the server is running when this is called)."""
    return int((data_dir / "postmaster.pid").read_text(encoding="ascii").split("\n", 1)[0])


def _rollbacks_settled(admin_dsn: str) -> int:
    """The bench database's rollback counter once none of its clients is connected.

    A backend reports its counters to pg_stat_database when it exits (before it leaves
    pg_stat_activity), so waiting until the database has no backends makes the count
    cover everything the phase did.
    """
    import psycopg

    deadline = time.monotonic() + _BACKENDS_GONE_TIMEOUT_SECONDS
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (_DATABASE,)).fetchone()
            if row is None or row[0] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        rolled_back = conn.execute("SELECT xact_rollback FROM pg_stat_database WHERE datname = %s", (_DATABASE,)).fetchone()
    return int(rolled_back[0]) if rolled_back else 0


@contextmanager
def _node_process(database_url: str, settings: BenchSettings, security: BenchSecurity, log_path: Path, env: dict[str, str]) -> Iterator[tuple[int, str, int]]:
    """The node as production runs it (with ``security``, in environment ``env``); yields
    its pid, address and metrics port, stops it on the way out.

    It gets its own session, so that Ctrl-C reaches only this process and the shutdown
    stays in order: clients, then the node, then the database.
    """
    command = security.command(
        "node", "--region", _REGION, "--database-url", database_url, "--workers", str(settings.workers),
        "--hold-round-max", str(settings.round_max), "--metrics-listen", f"127.0.0.1:{(metrics_port := free_port())}",
    )  # fmt: skip
    with spawn_ready(
        command, what="node", log_path=log_path, new_session=True, env=env,
        timeout_seconds=_NODE_READY_TIMEOUT_SECONDS, stop_timeout_seconds=_NODE_STOP_TIMEOUT_SECONDS,
    ) as node:  # fmt: skip
        yield node.pid, node.address, metrics_port


def _machine(admin_dsn: str) -> dict[str, object]:
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "postgresql": row[0] if row else "unknown",
    }
