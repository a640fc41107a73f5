"""``ridgeline audit``: every invariant of ARCHITECTURE.md §2, checked where the data is.

Region checks (invariants 1, 2, 3, 6, 7) run on each region database
(``regional/storage/audit_sql.py``); the money check (invariant 4) reads the payment gateway's ledger
through its API and joins it with the bookings; the trek check (invariant 5) joins the
coordinator's decision log once treks are part of the cluster.
The audit only reads, from one snapshot per database, so it is safe on a live cluster;
its exit status is non-zero when any check finds an offender.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, text

from ridgeline.flows.payments import Charge, PaymentGateway
from ridgeline.global_coordinator.leadership import STALE_DECISIONS_SQL
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.storage.audit_sql import Check, audit_region
from ridgeline.regional.storage.db import make_engine, read_transaction
from ridgeline.trust.credentials import Transport

T = TypeVar("T")

#: A hold may be unswept this long after its expiry before it counts as leaked: one
#: sweep interval (5 s by default) and generous slack for a loaded machine.
DEFAULT_HOLD_GRACE_SECONDS = 30.0
#: A charge may stand this long after its booking last changed before reconciliation
#: (every 60 s, with a 60 s grace of its own) must have refunded it.
DEFAULT_MONEY_GRACE_SECONDS = 180.0


def _read(url: str, work: Callable[[Connection], T]) -> T:
    """``work``'s reads from one snapshot of the database at ``url``. SERIALIZABLE may
    cancel even a read-only transaction that races the writers (it can be the pivot of a
    conflict), so the read is retried whole, like every other transaction here."""
    engine = make_engine(url, pool_size=1, application_name="ridgeline-audit")
    try:
        return read_transaction(engine, work)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class AuditReport:
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_json(self) -> dict[str, object]:
        return {"passed": self.passed, "checks": [{**asdict(c), "passed": c.passed} for c in self.checks]}


def write_textfile(report: AuditReport, path: Path) -> None:
    """Writes the verdict for node_exporter's textfile collector (written aside and renamed,
    so a scrape never reads half a file), for the alert rules in deploy/monitoring: an
    audit run by cron leaves its outcome, and its time, where Prometheus sees them."""
    registry = CollectorRegistry()
    Gauge("ridgeline_audit_passed", "1 when the last ridgeline audit found no invariant broken, else 0.", registry=registry).set(int(report.passed))
    Gauge("ridgeline_audit_last_run_timestamp_seconds", "When the last ridgeline audit finished (Unix time).", registry=registry).set(time.time())
    offenders = Gauge("ridgeline_audit_offenders", "Offenders the last ridgeline audit found, by invariant.", ["invariant"], registry=registry)
    counts: Counter[str] = Counter()
    for check in report.checks:
        counts[check.invariant] += check.count
    for invariant, count in counts.items():
        offenders.labels(invariant).set(count)
    write_to_textfile(str(path), registry)


def run_audit(
    region_urls: Mapping[str, str],
    *,
    hold_grace_seconds: float = DEFAULT_HOLD_GRACE_SECONDS,
    gateway_url: str | None = None,
    gateway_transport: Transport | None = None,
    coordinator_url: str | None = None,
    money_grace_seconds: float = DEFAULT_MONEY_GRACE_SECONDS,
) -> AuditReport:
    """Audits every region database (in parallel), and the money when a gateway is given
    (read with ``gateway_transport``: an ``sre`` pair); a database or gateway that cannot
    be read fails its check."""
    assert not gateway_url or gateway_transport is not None, "reading the gateway's ledger takes a transport (an sre pair, or insecure)"

    def one(region: str) -> list[Check]:
        engine = make_engine(region_urls[region], pool_size=1, application_name="ridgeline-audit")
        try:
            return audit_region(
                engine, region, hold_grace_seconds=hold_grace_seconds, key_retention_seconds=NodeConfig.idempotency_retention_seconds
            )
        except Exception as error:  # noqa: BLE001 - an unreadable database is a verdict, not a crash
            return [Check("-", "the region database can be read", f"region {region}", [f"{type(error).__name__}: {error}"], 1)]
        finally:
            engine.dispose()

    regions = sorted(region_urls)
    with ThreadPoolExecutor(max(len(regions), 1)) as pool:
        checks = [check for found in pool.map(one, regions) for check in found]
    trek_cents: dict[str, int | None] = {}
    if coordinator_url:
        try:
            trek_check, trek_cents = check_treks(region_urls, coordinator_url, grace_seconds=money_grace_seconds)
            checks.append(trek_check)
            checks.append(check_decision_epochs(coordinator_url))
        except Exception as error:  # noqa: BLE001 - an unreadable log is a verdict, not a crash
            checks.append(Check("5 treks are atomic", "the coordinator's log can be read", "coordinator", [f"{type(error).__name__}: {error}"], 1))
    if gateway_url:
        try:
            assert gateway_transport is not None
            checks.append(check_money(region_urls, gateway_url, gateway_transport, grace_seconds=money_grace_seconds, trek_cents=trek_cents))
        except Exception as error:  # noqa: BLE001 - an unreadable ledger is a verdict, not a crash
            checks.append(Check("4 money balances", "the gateway's ledger can be read", f"gateway {gateway_url}", [f"{type(error).__name__}: {error}"], 1))
    return AuditReport(checks)


_ACKNOWLEDGED = text(
    "SELECT CAST(booking_id AS TEXT) AS booking_id, state FROM bookings WHERE CAST(booking_id AS TEXT) = ANY(:ids)"
)

#: What a booking acknowledged in a state may have become since, without anything lost.
_STILL_FINE = {
    "BOOKING_STATE_HELD": {"held", "confirmed", "released", "expired", "cancelled"},
    "BOOKING_STATE_CONFIRMED": {"confirmed", "cancelled"},
    "BOOKING_STATE_RELEASED": {"released"},
    "BOOKING_STATE_CANCELLED": {"cancelled"},
}


def check_acknowledged(region_urls: Mapping[str, str], acknowledged: Mapping[str, str]) -> Check:
    """Invariant 2 against what a load run was told: every acknowledged booking exists in
    some region, and nothing acknowledged was undone (a confirmation still stands, or was
    cancelled; a release or cancellation stays)."""
    found: dict[str, str] = {}
    ids = list(acknowledged)
    for url in region_urls.values():
        found.update(_read(url, lambda conn: {r.booking_id: r.state for r in conn.execute(_ACKNOWLEDGED, {"ids": ids})}))
    offenders = [
        f"booking {booking_id} acknowledged {state.removeprefix('BOOKING_STATE_').lower()} is "
        + (f"now {found[booking_id]}" if booking_id in found else "missing")
        for booking_id, state in acknowledged.items()
        if found.get(booking_id) not in _STILL_FINE.get(state, set())
    ]
    return Check("2 nothing acknowledged is lost", f"all {len(ids)} acknowledged bookings stand", "load run", offenders[:20], len(offenders))


_PAID_BOOKINGS = text(
    """
    SELECT CAST(b.booking_id AS TEXT) AS booking_id, b.state, b.total_price_cents, b.updated_at, s.state AS settlement, b.workflow,
           EXTRACT(EPOCH FROM now() - GREATEST(b.updated_at, s.updated_at)) AS age,
           COALESCE((SELECT SUM(w.amount_cents) FROM workflow_steps AS w
                     WHERE w.booking_id = b.booking_id AND w.step IN ('deposit charged', 'balance charged')), 0)
         - COALESCE((SELECT SUM(w.amount_cents) FROM workflow_steps AS w
                     WHERE w.booking_id = b.booking_id AND w.step = 'refunded by policy'), 0) AS steps_cents
    FROM bookings AS b JOIN settlements AS s USING (booking_id)
    """
)


_FINAL_TREKS = text(
    """
    SELECT CAST(t.trek_id AS TEXT) AS trek_id, t.state,
           (SELECT count(*) FROM trek_legs AS l WHERE l.trek_id = t.trek_id) AS legs,
           COALESCE((SELECT SUM(c.amount_cents - c.refunded_cents) FROM trek_charges AS c WHERE c.trek_id = t.trek_id), 0) AS kept_cents
    FROM treks AS t
    WHERE t.state IN ('committed', 'aborted', 'cancelled') AND t.updated_at < now() - make_interval(secs => :grace)
    """
)

_TREKS_IN_FLIGHT = text(
    """
    SELECT CAST(trek_id AS TEXT) AS trek_id FROM treks
    WHERE state NOT IN ('committed', 'aborted', 'cancelled') OR updated_at >= now() - make_interval(secs => :grace)
    """
)

_PARTICIPANT_LEGS = text("SELECT trek_id, leg_index, state FROM trek_legs WHERE trek_id = ANY(:ids)")

#: The participant leg states a finished trek may leave behind.
_LEGS_AT_REST = {"committed": {"committed"}, "aborted": {"aborted"}, "cancelled": {"cancelled", "aborted"}}


def check_treks(
    region_urls: Mapping[str, str], coordinator_url: str, *, grace_seconds: float
) -> tuple[Check, dict[str, int | None]]:
    """Invariant 5: every finished trek in the coordinator's log has all its legs committed
    (a committed trek) or none (aborted, cancelled) in the participants' fence rows.
    Also returns trek_id -> the cents the trek should keep charged, for the money check
    (None for a trek still in flight: its money is not at rest yet)."""

    def log(conn: Connection) -> tuple[list[str], dict[str, Any]]:
        in_flight = [r.trek_id for r in conn.execute(_TREKS_IN_FLIGHT, {"grace": grace_seconds})]
        return in_flight, {r.trek_id: r for r in conn.execute(_FINAL_TREKS, {"grace": grace_seconds})}

    in_flight, treks = _read(coordinator_url, log)
    legs: dict[str, dict[int, str]] = {}
    for url in region_urls.values():
        for row in _read(url, lambda conn: conn.execute(_PARTICIPANT_LEGS, {"ids": sorted(treks)}).all()):
            legs.setdefault(row.trek_id, {})[row.leg_index] = row.state
    offenders = []
    for trek_id, trek in sorted(treks.items()):
        found = legs.get(trek_id, {})
        allowed = _LEGS_AT_REST[trek.state]
        wrong = {index: state for index, state in found.items() if state not in allowed}
        missing = trek.state == "committed" and len(found) != trek.legs
        if wrong or missing:
            offenders.append(f"trek {trek_id} is {trek.state} but its legs are {dict(sorted(found.items()))} of {trek.legs}")
    kept: dict[str, int | None] = {trek_id: None for trek_id in in_flight}
    kept.update({trek_id: int(t.kept_cents) if t.state == "committed" else 0 for trek_id, t in treks.items()})
    check = Check("5 treks are atomic", "every finished trek has all legs committed or none", f"coordinator and {len(region_urls)} regions", offenders[:20], len(offenders))
    return check, kept


def check_decision_epochs(coordinator_url: str) -> Check:
    """Invariant 5's fence: no decision was written by a coordinator that no longer led (the leader epochs in the log)."""
    rows = _read(coordinator_url, lambda conn: conn.execute(text(STALE_DECISIONS_SQL)).all())
    offenders = [f"trek {r.trek_id}: decided under epoch {r.epoch} {r.why}" for r in rows]
    return Check("5 treks are atomic", "every decision was written under the epoch that led", "coordinator", offenders[:20], len(offenders))


def check_money(
    region_urls: Mapping[str, str], gateway_url: str, transport: Transport, *, grace_seconds: float, trek_cents: Mapping[str, int | None] | None = None
) -> Check:
    """Invariant 4 against the payment gateway's own ledger (read through its API, as a
    provider's would be): a confirmed, paid booking has exactly its price standing; any
    other booking has nothing standing (settle@2: what its steps charged minus what its
    cancellation policy refunded); no booking was charged twice (invariant 7). A
    booking still settling, or changed within ``grace_seconds`` (reconciliation has not
    had its turn), is not at rest and is left out. Charges whose reference is a trek are
    checked against ``trek_cents`` (what each finished trek keeps: its charges when
    committed, nothing when aborted or cancelled); a trek still running is left out."""
    treks = trek_cents or {}
    # Bookings first, then the ledger: a settlement that moves in between is seen in flight
    # (left out), never as a confirmed booking whose charge the ledger did not show yet.
    bookings: dict[str, Any] = {}
    for url in region_urls.values():
        bookings.update(_read(url, lambda conn: {r.booking_id: r for r in conn.execute(_PAID_BOOKINGS)}))
    with PaymentGateway(gateway_url, transport, timeout_seconds=10) as gateway:
        charges = list(gateway.list_charges())
    standing: dict[str, int] = {}
    count: dict[str, int] = {}
    for charge in charges:
        count[charge.reference] = count.get(charge.reference, 0) + 1
        if charge.status == "succeeded":
            standing[charge.reference] = standing.get(charge.reference, 0) + charge.amount_cents - charge.refunded_cents
    trek_refs = {ref for ref in count if ref not in bookings and ref in treks}
    offenders = [
        f"trek {ref}: {standing.get(ref, 0)} cents stand, {treks[ref]} expected"
        for ref in sorted(trek_refs)
        if treks[ref] is not None and standing.get(ref, 0) != treks[ref]
    ]
    # settle@2 charges twice (deposit, balance); every other version once.
    offenders += [
        f"booking {ref} was charged {n} times" for ref, n in sorted(count.items()) if ref in bookings and n > (2 if bookings[ref].workflow == "settle@2" else 1)
    ]
    for booking_id in sorted((set(count) | set(bookings)) - trek_refs):
        row = bookings.get(booking_id)
        held = standing.get(booking_id, 0)
        if row is None:
            if held and booking_id not in treks and not _running_trek(booking_id, charges, grace_seconds):
                offenders.append(f"{held} cents stand for {booking_id}, which is no booking and no finished trek")
            continue
        if row.settlement in ("awaiting_payment", "refunding") or float(row.age) < grace_seconds:
            continue  # not at rest yet
        expected = row.total_price_cents if row.state == "confirmed" and row.settlement == "confirmed" else 0
        if row.workflow == "settle@2":  # what its steps charged minus what its policy refunded
            expected = row.steps_cents
        if held != expected:
            offenders.append(f"booking {booking_id} is {row.state} (payment {row.settlement}): {held} cents stand, {expected} expected")
    where = f"gateway {gateway_url}"
    return Check("4 money balances", "charges minus refunds equal the price of paid confirmed bookings", where, offenders[:20], len(offenders))


def _running_trek(reference: str, charges: list[Charge], grace_seconds: float) -> bool:
    """A charge younger than the grace may belong to a trek the coordinator has not finished."""
    now = datetime.now(timezone.utc)
    return any(
        c.reference == reference and (now - c.created_at.replace(tzinfo=c.created_at.tzinfo or timezone.utc)).total_seconds() < grace_seconds
        for c in charges
    )


def print_report(report: AuditReport, *, json_out: bool, console: Console | None = None) -> None:
    if json_out:
        print(json.dumps(report.to_json(), indent=2, default=str))
        return
    console = console or Console()
    table = Table(title="Ridgeline audit")
    for column in ("invariant", "check", "where", "verdict"):
        table.add_column(column)
    for check in report.checks:
        verdict = "[green]holds[/]" if check.passed else f"[bold red]VIOLATED ({check.count})[/]"
        table.add_row(check.invariant, check.name, check.where, verdict)
    console.print(table)
    for check in report.checks:
        if not check.passed:
            console.print(f"[bold red]{check.invariant}[/] — {check.name} — {check.where}: {check.count} offender(s)")
            for offender in check.offenders:
                console.print(f"  {offender}")
            if check.count > len(check.offenders):
                console.print(f"  … and {check.count - len(check.offenders)} more")
    console.print("[bold green]every invariant holds[/]" if report.passed else "[bold red]invariants violated[/]")
