"""``ridgeline load``: desks hammering the cluster through the routing client.

A mix of operations (hold, book = hold + confirm at the desk, release, cancel, pay = Book
settled by the owner's flows, trek = a two-region trek through the coordinator) from ``concurrency``
desk threads, paced to ``rate`` operations per second in total when given (each desk
keeps its share of the rate: a paced closed loop), for ``duration`` seconds, with an
optional hot spot (a share of all holds on one resource and night, the popular night
everyone wants). Each desk has its own routing client, as separate desks would.

The report gives throughput and latency percentiles per operation and errors by status
code; the ids of every booking the cluster acknowledged are kept, so an audit or a
drill can check afterwards that none was lost (invariant 2). Chaos drills run the same
generator in the background while they inject faults.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import grpc

from ridgeline.routing import ClusterClient, night_range
from ridgeline.routing.coordinator_set import CoordinatorSet, parse_targets
from ridgeline.trust.credentials import Transport
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import trek_pb2 as tpb

OPERATIONS = ("hold", "book", "release", "cancel", "pay", "trek")
#: The longest one coordinator may take to record a trek before the planner asks another.
TREK_ATTEMPT_SECONDS = 1.5


@dataclass(frozen=True)
class LoadSettings:
    seeds: Sequence[str]
    #: How the desks call the cluster (a desk's client pair, or insecure).
    transport: Transport
    duration_seconds: float = 30.0
    concurrency: int = 8
    #: Operations per second over all desks; None: as fast as the cluster answers.
    rate: float | None = None
    #: Relative weights of the operations.
    mix: dict[str, float] = field(default_factory=lambda: {"hold": 3.0, "book": 5.0, "release": 1.0, "cancel": 1.0})
    #: Share of holds and books aimed at one resource and night.
    hot_fraction: float = 0.0
    #: Deadline of each call, seconds (the routing client retries within it).
    call_timeout_seconds: float = 5.0
    hold_ttl_seconds: int = 60
    seed: int = 0
    #: The trek coordinators (host:port, comma-separated: calls go to whichever leads), needed when the mix has treks.
    coordinator: str | None = None
    #: How treks are planned (a planner's pair; None: ``transport``).
    planner: Transport | None = None

    def __post_init__(self) -> None:
        if unknown := set(self.mix) - set(OPERATIONS):
            raise ValueError(f"unknown operations in the mix: {', '.join(sorted(unknown))} (known: {', '.join(OPERATIONS)})")
        if not any(weight > 0 for weight in self.mix.values()):
            raise ValueError("the mix needs at least one operation with a positive weight")
        if self.duration_seconds <= 0 or self.concurrency <= 0 or (self.rate is not None and self.rate <= 0):
            raise ValueError("duration, concurrency and rate must be positive")
        if not 0 <= self.hot_fraction <= 1:
            raise ValueError("the hot fraction is between 0 and 1")
        if self.mix.get("trek", 0) > 0 and not self.coordinator:
            raise ValueError("a mix with treks needs the coordinator's address")


@dataclass
class OperationStats:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def summary(self, elapsed: float) -> dict[str, object]:
        ordered = sorted(self.latencies)
        return {
            "ok": len(ordered),
            "per_second": len(ordered) / elapsed if elapsed else 0.0,
            "p50_ms": _percentile_ms(ordered, 0.50),
            "p95_ms": _percentile_ms(ordered, 0.95),
            "p99_ms": _percentile_ms(ordered, 0.99),
            "errors": dict(self.errors),
        }


@dataclass
class LoadReport:
    settings: LoadSettings
    elapsed_seconds: float
    operations: dict[str, OperationStats]
    #: booking id -> the state the cluster last acknowledged for it.
    acknowledged: dict[str, str]

    def to_json(self) -> dict[str, object]:
        return {
            "duration_seconds": self.elapsed_seconds,
            "concurrency": self.settings.concurrency,
            "rate": self.settings.rate,
            "mix": self.settings.mix,
            "hot_fraction": self.settings.hot_fraction,
            "operations": {name: stats.summary(self.elapsed_seconds) for name, stats in self.operations.items()},
            "acknowledged_bookings": len(self.acknowledged),
        }

    def errors_by_code(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for stats in self.operations.values():
            total.update(stats.errors)
        return total


class LoadGenerator:
    """Runs the desks; ``run`` blocks until the duration ends or ``stop`` is set."""

    def __init__(self, settings: LoadSettings) -> None:
        self.settings = settings
        self._stats = {name: OperationStats() for name in OPERATIONS if settings.mix.get(name, 0) > 0}
        self._acknowledged: dict[str, str] = {}
        self._lock = threading.Lock()
        self._done = 0

    @property
    def completed(self) -> int:
        """Operations finished so far, successful or not (for progress displays)."""
        return self._done

    def run(self, stop: threading.Event | None = None, progress: Callable[[float, int, int], None] | None = None) -> LoadReport:
        stop = stop or threading.Event()
        with ClusterClient(self.settings.seeds, transport=self.settings.transport, timeout_seconds=self.settings.call_timeout_seconds) as client:
            products = [(b.region, b.basecamp_id, r.resource_id) for b in client.list_basecamps().basecamps for r in b.resources]
        if not products:
            raise RuntimeError("the cluster lists no basecamps")
        started = time.monotonic()
        deadline = started + self.settings.duration_seconds
        desks = [threading.Thread(target=self._desk, args=(i, products, deadline, stop), daemon=True) for i in range(self.settings.concurrency)]
        for desk in desks:
            desk.start()
        while any(d.is_alive() for d in desks):
            if progress is not None:
                progress(time.monotonic() - started, self._done, sum(sum(s.errors.values()) for s in self._stats.values()))
            time.sleep(0.5)
        return LoadReport(self.settings, time.monotonic() - started, self._stats, dict(self._acknowledged))

    def _desk(self, index: int, products: list[tuple[str, str, str]], deadline: float, stop: threading.Event) -> None:
        settings = self.settings
        rng = random.Random(settings.seed * 10_007 + index)
        names = list(self._stats)
        weights = [settings.mix[name] for name in names]
        interval = settings.concurrency / settings.rate if settings.rate else 0.0
        hot = products[0]
        hot_night = date.today() + timedelta(days=7)
        held: list[str] = []
        confirmed: list[str] = []
        next_at = time.monotonic()
        treks = _TrekDesk(settings.coordinator, settings.call_timeout_seconds, settings.planner or settings.transport) if settings.coordinator else None
        with ClusterClient(settings.seeds, transport=settings.transport, timeout_seconds=settings.call_timeout_seconds) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                if interval:
                    next_at += interval
                    pause = next_at - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                name = rng.choices(names, weights)[0]
                if (name == "release" and not held) or (name == "cancel" and not confirmed):
                    name = "hold" if "hold" in self._stats else "book"
                    if name not in self._stats:
                        continue
                began = time.perf_counter()
                try:
                    if name == "trek":
                        assert treks is not None
                        treks.plan(rng, products)
                        self._record(name, time.perf_counter() - began, None, None)
                        continue
                    booking = self._operate(client, rng, name, products, hot, hot_night, held, confirmed)
                except grpc.RpcError as error:
                    self._record(name, None, None, error.code().name)
                    continue
                self._record(name, time.perf_counter() - began, booking, None)
        if treks is not None:
            treks.close()

    def _operate(
        self, client: ClusterClient, rng: random.Random, name: str, products: list[tuple[str, str, str]],
        hot: tuple[str, str, str], hot_night: date, held: list[str], confirmed: list[str],
    ) -> pb.Booking:
        settings = self.settings
        if name == "release":
            return client.release(held.pop(rng.randrange(len(held))), reason="load: released")
        if name == "cancel":
            return client.cancel(confirmed.pop(rng.randrange(len(confirmed))), reason="load: cancelled")
        if name == "pay":
            (_, basecamp, resource), first = rng.choice(products), date.today() + timedelta(days=2 + rng.randrange(300))
            return client.book(basecamp, resource, first, first + timedelta(days=1), 1, "load", hold_ttl_seconds=max(settings.hold_ttl_seconds, 60))
        if rng.random() < settings.hot_fraction:
            (_, basecamp, resource), first = hot, hot_night
        else:
            (_, basecamp, resource), first = rng.choice(products), date.today() + timedelta(days=2 + rng.randrange(300))
        booking = client.place_hold(basecamp, resource, first, first + timedelta(days=1 + rng.randrange(2)), 1, "load", hold_ttl_seconds=settings.hold_ttl_seconds)
        if name == "hold":
            held.append(booking.booking_id)
            return booking
        self._record_ack(booking)
        booking = client.confirm(booking.booking_id)
        confirmed.append(booking.booking_id)
        return booking

    def _record_ack(self, booking: pb.Booking) -> None:
        with self._lock:
            self._acknowledged[booking.booking_id] = pb.BookingState.Name(booking.state)

    def _record(self, name: str, seconds: float | None, booking: pb.Booking | None, error: str | None) -> None:
        with self._lock:
            self._done += 1
            if error is not None:
                self._stats[name].errors[error] += 1
                return
            assert seconds is not None
            self._stats[name].latencies.append(seconds)
            if booking is not None:
                self._acknowledged[booking.booking_id] = pb.BookingState.Name(booking.state)


class _TrekDesk:
    """A planner: two-leg treks over two regions through whichever coordinator leads (a channel to each)."""

    def __init__(self, coordinator: str, timeout_seconds: float, transport: Transport) -> None:
        self._coordinators = CoordinatorSet(parse_targets(coordinator), transport)
        # A paused coordinator never answers: past this the desk asks the next one (same key).
        self._stub = self._coordinators.stub(attempt_timeout_seconds=min(TREK_ATTEMPT_SECONDS, timeout_seconds))
        self._timeout = timeout_seconds

    def plan(self, rng: random.Random, products: list[tuple[str, str, str]]) -> None:
        regions = sorted({region for region, _, _ in products})
        first, second = rng.sample(regions, 2) if len(regions) > 1 else (regions[0], regions[0])
        start = date.today() + timedelta(days=2 + rng.randrange(300))
        legs = []
        for index, region in enumerate((first, second)):
            _, basecamp, resource = rng.choice([p for p in products if p[0] == region])
            night = start + timedelta(days=2 * index)
            legs.append(tpb.TrekLeg(basecamp_id=basecamp, resource_id=resource, nights=night_range(night, night + timedelta(days=1)), party_size=1))
        request = tpb.PlanTrekRequest(idempotency_key=str(uuid.uuid4()), customer_id="load", legs=legs, wait=False)
        self._stub.PlanTrek(request, timeout=self._timeout)

    def close(self) -> None:
        self._coordinators.close()


def parse_mix(text: str) -> dict[str, float]:
    """``hold=3,book=5,cancel=1`` -> weights."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        try:
            mix[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"mix entry {part!r} must look like name=weight") from None
    return mix


def _percentile_ms(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000
