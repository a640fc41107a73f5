"""``ridgeline bench console``: how fast the operator console's pages answer with 100,000
bookings in a region (issue 14's bound: 200 ms p95).

A throwaway ``ridgeline up`` cluster (one region, one node, no settlement: pages read, they
do not pay) with its console over HTTPS; ``--bookings`` confirmed settle@2 bookings are
seeded in the region database in SQL (deploy/bench/timer_load.py, each with its history,
steps and a pending balance timer), then one logged-in client asks each page ``--requests``
times, one after another, and the report gives p50, p95 and max per page: a page's time
is its gRPC reads (indexed, paged) plus rendering.
"""

from __future__ import annotations

import re
import shutil
import ssl
import statistics
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import httpx
from rich.console import Console

from ridgeline.deploy.bench.settlement_bench import machine
from ridgeline.deploy.bench.timer_load import seed_balance_timers
from ridgeline.deploy.cluster.cluster_file import ClusterSpec, NodeSpec, RegionSpec, with_free_ports
from ridgeline.deploy.cluster.local_cluster import LocalCluster

_REGION = "eu-alps"
_SEED_CHUNK = 20_000
#: The bound the issue sets for every page.
P95_BOUND_MS = 200.0
_ERROR = re.compile(r'<p class="error" role="alert">([^<]*)</p>')


def run_console_benchmark(*, bookings: int, requests: int, secure: bool = True) -> dict[str, object]:
    assert bookings > 0 and requests > 0
    started = datetime.now(timezone.utc)
    console = Console(stderr=True)
    root = Path(tempfile.mkdtemp(prefix="ridgeline-bench-console-"))
    spec = with_free_ports(ClusterSpec(name="bench-console", regions=(RegionSpec(_REGION, (NodeSpec(f"{_REGION}-1", _REGION, "127.0.0.1:0"),)),)))
    cluster = LocalCluster(spec, root, settlement=False, insecure=not secure, progress=lambda step: console.print(f"[dim]{step}…[/]"))
    try:
        cluster.start()
        seed_seconds, sample = _seed(cluster, bookings, console)
        assert cluster.console is not None and cluster.console_token is not None
        with httpx.Client(base_url=cluster.console.url, verify=ssl.create_default_context(cafile=cluster.certs.ca_cert) if secure else False, timeout=30) as http:
            _log_in(http, cluster.console_token.read_text().strip())
            pages = _pages(sample)
            console.print(f"[dim]console: {len(pages)} pages x {requests} requests[/]")
            timings = {name: _time(http, path, requests) for name, path in pages.items()}
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {"bookings": bookings, "requests": requests, "transport": "https + mTLS to the nodes" if secure else "insecure"},
        "seed_seconds": round(seed_seconds, 1),
        "p95_bound_ms": P95_BOUND_MS,
        "pages": timings,
        "within_bound": all(float(t.get("p95_ms", 0.0)) <= P95_BOUND_MS for t in timings.values() if "error" not in t),
    }


def _seed(cluster: LocalCluster, count: int, console: Console) -> tuple[float, dict[str, str]]:
    """Seeds ``count`` bookings in the region; returns the time it took and one of them to look up."""
    from sqlalchemy import text

    from ridgeline.regional.storage.db import make_engine, run_transaction
    from ridgeline.routing import leases

    url = next(r.database_url for r in cluster.spec.regions if r.name == _REGION)
    assert url is not None
    engine = make_engine(url, pool_size=1, application_name="ridgeline-bench-console")
    console.print(f"[dim]console: seeding {count} bookings in {_REGION}[/]")
    began, now = time.monotonic(), datetime.now(timezone.utc)
    try:
        basecamps = run_transaction(engine, lambda conn: leases.region_basecamps(conn, _REGION))
        for chunk in range(0, count, _SEED_CHUNK):
            size = min(_SEED_CHUNK, count - chunk)
            run_transaction(engine, lambda conn, size=size: seed_balance_timers(conn, basecamps=basecamps, count=size, due_at=now + timedelta(days=30), now=now))
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
            row = conn.execute(text("SELECT booking_id, basecamp_id, customer_id, first_night FROM bookings ORDER BY booking_id LIMIT 1")).one()
    finally:
        engine.dispose()
    return time.monotonic() - began, {"booking_id": str(row.booking_id), "basecamp_id": row.basecamp_id, "customer_id": row.customer_id, "night": row.first_night.isoformat()}


def _pages(sample: dict[str, str]) -> dict[str, str]:
    camp, night = sample["basecamp_id"], sample["night"]
    return {
        "cluster": "/cluster",
        "bookings by id": f"/bookings?booking_id={sample['booking_id']}",
        "bookings by basecamp": f"/bookings?basecamp_id={camp}",
        "bookings by customer": f"/bookings?customer_id={sample['customer_id']}&region={_REGION}",
        "bookings by basecamp, state and night": f"/bookings?basecamp_id={camp}&state=confirmed&night={night}",
        "booking timeline": f"/bookings/{sample['booking_id']}",
        "availability (31 nights)": f"/availability?basecamp_id={camp}&start={date.fromisoformat(night).isoformat()}&nights=31",
        "in flight": f"/inflight?region={_REGION}&older_than=60",
    }


def _log_in(http: httpx.Client, token: str) -> None:
    form = http.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None, "the login form carries its CSRF token"
    answer = http.post("/login", data={"csrf": csrf.group(1), "token": token, "next": "/cluster"})
    assert answer.status_code == 303, f"login refused: {answer.status_code} {answer.text[:200]}"


def _time(http: httpx.Client, path: str, requests: int) -> dict[str, object]:
    """p50, p95 and max of ``requests`` sequential GETs of ``path``; the page's error instead when it shows one."""
    http.get(path).raise_for_status()  # warm: channels, the catalog, the template cache
    samples = []
    for _ in range(requests):
        began = time.perf_counter()
        answer = http.get(path)
        samples.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, f"{path}: {answer.status_code}"
        shown = _ERROR.search(answer.text)
        if shown is not None:
            return {"error": shown.group(1)}
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 1),
        "max_ms": round(samples[-1], 1),
    }
