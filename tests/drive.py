"""Driving nodes over real gRPC from many client threads, reading what each call answered, and
setting up bookings that the API cannot make (holds placed in the past)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Generic, TypeVar

import grpc
from sqlalchemy import Engine, text

from ridgeline.regional.booking import holds
from ridgeline.regional.booking.model import Booking, Nights
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.storage.db import run_transaction
from ridgeline.routing import ClusterClient, leases
from ridgeline.routing.client import BookingClient
from ridgeline.routing.retry import RetryPolicy
from ridgeline.trust.credentials import Transport

T = TypeVar("T")
Reply = TypeVar("Reply")

OK = grpc.StatusCode.OK


@dataclass(frozen=True)
class Outcome(Generic[Reply]):
    """What one call answered: its status code, its reply when OK, the status details otherwise."""

    code: grpc.StatusCode
    reply: Reply | None
    details: str

    @property
    def ok(self) -> bool:
        return self.code is OK


def outcome(call: Callable[[], Reply]) -> Outcome[Reply]:
    try:
        return Outcome(OK, call(), "")
    except grpc.RpcError as error:
        return Outcome(error.code(), None, error.details() or "")


def retrying_aborted(call: Callable[[], Reply], policy: RetryPolicy = RetryPolicy(attempts_max=8, backoff_base_seconds=0.05, backoff_cap_seconds=1.0)) -> Reply:
    """``call`` (one request, so one idempotency key) repeated while it answers ABORTED, as
    every Ridgeline client does (``routing.route``): a transaction that lost to concurrent
    writers more often than the node retries is the caller's to retry, and a test that
    drives a raw stub under a storm owes the same courtesy."""
    for attempt in range(1, policy.attempts_max + 1):
        try:
            return call()
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.ABORTED or attempt == policy.attempts_max:
                raise
            time.sleep(policy.backoff_seconds(attempt))
    raise AssertionError("unreachable: the loop returns or raises")


def night(days_ahead: int) -> date:
    """The night ``days_ahead`` days after today (UTC). Two or more days ahead is on sale in every
    basecamp's time zone, and far inside the booking horizon."""
    return datetime.now(timezone.utc).date() + timedelta(days=days_ahead)


def race(
    address: str,
    threads: int,
    work: Callable[[int, BookingClient], T],
    *,
    transport: Transport,
    timeout_seconds: float = 10.0,
    attempts_max: int = 5,
    wait_seconds: float = 60.0,
) -> list[T]:
    """Runs ``work(i, client)`` on ``threads`` threads, each with its own client and channel
    (``transport``: the role the clients act in).

    Every thread connects first (one ListBasecamps), then all are released together by a
    barrier so that their calls really overlap. Returns the results in thread order,
    re-raises the first exception, and closes every channel.
    """
    barrier = threading.Barrier(threads)

    def run(i: int) -> T:
        with BookingClient(address, transport=transport, timeout_seconds=timeout_seconds, attempts_max=attempts_max) as client:
            try:
                client.list_basecamps()
                barrier.wait(wait_seconds)
            except BaseException:
                barrier.abort()
                raise
            return work(i, client)

    with ThreadPoolExecutor(threads, thread_name_prefix="racer") as pool:
        futures = [pool.submit(run, i) for i in range(threads)]
        return [future.result(timeout=wait_seconds) for future in futures]


def place_hold_directly(
    engine: Engine,
    basecamp_id: str,
    resource_id: str,
    start: date,
    end: date,
    party_size: int,
    *,
    placed_at: datetime,
    ttl_seconds: int,
) -> Booking:
    """A hold placed through the domain function, at any ``placed_at`` (prices are irrelevant here)."""
    request = holds.HoldRequest(
        idempotency_key=f"direct-{uuid.uuid4()}",
        basecamp_id=basecamp_id,
        resource_id=resource_id,
        nights=Nights(start, end),
        party_size=party_size,
        customer_id="direct-guest",
        ttl_seconds=ttl_seconds,
        unit_price_cents=100,
        currency="EUR",
        actor="desk:direct",
        node_actor="node:direct",
    )
    return holds.place_hold(engine, request, epoch=writer_epoch(engine, basecamp_id), now=placed_at)


def writer_epoch(engine: Engine, basecamp_id: str) -> int:
    """An epoch the test may write with: a fresh grant, or (setup under a serving node) the node's own."""
    granted = grant_leases(engine, [basecamp_id])
    if basecamp_id in granted:
        return granted[basecamp_id]
    return run_transaction(
        engine, lambda conn: conn.execute(text("SELECT epoch FROM basecamp_leases WHERE basecamp_id = :b"), {"b": basecamp_id}).scalar_one()
    )


def grant_leases(engine: Engine, basecamp_ids: Iterable[str], holder: str = "test-writer") -> dict[str, int]:
    """Leases for a writer that is not a node (domain functions called directly), for an hour."""
    return run_transaction(engine, lambda conn: leases.acquire(conn, node_id=holder, basecamp_ids=basecamp_ids, ttl_seconds=3600))


def place_lapsed_hold(
    engine: Engine, basecamp_id: str, resource_id: str, start: date, end: date, party_size: int, *, lapsed_seconds: float = 60.0
) -> Booking:
    """A hold with the shortest TTL placed so long ago that it lapsed ``lapsed_seconds`` ago and
    has not been swept: the API cannot make one without sleeping."""
    ttl_seconds = NodeConfig.hold_ttl_min_seconds
    placed_at = datetime.now(timezone.utc) - timedelta(seconds=ttl_seconds + lapsed_seconds)
    return place_hold_directly(engine, basecamp_id, resource_id, start, end, party_size, placed_at=placed_at, ttl_seconds=ttl_seconds)


def owner_address(client: ClusterClient, basecamp_id: str) -> str:
    """The address of the node holding the basecamp's lease now ("" while between owners)."""
    for info in client.cluster_info():
        for owner in info.owners:
            if owner.basecamp_id == basecamp_id:
                return owner.address
    raise LookupError(f"no region lists {basecamp_id}")
