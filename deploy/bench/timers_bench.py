"""``ridgeline bench timers``: what durable timers cost at 100,000 pending, and how fast a day's
balances are charged when they fall due at once, beside the settle@1 batch rate.

On throwaway servers (PostgreSQL, Prefect, the stand-in gateway answering every call after
``--latency-ms``), in one run:

1. **tick**: ``--pending`` settle@2 balance timers pending a month out (seeded in SQL,
   deploy/bench/timer_load.py); a tick's claim EXPLAINed with ANALYZE ``--ticks`` times:
   its time and the timer rows it read.
2. **day due**: a day's worth more (pending / 30) due now, beside the pending ones; the settlement loop (in this
   process, under leases the benchmark holds) fires them; balance charges per second from
   the first claim to the last ``balance charged`` step, and the first tick's cost.
3. **settle@1**: ``bench settle``'s batched phase in the same run (a node process settling
   Book calls from ``--threads`` desks), its confirmed bookings per second.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rich.console import Console

from ridgeline.deploy.bench import settlement_bench
from ridgeline.deploy.bench.security import BenchSecurity
from ridgeline.deploy.bench.timer_load import seed_balance_timers, tick_cost

_REGION = "eu-alps"
_FIRE_TIMEOUT_SECONDS = 600.0


def run_timers_benchmark(*, pending: int, ticks: int, settle_bookings: int, threads: int, latency_ms: int, secure: bool = True) -> dict[str, object]:
    started = datetime.now(timezone.utc)
    with settlement_bench.bench_servers("ridgeline-bench-timers-", latency_ms=latency_ms, secure=secure) as servers:
        security = servers.security
        url = servers.server.create_database("bench_timers", template="bench_template")
        tick, day = _timer_phases(url, servers.gateway_url, security, servers.root, pending, ticks)
        settle = settlement_bench.phase("batched", servers, settle_bookings, threads)
    return {
        "date": started.isoformat(timespec="seconds"),
        "machine": settlement_bench.machine(),
        "settings": {"pending": pending, "ticks": ticks, "settle_bookings": settle_bookings, "threads": threads, "latency_ms": latency_ms, "transport": security.label},
        "tick": tick,
        "day_due": day,
        "settle_v1_confirmed_per_second": settle.confirmed_per_second,
    }


def _timer_phases(url: str, gateway_url: str, security: BenchSecurity, root: Path, pending: int, ticks: int) -> tuple[dict[str, object], dict[str, object]]:
    from sqlalchemy import text

    from ridgeline.flows.loop import LoopPolicy, SettlementLoop
    from ridgeline.flows.payments import PaymentGateway
    from ridgeline.flows.runtime import build_settlement_runtime, close_settlement_runtime
    from ridgeline.regional.storage.db import make_engine, run_transaction
    from ridgeline.routing import leases

    console = Console(stderr=True)
    engine = make_engine(url, pool_size=2, application_name="ridgeline-bench-timers")
    now = datetime.now(timezone.utc)
    basecamps = run_transaction(engine, lambda conn: leases.region_basecamps(conn, _REGION))
    due_now = max(pending // 30, 1)
    console.print(f"[dim]timers: seeding {pending} balance timers pending a month out, then {due_now} more due now[/]")
    seeding = time.monotonic()
    for chunk in range(0, pending, 20_000):
        size = min(20_000, pending - chunk)
        run_transaction(engine, lambda conn, size=size: seed_balance_timers(conn, basecamps=basecamps, count=size, due_at=now + timedelta(days=30), now=now))
    seed_seconds = time.monotonic() - seeding
    with engine.connect() as conn:
        conn.execute(text("ANALYZE workflow_timers"))
        conn.commit()
    fence = run_transaction(engine, lambda conn: leases.acquire(conn, node_id="bench", basecamp_ids=basecamps, ttl_seconds=3600))
    costs = [run_transaction(engine, lambda conn: tick_cost(conn, fence=fence, workflows=["settle@2"], now=datetime.now(timezone.utc), batch_max=256)) for _ in range(ticks)]
    tick = {
        "pending": pending,
        "tick_ms_median": round(statistics.median(c.milliseconds for c in costs), 3),
        "tick_ms_max": round(max(c.milliseconds for c in costs), 3),
        "timer_rows_read": max(c.timer_rows_read for c in costs),
        "indexed_range": all(c.indexed_range for c in costs),
        "seed_seconds": round(seed_seconds, 1),
    }

    run_transaction(engine, lambda conn: seed_balance_timers(conn, basecamps=basecamps, count=due_now, due_at=now - timedelta(minutes=1), now=now))
    first = run_transaction(engine, lambda conn: tick_cost(conn, fence=fence, workflows=["settle@2"], now=datetime.now(timezone.utc), batch_max=256))
    name = f"bench-timers-{uuid.uuid4().hex[:8]}"
    runtime = build_settlement_runtime(name, url, PaymentGateway(gateway_url, security.node()), root / "spool-timers", borrowed_basecamps=basecamps, pool_size=40)
    loop = SettlementLoop(name, runtime, LoopPolicy(reconcile_interval_seconds=3600))
    console.print(f"[dim]timers: firing {due_now} balances[/]")
    started = time.monotonic()
    loop.start()
    charged = 0
    try:
        while time.monotonic() - started < _FIRE_TIMEOUT_SECONDS:
            charged = run_transaction(engine, lambda conn: conn.execute(text("SELECT count(*) FROM workflow_steps WHERE step = 'balance charged'")).scalar_one())
            if charged >= due_now:
                break
            time.sleep(0.2)
        seconds = time.monotonic() - started
    finally:
        loop.stop()
        close_settlement_runtime(name)
        engine.dispose()
    day = {
        "due": due_now,
        "charged": charged,
        "seconds": round(seconds, 2),
        "balance_charges_per_second": round(charged / seconds, 2) if seconds else None,
        "first_tick_ms": round(first.milliseconds, 3),
        "first_tick_timer_rows_read": first.timer_rows_read,
    }
    return tick, day
